"""ttml.ops double: the ops lightning_tt's NanoTricksterTT calls.

Signatures mirror tt-train/sources/ttml/nanobind/nb_ops.cpp @ 0152e582473a9434a29f25042fbecc96752a8c64 (2026), as
lightning_tt.bindings records them.
Semantics and checks mirror, in tt-train/sources/ttml/:
- ops/embedding_op.cpp + modules/embedding_module.cpp: tokens [B, 1, 1, T] UINT32, weight (1, 1, V, E), V, E and
  T multiples of 32 -> (B, 1, T, E);
- ops/linear_op.cpp: x (B, 1, T, in) @ weight (1, 1, out, in)^T (+ bias (1, 1, 1, out));
- ops/rmsnorm_op.cpp: gamma (1, 1, 1, F), x / sqrt(mean(x^2) + eps) * gamma;
- ops/multi_head_utils.cpp @ 012fd65b: heads_creation(qkv (B, 1, S, 3E), num_heads) splits [Q | K | V] then heads;
  heads_fusion (B, H, S, hd) -> (B, 1, S, E);
- ops/rope_op.cpp @ 3572556282 (file id): build_rope_params(sequence_length, head_dim, theta=10000,
  rope_scaling_params, cp_axis=None) needs head_dim % 32 == 0 and <= 256; gen_freqs repeats each frequency for
  channel pairs (arange(head_dim) // 2); gen_trans_mat swaps adjacent pairs; rope(input, params) requires rank 4
  and the exact sequence length and head_dim of the params; out = x * cos + (x @ trans_mat) * sin;
- ops/scaled_dot_product_attention.cpp: q, k, v (B, H, S, hd), scale 1/sqrt(hd) inside, mask 1 = attend;
- ops/losses.cpp (the 2026 version with the metal cross_entropy_fw kernel): cross_entropy_loss(prediction
  (B, 1, T, V), target (B, T) UINT32, reduce=MEAN) -> (1, 1, 1, 1); reduce=NONE -> per-position (B, 1, T, 1)
  (metal/ops/cross_entropy_fw/device/cross_entropy_fw_device_operation.cpp: the input's shape with last dim 1,
  BFLOAT16; input BFLOAT16 TILE, target UINT32 ROW_MAJOR); other reductions throw; there is no ignore index;
- ops/dropout_op.cpp (index id 4303758784): dropout(tensor, probability, use_per_device_seed) draws one seed from
  the context's generator per call and runs ttnn's experimental dropout with it; ttnn adds the chip's device id to
  the seed only when use_per_device_seed is set (ttnn .../dropout/device/dropout_device_operation_types.hpp: "If
  `use_per_device_seed` is true, the seed is offset by device ID across devices in a mesh"), so without the flag
  every chip of a mesh draws the SAME mask. The Python binding defaults the flag to False (nb_ops.cpp @
  0152e582). The mask here: keep where uniform(seed [+ chip]) >= probability, scale kept values by 1/(1-p); the
  backward applies the same mask (the same seed);
- ops/unary_ops.cpp (silu, mean), ops/binary_ops.cpp (add, mul with a tensor or a float).
Every op reads its inputs' HALF value and writes a BFLOAT16 result (autograd.from_op).
"""

from __future__ import annotations

import enum
import math
import types
from typing import Any

import torch
import torch.nn.functional as F
import ttnn

from .autograd import Tensor, _ctx, from_op, grad_enabled

TILE = 32


class ReduceType(enum.Enum):
    NONE = 0
    MEAN = 1
    SUM = 2


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(message)


