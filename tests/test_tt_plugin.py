"""The `tt` accelerator and strategy: errors without hardware, and full runs on the ttml test double.

The double (tests/ttml_double) stands in for ttml and ttnn of tt-metal v0.81.1 with the real signatures, checks and
the semantics that matter (bfloat16 compute, lazy 1x1 device, ...). Every op result is rounded to bfloat16 as on
the chip, so a TT run tracks the float32 CPU run only within bfloat16 resolution. Measured on these 6 steps
(bf16-true: ttml's AdamW on bfloat16 weights with bfloat16 moments; accumulation 2, clipping, weight decay, lr
3e-3): losses within 1.7e-3 relative, grad norms within 1.2e-2, weights within 1.5e-4 mean and 0.015 max absolute
(a bfloat16 step of a norm gain near 1.0 is 0.0078). We allow 5e-3, 2e-2, 1e-3 and 0.02. A wiring mistake
(attention fed (v, k, q) instead of (q, k, v)) moves the weights and the losses outside those bounds
(test_a_wiring_mistake_is_caught).
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import fit_args
from lightning_tt.errors import TTConfigError, TTError, TTHardwareError
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from ttml_double import harness
from ttml_double.harness import install_double

from lightning_trickster.cli import main
from lightning_trickster.data import CorpusDataModule
from lightning_trickster.module import NanoTricksterModule
from lightning_trickster.optim import Optimization

TT_SHAPE = ["--model.hidden_dim", "64", "--model.num_heads", "2", "--model.mlp_dim", "64", "--model.max_seq_len", "32"]
# The chip runs AdamW (cpu.yaml, which these tests start from, trains with Muon on CPUs).
TT = ["--trainer.accelerator", "tt", "--trainer.strategy", "tt", "--trainer.precision", "bf16-true",
      "--model.optimization.optimizer", "adamw"]  # fmt: skip
STEPS_WITH_EVERYTHING = [
    "--model.optimization.optimizer", "adamw",  # the CPU run it is compared with must step as the chip does
    "--trainer.accumulate_grad_batches", "2", "--trainer.gradient_clip_val", "0.5",
    "--trainer.val_check_interval", "4",  # micro-batches: whole optimizer steps
    "--model.optimization.weight_decay", "0.1",
    "--sampling.max_new_tokens", "0", "--trainer.limit_val_batches", "4", "--trainer.num_sanity_val_steps", "1",
]  # fmt: skip
LOSS_REL, GRAD_NORM_REL, WEIGHT_MEAN_ABS, WEIGHT_MAX_ABS = 5e-3, 2e-2, 1e-3, 0.02
"""bfloat16 parity bounds (module docstring)."""

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
    """The `error: ...` line a command ends with. The app prints it for its own errors and, once it maps
    lightning_tt.errors.TTError (issue 13), for the plugin's; until then a TTError propagates with the same message."""
    try:
        main(args)
    except TTError as err:
        message = f"error: {err}"
    except SystemExit as exit_info:
        assert exit_info.code == 2
        message = capsys.readouterr().err.strip()
    else:
        pytest.fail(f"{args[0]} did not stop")
    assert "\n" not in message, message
    return message


def assert_tracks(logs, reference, tags=("train/loss", "val/loss", "train/grad_norm", "train/lr")):
    """Logged curves equal up to bfloat16 resolution (same steps, values within the module's bounds)."""
    bounds = {"train/loss": LOSS_REL, "val/loss": LOSS_REL, "train/grad_norm": GRAD_NORM_REL, "train/lr": 1e-6}
    for tag in tags:
        assert logs[tag].keys() == reference[tag].keys(), tag
        for step, value in reference[tag].items():
            assert logs[tag][step] == pytest.approx(value, rel=bounds[tag]), (tag, step)


def weight_distance(state: dict, reference: dict) -> tuple[float, float]:
    """Mean and max absolute difference over all weights."""
    diffs = torch.cat([(state[name] - weight).abs().flatten() for name, weight in reference.items()])
    return float(diffs.mean()), float(diffs.max())


