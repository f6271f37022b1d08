"""The ttml double behaves as the 2026 (v0.81.1-era) ttml where the plugin's correctness depends on it: its
signatures are the real bindings' (lightning_tt.bindings, read from the tt-metal sources), it rejects the wrong
calls the real library rejects, and it has the semantics that trip a naive plugin (lazy 1x1 device, bfloat16
compute, HALF assign, zero_grad writing zeros, attribute auto-registration, a one-argument synchronize_gradients that
needs a parallelism context, enable_fabric's environment, the Metal context reading the descriptor once, one dropout
mask for every chip, bfloat16 AdamW against float32 masters)."""

import re

import numpy as np
import pytest
import torch
from lightning_tt.bindings import BINDINGS, binding
from lightning_tt.bridge import round_to_bfloat16
from lightning_tt.symbols import PLUGIN_SYMBOLS, check_all, format_table, parameter_lists, resolve
from ttml_double import harness

tt_double = harness.tt_double  # the fixture: ttml/ttnn doubles in place for one test


def open_chip(ttml, shape=(1, 1)):
    ttml.autograd.AutoContext.get_instance().open_device(list(shape))


def weight(ttml, ttnn, shape, dtype=None, value=0.0):
    return ttml.autograd.Tensor.from_numpy(
        np.full(shape, value, np.float32), ttnn.Layout.TILE, dtype or ttnn.DataType.BFLOAT16
    )


def test_the_double_has_every_symbol_of_the_bindings_table_with_the_real_parameter_names(tt_double):
    for row in BINDINGS:
        obj = resolve(row.path)
        if row.overloads is None:
            continue
        names = parameter_lists(obj, row.path.rsplit(".", 1)[-1])
        assert len(names) == 1 and tuple(names[0]) in row.overloads, (row.path, names, row.overloads)


def test_tt_check_expects_what_the_table_records_and_passes_on_the_double(tt_double):
    assert [s.path for s in PLUGIN_SYMBOLS] == [row.path for row in BINDINGS]
    for symbol in PLUGIN_SYMBOLS:
        row = binding(symbol.path)
        assert symbol.parameters is None or row.overloads[0][: len(symbol.parameters)] == symbol.parameters
    checks = check_all()
    assert all(c.ok for c in checks), format_table([c for c in checks if not c.ok])


def test_every_row_names_its_source_file_and_commit():
    for row in BINDINGS:
        source, commit = row.source
        assert source.startswith(("tt-train/sources/ttml/", "ttnn==0.81.1")), row.path
        assert re.fullmatch(r"[0-9a-f]{40}|index file id \d+ .*|v0\.81\.1, .*", commit), row.path
    # nanobind names an un-annotated parameter "arg", positional-only (checked on the real wheel in tests/ttnn_host)
    assert binding("ttml.core.distributed.enable_fabric").overloads == (("arg", "/"),)


def test_enable_fabric_takes_its_chip_count_positionally_as_the_binding_does(tt_double, monkeypatch, tmp_path):
    monkeypatch.setenv("TT_METAL_RUNTIME_ROOT", str(tmp_path))
    with pytest.raises(TypeError):
        tt_double.core.distributed.enable_fabric(num_devices=2)  # what the plugin once called: no such keyword
    tt_double.core.distributed.enable_fabric(2)
    assert tt_double.autograd.AutoContext.get_instance().events == ["enable_fabric"]


def test_get_device_opens_a_1x1_device_when_none_is_open_and_a_mesh_cannot_open_after(tt_double):
    import ttnn

    ttnn.DOUBLE_CHIPS = 2
    context = tt_double.autograd.AutoContext.get_instance()
    weight(tt_double, ttnn, (1, 1, 32, 32))  # a device tensor asks for the device
    assert context.events == ["open_device(lazy 1x1)"] and context.get_device().shape == (1, 1)
    with pytest.raises(RuntimeError, match="open_device was called after the device was created"):
        context.open_device([1, 2])


