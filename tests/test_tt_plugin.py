"""The `tt` accelerator and strategy: errors without hardware, and full runs on the ttml test double.

The double (tests/ttml_double) stands in for ttml and ttnn with the real signatures and checks; it computes in
float32 with torch. So with precision 32-true a TT run must reproduce the CPU run up to float32 rounding: the
double evaluates the same math in a different order (RoPE as x @ trans_mat, attention as an explicit softmax,
the vocabulary padded to 32 with a -1e4 logit bias), which moves a loss by ~1e-7 relative per step. We allow
1e-5 relative on losses and 1e-5 absolute on weights after 6 AdamW steps; a wiring mistake (a mis-ordered
qkv split, the other RoPE convention, a lost clip, LR, accumulation scale or weight-decay group) moves the loss
at step 2 by >1e-3 (see test_a_wiring_mistake_is_caught).
"""

import json
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import fit_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from ttml_double import harness
from ttml_double.harness import install_double

from lightning_trickster.cli import main
from lightning_trickster.data import ShakespeareDataModule
from lightning_trickster.module import NanoTricksterModule

TT_SHAPE = ["--model.hidden_dim", "64", "--model.num_heads", "2", "--model.mlp_dim", "64", "--model.max_seq_len", "32"]
TT = ["--trainer.accelerator", "tt", "--trainer.strategy", "tt"]
STEPS_WITH_EVERYTHING = [
    "--trainer.accumulate_grad_batches", "2", "--trainer.gradient_clip_val", "0.5", "--model.weight_decay", "0.1",
    "--trainer.precision", "32-true", "--sampling.max_new_tokens", "0",
    "--trainer.limit_val_batches", "4", "--trainer.num_sanity_val_steps", "1",
]  # fmt: skip

tt_double = harness.tt_double  # the fixture: ttml/ttnn doubles in place for one test


def run_dir(root: Path) -> Path:
    return root / "lightning_logs" / "version_0"


def scalars(root: Path) -> dict[str, dict[int, float]]:
    events = EventAccumulator(str(run_dir(root)))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def last_checkpoint(root: Path) -> dict:
    return torch.load(run_dir(root) / "checkpoints" / "last.ckpt", weights_only=True)


def one_line_error(capsys, args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


# ---------------------------------------------------------------- without hardware
def test_importing_the_project_registers_tt_without_importing_ttnn_or_ttml():
    code = (
        "import sys, lightning_trickster\n"
        "from lightning.pytorch.accelerators import AcceleratorRegistry\n"
        "from lightning.pytorch.strategies import StrategyRegistry\n"
        "assert 'tt' in AcceleratorRegistry and 'tt' in StrategyRegistry\n"
        "assert not {'ttnn', 'ttml'} & set(sys.modules), 'vendor import at project import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tt_n150_preset_without_ttnn_ends_with_one_line_naming_what_to_install(shakespeare_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ttnn", None)  # as on a machine without the wheel
    monkeypatch.setitem(sys.modules, "ttml", None)
    err = one_line_error(capsys, ["fit", "--config", "tt_n150.yaml", "--data.path", str(shakespeare_path)])
    assert err.startswith("error: accelerator 'tt' cannot run here: ttnn is not installed: pip install ttnn==0.81.1")
    assert "ttml (tt-train) is not installed; build it from tenstorrent/tt-metal at tag v0.81.1" in err


def test_without_a_chip_the_error_says_so(tt_double, small_corpus, tmp_path, capsys):
    import ttnn

    ttnn.DOUBLE_CHIPS = 0
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *TT))
    assert "1 Tenstorrent chip(s) needed but 0 found (ttnn: TT_FATAL" in err
    assert "ttnn is not installed" not in err and "ttml" not in err


def test_accelerator_counts_and_parses_devices(tt_double):
    from lightning_tt.accelerator import TTAccelerator

    assert TTAccelerator.is_available() and TTAccelerator.auto_device_count() == 1
    assert (
        TTAccelerator.parse_devices(2) == TTAccelerator.parse_devices("2") == TTAccelerator.parse_devices([0, 1]) == 2
    )
    assert TTAccelerator.get_parallel_devices(2) == [0, 1]
    with pytest.raises(Exception, match="positive integer"):
        TTAccelerator.parse_devices(0)
    import ttnn

    ttnn.DOUBLE_CHIPS = 0
    assert not TTAccelerator.is_available() and TTAccelerator.auto_device_count() == 0


def test_shapes_ttml_cannot_tile_are_rejected_in_one_line(tt_double, small_corpus, tmp_path, capsys):
    # The conftest tiny model has head_dim 32 / 2 = 16; ttml's RoPE needs multiples of 32.
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT))
    assert "hidden_dim/num_heads must be multiples of 32" in err


