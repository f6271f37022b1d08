"""NanoTrickster: a small decoder-only transformer, the whole definition in one file.

Pre-norm blocks (RMSNorm -> causal self-attention with rotary position embeddings -> residual,
RMSNorm -> SwiGLU MLP -> residual), a final RMSNorm, and an output projection tied to the token
embedding. No biases anywhere. Plain ``torch.nn``: Lightning is not imported here.

References: nanoGPT (karpathy/nanoGPT, model.py) for the layout, RoFormer (Su et al. 2021) for
RoPE, GLU Variants Improve Transformer (Shazeer 2020) for SwiGLU, Llama for the block recipe.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightning_trickster.errors import InvalidConfigError


@dataclass
class NanoTricksterConfig:
    """Shape of a NanoTrickster model."""

    vocab_size: int = 256
    """Number of token ids (256 for the byte tokenizer, corpus-dependent for the char tokenizer)."""
    hidden_dim: int = 256
    """Width of the residual stream."""
    num_layers: int = 6
    """Number of transformer blocks."""
    num_heads: int = 8
    """Attention heads; must divide hidden_dim into an even head size."""
    mlp_dim: int = 768
    """Hidden width of the SwiGLU MLP."""
    max_seq_len: int = 512
    """Longest context the model attends over (the training window)."""
    dropout: float = 0.0
    """Dropout on attention probabilities and on each residual branch while training."""
    tie_embeddings: bool = True
    """Share the token embedding with the output projection."""
    rope_theta: float = 10000.0
    """Base of the rotary position embedding frequencies."""
    norm_eps: float = 1e-6
    """Epsilon of every RMSNorm."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_dim", "num_layers", "num_heads", "mlp_dim", "max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidConfigError(f"{name} must be a positive integer, got {value!r}: set it to a value >= 1")
        if self.hidden_dim % self.num_heads:
            raise InvalidConfigError(
                f"hidden_dim={self.hidden_dim} is not divisible by num_heads={self.num_heads}: "
                f"choose hidden_dim as a multiple of num_heads (e.g. {self.num_heads * 32})"
            )
        if self.head_dim % 2:
            raise InvalidConfigError(
                f"head_dim = hidden_dim/num_heads = {self.head_dim} is odd, but RoPE rotates pairs of channels: "
                f"choose hidden_dim and num_heads so that hidden_dim/num_heads is even"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.rope_theta <= 0:
            raise InvalidConfigError(f"rope_theta must be positive, got {self.rope_theta}")
        if self.norm_eps <= 0:
            raise InvalidConfigError(f"norm_eps must be positive, got {self.norm_eps}")

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads


class RotaryEmbedding(nn.Module):
    """Rotates each adjacent channel pair (2i, 2i+1) of q/k by the angle position * theta^(-2i/head_dim)."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float) -> None:
        super().__init__()
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)  # (T, head_dim/2)
        # Derived from the config, so not saved in checkpoints.
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)
        # The same per channel: (c0, c0, c1, c1, ...) and (-s0, s0, -s1, s1, ...).
        self.register_buffer("channel_cos", self.cos.repeat_interleave(2, dim=-1), persistent=False)
        self.register_buffer("channel_sin", torch.stack((-self.sin, self.sin), dim=-1).flatten(-2), persistent=False)

    def forward(self, x: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """x: (B, H, T, head_dim), holding positions start_pos .. start_pos + T - 1. Pair (a, b) becomes
        (a cos - b sin, a sin + b cos), computed as x * channel_cos + (each pair swapped) * channel_sin: the same
        products and sums, bit for bit, in fewer and larger operations."""
        cos = self.channel_cos[start_pos : start_pos + x.size(-2)]
        sin = self.channel_sin[start_pos : start_pos + x.size(-2)]
        x32 = x.float()
        return (x32 * cos + x32.unflatten(-1, (-1, 2)).flip(-1).flatten(-2) * sin).type_as(x)


class Int8Matrix(NamedTuple):
    """A matrix in int8, weight-only: values (out, in) int8 and one bfloat16 scale per output column, symmetric
    (a value times its column's scale is the weight). Multiplied with torch._weight_int8pack_mm, bfloat16 rows in."""

    values: torch.Tensor
    scales: torch.Tensor


Matrix = torch.Tensor | Int8Matrix
"""A matrix generation multiplies by: (in, out) in the generation's dtype, or int8."""


class LayerWeights(NamedTuple):
    """One block's matrices as generation multiplies by them: transposed, (in, out), each RMSNorm's gain folded into
    the matrix that reads the normalized vector, the gate and up projections side by side."""

    qkv: Matrix
    """(hidden, 3 hidden): the attention input projection, times the attention norm's gain."""
    proj: Matrix
    gate_up: Matrix
    """(hidden, 2 mlp): the gate projection's columns then the up projection's, times the MLP norm's gain."""
    down: Matrix


@dataclass
class InferenceWeights:
    """The weights generation computes with, built from the parameters when a generation starts
    (NanoTrickster.inference_weights). The parameters, their names and the state_dict stay as they are (checkpoints,
    exports and the Tenstorrent plugin read those); this is a derived copy laid out for decoding:

    - each matrix transposed to (in, out), the layout in which a product with a few rows (decoded tokens) streams the
      weights contiguously (benchmarks/decode_products.py: as fast as nn.Linear's (out, in) at batch 1 when the
      weights come from memory, 1.2x at batch 8, 1.7x for one product whose weights are in cache);
    - each block's gate and up projections stacked into one matrix: one product instead of two;
    - each RMSNorm's gain folded into the matrix after it (a norm is then x / rms(x), one multiplication less);
    - the matrices in the generation's dtype: float32, bfloat16, or int8 (weight-only, with bfloat16 activations),
      while the residual stream, the norms and RoPE stay float32.
    """

    embedding: torch.Tensor
    """(vocab, hidden): the token embedding, as it is (its rows are read as float32)."""
    layers: list[LayerWeights]
    output: Matrix
    """(hidden, vocab): the output projection, times the final norm's gain."""
    cos: torch.Tensor
    """(max_seq_len, head_dim) float32: each pair's cosine twice, (c0, c0, c1, c1, ...)."""
    sin: torch.Tensor
    """(max_seq_len, head_dim) float32: each pair's sine, signed as its rotation uses it, (-s0, s0, -s1, s1, ...)."""
    eps: torch.Tensor
    """The norms' epsilon, as a 0-d float32 tensor."""
    dtype: torch.dtype
    """What the products take and give, and what the KV cache holds: float32 or bfloat16 (int8 matrices: bfloat16)."""


class KVCache:
    """Keys and values of every layer for a batch of sequences, preallocated for max_len positions and filled left
    to right, with the weights the generation computes with (built from the model on first use when not given)."""

    def __init__(self, num_layers: int, batch: int, heads: int, max_len: int, head_dim: int, like: torch.Tensor,
                 weights: InferenceWeights | None = None) -> None:  # fmt: skip
        shape = (batch, heads, max_len, head_dim)
        self.keys = [like.new_zeros(shape) for _ in range(num_layers)]
        self.values = [like.new_zeros(shape) for _ in range(num_layers)]
        self.weights = weights
        self.length = 0
        """Number of positions already cached."""
        self.position = torch.zeros(1, dtype=torch.long, device=like.device)
        """The next position as a tensor: what a compiled decode step reads, so its shapes never change."""
        self.span = max_len
        """Cache positions a compiled decode step attends over (a bucket: the filled part rounded up)."""

    @property
    def dtype(self) -> torch.dtype:
        return self.keys[0].dtype


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: NanoTricksterConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.hidden_dim, 3 * cfg.hidden_dim, bias=False)
        self.proj = nn.Linear(cfg.hidden_dim, cfg.hidden_dim, bias=False)

    def forward(self, x: torch.Tensor, rope: RotaryEmbedding) -> torch.Tensor:
        batch, seq_len, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=2)
        q, k, v = (t.view(batch, seq_len, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        q, k = rope(q), rope(k)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=seq_len > 1
        )
        return self.proj(y.transpose(1, 2).reshape(batch, seq_len, hidden))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: NanoTricksterConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.hidden_dim, cfg.mlp_dim, bias=False)
        self.up = nn.Linear(cfg.hidden_dim, cfg.mlp_dim, bias=False)
        self.down = nn.Linear(cfg.mlp_dim, cfg.hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: NanoTricksterConfig) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.hidden_dim, eps=cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.hidden_dim, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg)
        self.residual_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: RotaryEmbedding) -> torch.Tensor:
        x = x + self.residual_dropout(self.attn(self.attn_norm(x), rope))
        return x + self.residual_dropout(self.mlp(self.mlp_norm(x)))