def test_ops_compute_in_bfloat16_even_on_float32_tensors(tt_double):
    import ttnn

    open_chip(tt_double)
    value = np.full((1, 1, 32, 32), 1.0 + 2.0**-10, np.float32)  # not representable in bfloat16
    full = tt_double.autograd.Tensor.from_numpy(value, ttnn.Layout.TILE, ttnn.DataType.FLOAT32)
    doubled = tt_double.ops.binary.mul(full, 1.0)
    assert doubled.dtype() == ttnn.DataType.BFLOAT16 and doubled.to_numpy(ttnn.DataType.FLOAT32)[0, 0, 0, 0] == 1.0
    assert full.to_numpy(ttnn.DataType.FLOAT32)[0, 0, 0, 0] == np.float32(1.0 + 2.0**-10)  # to_numpy reads FULL


def test_assign_copies_the_half_precision_value(tt_double):
    import ttnn

    open_chip(tt_double)
    target = weight(tt_double, ttnn, (1, 1, 32, 32), ttnn.DataType.FLOAT32)
    source = tt_double.autograd.Tensor.from_numpy(
        np.full((1, 1, 32, 32), 1.0 + 2.0**-10, np.float32), ttnn.Layout.TILE, ttnn.DataType.FLOAT32
    )
    target.assign(source)
    assert target.to_numpy(ttnn.DataType.FLOAT32)[0, 0, 0, 0] == 1.0  # rounded to bfloat16


def test_zero_grad_writes_zeros_as_the_2026_adamw_does(tt_double):
    import ttnn

    open_chip(tt_double)
    module = tt_double.modules.AbstractModuleBase()
    module.w = weight(tt_double, ttnn, (1, 1, 1, 32))  # auto-registered by __setattr__
    tt_double.ops.unary.mean(tt_double.ops.binary.mul(module.w, 2.0)).backward(False)
    assert module.w.is_grad_initialized()
    config = tt_double.optimizers.AdamWConfig.make(1e-3, 0.9, 0.95, 1e-8, 0.0)
    optimizer = tt_double.optimizers.AdamW(module.parameters(), config)
    optimizer.zero_grad()
    assert module.w.is_grad_initialized()
    np.testing.assert_array_equal(module.w.get_grad_tensor().to_numpy(ttnn.DataType.FLOAT32), 0.0)


def test_any_attribute_with_get_value_becomes_a_parameter(tt_double):
    import ttnn

    open_chip(tt_double)
    module = tt_double.modules.AbstractModuleBase()
    module.scale = weight(tt_double, ttnn, (1, 1, 1, 32))
    module.constants = {"bias": weight(tt_double, ttnn, (1, 1, 1, 32))}  # a dict is not registered
    assert list(module.parameters().keys()) == ["AbstractModuleBase/scale"]
    replacement = weight(tt_double, ttnn, (1, 1, 1, 32))
    module.scale = replacement  # the same name overrides
    assert module.parameters()["AbstractModuleBase/scale"] is replacement


def test_one_argument_synchronize_gradients_needs_a_parallelism_context(tt_double, monkeypatch, tmp_path):
    import ttnn

    ttnn.DOUBLE_CHIPS = 2
    monkeypatch.setenv("TT_METAL_RUNTIME_ROOT", str(tmp_path))
    tt_double.core.distributed.enable_fabric(2)
    open_chip(tt_double, (1, 2))
    module = tt_double.modules.AbstractModuleBase()
    module.w = weight(tt_double, ttnn, (1, 1, 1, 32))
    with torch.no_grad():
        module.w._shards[1] += 1.0  # the chips' copies differ, so do their gradients
    loss = tt_double.ops.unary.mean(tt_double.ops.binary.mul(module.w, module.w))
    loss.backward(False)
    before = [s.grad.clone() for s in module.w._shards]
    tt_double.core.distributed.synchronize_gradients(module.parameters())
    assert not torch.equal(module.w._shards[0].grad, module.w._shards[1].grad)  # nothing happened
    context = tt_double.autograd.AutoContext.get_instance()
    context.initialize_parallelism_context(tt_double.autograd.DistributedConfig(enable_ddp=True))
    assert context.get_parallelism_context().get_ddp_size() == 2
    tt_double.core.distributed.synchronize_gradients(module.parameters())
    for shard in module.w._shards:
        torch.testing.assert_close(shard.grad, (before[0] + before[1]) / 2)