def _tensor(x: Any, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: incompatible function arguments, expected ttml.autograd.Tensor, got {type(x)}")
    _ctx().get_device()
    return x


def _run(fn, *inputs: Tensor) -> Tensor:
    """Runs fn on each chip with that chip's shards of the inputs."""
    chips = len(inputs[0]._shards)
    _check(all(len(t._shards) == chips for t in inputs), "op inputs live on different meshes")

    shards = [t.half_shards() for t in inputs]  # ops read get_value() at its HALF default

    def per_chip() -> list[torch.Tensor]:
        return [fn(*(s[chip] for s in shards)) for chip in range(chips)]

    if grad_enabled():
        result = per_chip()
    else:
        with torch.no_grad():
            result = per_chip()
    float_inputs = [t for t in inputs if t._dtype != ttnn.DataType.UINT32]
    return from_op(result, float_inputs[0] if float_inputs else inputs[-1])


def _embedding(tensor: Tensor, weight: Tensor) -> Tensor:
    _tensor(tensor, "embedding"), _tensor(weight, "embedding")
    shape, wshape = tensor.shape(), weight.shape()
    _check(
        tensor.dtype() == ttnn.DataType.UINT32 and tensor._layout == ttnn.Layout.ROW_MAJOR,
        "embedding: token ids must be UINT32 ROW_MAJOR",
    )
    _check(len(shape) == 4 and shape[1] == shape[2] == 1, f"embedding: tokens must be [B, 1, 1, T], got {shape}")
    _check(len(wshape) == 4 and wshape[:2] == [1, 1], f"embedding: weight must be (1, 1, V, E), got {wshape}")
    _check(
        wshape[2] % TILE == 0 and wshape[3] % TILE == 0 and shape[3] % TILE == 0,
        f"embedding: vocab, embedding dim and sequence length must be multiples of 32, got {wshape}, T={shape[3]}",
    )
    _check(max(int(s.max()) for s in tensor._shards) < wshape[2], "embedding: token id out of range")
    return _run(lambda ids, w: w[0, 0][ids[:, 0, 0, :]].unsqueeze(1), tensor, weight)


def _linear(tensor: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    _tensor(tensor, "linear"), _tensor(weight, "linear")
    wshape = weight.shape()
    _check(len(wshape) == 4 and wshape[:2] == [1, 1], f"linear: weight must be (1, 1, out, in), got {wshape}")
    _check(tensor.shape()[-1] == wshape[3], f"linear: input width {tensor.shape()[-1]} != weight in {wshape[3]}")
    if bias is None:
        return _run(lambda x, w: x @ w[0, 0].T, tensor, weight)
    _check(bias.shape() == [1, 1, 1, wshape[2]], f"linear: bias must be (1, 1, 1, {wshape[2]}), got {bias.shape()}")
    return _run(lambda x, w, b: x @ w[0, 0].T + b, tensor, weight, _tensor(bias, "linear"))


def _rmsnorm(tensor: Tensor, gamma: Tensor, epsilon: float) -> Tensor:
    _tensor(tensor, "rmsnorm"), _tensor(gamma, "rmsnorm")
    _check(gamma.shape() == [1, 1, 1, tensor.shape()[-1]], f"rmsnorm: gamma must be (1, 1, 1, F), got {gamma.shape()}")
    _check(isinstance(epsilon, float), "rmsnorm: epsilon must be a float")
    return _run(lambda x, g: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + epsilon) * g, tensor, gamma)


def _heads_creation(qkv: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    shape = _tensor(qkv, "heads_creation").shape()
    _check(
        len(shape) == 4 and shape[1] == 1 and shape[3] % (3 * num_heads) == 0,
        f"heads_creation: qkv must be (B, 1, S, 3 * num_heads * head_dim), got {shape}",
    )
    batch, _, seq, width = shape
    head_dim = width // (3 * num_heads)

    def split(x: torch.Tensor, part: int) -> torch.Tensor:
        chunk = x[..., part * num_heads * head_dim : (part + 1) * num_heads * head_dim]
        return chunk.reshape(batch, seq, num_heads, head_dim).transpose(1, 2)  # (B, H, S, hd)

    return tuple(_run(lambda x, i=i: split(x, i), qkv) for i in range(3))


def _heads_fusion(x: Tensor) -> Tensor:
    batch, heads, seq, head_dim = _tensor(x, "heads_fusion").shape()
    return _run(lambda t: t.transpose(1, 2).reshape(batch, 1, seq, heads * head_dim), x)


class RopeScalingParams:
    def __init__(self) -> None:
        self.original_context_length = 0
        self.scaling_factor = 0.0
        self.high_freq_factor = 4.0
        self.low_freq_factor = 1.0


class RotaryEmbeddingParams:
    def __init__(self) -> None:
        self.cos_cache: torch.Tensor | None = None
        self.sin_cache: torch.Tensor | None = None
        self.neg_cos_cache: torch.Tensor | None = None
        self.neg_sin_cache: torch.Tensor | None = None
        self.trans_mat: torch.Tensor | None = None
        self.sequence_length = 0
        self.head_dim = 0
        self.theta = 0.0
        self.rope_scaling_params = RopeScalingParams()


def _build_rope_params(
    sequence_length: int,
    head_dim: int,
    theta: float = 10000.0,
    rope_scaling_params: RopeScalingParams | None = None,
    cp_axis: int | None = None,
) -> RotaryEmbeddingParams:
    if head_dim % 32 != 0:
        raise ValueError(f"RoPE head_dim must be divisible by 32, but is {head_dim}")
    if head_dim > 256:
        raise ValueError(f"RoPE head_dim must be less than or equal to 256, but is {head_dim}")
    scaling = rope_scaling_params or RopeScalingParams()
    if scaling.scaling_factor != 0.0 or cp_axis is not None:
        raise NotImplementedError("the ttml double does not model RoPE scaling or context parallelism")
    _ctx().get_device()
    exponent = (torch.arange(head_dim) // 2).to(torch.float32) * (2.0 / head_dim)
    freqs = 1.0 / torch.pow(torch.tensor(float(theta)), exponent)
    angles = torch.arange(sequence_length, dtype=torch.float32)[:, None] * freqs[None, :]
    angles = torch.fmod(angles, 2.0 * math.pi).reshape(1, 1, sequence_length, head_dim)
    trans_mat = torch.zeros(1, 1, TILE, TILE)
    for i in range(0, TILE, 2):
        trans_mat[0, 0, i, i + 1] = 1.0
        trans_mat[0, 0, i + 1, i] = -1.0
    params = RotaryEmbeddingParams()
    params.cos_cache, params.sin_cache = angles.cos(), angles.sin()
    params.neg_cos_cache, params.neg_sin_cache = angles.cos(), -angles.sin()
    params.trans_mat = trans_mat
    params.sequence_length, params.head_dim, params.theta = sequence_length, head_dim, float(theta)
    params.rope_scaling_params = scaling
    return params


def _rope(input: Tensor, rope_params: RotaryEmbeddingParams, token_position: int = 0) -> Tensor:  # noqa: A002
    shape = _tensor(input, "rope").shape()
    _check(len(shape) == 4, f"RoPE only supports rank-4 input tensors, but got rank {len(shape)}.")
    _check(
        shape[3] == rope_params.head_dim,
        f"RoPE input tensor's head dimension ({shape[3]}) must match the head dimension in the params "
        f"({rope_params.head_dim})",
    )
    _check(
        shape[2] == rope_params.sequence_length,
        f"RoPE input tensor's sequence length ({shape[2]}) must match the sequence length in the params "
        f"({rope_params.sequence_length})",
    )
    blocks = shape[3] // TILE
    # x @ trans_mat, applied tile by tile along head_dim (the trans_mat is one 32x32 tile).
    swap = torch.block_diag(*([rope_params.trans_mat[0, 0]] * blocks))
    cos, sin = rope_params.cos_cache, rope_params.sin_cache
    return _run(lambda x: x * cos + (x @ swap) * sin, input)


def _sdpa(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None) -> Tensor:
    for t in (query, key, value):
        _tensor(t, "scaled_dot_product_attention")
    _check(
        query.shape() == key.shape() == value.shape() and len(query.shape()) == 4,
        f"scaled_dot_product_attention: q, k, v must be (B, H, S, hd), got {query.shape()}, {key.shape()}",
    )
    head_dim, seq = query.shape()[3], query.shape()[2]

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *m: torch.Tensor) -> torch.Tensor:
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)
        if m:
            scores = scores.masked_fill(m[0] == 0, float("-inf"))
        return scores.softmax(-1) @ v

    if mask is None:
        return _run(attend, query, key, value)
    _check(mask.shape() == [1, 1, seq, seq], f"attention mask must be (1, 1, S, S), got {mask.shape()}")
    return _run(attend, query, key, value, _tensor(mask, "scaled_dot_product_attention"))


def _cross_entropy_loss(prediction: Tensor, target: Tensor, reduce: ReduceType = ReduceType.MEAN) -> Tensor:
    _tensor(prediction, "cross_entropy_loss"), _tensor(target, "cross_entropy_loss")
    shape, tshape = prediction.shape(), target.shape()
    _check(len(shape) == 4 and shape[1] == 1, f"cross_entropy_loss: prediction must be (B, 1, T, V), got {shape}")
    _check(
        target.dtype() == ttnn.DataType.UINT32 and tshape == [shape[0], shape[2]],
        f"cross_entropy_loss: target must be UINT32 (B, T) = {[shape[0], shape[2]]}, got {target.dtype()} {tshape}",
    )
    _check(max(int(s.max()) for s in target._shards) < shape[3], "cross_entropy_loss: target id out of range")
    _check(
        prediction.dtype() == ttnn.DataType.BFLOAT16 and target._layout == ttnn.Layout.ROW_MAJOR,
        "CrossEntropyForward: Input must be BFLOAT16 TILE and Target UINT32 ROW_MAJOR",
    )
    if reduce not in (ReduceType.NONE, ReduceType.MEAN):
        raise RuntimeError("Unsupported cross entropy reduction type, only NONE and MEAN are supported.")
    if reduce == ReduceType.NONE:  # per position, (B, 1, T, 1)
        return _run(
            lambda p, t: F.cross_entropy(p[:, 0].transpose(1, 2), t, reduction="none")[:, None, :, None],
            prediction,
            target,
        )
    return _run(
        lambda p, t: F.cross_entropy(p[:, 0].flatten(0, 1), t.flatten()).reshape(1, 1, 1, 1), prediction, target
    )


def _mean(tensor: Tensor) -> Tensor:
    """ops/unary_ops.cpp mean: the mean of all elements, (1, 1, 1, 1)."""
    return _run(lambda x: x.mean().reshape(1, 1, 1, 1), _tensor(tensor, "mean"))


def _dropout(tensor: Tensor, probability: float, use_per_device_seed: bool = False) -> Tensor:
    _tensor(tensor, "dropout")
    if probability == 0.0:
        return tensor
    seed = _ctx().next_seed()
    shape = tuple(tensor.shape())
    masks = []
    for chip in range(len(tensor._shards)):
        generator = torch.Generator().manual_seed(seed + (chip if use_per_device_seed else 0))
        masks.append((torch.rand(shape, generator=generator) >= probability).float() / (1.0 - probability))
    chips = iter(range(len(masks)))
    return _run(lambda x: x * masks[next(chips)], tensor)


def _silu(tensor: Tensor, use_composite_bw: bool = False) -> Tensor:
    return _run(F.silu, _tensor(tensor, "silu"))


def _add(a: Tensor, b: Tensor) -> Tensor:
    _check(_tensor(a, "add").shape() == _tensor(b, "add").shape(), f"add: shapes {a.shape()} and {b.shape()}")
    return _run(torch.add, a, b)


def _mul(a: Tensor, b: Any) -> Tensor:
    if isinstance(b, float):
        return _run(lambda x: x * b, _tensor(a, "mul"))
    _check(_tensor(a, "mul").shape() == _tensor(b, "mul").shape(), f"mul: shapes {a.shape()} and {b.shape()}")
    return _run(torch.mul, a, b)


binary = types.SimpleNamespace(add=_add, mul=_mul)
unary = types.SimpleNamespace(silu=_silu, mean=_mean)
dropout = types.SimpleNamespace(dropout=_dropout)
embedding = types.SimpleNamespace(embedding=_embedding)
linear = types.SimpleNamespace(linear=_linear)
rmsnorm = types.SimpleNamespace(rmsnorm=_rmsnorm)
multi_head_utils = types.SimpleNamespace(heads_creation=_heads_creation, heads_fusion=_heads_fusion)
rope = types.SimpleNamespace(
    rope=_rope,
    build_rope_params=_build_rope_params,
    RopeScalingParams=RopeScalingParams,
    RotaryEmbeddingParams=RotaryEmbeddingParams,
)
attention = types.SimpleNamespace(scaled_dot_product_attention=_sdpa)
loss = types.SimpleNamespace(cross_entropy_loss=_cross_entropy_loss)
