"""The command line: LightningCLI for fit/validate/test/predict, with bundled presets and resume from `last`."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_trickster.callbacks import PredictionWriter, RunSummary, SampleText
from lightning_trickster.checkpoint import DATAMODULE_KEY, read_checkpoint
from lightning_trickster.data import ShakespeareDataModule
from lightning_trickster.errors import HardwareError, TricksterError
from lightning_trickster.module import NanoTricksterModule
from lightning_trickster.reliability import CheckpointOnSignal, NonFiniteGuard, use_atomic_checkpoint_io

# Lightning 2.6 calls a torch pytree API that newer torch deprecates: noise the user cannot act on.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
# Project commands (bench) build the CLI from their own share of the arguments on purpose.
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")


def bundled_configs() -> dict[str, Path]:
    """The presets shipped with the package, by name (nano, mini, ...)."""
    folder = resources.files("lightning_trickster.configs")
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def resolve_config(value: str) -> str:
    """A real path is used as given; a bare preset name ("nano" or "nano.yaml") means the bundled file."""
    if Path(value).is_file():
        return value
    presets = bundled_configs()
    name = Path(value).stem
    if Path(value).name in (name, f"{name}.yaml") and name in presets:
        return str(presets[name])
    raise TricksterError(
        f"config {value!r} not found: pass an existing YAML path or a bundled preset ({', '.join(sorted(presets))})"
    )


def resolve_config_args(args: list[str]) -> list[str]:
    resolved = list(args)
    for i, arg in enumerate(resolved):
        if arg in ("-c", "--config") and i + 1 < len(resolved):
            resolved[i + 1] = resolve_config(resolved[i + 1])
        elif arg.startswith("--config="):
            resolved[i] = "--config=" + resolve_config(arg.split("=", 1)[1])
    return resolved


def default_logger(root: Path, resumed_run: Path | None, resumed_step: int = 0) -> dict[str, Any]:
    """TensorBoard under root/lightning_logs/version_N. A resumed fit keeps logging into the run it resumed, so
    its curves continue; events the interrupted run logged after its checkpoint (resumed_step) are purged, so no
    step appears twice. The hyper-parameters are logged once the random baseline is known (see SampleText),
    with val/loss as their metric, instead of Lightning's placeholder hp_metric."""
    init_args: dict[str, Any] = {"save_dir": str(root), "default_hp_metric": False}
    if resumed_run is not None:
        init_args.update(name=resumed_run.parent.name, version=resumed_run.name, purge_step=resumed_step)
    return {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": init_args}


def newest_last_checkpoint(root_dir: Path) -> Path:
    """The last.ckpt of the most recently written run under root_dir/lightning_logs."""
    candidates = list(root_dir.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    if not candidates:
        raise TricksterError(
            f"--ckpt_path last: no run under {root_dir / 'lightning_logs'} has checkpoints/last.ckpt; "
            "train with fit first, or pass a checkpoint file path"
        )
    return max(candidates, key=lambda path: path.stat().st_mtime)


class OneLineErrorParser(LightningArgumentParser):
    """Reports a command-line mistake on one line, like every other error, instead of usage text plus the error."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):  # jsonargparse's own debug switch
            super().error(message, ex)
        sys.stderr.write(
            f"error: {' '.join(message.split())} (options: {self.prog.replace(' [options]', '')} --help)\n"
        )
        self.exit(2)


class TricksterCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The model's context length is the one place the sequence length is set.
        parser.link_arguments("model.max_seq_len", "data.block_size")
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # Before sampling: its hooks then run first, so a NaN model is reported before anything samples from it.
        parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")
        parser.add_lightning_class_args(SampleText, "sampling")
        parser.add_lightning_class_args(CheckpointOnSignal, "interrupt")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{step}",
                # last.ckpt is always the newest checkpoint, also after a resume from a copied checkpoint.
                "checkpoint.enable_version_counter": False,
            }
        )

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        self._command_line = list(sys.argv[1:] if args is None else args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        root = Path(config.trainer.default_root_dir or ".")
        resumed_run: Path | None = None
        resumed_step = 0
        if config.get("ckpt_path") == "last":
            # Lightning's own "last" only looks inside the new run's directory; look across runs instead.
            checkpoint = newest_last_checkpoint(root)
            config.ckpt_path = str(checkpoint)
            if subcommand == "fit":
                resumed_run = checkpoint.parent.parent
                resumed_step = read_checkpoint(checkpoint).get("global_step", 0)
        if config.trainer.logger in (None, True):
            config.trainer.logger = default_logger(root, resumed_run, resumed_step)

    def before_instantiate_classes(self) -> None:
        # The data module is built before the Trainer: report missing Tenstorrent software or hardware before a
        # corpus download, not after.
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        check_writable(Path(config.trainer.default_root_dir or "."))
        if config.trainer.accelerator == "tt":
            from lightning_tt import bridge

            devices = config.trainer.devices
            problem = bridge.setup_problem(devices_wanted=devices if isinstance(devices, int) else 1)
            if problem:
                raise HardwareError(problem)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoint_io(trainer)
        return trainer

    def _parse_ckpt_path(self) -> None:
        """Take the model's shape and settings from the checkpoint, and the char vocabulary it was trained
        with; values typed on the command line (e.g. --model.temperature 0.5) still win.

        Replaces LightningCLI's version, which lets the checkpoint override the command line."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or ckpt_path in ("best", "hpc") or str(ckpt_path).startswith("registry"):
            return  # no checkpoint, or one of Lightning's own names: Lightning resolves it
        if not Path(ckpt_path).is_file():
            raise TricksterError(
                f"checkpoint {ckpt_path} not found: pass an existing .ckpt file, or 'last' for the newest run's "
                "last.ckpt"
            )
        checkpoint = read_checkpoint(Path(ckpt_path))
        model = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
        model.update(command_line_values(self._command_line, "model"))
        data = {}
        tokenizer = checkpoint.get(DATAMODULE_KEY, {}).get("tokenizer")
        if tokenizer:
            data["tokenizer"] = tokenizer["name"]
            if "vocab" in tokenizer:
                data["vocab"] = tokenizer["vocab"]
        data.update(command_line_values(self._command_line, "data"))
        self.config = self.parser.parse_object({subcommand: {"model": model, "data": data}}, self.config)


def check_writable(directory: Path) -> None:
    """Fail before any work if the run's output directory cannot be created or written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise TricksterError(
            f"output directory {directory} is not writable ({err.strerror or err}): pass --trainer.default_root_dir "
            "a directory you can write to"
        ) from None


def command_line_values(args: list[str], group: str) -> dict[str, Any]:
    """The --group.name values given on the command line, parsed as YAML like jsonargparse does."""
    values = {}
    prefix = f"--{group}."
    for i, arg in enumerate(args):
        if not arg.startswith(prefix):
            continue
        name, sep, value = arg[len(prefix) :].partition("=")
        if not sep:
            if i + 1 >= len(args):
                continue
            value = args[i + 1]
        values[name] = yaml.safe_load(value)
    return values


def make_cli(args: list[str] | None, run: bool = True) -> TricksterCLI:
    """The LightningCLI every command goes through (args None: read sys.argv)."""
    return TricksterCLI(
        NanoTricksterModule,
        ShakespeareDataModule,
        args=args,
        run=run,
        parser_class=OneLineErrorParser,
        parser_kwargs={"prog": "python -m lightning_trickster"},
        # The run summary prints the exact parameter breakdown; Lightning's table comes with --verbose.
        trainer_defaults={"callbacks": [RunSummary(), PredictionWriter()], "enable_model_summary": False},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


# Project commands beside Lightning's fit/validate/test/predict: name -> "module:function", imported on use.
# Each function takes the remaining command-line arguments (a list of strings).
PROJECT_COMMANDS = {
    "stages": "lightning_trickster.stages:main",
    "complete": "lightning_trickster.complete:main",
    "bench": "lightning_trickster.bench:main",
    "bench-generation": "lightning_trickster.bench:generation_main",
    "export": "lightning_trickster.export:main",
    "plot": "lightning_trickster.plot:main",
    "info": "lightning_trickster.info:main",
    "sweep": "lightning_trickster.sweep:main",
    "faults": "lightning_trickster.faults:main",
}


class _DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropLightningTips())


def apply_verbosity(args: list[str]) -> list[str]:
    """-q/--quiet: no progress bar, no run summary or samples (warnings and errors only); -v/--verbose: also
    Lightning's layer-by-layer model summary. Returns the arguments without these switches."""
    quiet = any(arg in ("-q", "--quiet") for arg in args)
    verbose = any(arg in ("-v", "--verbose") for arg in args)
    args = [arg for arg in args if arg not in ("-q", "--quiet", "-v", "--verbose")]
    if quiet:
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
        args += ["--trainer.enable_progress_bar", "false"]
    if verbose:
        args += ["--trainer.enable_model_summary", "true"]
    return args


def main(args: list[str] | None = None) -> None:
    """Entry point of `python -m lightning_trickster` and the `trickster` command."""
    from_command_line = args is None
    args = list(sys.argv[1:] if from_command_line else args)
    # --debug or TRICKSTER_DEBUG=1: show the traceback behind a one-line error.
    debug = "--debug" in args or os.environ.get("TRICKSTER_DEBUG", "") not in ("", "0")
    args = [arg for arg in args if arg != "--debug"]
    try:
        if args and args[0] in PROJECT_COMMANDS:
            module_name, function_name = PROJECT_COMMANDS[args[0]].split(":")
            getattr(importlib.import_module(module_name), function_name)(args[1:])
            return
        cli_args = resolve_config_args(apply_verbosity(args))
        if from_command_line:  # LightningCLI reads sys.argv itself (and warns when given both)
            sys.argv[1:], cli_args = cli_args, None
        make_cli(cli_args)
    except TricksterError as err:
        if debug:
            raise
        sys.stderr.write(f"error: {err}\n")
        raise SystemExit(err.exit_code) from None