def test_ddp_alone_is_refused_on_a_2d_mesh_as_ttml_does(tt_double, monkeypatch, tmp_path):
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    monkeypatch.setenv("TT_MESH_GRAPH_DESC_PATH", str(tmp_path / "t3k.textproto"))
    tt_double.core.distributed.enable_fabric(8)
    open_chip(tt_double, (2, 4))
    context = tt_double.autograd.AutoContext.get_instance()
    with pytest.raises(RuntimeError, match="must equal mesh dimensions"):
        context.initialize_parallelism_context(tt_double.autograd.DistributedConfig(enable_ddp=True))


def test_enable_fabric_reads_the_runtime_root_not_tt_metal_home(tt_double, monkeypatch, tmp_path):
    for name in ("TT_METAL_RUNTIME_ROOT", "TT_MESH_GRAPH_DESC_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TT_METAL_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="TT_METAL_RUNTIME_ROOT is not set"):
        tt_double.core.distributed.enable_fabric(2)
    monkeypatch.setenv("TT_METAL_RUNTIME_ROOT", str(tmp_path))
    tt_double.core.distributed.enable_fabric(8)  # picks the T3K descriptor and exports it, as tt_metal.cpp does
    import os

    assert os.environ["TT_MESH_GRAPH_DESC_PATH"].endswith(
        "fabric/mesh_graph_descriptors/t3k_mesh_graph_descriptor.textproto"
    )


def test_rope_needs_head_dim_in_multiples_of_32_and_the_exact_length(tt_double):
    import ttnn

    open_chip(tt_double)
    with pytest.raises(ValueError, match="divisible by 32"):
        tt_double.ops.rope.build_rope_params(32, 16, 10000.0)
    params = tt_double.ops.rope.build_rope_params(64, 32, 10000.0)
    with pytest.raises(RuntimeError, match="sequence length"):
        tt_double.ops.rope.rope(weight(tt_double, ttnn, (1, 2, 32, 32)), params)


def test_optimizers_take_named_parameters_not_a_dict(tt_double):
    import ttnn

    open_chip(tt_double)
    config = tt_double.optimizers.AdamWConfig.make(1e-3, 0.9, 0.95, 1e-8, 0.1)
    with pytest.raises(TypeError, match="incompatible"):
        tt_double.optimizers.AdamW({"w": weight(tt_double, ttnn, (1, 1, 32, 32))}, config)


def test_embedding_and_loss_check_layouts_and_dtypes(tt_double):
    import ttnn

    open_chip(tt_double)
    tokens = tt_double.autograd.Tensor.from_numpy(np.zeros((2, 1, 1, 30), np.uint32), ttnn.Layout.ROW_MAJOR)
    with pytest.raises(RuntimeError, match="multiples of 32"):
        tt_double.ops.embedding.embedding(tokens, weight(tt_double, ttnn, (1, 1, 64, 32)))
    logits = weight(tt_double, ttnn, (2, 1, 32, 64))
    float_targets = tt_double.autograd.Tensor.from_numpy(np.zeros((2, 32), np.float32), ttnn.Layout.ROW_MAJOR)
    with pytest.raises(RuntimeError, match="UINT32"):
        tt_double.ops.loss.cross_entropy_loss(logits, float_targets)


def test_backward_after_reset_graph_fails(tt_double):
    import ttnn

    open_chip(tt_double)
    w = weight(tt_double, ttnn, (1, 1, 1, 32))
    loss = tt_double.ops.unary.mean(tt_double.ops.binary.mul(w, 2.0))
    tt_double.autograd.AutoContext.get_instance().reset_graph()
    with pytest.raises(RuntimeError, match="reset"):
        loss.backward(False)


@pytest.mark.parametrize("counted_first", [True, False])
def test_counting_chips_before_the_descriptor_is_set_leaves_collectives_on_the_wrong_topology(
    counted_first, tt_double, monkeypatch, tmp_path
):
    """tt-train's T3K test: counting starts the Metal context, which reads TT_MESH_GRAPH_DESC_PATH once; counted
    before enable_fabric sets it, the 1x8 mesh's collectives deadlock (the double raises where the chip hangs)."""
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    descriptor = tmp_path / "t3k_1x8.textproto"
    monkeypatch.delenv("TT_MESH_GRAPH_DESC_PATH", raising=False)
    if counted_first:
        ttnn.GetNumAvailableDevices()
    monkeypatch.setenv("TT_MESH_GRAPH_DESC_PATH", str(descriptor))
    tt_double.core.distributed.enable_fabric(8)
    assert ttnn.GetNumAvailableDevices() == 8
    open_chip(tt_double, (1, 8))
    context = tt_double.autograd.AutoContext.get_instance()
    context.initialize_parallelism_context(tt_double.autograd.DistributedConfig(enable_ddp=True))
    module = tt_double.modules.AbstractModuleBase()
    module.w = weight(tt_double, ttnn, (1, 1, 1, 32), value=1.0)
    tt_double.ops.unary.mean(tt_double.ops.binary.mul(module.w, 2.0)).backward(False)
    if counted_first:
        assert [None, str(descriptor)] == ttnn.DESCRIPTORS_AT_COUNT
        with pytest.raises(RuntimeError, match="all_reduce would hang: the Metal context started on auto-discovery"):
            tt_double.core.distributed.synchronize_gradients(module.parameters())
    else:
        tt_double.core.distributed.synchronize_gradients(module.parameters())
        assert [str(descriptor)] == ttnn.METAL_CONTEXT_DESCRIPTOR


def dropout_masks(ttml, ttnn, chips, per_device):
    open_chip(ttml, (1, chips))
    ttml.autograd.AutoContext.get_instance().set_seed(7)
    x = weight(ttml, ttnn, (1, 1, 32, 32), value=1.0)
    out = ttml.ops.dropout.dropout(x, 0.5, use_per_device_seed=per_device)
    ttml.ops.unary.mean(out).backward(False)
    kept = [s.detach() != 0 for s in out._shards]
    grads = [s.grad != 0 for s in x._shards]
    return kept, grads


@pytest.mark.parametrize("per_device", [False, True])
def test_dropout_draws_one_mask_for_every_chip_unless_per_device_seeds_are_asked_for(
    per_device, tt_double, monkeypatch, tmp_path
):
    import ttnn

    ttnn.DOUBLE_CHIPS = 2
    monkeypatch.setenv("TT_METAL_RUNTIME_ROOT", str(tmp_path))
    tt_double.core.distributed.enable_fabric(2)
    kept, grads = dropout_masks(tt_double, ttnn, 2, per_device)
    assert 0.3 < float(kept[0].float().mean()) < 0.7  # about half kept
    assert torch.equal(kept[0], kept[1]) != per_device  # the same mask on both chips unless per-device seeds
    for chip in range(2):
        assert torch.equal(grads[chip], kept[chip])  # backward applies the forward's mask


def run_optimizer(ttml, ttnn, kind, steps=40, lr=1e-4, value=1.0, stochastic=False):
    """A weight at `value` and a constant gradient, `steps` AdamW steps of about lr each."""
    ttml.autograd.AutoContext.get_instance().get_device()  # the 1x1 device (opened on first use)
    module = ttml.modules.AbstractModuleBase()
    module.w = weight(ttml, ttnn, (1, 1, 32, 32), value=value)
    if kind == "AdamW":
        config = ttml.optimizers.AdamWConfig.make(lr, 0.9, 0.999, 1e-8, 0.0, False, stochastic)
        optimizer = ttml.optimizers.AdamW(module.parameters(), config)
    else:
        config = ttml.optimizers.AdamWFullPrecisionConfig.make(lr, 0.9, 0.999, 1e-8, 0.0)
        optimizer = ttml.optimizers.AdamWFullPrecision(module.parameters(), config)
    for _ in range(steps):
        optimizer.zero_grad()
        ttml.ops.unary.mean(ttml.ops.binary.mul(module.w, 1.0)).backward(False)
        ttml.autograd.AutoContext.get_instance().reset_graph()
        optimizer.step()
    return module.w.to_numpy(ttnn.DataType.FLOAT32), optimizer.get_state_dict()


def bfloat16_exact(array):
    return np.array_equal(array, round_to_bfloat16(array))


def test_an_update_below_half_a_bfloat16_step_is_lost_with_adamw_and_kept_by_masters_or_stochastic_rounding(
    tt_double,
):
    """40 steps of ~1e-4 on weights at 1.0, where bfloat16's step is 2^-8 below 1.0: plain AdamW (nearest rounding)
    never moves them; AdamWFullPrecision's float32 masters move by ~4e-3 and the bfloat16 weights follow; stochastic
    rounding moves them by the same amount on average."""
    import ttnn

    nearest, state = run_optimizer(tt_double, ttnn, "AdamW")
    assert np.all(nearest == 1.0)
    moments = state["exp_avg"]["AbstractModuleBase/w"].to_numpy(ttnn.DataType.FLOAT32)
    assert bfloat16_exact(moments) and state["steps"] == 40  # bfloat16 moments

    weights, state = run_optimizer(tt_double, ttnn, "AdamWFullPrecision")
    masters = state["master_weights"]["AbstractModuleBase/w"].to_numpy(ttnn.DataType.FLOAT32)
    np.testing.assert_allclose(masters, 1.0 - 40 * 1e-4, atol=2e-4)  # float32 masters took every step
    assert not bfloat16_exact(masters) and bfloat16_exact(weights)
    np.testing.assert_array_equal(weights, round_to_bfloat16(masters))  # their bfloat16 copy is the weight
    assert np.all(weights < 1.0)
    assert not bfloat16_exact(state["exp_avg"]["AbstractModuleBase/w"].to_numpy(ttnn.DataType.FLOAT32))

    stochastic, _ = run_optimizer(tt_double, ttnn, "AdamW", stochastic=True)
    assert bfloat16_exact(stochastic) and len(np.unique(stochastic)) > 1
    assert abs(float(stochastic.mean()) - (1.0 - 40 * 1e-4)) < 1e-3  # right on average


def test_optimizer_state_round_trips_and_sets_the_step_count(tt_double):
    import ttnn

    _, state = run_optimizer(tt_double, ttnn, "AdamW", steps=3)
    context = tt_double.autograd.AutoContext.get_instance()
    module = tt_double.modules.AbstractModuleBase()
    module.w = weight(tt_double, ttnn, (1, 1, 32, 32), value=1.0)
    config = tt_double.optimizers.AdamWConfig.make(1e-4, 0.9, 0.999, 1e-8, 0.0)
    optimizer = tt_double.optimizers.AdamW(module.parameters(), config)
    fresh = optimizer.get_state_dict()
    assert fresh["steps"] == 0 and set(fresh) == {"steps", "lr", "exp_avg", "exp_avg_sq", "amsgrad"}
    with pytest.raises(RuntimeError, match="exp_avg must be NamedParameters"):
        optimizer.set_state_dict({**fresh, "exp_avg": {"AbstractModuleBase/w": state["exp_avg"]}})
    optimizer.set_state_dict({**fresh, "steps": 3, "exp_avg": state["exp_avg"], "exp_avg_sq": state["exp_avg_sq"]})
    restored = optimizer.get_state_dict()
    assert restored["steps"] == 3 and restored["exp_avg"] is state["exp_avg"]
    assert context.get_device().shape == (1, 1)
