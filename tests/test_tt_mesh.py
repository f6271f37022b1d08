"""Strategy 'tt_ddp': data parallel over a ttml mesh from one process, on the ttml double extended to meshes.

The double keeps one torch tensor per chip and runs every op chip by chip, so a [1, 2] run really computes two
shard losses and two sets of gradients, which only synchronize_gradients brings together. In 32-true a [1, 2] run
must then equal a [1, 1] run with the same global batch up to float32 rounding: the math is the same, only the
order differs (the loss is the mean of two shard means instead of one mean over the batch, the gradient the mean
of two shard gradients), which moves values by ~1e-7 relative per step. We allow 1e-5 relative on losses and 1e-5
absolute on weights after 4 AdamW steps, as for the CPU parity of strategy 'tt'. A sync that sums, or does
nothing, is stopped by the strategy's own first-step check (test_a_sync_that_does_not_average_is_caught); a loss
read from one chip with item() fails on the double as on real ttnn (checked in tests/ttnn_host/test_ttnn_mesh.py).
"""

import numpy as np
import pytest
import torch
from conftest import fit_args
from test_tt_plugin import TT_SHAPE, last_checkpoint, one_line_error, run_dir, scalars, write_corpus
from ttml_double import harness
from ttml_double.harness import install_double

from lightning_trickster.cli import main
from lightning_trickster.errors import InvalidConfigError
from lightning_trickster.module import NanoTricksterModule

tt_double = harness.tt_double

STEPS = [
    "--model.num_layers", "1", "--trainer.accumulate_grad_batches", "2", "--trainer.val_check_interval", "4",
    "--trainer.gradient_clip_val", "0.5", "--model.weight_decay", "0.1",
    "--trainer.precision", "32-true", "--sampling.max_new_tokens", "0",
    "--trainer.limit_val_batches", "3", "--trainer.num_sanity_val_steps", "0",
]  # fmt: skip
STEPS_RUN = 4


def mesh(chips: int) -> list[str]:
    return ["--trainer.accelerator", "tt", "--trainer.strategy", "tt_ddp", "--trainer.devices", str(chips)]


