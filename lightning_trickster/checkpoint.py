"""Reading Lightning checkpoints safely, and loading one as a plain NanoTrickster for generation."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from lightning_trickster.errors import InvalidConfigError, TricksterError, not_a_readable_file
from lightning_trickster.legacy import upgrade_checkpoint
from lightning_trickster.model import NanoTrickster, NanoTricksterConfig, SamplingSettings, pick_fields
from lightning_trickster.tokenizer import Tokenizer, tokenizer_from_state_dict

DATAMODULE_KEY = "CorpusDataModule"
"""Where Lightning stores the data module's state (the tokenizer) in a checkpoint: its class name. Checkpoints
written under the old name are upgraded as they are read (lightning_trickster.legacy)."""

SHAPE_FIELDS = tuple(f.name for f in fields(NanoTricksterConfig))


NOT_A_CHECKPOINT_FIX = "pass a .ckpt file written by this project's fit (e.g. a run's checkpoints/last.ckpt)"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The one way a checkpoint is opened (fit, validate, test, predict, stages, complete, export): load it without
    running pickled code and check that it is a complete checkpoint of this project's model, or raise one line
    naming the file, what is wrong with it and what to pass instead."""
    path = Path(path)
    problem = not_a_readable_file(path)
    if problem == "not found":
        raise TricksterError(
            f"checkpoint {path} not found: pass an existing .ckpt file, or 'last' for the newest run's last.ckpt"
        )
    if path.is_dir():
        raise TricksterError(
            f"checkpoint {path} is a directory, not a file: pass one .ckpt file in it (a run keeps them in "
            "lightning_logs/version_N/checkpoints/), or 'last' for the newest run's last.ckpt"
        )
    if problem:
        raise TricksterError(
            f"checkpoint {path} {problem}: pass a .ckpt file, or 'last' for the newest run's last.ckpt"
        )
    checkpoint = _load_weights_only(path)
    if isinstance(checkpoint, dict):
        upgrade_checkpoint(checkpoint, DATAMODULE_KEY)
    what = _what_is_wrong(checkpoint)
    if what:
        raise TricksterError(
            f"checkpoint {path} is not a complete checkpoint of this project: {what}; {NOT_A_CHECKPOINT_FIX}"
        )
    broken = [name for name, tensor in checkpoint["state_dict"].items() if not torch.isfinite(tensor).all()]
    if broken:
        raise TricksterError(
            f"checkpoint {path} holds non-finite weights ({len(broken)} tensors, e.g. {broken[0]}): it can neither "
            "generate nor train; use an earlier checkpoint of the run"
        )
    return checkpoint


ZIP_MAGIC = b"PK\x03\x04"
"""How every file torch.save writes begins (a zip archive)."""


def _load_weights_only(path: Path) -> Any:
    try:
        with path.open("rb") as file:
            head = file.read(len(ZIP_MAGIC))
    except OSError as err:
        raise TricksterError(
            f"checkpoint {path} could not be read ({err.strerror or err}): make it readable, or {NOT_A_CHECKPOINT_FIX}"
        ) from None
    if not head:
        reason = "the file is empty: a save or copy was cut short"
    elif head != ZIP_MAGIC:
        reason = "it is not a file torch.save wrote"
    else:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:  # torch raises many types for corrupt, truncated or foreign files
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if "central directory" in first_line or "failed reading zip archive" in first_line:
                reason = "the file is truncated or corrupt: a save or copy was cut short"
            else:
                reason = first_line[:160]
        else:
            damaged = damaged_record(path)
            if damaged is None:
                return checkpoint
            reason = f"its record {damaged} does not match its checksum: the file was damaged after it was written"
    raise TricksterError(f"checkpoint {path} could not be read ({reason}): {NOT_A_CHECKPOINT_FIX}") from None


