"""lightning_trickster: train NanoTrickster, a small character-level transformer, with PyTorch Lightning."""

import lightning_tt.register  # noqa: F401  registers accelerator/strategy "tt" (no ttnn/ttml import)

from lightning_trickster.data import ShakespeareDataModule
from lightning_trickster.model import NanoTrickster, NanoTricksterConfig
from lightning_trickster.module import NanoTricksterModule

__all__ = ["NanoTrickster", "NanoTricksterConfig", "NanoTricksterModule", "ShakespeareDataModule"]
__version__ = "0.1.0"