@pytest.fixture(autouse=True)
def tt_metal_home(monkeypatch, tmp_path_factory):
    # ttml's enable_fabric needs it to find the mesh graph descriptors (ttnn_fixed/distributed/tt_metal.cpp).
    monkeypatch.setenv("TT_METAL_HOME", str(tmp_path_factory.getbasetemp()))
    monkeypatch.delenv("TT_MESH_GRAPH_DESC_PATH", raising=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 4 steps (global batch 4, accumulation 2, clipping, weight decay) on a [1, 1] and a [1, 2] mesh,
    recording what the [1, 2] run's chips received and their gradients around each synchronization."""
    root = tmp_path_factory.mktemp("mesh_runs")
    corpus = write_corpus(root / "corpus.txt")
    record = {"uploads": [], "syncs": []}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TT_METAL_HOME", str(root))
        with install_double() as ttml:
            import ttnn

            ttnn.DOUBLE_CHIPS = 2
            main(fit_args(corpus, root / "one", *TT_SHAPE, *STEPS, *mesh(1), max_steps=STEPS_RUN))
            real_from_numpy, real_sync = ttml.autograd.Tensor.from_numpy, ttml.core.distributed.synchronize_gradients

            def from_numpy(array, layout=ttnn.Layout.TILE, new_type=None, mapper=None):
                tensor = real_from_numpy(array, layout, new_type, mapper)
                if mapper is not None:
                    record["uploads"].append((array.copy(), [s.clone() for s in tensor._shards]))
                return tensor

            def sync(parameters, *axes):
                grads = lambda: {n: [s.grad.clone() for s in t._shards] for n, t in parameters.items()}  # noqa: E731
                before = grads()
                real_sync(parameters, *axes)
                record["syncs"].append((before, grads()))

            ttml.autograd.AutoContext.get_instance().events.clear()  # keep the [1, 2] run's
            patch.setattr(ttml.autograd.Tensor, "from_numpy", staticmethod(from_numpy))
            patch.setattr(ttml.core.distributed, "synchronize_gradients", sync)
            main(fit_args(corpus, root / "two", *TT_SHAPE, *STEPS, *mesh(2), max_steps=STEPS_RUN))
            events = list(ttml.autograd.AutoContext.get_instance().events)
    return {"one": root / "one", "two": root / "two", "corpus": corpus, "events": events, **record}


def test_a_1x2_mesh_run_equals_a_1x1_run_with_the_same_global_batch(runs):
    one, two = scalars(runs["one"]), scalars(runs["two"])
    for tag in ("train/loss", "val/loss", "train/grad_norm", "train/lr"):
        assert two[tag].keys() == one[tag].keys(), tag
        for step, value in one[tag].items():
            assert two[tag][step] == pytest.approx(value, rel=1e-5), (tag, step)
    assert list(two["train/loss"]) == list(range(STEPS_RUN)) and max(two["train/grad_norm"].values()) > 0.5
    one_ckpt, two_ckpt = last_checkpoint(runs["one"]), last_checkpoint(runs["two"])
    assert one_ckpt["global_step"] == two_ckpt["global_step"] == STEPS_RUN
    for name, weight in one_ckpt["state_dict"].items():
        torch.testing.assert_close(two_ckpt["state_dict"][name], weight, atol=1e-5, rtol=0, msg=name)


def test_each_chip_gets_its_own_rows_of_the_global_batch(runs):
    assert runs["uploads"], "the [1, 2] run uploaded no sharded batch"
    for array, shards in runs["uploads"]:
        assert len(shards) == 2 and shards[0].shape[0] == array.shape[0] // 2
        assert not torch.equal(shards[0], shards[1])  # the chips see different windows
        np.testing.assert_array_equal(torch.cat(shards).numpy(), array.astype(np.int64))  # rows in batch order


def test_gradients_differ_per_chip_until_synchronize_gradients_averages_them(runs):
    assert len(runs["syncs"]) == STEPS_RUN  # once per optimizer step, not per micro-batch
    for before, after in runs["syncs"]:
        name = "NanoTricksterTT/blocks.0.attn.qkv.weight"
        assert not torch.allclose(before[name][0], before[name][1])
        for grads_before, grads_after in zip(before.values(), after.values(), strict=True):
            mean = (grads_before[0] + grads_before[1]) / 2
            torch.testing.assert_close(grads_after[0], mean, rtol=0, atol=0)
            torch.testing.assert_close(grads_after[1], mean, rtol=0, atol=0)


def test_the_fabric_is_enabled_before_the_mesh_opens(runs):
    assert runs["events"] == ["enable_fabric", "open_device", "close_device"]


def test_evaluation_batches_that_do_not_split_are_padded_and_cropped(runs, tt_double):
    import ttnn

    ttnn.DOUBLE_CHIPS = 2
    module = NanoTricksterModule.load_from_checkpoint(run_dir(runs["two"]) / "checkpoints" / "last.ckpt")
    batch = torch.randint(0, module.hparams.vocab_size, (3, 32), generator=torch.Generator().manual_seed(0))
    targets = batch.roll(-1, dims=1)
    targets[2] = -100  # a padding window scores nothing
    results = {}
    for chips in (1, 2):
        strategy = started_strategy(module, chips)
        try:
            results[chips] = strategy._eval_forward(batch, targets)
        finally:
            strategy.teardown()
    (logits_one, loss_one), (logits_two, loss_two) = results[1], results[2]
    assert logits_two.shape == (3, 32, module.hparams.vocab_size)  # every window once, filler row dropped
    torch.testing.assert_close(logits_two, logits_one, atol=1e-5, rtol=1e-5)
    assert float(loss_two) == pytest.approx(float(loss_one), rel=1e-6)


def started_strategy(module, chips):
    """A tt_ddp strategy with its mesh open and the twin of `module` on it (as setup() builds it in a fit)."""
    from lightning_tt.accelerator import TTAccelerator
    from lightning_tt.mesh import TTMeshStrategy
    from lightning_tt.precision import TTPrecision
    from lightning_tt.twin import NanoTricksterTT

    strategy = TTMeshStrategy(accelerator=TTAccelerator(), precision_plugin=TTPrecision("32-true"))
    strategy.parallel_devices = list(range(chips))
    strategy.connect(module)
    strategy.setup_environment()  # enables the fabric and opens the mesh
    float32 = strategy._ttnn.DataType.FLOAT32
    strategy.device_model = NanoTricksterTT(module.model.config, strategy._host_weights(), float32)
    if chips > 1:
        strategy.device_model.replica_composer = strategy._composer
    return strategy


# ---------------------------------------------------------------- configuration errors
def test_a_batch_the_mesh_cannot_split_is_a_one_line_config_error(tt_double, small_corpus, tmp_path, capsys):
    import ttnn

    ttnn.DOUBLE_CHIPS = 2
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *mesh(2), "--data.batch_size", "3"))
    assert err == (
        "error: a batch of 3 windows does not split over the 2 chips of mesh [1, 2]: with strategy 'tt_ddp' "
        "data.batch_size is the global batch; set it to a multiple of 2"
    )
    assert tt_double.autograd.AutoContext.get_instance().open_count == 0  # refused before any chip opened


def test_mesh_shapes_that_are_not_one_row_or_disagree_with_devices_are_rejected(tt_double):
    from lightning_tt.mesh import TTMeshStrategy

    with pytest.raises(InvalidConfigError, match=r"not a one-row mesh \[1, N\].*\[1, 8\] \(T3K/LoudBox\)"):
        TTMeshStrategy(mesh_shape=[2, 4])
    strategy = TTMeshStrategy(mesh_shape=[1, 8])
    strategy.parallel_devices = [0, 1]
    with pytest.raises(InvalidConfigError, match="has 8 chips but --trainer.devices is 2"):
        strategy.mesh_shape  # noqa: B018
    strategy = TTMeshStrategy()
    strategy.parallel_devices = list(range(32))
    assert strategy.mesh_shape == [1, 32] and strategy.data_parallel_size == 32


