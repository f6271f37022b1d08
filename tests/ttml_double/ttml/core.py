"""ttml.core double: clip_grad_norm, and ttml.core.distributed (core_distributed.py).

Mirrors tt-train/sources/ttml/core/clip_grad_norm.cpp (clip_grad_norm(parameters: NamedParameters, max_norm,
p_norm_type, error_if_nonfinite) -> Tensor total norm; grads of parameters that require grad and have one are
scaled by max_norm / (total + 1e-6) when that is < 1, as ttnn.moreh_clip_grad_norm documents), called
positionally as in tt-train/sources/examples/nano_gpt/train_nanogpt.py @ 00cb91b3.
"""

from __future__ import annotations

import torch

from . import core_distributed as distributed  # noqa: F401 - ttml.core.distributed
from .autograd import Tensor
from .modules import NamedParameters


def _clip_grad_norm(
    parameters: NamedParameters, max_norm: float, p_norm_type: float, error_if_nonfinite: bool
) -> Tensor:
    """Clips on each chip with that chip's gradients (identical on every chip once they are synchronized)."""
    if not isinstance(parameters, NamedParameters):
        raise TypeError("clip_grad_norm(): incompatible function arguments, parameters must be NamedParameters")
    if max_norm <= 0:
        raise RuntimeError(f"max_norm should be positive, current max norm {max_norm}")
    tensors = [t for t in parameters.values() if t.get_requires_grad() and t.is_grad_initialized()]
    totals = []
    for chip in range(len(tensors[0]._shards)):
        grads = [t._shards[chip].grad for t in tensors]
        total = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g, p_norm_type) for g in grads]), p_norm_type
        )
        if error_if_nonfinite and not torch.isfinite(total):
            raise RuntimeError("clip_grad_norm: total norm is non-finite")
        coefficient = max_norm / (float(total) + 1e-6)
        if coefficient < 1.0:
            for grad in grads:
                grad.mul_(coefficient)
        totals.append(total.reshape(1, 1, 1, 1))
    any_param = next(iter(parameters.values()))
    return Tensor(totals, any_param.dtype(), any_param._layout, requires_grad=False)


clip_grad_norm = _clip_grad_norm