def test_mixed_precision_is_rejected_in_one_line(tt_double, small_corpus, tmp_path, capsys):
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *TT, "--trainer.precision", "bf16-mixed"))
    assert err.startswith("error: --trainer.precision 'bf16-mixed' is not supported with strategy 'tt'")


# ---------------------------------------------------------------- on the double
def write_corpus(path: Path) -> Path:
    lines = [
        f"Line {i}: the quick brown fox jumps over the lazy dog, and {i * 7 % 13} birds sing.\n" for i in range(250)
    ]
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One CPU fit and one TT fit (on the double) of the same 6 steps: accumulation 2, clipping, weight decay."""
    root = tmp_path_factory.mktemp("tt_runs")
    corpus = write_corpus(root / "corpus.txt")
    with install_double() as ttml:
        main(fit_args(corpus, root / "cpu", *TT_SHAPE, *STEPS_WITH_EVERYTHING))
        main(fit_args(corpus, root / "tt", *TT_SHAPE, *STEPS_WITH_EVERYTHING, *TT))
        context = ttml.autograd.AutoContext.get_instance()
        opened_closed = (context.open_count, context.close_count)
    return {"cpu": root / "cpu", "tt": root / "tt", "corpus": corpus, "opened_closed": opened_closed}


def test_tt_fit_reproduces_the_cpu_loss_curve_and_weights(runs):
    cpu_logs, tt_logs = scalars(runs["cpu"]), scalars(runs["tt"])
    for tag in ("train/loss", "val/loss", "train/grad_norm", "train/lr"):
        assert tt_logs[tag].keys() == cpu_logs[tag].keys(), tag
        for step, value in cpu_logs[tag].items():
            assert tt_logs[tag][step] == pytest.approx(value, rel=1e-5), (tag, step)
    assert list(tt_logs["train/loss"]) == list(range(6))
    assert max(tt_logs["train/grad_norm"].values()) > 0.5  # so clipping at 0.5 did act
    cpu_ckpt, tt_ckpt = last_checkpoint(runs["cpu"]), last_checkpoint(runs["tt"])
    assert tt_ckpt["global_step"] == cpu_ckpt["global_step"] == 6
    for name, weight in cpu_ckpt["state_dict"].items():
        torch.testing.assert_close(tt_ckpt["state_dict"][name], weight, atol=1e-5, rtol=0, msg=name)
    assert runs["opened_closed"] == (1, 1)  # the chip was opened once and closed at teardown


def test_a_tt_checkpoint_gives_the_same_logits_on_cpu_as_on_the_chip(runs, tt_double):
    import ttnn
    from lightning_tt.accelerator import TTAccelerator
    from lightning_tt.strategy import TTStrategy
    from lightning_tt.twin import NanoTricksterTT

    module = NanoTricksterModule.load_from_checkpoint(run_dir(runs["tt"]) / "checkpoints" / "last.ckpt")
    module.eval()
    batch = torch.randint(0, module.hparams.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cpu_logits, _ = module.model(batch)
    chip = TTStrategy(accelerator=TTAccelerator())
    chip.connect(module)
    chip.setup_environment()  # opens the chip
    chip.device_model = NanoTricksterTT(module.model.config, chip._host_weights(), ttnn.DataType.FLOAT32)
    try:
        chip_logits, _ = chip._eval_forward(batch)
        exported = chip.device_model.export_weights({n: tuple(p.shape) for n, p in module.model.named_parameters()})
    finally:
        chip._close_device()
    torch.testing.assert_close(chip_logits, cpu_logits, atol=1e-5, rtol=1e-5)
    for name, param in module.model.named_parameters():  # checkpoint -> chip -> host is exact
        np.testing.assert_array_equal(exported[name], param.detach().numpy(), err_msg=name)


def test_validate_and_greedy_predict_on_tt_from_a_cpu_checkpoint_match_cpu(runs, tt_double, tmp_path):
    ckpt = str(run_dir(runs["cpu"]) / "checkpoints" / "last.ckpt")
    val_loss, completions = {}, {}
    for name, extra in (("cpu", []), ("tt", [*TT, "--trainer.precision", "32-true"])):
        root = tmp_path / name
        args = fit_args(
            runs["corpus"], root, *TT_SHAPE, *extra, "--ckpt_path", ckpt, "--trainer.limit_val_batches", "4"
        )
        main(["validate", *args[1:]])
        val_loss[name] = scalars(root)["val/loss"]
        main(["predict", "--config", "cpu.yaml", "--trainer.default_root_dir", str(root / "predict"), *extra,
              "--trainer.enable_progress_bar", "false", "--ckpt_path", ckpt, "--data.prompts", '["Line 1", "the "]',
              "--model.temperature", "0", "--model.max_new_tokens", "40"])  # fmt: skip
        written = next((root / "predict").glob("lightning_logs/version_*/predictions.jsonl"))
        completions[name] = [json.loads(line)["completion"] for line in written.read_text().splitlines()]
    assert val_loss["tt"].keys() == val_loss["cpu"].keys()
    for step, value in val_loss["cpu"].items():
        assert val_loss["tt"][step] == pytest.approx(value, rel=1e-5)
    # 40 greedy tokens from 2 prompts cross the 32-token window, so generation slides and re-fills on the chip.
    assert completions["tt"] == completions["cpu"] and all(len(c) == 40 for c in completions["cpu"])


def test_the_loss_is_read_from_the_chip_only_on_logging_steps(tt_double, small_corpus, tmp_path, monkeypatch):
    import ttnn

    reads = []
    real_item = ttnn.Tensor.item
    monkeypatch.setattr(ttnn.Tensor, "item", lambda self: reads.append(1) or real_item(self))
    main(fit_args(small_corpus, tmp_path, *TT_SHAPE, *STEPS_WITH_EVERYTHING, *TT, "--trainer.log_every_n_steps", "3"))
    assert sorted(scalars(tmp_path)["train/loss"]) == [2, 5]
    assert len(reads) == 2 * 2  # 2 logging steps x 2 accumulated micro-batches, nothing on the other 4 steps


def test_bf16_run_keeps_bfloat16_weights_and_tracks_the_cpu_curve(runs, tt_double, tmp_path):
    main(fit_args(runs["corpus"], tmp_path, *TT_SHAPE, *STEPS_WITH_EVERYTHING, *TT, "--trainer.precision", "bf16-true"))
    tt_ckpt = last_checkpoint(tmp_path)
    assert tt_ckpt["state_dict"]["model.embedding.weight"].dtype == torch.float32  # loads anywhere
    for name, weight in tt_ckpt["state_dict"].items():  # ... and holds the chip's bfloat16 values exactly
        torch.testing.assert_close(weight, weight.to(torch.bfloat16).float(), atol=0, rtol=0, msg=name)
    cpu_loss, tt_loss = scalars(runs["cpu"])["train/loss"], scalars(tmp_path)["train/loss"]
    # bfloat16 keeps 8 significant bits (relative spacing 2^-8 = 0.4%); 6 steps of rounded weights stay within 1%.
    for step, value in cpu_loss.items():
        assert tt_loss[step] == pytest.approx(value, rel=1e-2), step


class FailAtStep2(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 2:
            raise RuntimeError("boom")


def test_the_chip_is_closed_after_an_exception(tt_double, small_corpus):
    data = ShakespeareDataModule(path=str(small_corpus), tokenizer="char", block_size=32, batch_size=4)
    module = NanoTricksterModule(vocab_size=data.vocab_size, hidden_dim=64, num_layers=1, num_heads=2, mlp_dim=64,
                                 max_seq_len=32, warmup_steps=1)  # fmt: skip
    trainer = pl.Trainer(accelerator="tt", strategy="tt", max_steps=5, callbacks=[FailAtStep2()], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0)  # fmt: skip
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(module, data)
    context = tt_double.autograd.AutoContext.get_instance()
    assert context.open_count == context.close_count == 1
    assert trainer.strategy.device_model is None
    # Teardown copied the chip's weights home: the host module holds the 2 steps of training.
    fresh = NanoTricksterModule(**module.hparams)
    assert not torch.equal(fresh.model.blocks[0].attn.qkv.weight, module.model.blocks[0].attn.qkv.weight)


def test_a_wiring_mistake_is_caught(tt_double, runs, tmp_path, monkeypatch):
    """The parity test can fail: feed attention (k, q, v) instead of (q, k, v) and the weights leave its tolerance."""
    from lightning_tt import twin

    real = twin.ttml.ops.multi_head_utils.heads_creation
    monkeypatch.setattr(
        twin.ttml.ops.multi_head_utils, "heads_creation", lambda qkv, n: real(qkv, n)[1::-1] + (real(qkv, n)[2],)
    )
    main(fit_args(runs["corpus"], tmp_path, *TT_SHAPE, *STEPS_WITH_EVERYTHING, *TT))
    wrong, right = last_checkpoint(tmp_path)["state_dict"], last_checkpoint(runs["cpu"])["state_dict"]
    worst = max(float((wrong[name] - weight).abs().max()) for name, weight in right.items())
    assert worst > 1e-3  # 100x the parity tolerance
