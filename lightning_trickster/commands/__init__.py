"""The project's commands beside Lightning's fit, validate, test and predict.

Each command is a plain function. The front door (`lightning_trickster.cli`) makes it a subcommand whose options
jsonargparse derives from the function's typed signature and docstring, as litgpt's `__main__` does. A function whose
first parameter is `fit_config: FitConfig` reads a training configuration: its subcommand also takes every option of
`fit` (--config, --trainer.*, --model.*, --data.*, --sampling.*, ...), parsed by the same parser as `fit`, and the
function receives them as that FitConfig. Commands never import the front door.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from lightning_trickster.commands.complete import complete
from lightning_trickster.commands.export import export
from lightning_trickster.commands.fit_config import FitConfig
from lightning_trickster.commands.info import info
from lightning_trickster.commands.plot import plot
from lightning_trickster.commands.prepare import prepare
from lightning_trickster.commands.stages import stages
from lightning_trickster.commands.sweep import sweep
from lightning_trickster.commands.tt_check import tt_check


@dataclass(frozen=True)
class Command:
    function: Callable[..., None]
    options_group: str | None = None
    """A prefix for the function's own options (harness bench: --bench.steps), where they could be taken for fit's."""
    positional: bool = False
    """Required parameters are positional (plot RUN_DIR) instead of --options."""

    @property
    def reads_fit_config(self) -> bool:
        return "fit_config" in inspect.signature(self.function).parameters

    @property
    def description(self) -> str:
        """The docstring without its Args section."""
        return inspect.getdoc(self.function).split("\n\nArgs:")[0]


COMMANDS: dict[str, Command] = {
    "prepare": Command(prepare),
    "info": Command(info),
    "sweep": Command(sweep),
    "stages": Command(stages),
    "complete": Command(complete),
    "export": Command(export),
    "plot": Command(plot, positional=True),
    "tt-check": Command(tt_check),
}

__all__ = ["COMMANDS", "Command", "FitConfig"]
