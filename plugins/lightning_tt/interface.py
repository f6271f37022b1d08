"""The model interface the TT strategies need, read from the model they are given and checked before anything
touches a chip. No torch import: the model is inspected by duck typing.

The parameter map (names and shapes) comes from the model's own `state_dict()`; nothing here restates a model's
shapes. What this module fixes is the *naming convention* the ttml twin computes with (lightning_tt.twin): every
state_dict entry must be one of the roles below, and the shapes must be consistent with each other, in terms of
V (vocabulary: rows of embedding.weight), E (width: its columns) and M (MLP width: rows of blocks.0.mlp.gate.weight):

    embedding.weight                    [V, E]   token embedding (also the output projection when tied)
    blocks.<i>.attn_norm.weight         [E]      RMSNorm gain before attention
    blocks.<i>.attn.qkv.weight          [3E, E]  fused Q|K|V projection (rows: Q, then K, then V)
    blocks.<i>.attn.proj.weight         [E, E]   attention output projection
    blocks.<i>.mlp_norm.weight          [E]      RMSNorm gain before the MLP
    blocks.<i>.mlp.gate.weight          [M, E]   SwiGLU: down(silu(gate x) * up x)
    blocks.<i>.mlp.up.weight            [M, E]
    blocks.<i>.mlp.down.weight          [E, M]
    final_norm.weight                   [E]      RMSNorm gain after the last block
    output.weight                       [V, E]   output projection; when it is the embedding's tensor (tied, the
                                                 same storage in the state_dict), it is mapped once

with blocks numbered 0..L-1 (L: the number of layers). The computation is a pre-norm RMSNorm transformer with RoPE
on adjacent channel pairs, causal attention and a SwiGLU MLP (lightning_tt.twin.NanoTricksterTT).

What the weights cannot tell, `model.config` must: `num_heads`, `max_seq_len`, `dropout`, `rope_theta`,
`norm_eps` (CONFIG_FIELDS). Where the config also states `vocab_size`, `hidden_dim`, `mlp_dim`, `num_layers` or
`tie_embeddings`, it must agree with the state_dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lightning_tt.errors import TTConfigError

CONFIG_FIELDS = ("num_heads", "max_seq_len", "dropout", "rope_theta", "norm_eps")
"""Hyper-parameters the twin needs that the weights do not carry: read from `model.config`."""

BLOCK_ROLES = {
    "attn_norm.weight": ("E",),
    "attn.qkv.weight": ("3E", "E"),
    "attn.proj.weight": ("E", "E"),
    "mlp_norm.weight": ("E",),
    "mlp.gate.weight": ("M", "E"),
    "mlp.up.weight": ("M", "E"),
    "mlp.down.weight": ("E", "M"),
}
"""Per-block roles (the name after "blocks.<i>.") and their shapes in terms of V, E, M."""

TOP_ROLES = {"embedding.weight": ("V", "E"), "final_norm.weight": ("E",), "output.weight": ("V", "E")}
"""Roles outside the blocks; output.weight is absent or tied when the embedding doubles as output projection."""

_BLOCK_NAME = re.compile(r"blocks\.(\d+)\.(.+)")


@dataclass(frozen=True)
class ModelSpec:
    """What the twin computes with: sizes read from the state_dict, hyper-parameters from model.config."""

    vocab_size: int
    hidden_dim: int
    mlp_dim: int
    num_layers: int
    tie_embeddings: bool
    num_heads: int
    max_seq_len: int
    dropout: float
    rope_theta: float
    norm_eps: float
    parameter_shapes: dict[str, tuple[int, ...]]
    """The model's parameter map: state_dict name -> shape, the tied output weight left out (it is the embedding)."""

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads


def _block_role(name: str) -> str | None:
    match = _BLOCK_NAME.fullmatch(name)
    return match[2] if match else None


def _fail(owner: str, what: str) -> TTConfigError:
    return TTConfigError(
        f"accelerator 'tt' cannot map {owner}.model onto ttml: {what} (lightning_tt.interface documents the "
        "parameter names and shapes the ttml twin computes with); use accelerator cpu/gpu for this model"
    )


