"""`fit --init_from PATH`: a new run that starts from another model's weights, with a fresh optimizer, schedule and
step count. The source is a checkpoint written by fit or a directory written by export; its model shape and
tokenizer are the new run's."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lightning_trickster.checkpoint import DATAMODULE_KEY, SHAPE_FIELDS, read_checkpoint
from lightning_trickster.errors import InvalidConfigError, TricksterError
from lightning_trickster.tokenizer import Tokenizer, tokenizer_from_state_dict

WEIGHT_SHAPE_FIELDS = ("hidden_dim", "num_layers", "num_heads", "mlp_dim", "tie_embeddings")
"""The shape fields the weights themselves fix (the vocabulary follows from the tokenizer). The others (context
length, dropout, RoPE base, norm epsilon) may differ in the new run."""


@dataclass
class InitialWeights:
    weights: dict[str, torch.Tensor]
    """NanoTrickster's state_dict (no "model." prefix)."""
    shape: dict[str, Any]
    tokenizer: Tokenizer
    description: str


def read_initial_weights(path: str) -> InitialWeights:
    source = Path(path)
    if source.is_dir():
        from lightning_trickster.export import load_exported  # the export module imports checkpoint, not this one

        model, tokenizer, _ = load_exported(source)
        return InitialWeights(model.state_dict(), asdict(model.config), tokenizer, f"the export {source}")
    if not source.exists():
        raise TricksterError(
            f"--init_from {path} not found: pass a .ckpt written by fit or a directory written by export"
        )
    checkpoint = read_checkpoint(source)
    hparams = checkpoint["hyper_parameters"]
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    tokenizer = tokenizer_from_state_dict(checkpoint.get(DATAMODULE_KEY, {}).get("tokenizer", {"name": "byte"}))
    shape = {name: hparams[name] for name in SHAPE_FIELDS if name in hparams}
    return InitialWeights(weights, shape, tokenizer, f"{source} (step {checkpoint.get('global_step', 0)})")


def check_typed_shape(source: InitialWeights, path: str, configured: dict[str, Any], typed: set[str]) -> None:
    """A shape option typed on the command line that the source's weights cannot take."""
    conflicts = [
        f"--model.{name} {configured[f'model.{name}']} (the source has {source.shape[name]})"
        for name in WEIGHT_SHAPE_FIELDS
        if f"model.{name}" in typed and name in source.shape and configured[f"model.{name}"] != source.shape[name]
    ]
    if conflicts:
        raise InvalidConfigError(
            f"--init_from {path} fixes the model's shape, which {'; '.join(conflicts)} contradicts: drop those "
            "options (the source's shape is used), or train from scratch without --init_from"
        )