# ---------------------------------------------------------------- without hardware
def test_the_plugin_needs_no_app_its_host_side_no_torch_and_the_app_registers_it_without_vendor_imports():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # the torch-free CI leg: bridge, fabric, symbols, errors only\n"
        "import lightning_tt.bridge, lightning_tt.fabric, lightning_tt.symbols, lightning_tt.errors\n"
        "import lightning_tt.bindings, lightning_tt.interface\n"
        "del sys.modules['torch']\n"
        "import lightning_tt.register, lightning_tt.accelerator, lightning_tt.strategy, lightning_tt.mesh\n"
        "import lightning_tt.precision, lightning_tt.interface\n"
        "assert not [m for m in sys.modules if m.startswith('lightning_trickster')], 'plugin imports the app'\n"
        "import lightning_trickster\n"
        "from lightning.pytorch.accelerators import AcceleratorRegistry\n"
        "from lightning.pytorch.strategies import StrategyRegistry\n"
        "assert 'tt' in AcceleratorRegistry and 'tt' in StrategyRegistry and 'tt_ddp' in StrategyRegistry\n"
        "assert not {'ttnn', 'ttml'} & set(sys.modules), 'vendor import at project import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tt_n150_preset_without_ttnn_ends_with_one_line_naming_what_to_install(shakespeare_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ttnn", None)  # as on a machine without the wheel
    monkeypatch.setitem(sys.modules, "ttml", None)
    err = one_line_error(capsys, ["fit", "--config", "tt_n150.yaml", "--data.path", str(shakespeare_path)])
    assert err.startswith("error: accelerator 'tt' cannot run here: ttnn is not installed: pip install ttnn==0.81.1")
    assert "ttml is not installed; build it from tenstorrent/tt-metal at tag v0.81.1" not in err  # said once
    from lightning_tt.accelerator import TTAccelerator

    with pytest.raises(TTHardwareError, match="ttnn is not installed"):
        TTAccelerator()  # what the app instantiates before it builds the data module


def write_broken_package(root: Path, name: str, body: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(body, encoding="utf-8")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, "ttml is not installed: build it from tenstorrent/tt-metal at tag v0.81.1"),
        (
            # ttml/__init__.py @ 0126f1ba when TT_METAL_HOME is unset and ~/tt-metal is missing
            "raise EnvironmentError('TT_METAL_HOME environment variable is not set and default path "
            "/root/tt-metal does not exist. Please set TT_METAL_HOME to your tt-metal installation directory.')",
            "import ttml failed: TT_METAL_HOME is not set and ~/tt-metal does not exist: export TT_METAL_HOME=",
        ),
        (
            "raise ImportError('std::bad_cast')",  # _ttml and _ttnn from different builds
            "import ttml failed with std::bad_cast: _ttml and _ttnn come from different builds",
        ),
    ],
    ids=["not-installed", "no-tt-metal-home", "bad-cast"],
)
def test_each_import_failure_of_ttml_gets_its_own_line(body, expected, tmp_path, monkeypatch):
    from lightning_tt import bridge

    if body is not None:
        write_broken_package(tmp_path, "ttml", body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ttml", raising=False)
    problem = bridge.import_problem("ttml")
    assert problem.startswith(expected) and "\n" not in problem


def test_without_a_chip_the_error_says_so_when_the_strategy_counts(tt_double, small_corpus, tmp_path, capsys):
    import ttnn

    ttnn.DOUBLE_CHIPS = 0
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *TT))
    assert err.startswith("error: accelerator 'tt' cannot run here: 1 Tenstorrent chip(s) needed but 0 found (ttnn: ")
    assert "ttnn is not installed" not in err and "ttml" not in err
    assert ttnn.EVENTS == ["GetNumAvailableDevices"]  # counted once, when the strategy opened the chip
    from lightning_tt.accelerator import TTAccelerator

    TTAccelerator()  # the accelerator never counts (Lightning builds it before a strategy given by name)
    assert TTAccelerator.is_available() and ttnn.EVENTS == ["GetNumAvailableDevices"]


