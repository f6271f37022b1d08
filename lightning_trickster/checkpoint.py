"""Reading Lightning checkpoints safely, and loading one as a plain NanoTrickster for generation."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from lightning_trickster.errors import InvalidConfigError, TricksterError
from lightning_trickster.model import NanoTrickster, NanoTricksterConfig, SamplingSettings, pick_fields
from lightning_trickster.tokenizer import Tokenizer, tokenizer_from_state_dict

DATAMODULE_KEY = "ShakespeareDataModule"
"""Where Lightning stores the data module's state (the tokenizer) in a checkpoint: its class name."""


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a Lightning checkpoint without running pickled code; a one-line error if it cannot be read."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for corrupt, truncated or foreign files
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise TricksterError(
            f"checkpoint {path} could not be read ({reason}): pass a .ckpt file written by this project's fit"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise TricksterError(f"{path} is not a Lightning checkpoint (no state_dict): pass a .ckpt file written by fit")
    broken = [name for name, tensor in checkpoint["state_dict"].items() if not torch.isfinite(tensor).all()]
    if broken:
        raise TricksterError(
            f"checkpoint {path} holds non-finite weights ({len(broken)} tensors, e.g. {broken[0]}): it can neither "
            "generate nor train; use an earlier checkpoint of the run"
        )
    return checkpoint


def check_same_architecture(checkpoint: dict[str, Any], hparams: Any, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise a one-line error if a checkpoint's weights do not fit the configured model, naming what differs.

    Settings that leave the weight shapes alone (e.g. a longer max_seq_len: RoPE tables are not saved) load fine."""
    saved = checkpoint["state_dict"]
    weights_differ = saved.keys() != state_dict.keys() or any(saved[k].shape != v.shape for k, v in state_dict.items())
    if not weights_differ:
        return
    saved_shape = checkpoint.get("hyper_parameters", {})
    differences = [
        f"{f.name} {saved_shape[f.name]} in the checkpoint, {hparams[f.name]} configured"
        for f in fields(NanoTricksterConfig)
        if f.name in saved_shape and f.name in hparams and saved_shape[f.name] != hparams[f.name]
    ] or [  # a checkpoint whose hyper-parameters do not describe its weights
        f"{name}: {list(saved[name].shape) if name in saved else 'missing'} in the checkpoint, "
        f"{list(tensor.shape)} configured"
        for name, tensor in state_dict.items()
        if name not in saved or saved[name].shape != tensor.shape
    ]
    raise InvalidConfigError(
        f"the checkpoint was trained with a different model shape ({'; '.join(differences[:3])}): drop the --model "
        "shape options that differ (the checkpoint's shape is the default), or start a new run without --ckpt_path"
    )


@dataclass
class TrainedModel:
    """A checkpoint ready for generation: the model in eval mode, its tokenizer and where it came from."""

    model: NanoTrickster
    tokenizer: Tokenizer
    sampling: SamplingSettings
    step: int
    val_loss: float | None
    path: Path


def load_trained_model(path: Path) -> TrainedModel:
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters", {})
    model = NanoTrickster(NanoTricksterConfig(**pick_fields(NanoTricksterConfig, hparams)))
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise TricksterError(
            f"checkpoint {path} does not match the model its hyper-parameters describe "
            f"({str(err).splitlines()[1].strip()[:160]}): pass an unmodified checkpoint written by fit"
        ) from None
    tokenizer_state = checkpoint.get(DATAMODULE_KEY, {}).get("tokenizer", {"name": "byte"})
    scores = [
        state["current_score"]
        for name, state in checkpoint.get("callbacks", {}).items()
        if name.startswith("ModelCheckpoint")
        and state.get("monitor") == "val/loss"
        and state.get("current_score") is not None
    ]
    return TrainedModel(
        model=model.eval(),
        tokenizer=tokenizer_from_state_dict(tokenizer_state),
        sampling=SamplingSettings(**pick_fields(SamplingSettings, hparams)),
        step=checkpoint.get("global_step", 0),
        val_loss=float(scores[0]) if scores else None,
        path=path,
    )