def test_without_tt_metal_home_the_fabric_error_is_one_line(tt_double, small_corpus, tmp_path, capsys, monkeypatch):
    import ttnn

    ttnn.DOUBLE_CHIPS = 2
    monkeypatch.delenv("TT_METAL_HOME")
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *mesh(2)))
    assert err.startswith("error: strategy 'tt_ddp' on 2 chips needs the fabric") and "export TT_METAL_HOME=" in err


@pytest.mark.parametrize("broken", ["no-op", "sum"])
def test_a_sync_that_does_not_average_is_caught(broken, tt_double, small_corpus, tmp_path, capsys, monkeypatch):
    """ttml's one-argument synchronize_gradients returns at once unless a parallelism context was initialised
    (core/distributed/distributed.cpp @ 01c8afed); a build without the cluster_axes overload would silently
    train two diverging copies. The strategy checks the first synchronization."""
    import ttnn

    ttnn.DOUBLE_CHIPS = 2
    distributed = tt_double.core.distributed
    real = distributed.synchronize_gradients

    def old_binding(parameters, *cluster_axes):
        if cluster_axes:
            raise TypeError("synchronize_gradients(): incompatible function arguments")
        if broken == "sum":
            real(parameters, [1])
            for tensor in parameters.values():
                for shard in tensor._shards:
                    shard.grad.mul_(2.0)

    monkeypatch.setattr(distributed, "synchronize_gradients", old_binding)
    quick = ["--trainer.num_sanity_val_steps", "0", "--trainer.limit_val_batches", "1"]
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *mesh(2), *quick, max_steps=1))
    assert err.startswith("error: strategy 'tt_ddp': ttml's synchronize_gradients did not average the gradients")
    assert tt_double.autograd.AutoContext.get_instance().close_count == 1


# ---------------------------------------------------------------- Lightning's collectives, one process
def test_lightning_collectives_are_identities_for_the_process_that_owns_the_mesh(tt_double):
    from lightning_tt.mesh import TTMeshStrategy

    strategy = TTMeshStrategy()
    strategy.parallel_devices = [0, 1]
    value = torch.tensor([1.5, -2.0])
    # The module's values are already global (computed from the whole batch): there is no other process.
    assert strategy.reduce(value, reduce_op="mean") is value and strategy.reduce(value, reduce_op="sum") is value
    assert strategy.all_gather(value) is value
    assert strategy.broadcast({"step": 3}) == {"step": 3}
    assert strategy.barrier("x") is None
    assert strategy.is_global_zero and strategy.data_parallel_size == 2
    assert getattr(strategy, "world_size", 1) == 1  # what Trainer.world_size reports: one process


# ---------------------------------------------------------------- the N300 preset
def test_tt_n300_preset_without_ttnn_fails_like_the_single_chip_one(shakespeare_path, monkeypatch, capsys):
    monkeypatch.setitem(sys_modules(), "ttnn", None)
    monkeypatch.setitem(sys_modules(), "ttml", None)
    errors = [
        one_line_error(capsys, ["fit", "--config", f"{name}.yaml", "--data.path", str(shakespeare_path)])
        for name in ("tt_n150", "tt_n300")
    ]
    assert errors[1] == errors[0]
    assert errors[1].startswith("error: accelerator 'tt' cannot run here: ttnn is not installed: pip install ttnn")


def test_tt_n300_preset_needs_two_chips_and_runs_on_a_1x2_mesh(tt_double, small_corpus, tmp_path, capsys, caplog):
    import ttnn

    ttnn.DOUBLE_CHIPS = 0
    err = one_line_error(capsys, ["fit", "--config", "tt_n300.yaml", "--data.path", str(small_corpus)])
    assert "2 Tenstorrent chip(s) needed but 0 found (ttnn: TT_FATAL" in err
    ttnn.DOUBLE_CHIPS = 2
    main(["fit", "--config", "tt_n300.yaml", "--data.path", str(small_corpus), "--data.tokenizer", "char",
          "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1",
          "--trainer.enable_progress_bar", "false", "--model.num_layers", "1", "--model.hidden_dim", "64",
          "--model.num_heads", "2", "--model.mlp_dim", "64", "--model.max_seq_len", "32",
          "--model.warmup_steps", "0", "--sampling.max_new_tokens", "0", "--sampling.prompts", '["Line"]'])  # fmt: skip
    summary = "tt_ddp: mesh [1, 2], one process drives 2 chip(s); data.batch_size 32 is the global micro-batch: 16"
    assert summary in caplog.text + capsys.readouterr().err
    assert last_checkpoint(tmp_path)["global_step"] == 1


def sys_modules():
    import sys

    return sys.modules