def test_accelerator_parses_devices_and_takes_auto_from_the_named_descriptor_without_counting(
    tt_double, monkeypatch, tmp_path
):
    import ttnn
    from lightning_tt.accelerator import TTAccelerator

    monkeypatch.delenv("TT_MESH_GRAPH_DESC_PATH", raising=False)
    assert TTAccelerator.is_available() and TTAccelerator.auto_device_count() == 1
    descriptor = tmp_path / "galaxy.textproto"
    descriptor.write_text("mesh_descriptors { device_topology { dims: [ 8, 4 ] } }")
    monkeypatch.setenv("TT_MESH_GRAPH_DESC_PATH", str(descriptor))
    assert TTAccelerator.auto_device_count() == 32
    assert (
        TTAccelerator.parse_devices(2) == TTAccelerator.parse_devices("2") == TTAccelerator.parse_devices([0, 1]) == 2
    )
    assert TTAccelerator.get_parallel_devices(2) == [0, 1]
    with pytest.raises(Exception, match="positive integer"):
        TTAccelerator.parse_devices(0)
    assert ttnn.EVENTS == []  # nothing counted


def test_shapes_ttml_cannot_tile_are_rejected_in_one_line(tt_double, small_corpus, tmp_path, capsys):
    # The conftest tiny model has head_dim 32 / 2 = 16; ttml's RoPE needs multiples of 32.
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT))
    assert "hidden_dim/num_heads must be multiples of 32" in err


def test_muon_is_refused_on_the_chip_in_one_line_naming_adamw(tt_double, small_corpus, tmp_path, capsys):
    err = one_line_error(
        capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *TT, "--model.optimization.optimizer", "muon")
    )
    assert "runs AdamW on the chip" in err and err.endswith("use AdamW (--model.optimization.optimizer adamw)")


@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        ("16-mixed", "error: --trainer.precision '16-mixed' is not supported with strategy 'tt'"),
        (
            "32-true",
            "error: --trainer.precision '32-true' is not supported on Tenstorrent: ttml (v0.81.1) has no "
            "float32 compute, every op reads the bfloat16 copy",
        ),
    ],
)
def test_precisions_ttml_does_not_keep_are_refused_in_one_line(
    precision, expected, tt_double, small_corpus, tmp_path, capsys
):
    tt = [*TT[:4], "--trainer.precision", precision]
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *tt))
    assert err.startswith(expected) and "bf16-true" in err.rsplit(": ", 1)[-1]  # the fix names the format


class Holder:
    def __init__(self, model) -> None:
        self.model = model


def tiny_network(**changes):
    from lightning_trickster.model import NanoTrickster, NanoTricksterConfig

    shape = dict(vocab_size=64, hidden_dim=64, num_layers=2, num_heads=2, mlp_dim=96, max_seq_len=32) | changes
    return NanoTrickster(NanoTricksterConfig(**shape))


def test_the_parameter_map_is_read_from_the_models_state_dict():
    from lightning_tt.interface import read_spec

    network = tiny_network()
    spec = read_spec(network)
    assert spec.parameter_shapes == {name: tuple(p.shape) for name, p in network.named_parameters()}
    assert "output.weight" in network.state_dict() and "output.weight" not in spec.parameter_shapes  # tied: once
    assert (spec.vocab_size, spec.hidden_dim, spec.mlp_dim, spec.num_layers, spec.tie_embeddings) == (64, 64, 96, 2,
                                                                                                      True)  # fmt: skip
    untied = read_spec(tiny_network(tie_embeddings=False, num_layers=3))
    assert untied.parameter_shapes["output.weight"] == (64, 64) and untied.num_layers == 3


def test_a_model_without_the_interface_is_a_one_line_config_error_naming_what_is_missing():
    from types import SimpleNamespace

    from lightning_tt.interface import check_network

    with pytest.raises(TTConfigError, match=r"Holder.model is NoneType: give Holder a .model"):
        check_network(Holder(None))
    extra = tiny_network()
    extra.adapter = torch.nn.Linear(64, 64, bias=False)
    with pytest.raises(TTConfigError, match=r"state_dict entries unknown to the ttml twin: adapter.weight"):
        check_network(Holder(extra))
    narrow = tiny_network()
    narrow.blocks[1].attn.qkv = torch.nn.Linear(64, 128, bias=False)
    with pytest.raises(TTConfigError, match=r"shaped blocks.1.attn.qkv.weight \(128, 64\) \(expected \(192, 64\)\)"):
        check_network(Holder(narrow))
    headless = tiny_network()
    headless.config = SimpleNamespace(max_seq_len=32, dropout=0.0, rope_theta=1e4, norm_eps=1e-6)
    with pytest.raises(TTConfigError, match=r"its .config lacks num_heads, which the weights do not carry"):
        check_network(Holder(headless))
    lying = tiny_network()
    lying.config.mlp_dim = 128
    with pytest.raises(TTConfigError, match=r"contradicts its weights: mlp_dim=128 \(the state_dict says 96\)"):
        check_network(Holder(lying))


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
        opened_closed = (context.open_count, context.close_count, [e for e in context.events if "device" in e])
    return {"cpu": root / "cpu", "tt": root / "tt", "corpus": corpus, "opened_closed": opened_closed}


