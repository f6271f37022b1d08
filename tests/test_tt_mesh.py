"""Strategy 'tt_ddp': data parallel over a ttml mesh from one process, on the ttml double.

The double keeps one torch tensor per chip and runs every op chip by chip, so a [2, 4] run really computes eight
shard losses and eight sets of gradients, which only synchronize_gradients brings together. A mesh run must then
equal a [1, 1] run with the same global batch up to bfloat16 rounding: the math is the same, only the grouping
differs (the loss is the mean of the chips' bfloat16 shard means, the gradient the mean of the chips' gradients).
Measured over these 4 steps (2026-era double: bfloat16 AdamW moments, bf16-true): logged losses within 1.9e-3
relative (a bfloat16 loss near 3.5 moves in steps of 2^-7), grad norms within 2.7e-5, weights equal on [1, 2] and
within 8.3e-7 mean / 2.4e-4 max on [2, 4] and [8, 4] (single bfloat16 flips); the bounds below are 5e-3 on losses
(LOSS_REL), 1e-6 mean and 1e-3 max (two bfloat16 steps of the largest weights) on weights. The double
averages gradients in float32; the chip's all-reduce is bfloat16, so on silicon the weights drift further. A sync
that sums, or does nothing, is stopped by the strategy's own first-step check
(test_a_sync_that_does_not_average_is_caught).
"""

import math
import os

import numpy as np
import pytest
import torch
from conftest import fit_args
from lightning_tt.errors import TTConfigError, TTHardwareError
from test_tt_plugin import (
    GRAD_NORM_REL,
    LOSS_REL,
    TT_SHAPE,
    last_checkpoint,
    one_line_error,
    run_dir,
    scalars,
    weight_distance,
    write_corpus,
)
from ttml_double import harness
from ttml_double.harness import install_double

from lightning_trickster.cli import main
from lightning_trickster.module import NanoTricksterModule

tt_double = harness.tt_double

GLOBAL_BATCH = 32  # divides over the 32 chips of a Galaxy
STEPS = [
    "--model.optimization.optimizer", "adamw",  # the chip runs AdamW; cpu.yaml, these tests' base, uses Muon on CPUs
    "--model.num_layers", "1", "--trainer.accumulate_grad_batches", "2", "--trainer.val_check_interval", "4",
    "--trainer.gradient_clip_val", "0.5", "--model.optimization.weight_decay", "0.1",
    "--data.batch_size", str(GLOBAL_BATCH),
    "--trainer.precision", "bf16-true", "--sampling.max_new_tokens", "0",
    "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
]  # fmt: skip
STEPS_RUN = 4
MESHES = {"1x2": [1, 2], "2x4": [2, 4], "8x4": [8, 4]}
MESH_WEIGHT_MEAN_ABS, MESH_WEIGHT_MAX_ABS = 1e-6, 1e-3
"""Mesh vs [1, 1] bounds on weights; losses and grad norms use test_tt_plugin's LOSS_REL / GRAD_NORM_REL."""


def mesh(shape: list[int]) -> list[str]:
    return ["--trainer.accelerator", "tt", "--trainer.strategy", "lightning_tt.mesh.TTMeshStrategy",
            "--trainer.strategy.mesh_shape", str(shape), "--trainer.devices", str(math.prod(shape))]  # fmt: skip


def write_runtime_root(root):
    """A TT_METAL_RUNTIME_ROOT holding the two descriptors enable_fabric picks by chip count and the N300 one the
    preset names, with the device topologies of the 0.81.1 wheel's files (tests/ttnn_host checks those against the
    wheel)."""
    directory = root / "tt_metal" / "fabric" / "mesh_graph_descriptors"
    directory.mkdir(parents=True, exist_ok=True)
    for name, dims in (("t3k", "2, 4"), ("single_galaxy", "8, 4"), ("n300", "1, 2")):
        (directory / f"{name}_mesh_graph_descriptor.textproto").write_text(
            f'mesh_descriptors {{\n  name: "M0"\n  arch: WORMHOLE_B0\n  device_topology {{ dims: [ {dims} ] }}\n}}\n'
        )
    return root


def set_runtime_root(patch, root):
    patch.setenv("TT_METAL_RUNTIME_ROOT", str(write_runtime_root(root)))
    patch.delenv("TT_MESH_GRAPH_DESC_PATH", raising=False)