def _same_storage(a: Any, b: Any) -> bool:
    pointer = getattr(a, "data_ptr", None)
    return a is b or (pointer is not None and pointer() == b.data_ptr())


def read_spec(network: Any, owner: str = "module") -> ModelSpec:
    """The ModelSpec of a torch module: the parameter map from its state_dict, checked against the roles above."""
    state = network.state_dict()
    shapes = {name: tuple(value.shape) for name, value in state.items()}
    unknown = [n for n in shapes if n not in TOP_ROLES and _block_role(n) not in BLOCK_ROLES]
    if unknown:
        raise _fail(owner, f"state_dict entries unknown to the ttml twin: {', '.join(unknown[:4])}")
    if "embedding.weight" not in shapes or len(shapes["embedding.weight"]) != 2:
        raise _fail(owner, "its state_dict has no 2-D embedding.weight [vocab, width]")
    vocab, width = shapes["embedding.weight"]
    layers = 1 + max((int(_BLOCK_NAME.fullmatch(n)[1]) for n in shapes if _BLOCK_NAME.fullmatch(n)), default=-1)
    gate = shapes.get("blocks.0.mlp.gate.weight")
    mlp = gate[0] if gate and len(gate) == 2 else 0
    sizes = {"V": vocab, "E": width, "M": mlp, "3E": 3 * width}
    want = {name: tuple(sizes[s] for s in dims) for name, dims in TOP_ROLES.items()}
    want.pop("output.weight")
    for i in range(layers):
        want |= {f"blocks.{i}.{role}": tuple(sizes[s] for s in dims) for role, dims in BLOCK_ROLES.items()}
    tied = "output.weight" not in state or _same_storage(state["output.weight"], state["embedding.weight"])
    if "output.weight" in state and not tied:
        want["output.weight"] = (vocab, width)
    have = {n: s for n, s in shapes.items() if not (n == "output.weight" and tied)}
    absent = [n for n in want if n not in have]
    wrong = [f"{n} {have[n]} (expected {want[n]})" for n in want if n in have and have[n] != want[n]]
    if absent or wrong or layers == 0:
        parts = [
            f"missing {', '.join(absent[:4])}" if absent else "",
            f"shaped {', '.join(wrong[:2])}" if wrong else "",
        ]
        raise _fail(owner, "parameters " + "; ".join(p for p in parts if p) if absent or wrong else "no blocks")
    config = getattr(network, "config", None)
    missing = [name for name in CONFIG_FIELDS if not hasattr(config, name)]
    if missing:
        raise _fail(owner, f"its .config lacks {', '.join(missing)}, which the weights do not carry")
    read = {"vocab_size": vocab, "hidden_dim": width, "mlp_dim": mlp, "num_layers": layers, "tie_embeddings": tied}
    contradicted = [
        f"{name}={getattr(config, name)} (the state_dict says {value})"
        for name, value in read.items()
        if hasattr(config, name) and getattr(config, name) != value
    ]
    if contradicted:
        raise _fail(owner, f"its .config contradicts its weights: {', '.join(contradicted)}")
    heads = config.num_heads
    if not isinstance(heads, int) or heads < 1 or width % heads:
        raise _fail(owner, f"num_heads={heads!r} does not divide the width {width}")
    return ModelSpec(
        **read,
        num_heads=heads,
        max_seq_len=int(config.max_seq_len),
        dropout=float(config.dropout),
        rope_theta=float(config.rope_theta),
        norm_eps=float(config.norm_eps),
        parameter_shapes=have,
    )


def check_network(module: Any) -> tuple[Any, ModelSpec]:
    """The LightningModule's `.model` and its ModelSpec, or a one-line TTConfigError naming what is missing."""
    owner = type(module).__name__
    network = getattr(module, "model", None)
    if network is None or not callable(getattr(network, "state_dict", None)):
        raise TTConfigError(
            f"accelerator 'tt' trains a LightningModule whose .model is a torch module; {owner}.model is "
            f"{type(network).__name__}: give {owner} a .model (see lightning_tt.interface) or use accelerator cpu/gpu"
        )
    return network, read_spec(network, owner)