def test_tt_fit_tracks_the_cpu_loss_curve_and_weights_within_bfloat16(runs):
    assert_tracks(scalars(runs["tt"]), scalars(runs["cpu"]))
    logs = scalars(runs["tt"])
    assert list(logs["train/loss"]) == list(range(6))
    assert max(logs["train/grad_norm"].values()) > 0.5  # so clipping at 0.5 did act
    cpu_ckpt, tt_ckpt = last_checkpoint(runs["cpu"]), last_checkpoint(runs["tt"])
    assert tt_ckpt["global_step"] == cpu_ckpt["global_step"] == 6
    mean, worst = weight_distance(tt_ckpt["state_dict"], cpu_ckpt["state_dict"])
    assert mean <= WEIGHT_MEAN_ABS and worst <= WEIGHT_MAX_ABS
    assert runs["opened_closed"] == (1, 1, ["open_device", "close_device"])  # opened once, never lazily


def test_a_tt_checkpoint_holds_the_chips_bfloat16_weights_exactly_and_loads_anywhere(runs):
    state = last_checkpoint(runs["tt"])["state_dict"]
    assert state["model.embedding.weight"].dtype == torch.float32  # loads on CPU/GPU
    for name, weight in state.items():  # ... and holds the chip's bfloat16 values exactly
        torch.testing.assert_close(weight, weight.to(torch.bfloat16).float(), atol=0, rtol=0, msg=name)


def test_a_tt_checkpoint_gives_the_cpu_logits_on_the_chip_within_bfloat16(runs, tt_double):
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
    chip.setup_environment()  # reads the parameter map, opens the chip
    chip.device_model = NanoTricksterTT(chip.spec, chip._host_weights(), ttnn.DataType.BFLOAT16)
    try:
        chip_logits, _ = chip._eval_forward(batch)
        exported = chip.device_model.export_weights({n: tuple(p.shape) for n, p in module.model.named_parameters()})
    finally:
        chip._close_device()
    # Logits of order 1 after a dozen bfloat16 roundings: a few bfloat16 steps (2^-8 relative each).
    torch.testing.assert_close(chip_logits, cpu_logits, atol=5e-2, rtol=2e-2)
    for name, param in module.model.named_parameters():  # checkpoint -> chip -> host is exact (bfloat16 values)
        np.testing.assert_array_equal(exported[name], param.detach().numpy(), err_msg=name)


def newest_evaluation(checkpoint: Path, command: str, filename: str) -> Path:
    """What the last `command` of this checkpoint wrote: validate/predict write into the checkpoint's run, eval/."""
    written = checkpoint.parent.parent.glob(f"eval/{command}-*/{filename}")
    return max(written, key=lambda path: path.stat().st_mtime)


