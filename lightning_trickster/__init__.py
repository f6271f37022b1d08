"""lightning_trickster: train NanoTrickster, a small transformer, from scratch with PyTorch Lightning.

The Lightning pieces are imported on first use, so `lightning_trickster.model` and `lightning_trickster.export` stay
plain PyTorch.
"""

from importlib import import_module
from typing import Any

__all__ = ["NanoTrickster", "NanoTricksterConfig", "NanoTricksterModule", "SamplingSettings", "CorpusDataModule"]
__version__ = "0.1.0"

_HOMES = {
    "NanoTrickster": "lightning_trickster.model",
    "NanoTricksterConfig": "lightning_trickster.model",
    "SamplingSettings": "lightning_trickster.model",
    "NanoTricksterModule": "lightning_trickster.module",
    "CorpusDataModule": "lightning_trickster.data",
    "ShakespeareDataModule": "lightning_trickster.data",  # the old name, with a deprecation warning
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'lightning_trickster' has no attribute {name!r}")
