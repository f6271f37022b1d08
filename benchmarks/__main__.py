"""Harnesses that measure the project's own targets: `python -m benchmarks NAME [options]` (NAME --help: its options).

Each harness is a plain function; its options come from its signature, parsed by the project's front-door machinery
(lightning_trickster.cli.run_command). A harness whose first parameter is `fit_config: FitConfig` also takes every
option of `fit` (--config, --trainer.*, --model.*, --data.*, --sampling.*, ...), read as fit reads them.
"""

from __future__ import annotations

import sys
import warnings

from jsonargparse import ArgumentParser
from lightning_tt.errors import TTError

from benchmarks.bench import bench, bench_generation
from benchmarks.bench_data import bench_data
from benchmarks.generation_quality import generation_quality
from benchmarks.memory import memory
from lightning_trickster.cli import UNACTIONABLE_WARNINGS, OneLineErrorParser, run_command
from lightning_trickster.commands import Command
from lightning_trickster.errors import TricksterError
from lightning_trickster.legacy import translate_arguments

PROG = "python -m benchmarks"

HARNESSES: dict[str, Command] = {
    "bench": Command(bench, options_group="bench"),
    "bench-generation": Command(bench_generation),
    "bench-data": Command(bench_data),
    "memory": Command(memory),
    "generation-quality": Command(generation_quality),
}


def harnesses_parser() -> ArgumentParser:
    """What `--help` shows: every harness with the first line of its description."""
    parser = OneLineErrorParser(prog=PROG, description=__doc__.split("\n\n")[0])
    harnesses = parser.add_subcommands(required=True, dest="harness")
    for name, command in HARNESSES.items():
        harnesses.add_subcommand(name, ArgumentParser(description=command.description),
                                 help=" ".join(command.description.split("\n\n")[0].split()))  # fmt: skip
    return parser


def main(args: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if args is None else args)
    if not args or args[0] not in HARNESSES:
        harnesses_parser().parse_args(args)  # --help, or an error naming the choices
        return
    name = args[0]
    try:
        with warnings.catch_warnings():
            for message in UNACTIONABLE_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            run_command(HARNESSES[name], translate_arguments(args[1:]), prog=f"{PROG} {name}")
    except (TricksterError, TTError) as err:  # one line naming the fix, as the product's commands report it
        sys.stderr.write(f"error: {err}\n")
        raise SystemExit(err.exit_code if isinstance(err, TricksterError) else 2) from None


if __name__ == "__main__":
    main()