def test_validate_and_greedy_predict_on_tt_from_a_cpu_checkpoint_track_cpu(runs, tt_double, tmp_path):
    ckpt = run_dir(runs["cpu"]) / "checkpoints" / "last.ckpt"
    val_loss, completions = {}, {}
    for name, extra in (("cpu", []), ("tt", TT)):
        root = tmp_path / name
        args = fit_args(
            runs["corpus"], root, *TT_SHAPE, *extra, "--ckpt_path", str(ckpt), "--trainer.limit_val_batches", "4"
        )
        main(["validate", *args[1:]])
        val_loss[name] = json.loads(newest_evaluation(ckpt, "validate", "metrics.json").read_text())["metrics"]
        main(["predict", "--config", "cpu.yaml", "--trainer.default_root_dir", str(root / "predict"), *extra,
              "--trainer.enable_progress_bar", "false", "--ckpt_path", str(ckpt), "--data.prompts",
              '["Line 1", "the "]', "--sampling.temperature", "0", "--sampling.max_new_tokens", "40"])  # fmt: skip
        written = newest_evaluation(ckpt, "predict", "predictions.jsonl")
        completions[name] = [json.loads(line)["completion"] for line in written.read_text().splitlines()]
    assert val_loss["tt"].keys() == val_loss["cpu"].keys() == {"val/loss", "val/perplexity"}
    assert val_loss["tt"]["val/loss"] == pytest.approx(val_loss["cpu"]["val/loss"], rel=LOSS_REL)
    # Perplexity is exp(loss): the loss bound, compared where it applies.
    tt_log_ppl, cpu_log_ppl = (math.log(val_loss[name]["val/perplexity"]) for name in ("tt", "cpu"))
    assert tt_log_ppl == pytest.approx(cpu_log_ppl, rel=LOSS_REL)
    # 40 greedy tokens from 2 prompts cross the 32-token window, so generation slides and re-fills on the chip.
    assert all(len(c) == 40 for c in completions["tt"] + completions["cpu"])
    assert completions["tt"][0][:8] == completions["cpu"][0][:8]  # later tokens may flip on bfloat16 near-ties


def test_the_loss_is_read_from_the_chip_only_on_logging_steps(tt_double, small_corpus, tmp_path, monkeypatch):
    import ttnn

    reads = []
    real_item = ttnn.Tensor.item
    monkeypatch.setattr(ttnn.Tensor, "item", lambda self: reads.append(1) or real_item(self))
    steps = [*STEPS_WITH_EVERYTHING, "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0"]
    main(fit_args(small_corpus, tmp_path, *TT_SHAPE, *steps, *TT, "--trainer.log_every_n_steps", "3"))
    assert sorted(scalars(tmp_path)["train/loss"]) == [2, 5]
    assert len(reads) == 2 * 2  # 2 logging steps x 2 accumulated micro-batches, nothing on the other 4 steps


def test_validation_loss_is_computed_on_the_chip_and_read_as_one_scalar(runs, tt_double, monkeypatch):
    import ttnn
    from lightning_tt.accelerator import TTAccelerator
    from lightning_tt.strategy import TTStrategy
    from lightning_tt.twin import NanoTricksterTT

    module = NanoTricksterModule.load_from_checkpoint(run_dir(runs["tt"]) / "checkpoints" / "last.ckpt")
    batch = torch.randint(0, module.hparams.vocab_size, (3, 20), generator=torch.Generator().manual_seed(1))
    targets = batch.roll(-1, dims=1)
    targets[1, 5:] = -100  # positions that score nothing
    strategy = TTStrategy(accelerator=TTAccelerator())
    strategy.connect(module)
    strategy.setup_environment()
    strategy.device_model = NanoTricksterTT(strategy.spec, strategy._host_weights(), ttnn.DataType.BFLOAT16)
    try:
        module.evaluation_needs_logits = True  # first with the logits, to compute the expected loss from them
        logits, loss_with_logits = strategy._eval_forward(batch, targets)
        expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        module.evaluation_needs_logits = False
        downloads, reads = [], []
        real_to_numpy, real_item = tt_double.autograd.Tensor.to_numpy, ttnn.Tensor.item
        monkeypatch.setattr(
            tt_double.autograd.Tensor, "to_numpy", lambda t, *a: downloads.append(t.shape()) or real_to_numpy(t, *a)
        )
        monkeypatch.setattr(ttnn.Tensor, "item", lambda t: reads.append(t.shape) or real_item(t))
        no_logits, loss = strategy._eval_forward(batch, targets)
    finally:
        strategy._close_device()
    assert no_logits is None and downloads == [] and reads == [(1, 1, 1, 1)]  # one scalar left the chip
    assert float(loss) == pytest.approx(float(loss_with_logits)) == pytest.approx(float(expected), rel=LOSS_REL)