class NanoTrickster(nn.Module):
    def __init__(self, cfg: NanoTricksterConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.final_norm = nn.RMSNorm(cfg.hidden_dim, eps=cfg.norm_eps)
        self.output = nn.Linear(cfg.hidden_dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.output.weight = self.embedding.weight
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by 1/sqrt(2 * layers).
        for block in self.blocks:
            for residual_proj in (block.attn.proj, block.mlp.down):
                nn.init.normal_(residual_proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * cfg.num_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: (B, T) token ids. Returns logits (B, T, vocab) and, given targets, the mean cross-entropy
        over positions whose target is not -100. With a cache, idx holds the positions after those cached: they are
        computed with the cache's weights (see inference_weights) and their keys and values are cached."""
        seq_len = idx.size(1)
        start_pos = cache.length if cache is not None else 0
        if start_pos + seq_len > self.config.max_seq_len:
            raise InvalidConfigError(
                f"sequence of {start_pos + seq_len} tokens exceeds max_seq_len={self.config.max_seq_len}: "
                "use shorter windows or a model with a larger max_seq_len"
            )
        if cache is None:
            x = self.embedding(idx)
            for block in self.blocks:
                x = block(x, self.rope)
            logits = self.output(self.final_norm(x))
        else:
            if cache.weights is None:
                cache.weights = self.inference_weights(cache.dtype)
            elif cache.weights.dtype != cache.dtype:
                raise InvalidConfigError(f"a {cache.dtype} KV cache with {cache.weights.dtype} weights: use one dtype")
            if self._decode_buckets and start_pos > 0 and seq_len == 1:
                cache.position.fill_(start_pos)
                cache.span = decode_bucket(start_pos + 1, self._decode_buckets, self.config.max_seq_len)
                # Fresh strides: a column sliced out of the growing token history has a new row stride every step.
                logits = self.decode_step(idx.clone(memory_format=torch.contiguous_format), cache)
            else:
                logits = self.cached_forward(idx, cache)
            cache.length += seq_len
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def inference_weights(self, dtype: torch.dtype | str | None = None) -> InferenceWeights:
        """The weights generation computes with (see InferenceWeights), copied from the parameters as they are now.
        dtype: the matrices' (None: the parameters' own), or "int8" for int8 weight-only matrices."""
        dtype = dtype or self.embedding.weight.dtype
        activations = torch.bfloat16 if dtype == "int8" else dtype

        def decode_layout(matrix: torch.Tensor, gain: torch.Tensor | None = None) -> Matrix:
            matrix = matrix.detach().float()
            if gain is not None:
                matrix = matrix * gain.detach().float()
            if dtype == "int8":  # (out, in), as _weight_int8pack_mm takes it, one scale per output
                scales = matrix.abs().amax(dim=1).clamp(min=1e-12) / 127
                values = torch.round(matrix / scales[:, None]).to(torch.int8).contiguous()
                return Int8Matrix(values, scales.to(activations))
            return matrix.t().to(dtype).contiguous()

        layers = [
            LayerWeights(
                decode_layout(block.attn.qkv.weight, block.attn_norm.weight),
                decode_layout(block.attn.proj.weight),
                decode_layout(torch.cat([block.mlp.gate.weight, block.mlp.up.weight]), block.mlp_norm.weight),
                decode_layout(block.mlp.down.weight),
            )
            for block in self.blocks
        ]
        cos, sin = self.rope.channel_cos, self.rope.channel_sin
        eps = torch.tensor(self.config.norm_eps, device=cos.device)
        output = decode_layout(self.output.weight, self.final_norm.weight)
        return InferenceWeights(self.embedding.weight.detach(), layers, output, cos, sin, eps, activations)

    def cached_forward(self, idx: torch.Tensor, cache: KVCache, position: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) of the positions after those cached, computed with the cache's weights; stores their
        keys and values. Attention reads only the filled part of the cache.

        position None: idx starts at cache.length (any T; the shapes follow the length). A tensor (shape (1,), with
        T = 1): the static decode step of compile_decoding(). The token at `position` attends over the first
        cache.span positions (a bucket), later ones masked, so its shapes depend on the bucket only."""
        weights, cfg = cache.weights, self.config
        batch, seq_len = idx.shape
        rows, heads, head_dim, hidden = batch * seq_len, cfg.num_heads, cfg.head_dim, cfg.hidden_dim
        dtype = weights.dtype
        narrow = dtype != torch.float32
        if position is None:
            start = cache.length
            end = start + seq_len
            cos, sin = weights.cos[start:end], weights.sin[start:end]
            if start == 0 or seq_len == 1:  # a pre-fill is causal; one new token sees everything cached
                mask, causal = None, start == 0 and seq_len > 1
            else:  # a later chunk: everything cached, and causal within itself
                positions = torch.arange(end, device=idx.device)
                mask, causal = positions <= positions[start:, None], False
        else:
            end = cache.span
            cos, sin = weights.cos[position], weights.sin[position]
            mask, causal = (torch.arange(end, device=idx.device) <= position).unsqueeze(0), False
        cos, sin = cos[:, None], sin[:, None]  # (T, 1, head_dim): broadcast over the batch and the heads

        def normalized(x: torch.Tensor) -> torch.Tensor:
            """x / rms(x) in float32 (the gain is in the next matrix), as the products take it."""
            norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
            x = x * torch.rsqrt(torch.addcmul(weights.eps, norm, norm, value=1 / hidden))
            return x.to(dtype) if narrow else x

        def product(x: torch.Tensor, matrix: Matrix) -> torch.Tensor:
            if isinstance(matrix, Int8Matrix):
                return torch._weight_int8pack_mm(x, matrix.values, matrix.scales)
            return torch.mm(x, matrix)

        # narrow() and copy_() rather than indexing: a decoded token makes about 40 small operations per block, and
        # Python's slice indexing costs several times a narrow.
        x = weights.embedding[idx.reshape(rows)].float()  # (B T, hidden) float32: the residual stream
        for layer, w in enumerate(weights.layers):
            qkv = product(normalized(x), w.qkv)  # (B T, 3 hidden)
            # RoPE on q and k at once, in float32: x * cos + (each pair swapped) * signed sin.
            qk = qkv.narrow(1, 0, 2 * hidden).view(batch, seq_len, 2 * heads, head_dim)
            qk = qk.float() if narrow else qk
            swapped = qk.view(batch, seq_len, 2 * heads, head_dim // 2, 2).flip(-1)
            qk = qk * cos + swapped.view(batch, seq_len, 2 * heads, head_dim) * sin
            qk = qk.to(dtype) if narrow else qk
            q = qk.narrow(2, 0, heads).transpose(1, 2)  # (B, heads, T, head_dim)
            k = qk.narrow(2, heads, heads).transpose(1, 2)
            v = qkv.narrow(1, 2 * hidden, hidden).view(batch, seq_len, heads, head_dim).transpose(1, 2)
            keys, values = cache.keys[layer], cache.values[layer]
            if position is None:
                keys.narrow(2, start, seq_len).copy_(k)
                values.narrow(2, start, seq_len).copy_(v)
            else:
                keys.index_copy_(2, position, k)
                values.index_copy_(2, position, v)
            keys, values = keys.narrow(2, 0, end), values.narrow(2, 0, end)  # the filled part (compiled: its bucket)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal)
            x = x + product(y.transpose(1, 2).reshape(rows, hidden), w.proj)
            gate, up = product(normalized(x), w.gate_up).chunk(2, dim=-1)
            x = x + product(F.silu(gate) * up, w.down)
        logits = product(normalized(x), weights.output)
        return (logits.float() if narrow else logits).view(batch, seq_len, -1)

    def decode_step(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (B, 1, vocab) of one new token (B, 1) at cache.position, attending over the cache's first
        cache.span positions; stores its keys and values. Its shapes depend only on the batch and the span:
        compile_decoding() compiles it once per span bucket."""
        return self.cached_forward(token, cache, position=cache.position)

    _decode_buckets = 0
    """0: decode eagerly, attending over exactly the filled part. Else the smallest span bucket of the compiled
    decode step (the spans are this times a power of two, up to max_seq_len)."""

    def compile_decoding(self, smallest_bucket: int = 64) -> None:
        """torch.compile the decode step (gpt-fast's static-shape decoding): per-token Python and dispatch overhead
        goes. A token attends over the filled part of the cache rounded up to a bucket (smallest_bucket times a
        power of two, at most max_seq_len), so it compiles a handful of graphs per batch size (4 for a 512-token
        context) instead of one per position, and reads little more of the cache than it needs. Traced on first
        use; needs what torch.compile needs (a C++ compiler on CPU)."""
        if smallest_bucket < 1:
            raise InvalidConfigError(f"smallest_bucket must be >= 1, got {smallest_bucket}")
        self._decode_buckets = smallest_bucket
        buckets = 1 + max(0, math.ceil(math.log2(self.config.max_seq_len / smallest_bucket)))
        # One graph per bucket and batch size: leave room for several batch sizes before dynamo gives up.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 4 * buckets)
        self.decode_step = torch.compile(self.decode_step, fullgraph=True, dynamic=False)

    def parameter_breakdown(self) -> dict[str, int]:
        """Exact parameter counts; a tied output projection is counted once, in the embedding."""
        block = self.blocks[0]
        per_block = sum(p.numel() for p in block.parameters())
        counts = {
            "embedding": self.embedding.weight.numel(),
            "output": 0 if self.config.tie_embeddings else self.output.weight.numel(),
            "per_block": per_block,
            "attention_per_block": sum(p.numel() for p in block.attn.parameters()),
            "mlp_per_block": sum(p.numel() for p in block.mlp.parameters()),
            "norms_per_block": block.attn_norm.weight.numel() + block.mlp_norm.weight.numel(),
            "blocks": per_block * len(self.blocks),
            "final_norm": self.final_norm.weight.numel(),
        }
        counts["total"] = counts["embedding"] + counts["output"] + counts["blocks"] + counts["final_norm"]
        return counts

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        sampling: SamplingSettings,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Continue each row of idx (B, T) by sampling.max_new_tokens tokens; returns (B, T + max_new_tokens).
        See stream() for the caching."""
        return torch.cat([idx, *self.stream(idx, sampling, generator, use_cache)], dim=1)

    @torch.no_grad()
    def stream(
        self,
        idx: torch.Tensor,
        sampling: SamplingSettings,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> Iterator[torch.Tensor]:
        """Yield the next token of every row of idx (B, T), as (B, 1), sampling.max_new_tokens times.

        With the cache the prompt is pre-filled once and each step decodes one token, with the weights of
        inference_weights(sampling.dtype) and a cache of that dtype. When the context reaches max_seq_len the window
        slides: the cache is re-filled from the newest max_seq_len // 2 tokens. Without the cache every step
        recomputes the newest max_seq_len tokens from scratch with the parameters as they are (the reference the
        cached path is tested against).
        """
        max_len = self.config.max_seq_len
        cache = weights = None
        # Each step computes under inference_mode (about 10% less per-operation overhead than no_grad on a CPU), never
        # across a yield, so the caller's code runs in its own mode; what is yielded is an ordinary tensor (a clone).
        if use_cache and sampling.max_new_tokens:
            with torch.inference_mode():
                weights = self.inference_weights(generation_dtype(sampling.dtype, self.embedding.weight.device))
        # self.forward, not self(...): it stays eager when the module was compiled for training, where every new
        # context length would otherwise trigger a recompile until torch gives up on the graph.
        for _ in range(sampling.max_new_tokens):
            with torch.inference_mode():
                if not use_cache:
                    logits, _ = self.forward(idx[:, -max_len:])
                elif cache is None or cache.length == max_len:
                    keep = idx[:, -max_len:] if cache is None else idx[:, -max(1, max_len // 2) :]
                    cfg = self.config
                    cache = KVCache(cfg.num_layers, idx.size(0), cfg.num_heads, max_len, cfg.head_dim,
                                    weights.cos.to(weights.dtype), weights)  # fmt: skip
                    logits, _ = self.forward(keep, cache=cache)
                else:
                    logits, _ = self.forward(idx[:, -1:], cache=cache)
                next_token = sample_next_token(
                    logits[:, -1, :], sampling.temperature, sampling.top_k, sampling.top_p, generator
                )
                idx = torch.cat((idx, next_token), dim=1)
            yield next_token.clone()


GenerationDtype = Literal["float32", "bfloat16", "int8"]
GENERATION_DTYPES: dict[str, torch.dtype | str] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": "int8"}
"""What inference_weights takes for each sampling.dtype."""


def bfloat16_is_native(device: torch.device) -> bool:
    """Whether the device computes bfloat16 in hardware: CUDA, or a CPU with AVX512-BF16 or AMX. Elsewhere torch
    emulates it, more slowly than float32."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


_said: set[tuple[str, str]] = set()


def generation_dtype(name: str, device: torch.device) -> torch.dtype | str:
    """What a generation computes in (see GENERATION_DTYPES): sampling.dtype where the device supports it, else the
    nearest that it does, said once: int8 needs a CPU with native bfloat16 (its activations), else bfloat16 where
    native, else float32."""
    wanted = name
    if name == "int8" and not (device.type == "cpu" and bfloat16_is_native(device)):
        name = "bfloat16"
    if name == "bfloat16" and not bfloat16_is_native(device):
        name = "float32"
    if name != wanted and (wanted, device.type) not in _said:
        _said.add((wanted, device.type))
        why = "needs a CPU with native bfloat16 (AVX512-BF16 or AMX)" if wanted == "int8" else "is not native here"
        warnings.warn(f"sampling.dtype {wanted} {why}: this {device.type} generates in {name}", stacklevel=3)
    return GENERATION_DTYPES[name]


def decode_bucket(filled: int, smallest: int, max_len: int) -> int:
    """The span a compiled decode step attends over when `filled` positions are in use: the smallest
    `smallest * 2**k` that holds them, at most max_len."""
    span = smallest
    while span < filled:
        span *= 2
    return min(span, max_len)


GREEDY_BELOW = 1e-4
"""A temperature this low is greedy: logits / 1e-4 stay finite in float32, smaller ones need not."""


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token id per row of logits (B, vocab); returns (B, 1). Temperatures below GREEDY_BELOW pick the most
    likely token: dividing by them would overflow float32 into inf and NaN probabilities."""
    if temperature < GREEDY_BELOW:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth_largest = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass.
        drop_sorted = cumulative - sorted_logits.softmax(dim=-1) >= top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@dataclass(frozen=True)
class SamplingSettings:
    """How generation picks each next token; stored with a trained model as its defaults."""

    max_new_tokens: int = 200
    """Tokens generated per prompt."""
    temperature: float = 0.8
    """Sampling temperature; 0 picks the most likely token (greedy)."""
    top_k: int | None = None
    """Sample only among the k most likely tokens (None: all)."""
    top_p: float | None = None
    """Sample from the smallest set of tokens holding probability top_p (None: all)."""
    dtype: GenerationDtype = "float32"
    """What generation computes in: float32 (the parameters' own; exact), bfloat16 (weights and KV cache: half the
    bytes), or int8 (weight-only int8 matrices, bfloat16 activations and KV cache: a CPU with native bfloat16).
    bfloat16 and int8 are lossy: greedy text can differ from float32's where two tokens are nearly tied
    (docs/performance.md measures speed and quality). A device without them falls back, saying so once."""

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 0:
            raise InvalidConfigError(f"sampling.max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise InvalidConfigError(
                f"sampling.temperature must be a finite number >= 0 (0 means greedy), got {self.temperature}"
            )
        if self.top_k is not None and self.top_k < 1:
            raise InvalidConfigError(
                f"sampling.top_k must be between 1 and the vocabulary size (or null for all), got {self.top_k}"
            )
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InvalidConfigError(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.dtype not in GENERATION_DTYPES:
            raise InvalidConfigError(
                f"sampling.dtype must be one of {', '.join(GENERATION_DTYPES)}, got {self.dtype!r}"
            )

    def check(self, vocab_size: int) -> None:
        """The one check that needs the vocabulary: top_k cannot exceed it."""
        if self.top_k is not None and self.top_k > vocab_size:
            raise InvalidConfigError(
                f"sampling.top_k must be between 1 and the vocabulary size {vocab_size}, got {self.top_k}"
            )


def pick_fields(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of values that are fields of the dataclass cls (e.g. a model shape out of hyper-parameters)."""
    return {f.name: values[f.name] for f in fields(cls) if f.name in values}
