"""What the front door hands a command that reads a training configuration: the options exactly as `fit` reads
them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jsonargparse import ArgumentParser, Namespace


@dataclass
class FitConfig:
    """A training configuration parsed by the same parser as `fit`: --config files first, then the --trainer.*,
    --model.*, --data.*, --sampling.* (and callback) options, with fit's defaults and links."""

    full: Namespace
    """Everything the command line parsed, the command's own options included."""
    parser: ArgumentParser
    own_keys: list[str] = field(default_factory=list)
    """The command's own options (not fit's)."""

    @property
    def config(self) -> Namespace:
        """The fit options alone."""
        config = self.full.clone()
        for key in self.own_keys:
            del config[key]
        return config

    def instantiate(self) -> tuple[Any, Any]:
        """The LightningModule and the DataModule this configuration builds (the data module first: the model's
        vocabulary size comes from its tokenizer). Under `with torch.device("meta")` the weights take no memory."""
        built = self.parser.instantiate(self.full)
        return built.model, built.data

    def updated(self, args: list[str]) -> FitConfig:
        """This configuration with more fit options applied on top, e.g. ["--model.hidden_dim", "64"]."""
        return FitConfig(self.parser.parse_args(args, namespace=self.full.clone()), self.parser, self.own_keys)

    def dump(self) -> str:
        """As YAML that `fit --config` reads back."""
        return self.parser.dump(self.config, skip_none=False, skip_check=True)