def damaged_record(path: Path) -> str | None:
    """The first record of a torch.save zip archive whose bytes no longer match the CRC-32 stored beside them (torch
    does not check it: a flipped byte in the weights would load silently). One read of the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"({err})"


def _what_is_wrong(checkpoint: Any) -> str | None:
    """Why a loaded file is not a checkpoint this project can resume, evaluate or sample from; None if it is."""
    if not isinstance(checkpoint, dict):
        return f"it holds a {type(checkpoint).__name__}, not a Lightning checkpoint's dict"
    weights = checkpoint.get("state_dict")
    if weights is None:
        if checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
            return "it holds bare weights (a model's state_dict), without the model shape and tokenizer"
        return f"it has no state_dict (its keys: {', '.join(map(str, list(checkpoint)[:5])) or 'none'})"
    if not isinstance(weights, dict) or not all(isinstance(value, torch.Tensor) for value in weights.values()):
        return "its state_dict is not a mapping of tensors"
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or "vocab_size" not in hparams:
        return "it has no hyper_parameters describing the model shape"
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialization
            model = NanoTrickster(NanoTricksterConfig(**pick_fields(NanoTricksterConfig, hparams)))
    except (TricksterError, TypeError, ValueError) as err:
        return f"its hyper_parameters describe no valid model ({err})"
    expected = {f"model.{name}": tensor.shape for name, tensor in model.state_dict().items()}
    missing = [name for name in expected if name not in weights]
    if missing:
        return (
            f"its weights are not this model's ({len(missing)} of {len(expected)} tensors missing, e.g. {missing[0]})"
        )
    wrong = [name for name, shape in expected.items() if weights[name].shape != shape]
    if wrong:
        name = wrong[0]
        return (
            f"its weights do not have the shapes its hyper_parameters describe ({name}: "
            f"{list(weights[name].shape)}, expected {list(expected[name])})"
        )
    tokenizer = (
        checkpoint.get(DATAMODULE_KEY, {}).get("tokenizer")
        if isinstance(checkpoint.get(DATAMODULE_KEY), dict)
        else None
    )
    if tokenizer is not None and (not isinstance(tokenizer, dict) or tokenizer.get("name") not in TOKENIZER_NAMES):
        return "its tokenizer state is not one of byte, char or bpe"
    return None


TOKENIZER_NAMES = ("byte", "char", "bpe")


def check_same_architecture(checkpoint: dict[str, Any], hparams: Any, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise a one-line error if a checkpoint's weights do not fit the configured model, naming what differs.

    Settings that leave the weight shapes alone (e.g. a longer max_seq_len: RoPE tables are not saved) load fine."""
    saved = checkpoint["state_dict"]
    weights_differ = saved.keys() != state_dict.keys() or any(saved[k].shape != v.shape for k, v in state_dict.items())
    if not weights_differ:
        return
    saved_shape = checkpoint.get("hyper_parameters", {})
    if "vocab_size" in saved_shape and saved_shape["vocab_size"] != hparams.get("vocab_size"):
        # The vocabulary size comes from the tokenizer, not from a --model option.
        tokenizer = checkpoint.get(DATAMODULE_KEY, {}).get("tokenizer", {}).get("name", "its own")
        raise InvalidConfigError(
            f"the checkpoint was trained with the {tokenizer} tokenizer ({saved_shape['vocab_size']} tokens), the "
            f"configured tokenizer has {hparams.get('vocab_size')}: use the checkpoint's tokenizer (drop "
            "--data.tokenizer and --data.vocab), or start a new run without --ckpt_path"
        )
    differences = [
        f"{name} {saved_shape[name]} in the checkpoint, {hparams[name]} configured"
        for name in SHAPE_FIELDS
        if name in saved_shape and name in hparams and saved_shape[name] != hparams[name]
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


def check_same_tokenizer(saved_state: dict[str, Any], tokenizer: Tokenizer) -> None:
    """A checkpoint's tokenizer against the one the data module built: the weights only fit the ids they learned."""
    if saved_state == tokenizer.state_dict():
        return
    saved = tokenizer_from_state_dict(saved_state)
    raise InvalidConfigError(
        f"the checkpoint was trained with a different tokenizer/vocabulary ({saved.name}, {saved.vocab_size} tokens) "
        f"than --data gives now ({tokenizer.name}, {tokenizer.vocab_size} tokens): use the same --data.tokenizer "
        "and --data.path as the training run"
    )


def saved_settings(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checked checkpoint's settings as dotted option names (model.hidden_dim, model.optimization.learning_rate,
    sampling.temperature, ...): the defaults a command that reads it starts from. The vocabulary size is left out:
    it follows from the tokenizer."""
    hparams = checkpoint["hyper_parameters"]
    settings = {f"model.{name}": hparams[name] for name in SHAPE_FIELDS if name in hparams and name != "vocab_size"}
    if "compile" in hparams:
        settings["model.compile"] = hparams["compile"]
    for group, prefix in (("optimization", "model.optimization"), ("sampling", "sampling")):
        settings.update({f"{prefix}.{name}": value for name, value in (hparams.get(group) or {}).items()})
    return settings


def reconcile_with_checkpoint(
    source: str, saved: dict[str, Any], configured: dict[str, Any], typed: set[str], command: str
) -> dict[str, Any]:
    """The one rule for a command's settings against its checkpoint's (saved; both as dotted option names).

    source names the checkpoint as the user gave it (--ckpt_path PATH, --init_from PATH). The checkpoint's settings
    are the defaults; what the command line types wins. A config file that sets another
    model shape or tokenizer than the checkpoint's (e.g. nano.yaml with a cpu.yaml checkpoint) stops a fit, naming
    the fields, since resuming under it would train another model; an evaluation uses the checkpoint's values and
    says so. Returns what an evaluation keeps from the checkpoint: option -> (config file's value, checkpoint's)."""
    tokenizer = saved.get("data.tokenizer")
    typed_tokenizer = configured.get("data.tokenizer") if "data.tokenizer" in typed else None
    if tokenizer and typed_tokenizer not in (None, tokenizer):
        raise InvalidConfigError(
            f"{source} was trained with the {tokenizer} tokenizer, not the --data.tokenizer {typed_tokenizer} given: "
            f"drop --data.tokenizer (the checkpoint's own tokenizer is used), or train a new model with "
            f"{typed_tokenizer} without {source.split()[0]}"
        )
    compared = [f"model.{name}" for name in SHAPE_FIELDS if name != "vocab_size"] + ["data.tokenizer"]
    differences = {
        key: (configured[key], saved[key])
        for key in compared
        if key in saved and key in configured and key not in typed and configured[key] != saved[key]
    }
    if not differences:
        return {}
    listed = "; ".join(f"{key} {mine} in the config, {theirs} in the checkpoint" for key, (mine, theirs) in
                       list(differences.items())[:3])  # fmt: skip
    if command == "fit":
        raise TricksterError(
            f"{source} was trained with another model or tokenizer than the config file sets "
            f"({listed}): resume with the config the run was trained with (its config.yaml is in the run's folder), "
            "or type the values on the command line to override"
        )
    return differences


@dataclass
class TrainedModel:
    """A checkpoint ready for generation: the model in eval mode, its tokenizer and where it came from."""

    model: NanoTrickster
    tokenizer: Tokenizer
    sampling: SamplingSettings
    step: int
    val_loss: float | None
    path: Path


def load_trained_model(path: str | Path) -> TrainedModel:
    path = Path(path)
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
        sampling=SamplingSettings(**hparams.get("sampling", {})),
        step=checkpoint.get("global_step", 0),
        val_loss=float(scores[0]) if scores else None,
        path=path,
    )
