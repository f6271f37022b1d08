"""Test double of `ttml` (tt-train's Python package), limited to the symbols lightning_tt uses.

Real ttml is built from tenstorrent/tt-metal `tt-train/` (not on PyPI). Each symbol below names the tt-metal file
(and the commit read) whose binding or code it mirrors: the same names, argument names/order, defaults, shapes,
layouts and dtypes, and the same failures for wrong calls where the real code checks (tile multiples, RoPE
head_dim, shapes, device not open, opaque NamedParameters).

Numerics: float32 math in torch (with torch autograd standing in for ttml's graph). BFLOAT16 tensors are rounded
to bfloat16 where the chip stores them (creation, assign, optimizer update); the chip's bfloat16 matmul and
softmax arithmetic is not modelled, so the double proves the plugin's wiring, not on-chip accuracy.
"""

from . import autograd, core, modules, ops, optimizers  # noqa: F401

IS_TEST_DOUBLE = True
