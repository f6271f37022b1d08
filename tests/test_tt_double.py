"""The ttml double rejects the wrong calls the real library rejects, so plugin tests on it can fail."""

import numpy as np
import pytest
from ttml_double import harness

tt_double = harness.tt_double  # the fixture: ttml/ttnn doubles in place for one test


def open_chip(ttml):
    ttml.autograd.AutoContext.get_instance().open_device([1, 1])


def weight(ttml, ttnn, shape):
    return ttml.autograd.Tensor.from_numpy(np.zeros(shape, np.float32), ttnn.Layout.TILE, ttnn.DataType.BFLOAT16)


def test_device_tensors_need_an_open_device(tt_double):
    import ttnn

    with pytest.raises(RuntimeError, match="open_device"):
        weight(tt_double, ttnn, (1, 1, 32, 32))


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
    loss = tt_double.ops.binary.mul(w, 2.0)
    loss = tt_double.ops.unary.silu(loss)
    tt_double.autograd.AutoContext.get_instance().reset_graph()
    with pytest.raises(RuntimeError, match="reset"):
        loss.backward(False)
