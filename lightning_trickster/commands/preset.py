"""What the front door hands a command that reads presets: the training configuration exactly as `fit` reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsonargparse import ArgumentParser, Namespace


@dataclass
class Preset:
    """A training configuration parsed by the same parser as `fit`: --config files first, then the --trainer.*,
    --model.*, --data.* (and callback) options, with fit's defaults and links."""

    config: Namespace
    parser: ArgumentParser

    def instantiate(self) -> tuple[Any, Any]:
        """The LightningModule and the DataModule this configuration builds (the data module first: the model's
        vocabulary size comes from its tokenizer). Under `with torch.device("meta")` the weights take no memory."""
        built = self.parser.instantiate_classes(self.config)
        return built.model, built.data

    def updated(self, args: list[str]) -> Preset:
        """This configuration with more fit options applied on top, e.g. ["--model.hidden_dim", "64"]."""
        return Preset(self.parser.parse_args(args, namespace=self.config.clone()), self.parser)

    def dump(self) -> str:
        """As YAML that `fit --config` reads back."""
        return self.parser.dump(self.config, skip_none=False)
