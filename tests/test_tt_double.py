"""The ttml double behaves as the v0.81.1-era ttml where the plugin's correctness depends on it: it rejects the
wrong calls the real library rejects, and it has the semantics that trip a naive plugin (lazy 1x1 device, bfloat16
compute, HALF assign, uninitialised gradients after zero_grad, attribute auto-registration, a one-argument
synchronize_gradients that needs a parallelism context, enable_fabric's environment)."""

import numpy as np
import pytest
import torch
from lightning_tt.symbols import PLUGIN_SYMBOLS, check_all, format_table
from ttml_double import harness

tt_double = harness.tt_double  # the fixture: ttml/ttnn doubles in place for one test


def open_chip(ttml, shape=(1, 1)):
    ttml.autograd.AutoContext.get_instance().open_device(list(shape))


def weight(ttml, ttnn, shape, dtype=None):
    return ttml.autograd.Tensor.from_numpy(
        np.zeros(shape, np.float32), ttnn.Layout.TILE, dtype or ttnn.DataType.BFLOAT16
    )


def test_the_double_has_every_symbol_the_plugin_calls_with_its_parameter_names(tt_double):
    checks = check_all()
    assert len(checks) == len(PLUGIN_SYMBOLS)
    assert all(c.ok for c in checks), format_table([c for c in checks if not c.ok])


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


def test_zero_grad_leaves_gradients_uninitialised(tt_double):
    import ttnn

    open_chip(tt_double)
    module = tt_double.modules.AbstractModuleBase()
    module.w = weight(tt_double, ttnn, (1, 1, 1, 32))  # auto-registered by __setattr__
    tt_double.ops.unary.mean(tt_double.ops.binary.mul(module.w, 2.0)).backward(False)
    assert module.w.is_grad_initialized()
    config = tt_double.optimizers.AdamWConfig.make(1e-3, 0.9, 0.95, 1e-8, 0.0)
    optimizer = tt_double.optimizers.AdamW(module.parameters(), config)
    optimizer.zero_grad()
    assert not module.w.is_grad_initialized() and module.w.get_grad_tensor() is None


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