@pytest.fixture(autouse=True)
def runtime_root(monkeypatch, tmp_path_factory):
    set_runtime_root(monkeypatch, tmp_path_factory.mktemp("runtime_root"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 4 steps (global batch 32, accumulation 2, clipping, weight decay) on [1, 1] and on each mesh,
    recording what the [2, 4] run's chips received, its gradients around each synchronization, and each run's
    ttml calls in order."""
    root = tmp_path_factory.mktemp("mesh_runs")
    corpus = write_corpus(root / "corpus.txt")
    record = {"uploads": [], "syncs": [], "events": {}}
    with pytest.MonkeyPatch.context() as patch:
        set_runtime_root(patch, root / "runtime")
        with install_double() as ttml:
            import ttnn

            ttnn.DOUBLE_CHIPS = 32
            context = ttml.autograd.AutoContext.get_instance()
            main(fit_args(corpus, root / "1x1", *TT_SHAPE, *STEPS, *mesh([1, 1]), max_steps=STEPS_RUN))
            ttnn.new_process()  # each machine's run is its own process: its Metal context starts afresh
            real_from_numpy, real_sync = ttml.autograd.Tensor.from_numpy, ttml.core.distributed.synchronize_gradients

            def from_numpy(array, layout=ttnn.Layout.TILE, new_type=None, mapper=None):
                tensor = real_from_numpy(array, layout, new_type, mapper)
                if mapper is not None and context.get_device().shape == (2, 4):
                    record["uploads"].append((array.copy(), [s.clone() for s in tensor._shards]))
                return tensor

            def sync(parameters, *axes):
                grads = lambda: {n: [s.grad.clone() for s in t._shards] for n, t in parameters.items()}  # noqa: E731
                keep = context.get_device().shape == (2, 4)
                before = grads() if keep else None
                real_sync(parameters, *axes)
                if keep:
                    record["syncs"].append((axes, before, grads()))

            patch.setattr(ttml.autograd.Tensor, "from_numpy", staticmethod(from_numpy))
            patch.setattr(ttml.core.distributed, "synchronize_gradients", sync)
            for name, shape in MESHES.items():
                context.events.clear()
                # enable_fabric exports the descriptor it picked; a fresh process per machine would not have it.
                # (Not through `patch`: its undo would put the exported value back after the double is gone.)
                os.environ.pop("TT_MESH_GRAPH_DESC_PATH", None)
                ttnn.new_process()
                main(fit_args(corpus, root / name, *TT_SHAPE, *STEPS, *mesh(shape), max_steps=STEPS_RUN))
                record["events"][name] = list(context.events)
    return {"root": root, "corpus": corpus, **record}


@pytest.mark.parametrize("name", list(MESHES))
def test_a_mesh_run_equals_a_1x1_run_with_the_same_global_batch(runs, name):
    one, other = scalars(runs["root"] / "1x1"), scalars(runs["root"] / name)
    bounds = {"train/loss": LOSS_REL, "val/loss": LOSS_REL, "train/grad_norm": GRAD_NORM_REL, "train/lr": 1e-6}
    for tag, bound in bounds.items():
        assert other[tag].keys() == one[tag].keys(), tag
        for step, value in one[tag].items():
            assert other[tag][step] == pytest.approx(value, rel=bound), (tag, step)
    assert list(other["train/loss"]) == list(range(STEPS_RUN)) and max(other["train/grad_norm"].values()) > 0.5
    one_ckpt, other_ckpt = last_checkpoint(runs["root"] / "1x1"), last_checkpoint(runs["root"] / name)
    assert one_ckpt["global_step"] == other_ckpt["global_step"] == STEPS_RUN
    mean, worst = weight_distance(other_ckpt["state_dict"], one_ckpt["state_dict"])
    assert mean <= MESH_WEIGHT_MEAN_ABS and worst <= MESH_WEIGHT_MAX_ABS, (mean, worst)


def test_each_chip_of_a_2x4_mesh_gets_its_own_rows_of_the_global_batch_in_chip_order(runs):
    assert runs["uploads"], "the [2, 4] run uploaded no sharded batch"
    for array, shards in runs["uploads"]:
        assert len(shards) == 8 and shards[0].shape[0] == array.shape[0] // 8
        if array.dtype == np.uint32 and array.ndim == 4:  # token ids: the chips see different windows
            assert not torch.equal(shards[0], shards[7])
        np.testing.assert_array_equal(torch.cat(shards).numpy(), array.astype(shards[0].numpy().dtype))


def test_gradients_of_a_2x4_mesh_are_averaged_over_both_axes_once_per_step(runs):
    assert len(runs["syncs"]) == STEPS_RUN  # once per optimizer step, not per micro-batch
    for axes, before, after in runs["syncs"]:
        assert axes == ([0, 1],)  # ttml's DDP context cannot span both axes of a 2-D mesh: explicit axes
        name = "NanoTricksterTT/blocks.0.attn.qkv.weight"
        assert not torch.allclose(before[name][0], before[name][5])
        for grads_before, grads_after in zip(before.values(), after.values(), strict=True):
            mean = torch.stack(grads_before).mean(0)
            for chip in range(8):
                torch.testing.assert_close(grads_after[chip], mean, rtol=1e-6, atol=1e-9)


def test_a_line_mesh_uses_ttmls_own_ddp_context_and_a_2d_mesh_does_not(runs):
    fabric_first = ["enable_fabric", "GetNumAvailableDevices", "open_device"]  # descriptor and fabric, then count
    assert runs["events"]["1x2"] == [*fabric_first, "initialize_parallelism_context", "close_device"]
    for name in ("2x4", "8x4"):
        assert runs["events"][name] == [*fabric_first, "close_device"]


def test_the_trainer_sees_every_chip_but_one_process(tt_double, small_corpus, tmp_path):
    import lightning.pytorch as pl
    import ttnn
    from test_tt_plugin import tiny_module_and_data

    ttnn.DOUBLE_CHIPS = 8
    module, data = tiny_module_and_data(small_corpus, batch_size=8)
    trainer = pl.Trainer(accelerator="tt", strategy="tt_ddp", devices=8, precision="bf16-true", max_steps=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, data)
    assert trainer.num_devices == 8 and trainer.world_size == 1 and trainer.num_nodes == 1
    assert trainer.strategy.mesh_shape == [2, 4]  # the runtime root's T3K descriptor, as enable_fabric picks it
    value = torch.tensor([1.5, -2.0])
    strategy = trainer.strategy
    # The module's values are already global (computed from the whole batch): there is no other process.
    assert strategy.reduce(value, reduce_op="mean") is value and strategy.all_gather(value) is value
    assert strategy.broadcast({"step": 3}) == {"step": 3} and strategy.barrier("x") is None
    assert strategy.is_global_zero and strategy.reduce_boolean_decision(True)


def test_evaluation_batches_that_do_not_split_are_padded_and_every_window_scored_once(runs, tt_double):
    import ttnn
    from lightning_tt.accelerator import TTAccelerator
    from lightning_tt.mesh import TTMeshStrategy
    from lightning_tt.precision import TTPrecision
    from lightning_tt.twin import NanoTricksterTT

    ttnn.DOUBLE_CHIPS = 8
    module = NanoTricksterModule.load_from_checkpoint(run_dir(runs["root"] / "2x4") / "checkpoints" / "last.ckpt")
    module.evaluation_needs_logits = True  # the chips' logits are what this compares
    batch = torch.randint(0, module.hparams.vocab_size, (3, 32), generator=torch.Generator().manual_seed(0))
    targets = batch.roll(-1, dims=1)
    targets[2] = -100  # a padding window scores nothing
    results = {}
    for shape in ([1, 1], [2, 4]):
        strategy = TTMeshStrategy(mesh_shape=shape, accelerator=TTAccelerator(), precision_plugin=TTPrecision())
        strategy.parallel_devices = list(range(math.prod(shape)))
        strategy.connect(module)
        strategy.setup_environment()  # enables the fabric and opens the mesh
        model = NanoTricksterTT(module.model.config, strategy._host_weights(), ttnn.DataType.BFLOAT16)
        model.replica_composer = strategy._composer if math.prod(shape) > 1 else None
        strategy.device_model = model
        try:
            results[str(shape)] = strategy._eval_forward(batch, targets)
        finally:
            strategy.teardown()
    (logits_one, loss_one), (logits_mesh, loss_mesh) = results["[1, 1]"], results["[2, 4]"]
    assert logits_mesh.shape == (3, 32, module.hparams.vocab_size)  # every window once, 5 filler rows dropped
    torch.testing.assert_close(logits_mesh, logits_one, atol=0, rtol=0)  # per-row math: identical on any chip
    assert float(loss_mesh) == pytest.approx(float(loss_one), rel=LOSS_REL)


# ---------------------------------------------------------------- configuration and environment errors
def test_a_batch_the_mesh_cannot_split_is_a_one_line_config_error(tt_double, small_corpus, tmp_path, capsys):
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *STEPS, *mesh([2, 4]),
                                          "--data.batch_size", "12"))  # fmt: skip
    assert err == (
        "error: a batch of 12 windows does not split over the 8 chips of mesh [2, 4]: with strategy 'tt_ddp' "
        "data.batch_size is the global batch; set it to a multiple of 8"
    )
    assert tt_double.autograd.AutoContext.get_instance().open_count == 0  # refused before any chip opened


def test_a_mesh_shape_that_does_not_match_the_machines_descriptor_names_both_shapes(
    tt_double, small_corpus, tmp_path, capsys
):
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *STEPS, *mesh([4, 2])))
    assert err.startswith(
        "error: mesh_shape [4, 2] does not match this machine's mesh graph descriptor "
        "t3k_mesh_graph_descriptor.textproto, which is [2, 4] (from the installed descriptor for that many chips): "
        "set the strategy's mesh_shape to [2, 4] or leave it unset"
    )
    assert tt_double.autograd.AutoContext.get_instance().open_count == 0 and ttnn.EVENTS == []


def test_without_the_runtime_root_the_fabric_error_names_the_variable_and_the_fix(
    tt_double, small_corpus, tmp_path, capsys, monkeypatch
):
    import ttnn

    ttnn.DOUBLE_CHIPS = 2
    monkeypatch.delenv("TT_METAL_RUNTIME_ROOT")
    monkeypatch.setenv("TT_METAL_HOME", str(tmp_path))  # what older ttml read: no longer enough
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *STEPS, *mesh([1, 2])))
    assert err.startswith(
        "error: a mesh of 2 chips needs ttml's enable_fabric, which finds the mesh graph descriptor through "
        "TT_METAL_RUNTIME_ROOT or TT_MESH_GRAPH_DESC_PATH, and neither is set: export TT_METAL_RUNTIME_ROOT="
    )
    monkeypatch.setenv("TT_MESH_GRAPH_DESC_PATH", str(tmp_path / "missing.textproto"))
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *STEPS, *mesh([1, 2])))
    assert err.startswith(f"error: the mesh graph descriptor {tmp_path / 'missing.textproto'} (from ")


def test_mesh_shapes_that_are_not_2d_or_disagree_with_devices_are_rejected(tt_double):
    from lightning_tt.mesh import TTMeshStrategy

    for bad in ([2], [1, 0], "1x2", [2, 4.0]):
        with pytest.raises(TTConfigError, match=r"is not a mesh \[rows, cols\] of chips.*\[2, 4\] \(T3K/LoudBox\)"):
            TTMeshStrategy(mesh_shape=bad)
    strategy = TTMeshStrategy(mesh_shape=[2, 4])
    strategy.parallel_devices = [0, 1]
    with pytest.raises(TTConfigError, match="has 8 chips but --trainer.devices is 2"):
        strategy.mesh_shape  # noqa: B018
    strategy = TTMeshStrategy()
    strategy.parallel_devices = list(range(32))
    assert strategy.mesh_shape == [8, 4] and strategy.data_parallel_size == 32  # the Galaxy descriptor's shape
    os.environ.pop("TT_METAL_RUNTIME_ROOT")
    with pytest.raises(TTHardwareError, match="single_galaxy_mesh_graph_descriptor.textproto through TT_METAL_RUNTIME"):
        strategy.mesh_shape  # noqa: B018 - no descriptor to take the shape from


@pytest.mark.parametrize(("broken", "shape"), [("no-op", [1, 2]), ("sum", [2, 4])])
def test_a_sync_that_does_not_average_is_caught(broken, shape, tt_double, small_corpus, tmp_path, capsys, monkeypatch):
    """A ttml whose synchronize_gradients leaves the chips' gradients apart (e.g. the one-argument form without a
    parallelism context) or sums them would silently train diverging copies: the strategy checks the first step."""
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    distributed = tt_double.core.distributed
    real = distributed.synchronize_gradients

    def broken_sync(parameters, *cluster_axes):
        if broken == "sum":
            real(parameters, *cluster_axes)
            for tensor in parameters.values():
                for shard in tensor._shards:
                    shard.grad.mul_(8.0)

    monkeypatch.setattr(distributed, "synchronize_gradients", broken_sync)
    quick = ["--trainer.limit_val_batches", "0", "--data.batch_size", "8"]
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *STEPS, *mesh(shape), *quick, max_steps=1))
    assert err.startswith("error: strategy 'tt_ddp': ttml's synchronize_gradients did not average the gradients")
    assert tt_double.autograd.AutoContext.get_instance().close_count == 1


def test_ttmls_parallelism_context_outlives_the_mesh_and_is_reused_only_for_the_same_data_parallelism(
    tt_double, monkeypatch
):
    """ttml has no API to replace it (auto_context.cpp): a second [1, 2] fit in one process reuses it; a [1, 4]
    one cannot start and says so in one line."""
    import ttnn
    from lightning_tt import fabric

    ttnn.DOUBLE_CHIPS = 4
    context = tt_double.autograd.AutoContext.get_instance()
    for _ in range(2):
        fabric.open_mesh(tt_double, [1, 2])
        context.close_device()
    assert context.events.count("initialize_parallelism_context") == 1
    with pytest.raises(TTHardwareError, match="set up for another mesh and cannot be replaced .* run in a new process"):
        fabric.open_mesh(tt_double, [1, 4])


def test_a_mesh_larger_than_the_chips_ttnn_sees_is_refused_before_any_chip_opens(tt_double):
    import ttnn
    from lightning_tt import fabric

    ttnn.DOUBLE_CHIPS = 2
    with pytest.raises(TTHardwareError, match=r"mesh \[2, 4\] needs 8 Tenstorrent chip\(s\) but ttnn sees 2: run on"):
        fabric.open_mesh(tt_double, [2, 4])
    # counted after the descriptor and the fabric (ttml reads the descriptor when chips are first counted), no device
    assert tt_double.autograd.AutoContext.get_instance().events == ["enable_fabric", "GetNumAvailableDevices"]


# ---------------------------------------------------------------- descriptor first, meshes from the descriptor
def write_descriptor(path, dims):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"mesh_descriptors {{\n  arch: WORMHOLE_B0\n  device_topology {{ dims: [ {dims} ] }}\n}}\n")
    return path


def test_the_strategy_exports_the_descriptor_when_built_so_nothing_counts_chips_before_it_or_the_fabric(
    tt_double, small_corpus, tmp_path, monkeypatch
):
    """Lightning builds a strategy given in the config before the accelerator: the strategy sets
    TT_MESH_GRAPH_DESC_PATH as it is constructed, and the chips are counted only after enable_fabric."""
    import lightning.pytorch as pl
    import ttnn
    from lightning_tt.mesh import TTMeshStrategy
    from test_tt_plugin import tiny_module_and_data

    ttnn.DOUBLE_CHIPS = 8
    monkeypatch.delenv("TT_MESH_GRAPH_DESC_PATH", raising=False)
    strategy = TTMeshStrategy(mesh_graph_descriptor="t3k_mesh_graph_descriptor.textproto")
    t3k = os.environ["TT_MESH_GRAPH_DESC_PATH"]
    assert t3k.endswith("tt_metal/fabric/mesh_graph_descriptors/t3k_mesh_graph_descriptor.textproto")
    assert ttnn.EVENTS == []
    module, data = tiny_module_and_data(small_corpus, batch_size=8)
    trainer = pl.Trainer(accelerator="tt", strategy=strategy, devices=8, precision="bf16-mixed", max_steps=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    assert ttnn.EVENTS == []  # building the Trainer (and its accelerator) counted nothing
    trainer.fit(module, data)
    assert ttnn.EVENTS[:3] == ["enable_fabric", "GetNumAvailableDevices", "open_device"]
    assert [t3k] == ttnn.DESCRIPTORS_AT_COUNT and [t3k] == ttnn.METAL_CONTEXT_DESCRIPTOR
    assert trainer.strategy.mesh_shape == [2, 4] and trainer.global_step == 1


def test_counting_before_the_descriptor_is_what_the_order_prevents(tt_double, small_corpus, tmp_path, monkeypatch):
    """The same fit after something counted the chips first (as the accelerator did): its all-reduce would hang."""
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    monkeypatch.delenv("TT_MESH_GRAPH_DESC_PATH", raising=False)
    ttnn.GetNumAvailableDevices()  # the Metal context starts on auto-discovery
    quick = ["--trainer.limit_val_batches", "0", "--data.batch_size", "8"]
    with pytest.raises(RuntimeError, match="all_reduce would hang: the Metal context started on auto-discovery"):
        main(fit_args(small_corpus, tmp_path, *TT_SHAPE, *STEPS, *mesh([2, 4]), *quick, max_steps=1))


def test_the_t3k_and_galaxy_presets_take_their_mesh_from_the_installed_descriptor(tt_double, tmp_path, monkeypatch):
    """The stored T3K descriptor reads [4, 2] at one tt-metal revision and [2, 4] at another: the preset follows the
    installed file, and an explicit mesh_shape that differs names both."""
    from lightning_tt.mesh import TTMeshStrategy

    root = tmp_path / "runtime"
    set_runtime_root(monkeypatch, root)
    t3k = root / "tt_metal/fabric/mesh_graph_descriptors/t3k_mesh_graph_descriptor.textproto"
    for dims, shape in (("2, 4", [2, 4]), ("4, 2", [4, 2])):
        write_descriptor(t3k, dims)
        os.environ.pop("TT_MESH_GRAPH_DESC_PATH", None)
        strategy = TTMeshStrategy(mesh_graph_descriptor="t3k_mesh_graph_descriptor.textproto")
        strategy.parallel_devices = list(range(8))
        assert strategy.mesh_shape == shape and os.environ["TT_MESH_GRAPH_DESC_PATH"] == str(t3k)
    strategy = TTMeshStrategy(mesh_shape=[2, 4], mesh_graph_descriptor="t3k_mesh_graph_descriptor.textproto")
    strategy.parallel_devices = list(range(8))
    with pytest.raises(
        TTConfigError,
        match=r"mesh_shape \[2, 4\] does not match .* t3k_mesh_graph_descriptor.textproto, "
        r"which is \[4, 2\] \(from the strategy's mesh_graph_descriptor\)",
    ):
        strategy.mesh_shape  # noqa: B018
    strategy = TTMeshStrategy(mesh_graph_descriptor="t3k_mesh_graph_descriptor.textproto")
    strategy.parallel_devices = list(range(2))
    with pytest.raises(TTConfigError, match=r"describes 8 chips \[4, 2\], not 2: set --trainer.devices 8"):
        strategy.mesh_shape  # noqa: B018


def test_a_line_mesh_points_the_descriptor_at_tt_metals_line_descriptor(
    tt_double, small_corpus, tmp_path, capsys, monkeypatch
):
    """[1, 8] on a T3K: TT_MESH_GRAPH_DESC_PATH points at a checkout's t3k_1x8 descriptor (the wheel has none), and
    ttml's own DDP context runs on the line."""
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    quick = ["--trainer.limit_val_batches", "0", "--data.batch_size", "8"]
    err = one_line_error(capsys, fit_args(small_corpus, tmp_path, *TT_SHAPE, *STEPS, *mesh([1, 8]), *quick))
    assert err.startswith("error: a line mesh [1, 8] needs tt-metal's t3k_1x8_mesh_graph_descriptor.textproto")
    assert "export TT_METAL_HOME=<that checkout>" in err and ttnn.EVENTS == []
    checkout = tmp_path / "tt-metal"
    line = write_descriptor(
        checkout / "tests/tt_metal/tt_fabric/custom_mesh_descriptors/t3k_1x8_mesh_graph_descriptor.textproto", "1, 8"
    )
    monkeypatch.setenv("TT_METAL_HOME", str(checkout))
    main(fit_args(small_corpus, tmp_path, *TT_SHAPE, *STEPS, *mesh([1, 8]), *quick, max_steps=1))
    assert os.environ["TT_MESH_GRAPH_DESC_PATH"] == str(line) and [str(line)] == ttnn.METAL_CONTEXT_DESCRIPTOR
    assert "initialize_parallelism_context" in ttnn.EVENTS


@pytest.mark.parametrize(("shape", "per_device"), [([1, 1], False), ([1, 2], True), ([2, 4], True)])
def test_dropout_draws_a_mask_per_chip_on_a_mesh(shape, per_device, tt_double, small_corpus, tmp_path, monkeypatch):
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    flags = []
    real = tt_double.ops.dropout.dropout

    def dropout(tensor, probability, use_per_device_seed=False):
        flags.append(use_per_device_seed)
        return real(tensor, probability, use_per_device_seed)

    monkeypatch.setattr(tt_double.ops.dropout, "dropout", dropout)
    quick = ["--trainer.limit_val_batches", "0", "--data.batch_size", "8", "--model.dropout", "0.1"]
    main(fit_args(small_corpus, tmp_path, *TT_SHAPE, *STEPS, *mesh(shape), *quick, max_steps=1))
    assert flags and set(flags) == {per_device}
