"""Exported models: a checkpoint as `model.safetensors` + `config.json`, loadable with plain PyTorch for generation.

    from lightning_trickster.export import load_exported

    model, tokenizer, sampling = load_exported("exported/")
    ids = model.generate(tokenizer.encode("ROMEO:").unsqueeze(0), sampling)
    print(tokenizer.decode(ids[0]))

Only torch, safetensors and the model/tokenizer classes are involved: no Trainer, no LightningModule.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_model, save_model

from lightning_trickster.checkpoint import load_trained_model
from lightning_trickster.errors import TricksterError
from lightning_trickster.model import NanoTrickster, NanoTricksterConfig, SamplingSettings
from lightning_trickster.tokenizer import Tokenizer, tokenizer_from_state_dict

FORMAT = "nanotrickster-safetensors-v1"


def export_checkpoint(ckpt_path: Path, out_dir: Path) -> None:
    trained = load_trained_model(ckpt_path)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # save_model stores a tied weight once and load_model re-ties it.
        save_model(trained.model, str(out_dir / "model.safetensors"))
        config = {
            "format": FORMAT,
            "model": asdict(trained.model.config),
            "tokenizer": trained.tokenizer.state_dict(),
            "sampling": asdict(trained.sampling),
            "source": {"checkpoint": str(ckpt_path), "step": trained.step, "val_loss": trained.val_loss},
        }
        (out_dir / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    except OSError as err:
        raise TricksterError(f"cannot write the export to {out_dir} ({err.strerror}): pass a writable --out") from None


def load_exported(directory: str | Path) -> tuple[NanoTrickster, Tokenizer, SamplingSettings]:
    """The exported model in eval mode, its tokenizer and its default sampling settings."""
    directory = Path(directory)
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise TricksterError(
            f"{directory}/config.json could not be read ({err}): pass a directory written by export"
        ) from None
    if config.get("format") != FORMAT:
        raise TricksterError(f"{directory}/config.json is not a {FORMAT} export: pass a directory written by export")
    model = NanoTrickster(NanoTricksterConfig(**config["model"]))
    load_model(model, str(directory / "model.safetensors"))
    return model.eval(), tokenizer_from_state_dict(config["tokenizer"]), SamplingSettings(**config["sampling"])
