"""NanoTrickster: a small decoder-only transformer, the whole definition in one file.

Pre-norm blocks (RMSNorm -> causal self-attention with rotary position embeddings -> residual,
RMSNorm -> SwiGLU MLP -> residual), a final RMSNorm, and an output projection tied to the token
embedding. No biases anywhere. Plain ``torch.nn``: Lightning is not imported here.

References: nanoGPT (karpathy/nanoGPT, model.py) for the layout, RoFormer (Su et al. 2021) for
RoPE, GLU Variants Improve Transformer (Shazeer 2020) for SwiGLU, Llama for the block recipe.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

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

    def forward(self, x: torch.Tensor, start_pos: int | torch.Tensor = 0) -> torch.Tensor:
        """x: (B, H, T, head_dim), holding positions start_pos .. start_pos + T - 1. A tensor start_pos (shape (1,),
        with T = 1) indexes the tables instead of slicing them, so the shapes do not depend on its value."""
        if isinstance(start_pos, torch.Tensor):
            cos, sin = self.cos[start_pos], self.sin[start_pos]  # (1, head_dim/2)
        else:
            cos = self.cos[start_pos : start_pos + x.size(-2)]
            sin = self.sin[start_pos : start_pos + x.size(-2)]
        pairs = x.float().unflatten(-1, (-1, 2))  # (B, H, T, head_dim/2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return rotated.flatten(-2).type_as(x)


class KVCache:
    """Keys and values of every layer for a batch of sequences, preallocated for max_len positions and filled left
    to right."""

    def __init__(self, num_layers: int, batch: int, heads: int, max_len: int, head_dim: int, like: torch.Tensor):
        shape = (batch, heads, max_len, head_dim)
        self.keys = [like.new_zeros(shape) for _ in range(num_layers)]
        self.values = [like.new_zeros(shape) for _ in range(num_layers)]
        self.length = 0
        """Number of positions already cached."""
        self.position = torch.zeros(1, dtype=torch.long, device=like.device)
        """The next position as a tensor: what a decode step reads, so its shapes never change."""

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k/v at the next positions and return everything cached so far for this layer."""
        end = self.length + k.size(2)
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one position's k/v (B, H, 1, head_dim) at self.position; return the whole buffers of this layer."""
        self.keys[layer].index_copy_(2, self.position, k)
        self.values[layer].index_copy_(2, self.position, v)
        return self.keys[layer], self.values[layer]

    def visible(self) -> torch.Tensor:
        """(1, max_len) bool: the buffer positions a token at self.position attends to (itself and those before)."""
        return (torch.arange(self.keys[0].size(2), device=self.position.device) <= self.position).unsqueeze(0)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: NanoTricksterConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.hidden_dim, 3 * cfg.hidden_dim, bias=False)
        self.proj = nn.Linear(cfg.hidden_dim, cfg.hidden_dim, bias=False)

    def forward(
        self, x: torch.Tensor, rope: RotaryEmbedding, cache: KVCache | None = None, layer: int = 0,
        decode: bool = False,
    ) -> torch.Tensor:  # fmt: skip
        batch, seq_len, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=2)
        q, k, v = (t.view(batch, seq_len, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        if cache is not None and decode:
            # One new token against the whole preallocated cache, later positions masked: the same shapes at every
            # position, so a compiled decode step is traced once.
            q, k = rope(q, cache.position), rope(k, cache.position)
            k, v = cache.write(layer, k, v)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=cache.visible())
        else:
            start_pos = cache.length if cache is not None else 0
            q, k = rope(q, start_pos), rope(k, start_pos)
            if cache is not None:
                k, v = cache.update(layer, k, v)
            # A prompt pre-fill (start_pos 0) needs the causal mask; a later chunk attends to all cached keys.
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=start_pos == 0 and seq_len > 1
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

    def forward(
        self, x: torch.Tensor, rope: RotaryEmbedding, cache: KVCache | None = None, layer: int = 0,
        decode: bool = False,
    ) -> torch.Tensor:  # fmt: skip
        x = x + self.residual_dropout(self.attn(self.attn_norm(x), rope, cache, layer, decode))
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
        over positions whose target is not -100."""
        seq_len = idx.size(1)
        start_pos = cache.length if cache is not None else 0
        if start_pos + seq_len > self.config.max_seq_len:
            raise InvalidConfigError(
                f"sequence of {start_pos + seq_len} tokens exceeds max_seq_len={self.config.max_seq_len}: "
                "use shorter windows or a model with a larger max_seq_len"
            )
        if cache is not None and start_pos > 0 and seq_len == 1:
            cache.position.fill_(start_pos)
            # Fresh strides: a column sliced out of the growing token history has a new row stride every step.
            logits = self.decode_step(idx.clone(memory_format=torch.contiguous_format), cache)
        else:
            x = self.embedding(idx)
            for layer, block in enumerate(self.blocks):
                x = block(x, self.rope, cache, layer)
            logits = self.output(self.final_norm(x))
        if cache is not None:
            cache.length += seq_len
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    def decode_step(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (B, 1, vocab) of one new token (B, 1) at cache.position; stores its keys and values in the cache.
        Every shape is the same at every position: compile_decoding() compiles it once."""
        x = self.embedding(token)
        for layer, block in enumerate(self.blocks):
            x = block(x, self.rope, cache, layer, decode=True)
        return self.output(self.final_norm(x))

    def compile_decoding(self) -> None:
        """torch.compile the decode step (gpt-fast's static-shape decoding): per-token Python and dispatch overhead
        goes, which is most of a small model's decode time. Traced on the first decoded token, once per batch size;
        needs what torch.compile needs (a C++ compiler on CPU)."""
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

        With the cache the prompt is pre-filled once and each step decodes one token. When the context
        reaches max_seq_len the window slides: the cache is re-filled from the newest max_seq_len // 2
        tokens. Without the cache every step recomputes the newest max_seq_len tokens from scratch.
        """
        max_len = self.config.max_seq_len
        cache = None
        # self.forward, not self(...): it stays eager when the module was compiled for training, where every new
        # context length would otherwise trigger a recompile until torch gives up on the graph.
        for _ in range(sampling.max_new_tokens):
            if not use_cache:
                logits, _ = self.forward(idx[:, -max_len:])
            elif cache is None or cache.length == max_len:
                keep = idx[:, -max_len:] if cache is None else idx[:, -max(1, max_len // 2) :]
                cache = KVCache(
                    len(self.blocks),
                    idx.size(0),
                    self.config.num_heads,
                    max_len,
                    self.config.head_dim,
                    self.embedding.weight,
                )
                logits, _ = self.forward(keep, cache=cache)
            else:
                logits, _ = self.forward(idx[:, -1:], cache=cache)
            next_token = sample_next_token(
                logits[:, -1, :], sampling.temperature, sampling.top_k, sampling.top_p, generator
            )
            idx = torch.cat((idx, next_token), dim=1)
            yield next_token


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

    def check(self, vocab_size: int) -> None:
        """The one check that needs the vocabulary: top_k cannot exceed it."""
        if self.top_k is not None and self.top_k > vocab_size:
            raise InvalidConfigError(
                f"sampling.top_k must be between 1 and the vocabulary size {vocab_size}, got {self.top_k}"
            )


def pick_fields(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of values that are fields of the dataclass cls (e.g. a model shape out of hyper-parameters)."""
    return {f.name: values[f.name] for f in fields(cls) if f.name in values}