class FailAtStep2(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 2:
            raise RuntimeError("boom")


def tiny_module_and_data(corpus: Path, batch_size: int = 4):
    data = CorpusDataModule(path=str(corpus), tokenizer="char", block_size=32, batch_size=batch_size)
    module = NanoTricksterModule(vocab_size=data.vocab_size, hidden_dim=64, num_layers=1, num_heads=2, mlp_dim=64,
                                 max_seq_len=32, optimization=Optimization(warmup_steps=1))  # fmt: skip
    return module, data


def test_the_chip_is_closed_after_an_exception(tt_double, small_corpus):
    module, data = tiny_module_and_data(small_corpus)
    trainer = pl.Trainer(accelerator="tt", strategy="tt", precision="bf16-true", max_steps=5, logger=False,
                         callbacks=[FailAtStep2()], enable_checkpointing=False, enable_progress_bar=False,
                         num_sanity_val_steps=0)  # fmt: skip
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(module, data)
    context = tt_double.autograd.AutoContext.get_instance()
    assert context.open_count == context.close_count == 1
    assert trainer.strategy.device_model is None and trainer.accelerator.mesh_device is None
    # Teardown copied the chip's weights home: the host module holds the 2 steps of training.
    fresh = NanoTricksterModule(**module.hparams)
    assert not torch.equal(fresh.model.blocks[0].attn.qkv.weight, module.model.blocks[0].attn.qkv.weight)


class ReadStateDictAtStep2(pl.Callback):
    """What the app's sampling callback does: ask the strategy for the weights mid-fit."""

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step == 2 and not hasattr(self, "state"):
            self.stats = trainer.accelerator.get_device_stats(None)
            self.state = {k: v.clone() for k, v in trainer.strategy.lightning_module_state_dict().items()}
            shapes = {"embedding.weight": tuple(pl_module.model.embedding.weight.shape)}
            self.chip = trainer.strategy.device_model.export_weights(shapes)


def test_state_dict_and_device_stats_mid_fit_come_from_the_open_chip(tt_double, small_corpus):
    module, data = tiny_module_and_data(small_corpus)
    initial = module.model.embedding.weight.detach().clone()
    probe = ReadStateDictAtStep2()
    trainer = pl.Trainer(accelerator="tt", strategy="tt", precision="bf16-true", max_steps=3, logger=False,
                         callbacks=[probe], enable_checkpointing=False, enable_progress_bar=False,
                         num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, data)
    assert not torch.equal(probe.state["model.embedding.weight"], initial)
    np.testing.assert_array_equal(probe.state["model.embedding.weight"].numpy(), probe.chip["embedding.weight"])
    assert probe.stats["tt_dram_total_bytes"] == 12 * 2**30  # read from the open mesh the strategy handed over
    assert trainer.num_devices == 1 and trainer.world_size == 1


def test_device_stats_never_open_a_device_and_a_lazily_opened_one_is_a_clear_error(
    tt_double, small_corpus, tmp_path, capsys
):
    import ttnn
    from lightning_tt.accelerator import TTAccelerator

    context = tt_double.autograd.AutoContext.get_instance()
    assert TTAccelerator().get_device_stats(None) == {} and context.events == []  # no get_device() behind it
    ttnn.DOUBLE_CHIPS = 2
    context.get_device()  # someone asked ttml for the device first: it opened 1x1
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *TT))
    assert err.startswith("error: a ttml device is already open in this process (ttml's AutoContext.get_device()")


def test_a_wiring_mistake_is_caught(tt_double, runs, tmp_path, monkeypatch):
    """The parity bounds can fail: feed attention (v, k, q) instead of (q, k, v) and the run leaves them."""
    from lightning_tt import twin

    real = twin.ttml.ops.multi_head_utils.heads_creation
    monkeypatch.setattr(twin.ttml.ops.multi_head_utils, "heads_creation", lambda qkv, n: real(qkv, n)[::-1])
    main(fit_args(runs["corpus"], tmp_path, *TT_SHAPE, *STEPS_WITH_EVERYTHING, *TT))
    mean, _ = weight_distance(last_checkpoint(tmp_path)["state_dict"], last_checkpoint(runs["cpu"])["state_dict"])
    assert mean > 3 * WEIGHT_MEAN_ABS
    with pytest.raises(AssertionError):
        assert_tracks(scalars(tmp_path), scalars(runs["cpu"]), tags=("val/loss",))
