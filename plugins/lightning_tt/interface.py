"""The model interface the TT strategies need, checked before anything touches a chip (see lightning_tt's
docstring). No torch import: the model is inspected by duck typing."""

from __future__ import annotations

from typing import Any

from lightning_tt.errors import TTConfigError

CONFIG_FIELDS = (
    "vocab_size", "hidden_dim", "num_layers", "num_heads", "head_dim", "mlp_dim", "max_seq_len",
    "dropout", "tie_embeddings", "rope_theta", "norm_eps",
)  # fmt: skip
"""What lightning_tt.twin.NanoTricksterTT and the strategy read from `model.config`."""


def expected_parameter_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape the twin maps onto ttml tensors (torch's names and [out, in] layout)."""
    e, m, v = config.hidden_dim, config.mlp_dim, config.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (v, e), "final_norm.weight": (e,)}
    for i in range(config.num_layers):
        p = f"blocks.{i}."
        shapes |= {
            p + "attn_norm.weight": (e,),
            p + "attn.qkv.weight": (3 * e, e),
            p + "attn.proj.weight": (e, e),
            p + "mlp_norm.weight": (e,),
            p + "mlp.gate.weight": (m, e),
            p + "mlp.up.weight": (m, e),
            p + "mlp.down.weight": (e, m),
        }
    if not config.tie_embeddings:
        shapes["output.weight"] = (v, e)
    return shapes


def check_network(module: Any) -> Any:
    """The LightningModule's `.model` if it offers the interface, else a one-line TTConfigError naming what is
    missing."""
    owner = type(module).__name__
    network = getattr(module, "model", None)
    if network is None or not callable(getattr(network, "named_parameters", None)):
        raise TTConfigError(
            f"accelerator 'tt' trains a LightningModule whose .model is a torch module; {owner}.model is "
            f"{type(network).__name__}: give {owner} a .model (see lightning_tt's docstring) or use accelerator cpu/gpu"
        )
    config = getattr(network, "config", None)
    missing = [name for name in CONFIG_FIELDS if not hasattr(config, name)]
    if missing:
        raise TTConfigError(
            f"accelerator 'tt' cannot map {owner}.model onto ttml: its .config lacks {', '.join(missing)} (see "
            "lightning_tt's docstring for the interface); use accelerator cpu/gpu for this model"
        )
    have = {name: tuple(p.shape) for name, p in network.named_parameters()}
    want = expected_parameter_shapes(config)
    absent = [name for name in want if name not in have]
    wrong = [f"{n} {have[n]} (expected {want[n]})" for n in want if n in have and have[n] != want[n]]
    extra = [name for name in have if name not in want]
    if absent or wrong or extra:
        parts = [
            f"missing {', '.join(absent[:4])}" if absent else "",
            f"shaped {', '.join(wrong[:2])}" if wrong else "",
        ]
        parts.append(f"unknown to the ttml twin: {', '.join(extra[:4])}" if extra else "")
        raise TTConfigError(
            f"accelerator 'tt' cannot map {owner}.model onto ttml: parameters {'; '.join(p for p in parts if p)} "
            "(see lightning_tt's docstring for the expected names); use accelerator cpu/gpu for this model"
        )
    return network
