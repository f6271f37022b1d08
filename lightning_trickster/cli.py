"""The one front door: `python -m lightning_trickster COMMAND` (or `trickster COMMAND`).

One jsonargparse parser family: Lightning's fit, validate, test and predict come from LightningCLI, and every project
command (lightning_trickster.commands) is a subcommand of the same parser, its options derived from its signature.
`--config` takes a YAML path or a bundled preset's name; `--ckpt_path last` means the newest run's last.ckpt.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
import signal
import sys
import warnings
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import lightning_tt.register  # noqa: F401  registers accelerator "tt" and strategies "tt", "tt_ddp" by name
import torch
from jsonargparse import ActionConfigFile, set_parsing_settings
from jsonargparse._link_arguments import skip_apply_links
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning_tt.errors import TTError

from lightning_trickster.callbacks import MetricsWriter, PredictionWriter, RunSummary, SampleText
from lightning_trickster.checkpoint import DATAMODULE_KEY, read_checkpoint
from lightning_trickster.commands import COMMANDS, Preset
from lightning_trickster.data import ShakespeareDataModule, data_args_from_tokenizer_state
from lightning_trickster.errors import (
    HardwareError,
    InvalidConfigError,
    StoppedBySignal,
    TricksterError,
    raise_stopped_by_signal,
)
from lightning_trickster.model import NanoTricksterConfig
from lightning_trickster.module import NanoTricksterModule
from lightning_trickster.progress import RunReport, StepProgressBar
from lightning_trickster.reliability import (
    CheckpointDirectoryCheck,
    CheckpointOnSignal,
    NonFiniteGuard,
    inductor_cpp_compilers,
    require_writable,
    use_atomic_checkpoint_io,
    working_cpp_compiler,
)
from lightning_trickster.runs import evaluation_dir, newest_last_checkpoint

# The console script `trickster` is the same program under its own name.
PROG = "trickster" if Path(sys.argv[0]).name == "trickster" else "python -m lightning_trickster"

# --help of a dataclass option (the model shape, SamplingSettings) shows each field's docstring.
set_parsing_settings(docstring_parse_attribute_docstrings=True)
UNACTIONABLE_WARNINGS = (
    # Lightning 2.6 calls a torch pytree API that newer torch deprecates.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # ModelCheckpoint on a resumed run's existing checkpoints/ folder, and on a resume from a checkpoint written
    # elsewhere (its best-so-far bookkeeping restarts; the run's own lines account for it).
    r"Checkpoint directory .* exists and is not empty",
    r"The dirpath has changed from",
)
"""Warnings a user cannot act on, silenced in one place (main)."""


class _DropLightningNoise(logging.Filter):
    """Lightning's tips, and its "`Trainer.fit` stopped" line, which the run's own summary line replaces."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("💡 Tip", "`Trainer.fit` stopped"))


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropLightningNoise())


def bundled_configs() -> dict[str, Path]:
    """The presets shipped with the package, by name (nano, mini, ...)."""
    folder = resources.files("lightning_trickster.configs")
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def resolve_config(value: str) -> str:
    """A real path is used as given; a bare preset name ("nano" or "nano.yaml") means the bundled file."""
    if Path(value).is_file():
        try:
            Path(value).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) else f"not UTF-8 text: {err.reason} at byte {err.start}"
            raise TricksterError(f"config {value} cannot be read ({reason}): pass a YAML file") from None
        return value
    if value and Path(value).is_dir():
        raise TricksterError(f"config {value} is a directory: pass a YAML file in it, or a bundled preset's name")
    presets = bundled_configs()
    name = Path(value).stem
    if Path(value).name in (name, f"{name}.yaml") and name in presets:
        return str(presets[name])
    raise TricksterError(
        f"config {value!r} not found: pass an existing YAML path or a bundled preset ({', '.join(sorted(presets))})"
    )


_read_config_files = contextvars.ContextVar("read_config_files", default=True)


class ActionPresetFile(ActionConfigFile):
    """--config: a YAML file, or a bundled preset by name."""

    def __call__(self, parser, cfg, values, option_string=None):
        if _read_config_files.get():
            super().__call__(parser, cfg, resolve_config(values), option_string)


class OneLineErrorParser(LightningArgumentParser):
    """Reports a command-line mistake on one line, like every other error, instead of usage text plus the error."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):  # jsonargparse's own debug switch
            super().error(message, ex)
        sys.stderr.write(
            f"error: {' '.join(message.split())} (options: {self.prog.replace(' [options]', '')} --help)\n"
        )
        self.exit(2)


def default_logger(root: Path, resumed_run: Path | None, resumed_step: int = 0) -> dict[str, Any]:
    """TensorBoard under root/lightning_logs/version_N. A resumed fit keeps logging into the run it resumed, so
    its curves continue; events the interrupted run logged after its checkpoint (resumed_step) are purged, so no
    step appears twice. The hyper-parameters are logged once the random baseline is known (see SampleText),
    with val/loss as their metric, instead of Lightning's placeholder hp_metric."""
    init_args: dict[str, Any] = {"save_dir": str(root), "default_hp_metric": False}
    if resumed_run is not None:
        init_args.update(name=resumed_run.parent.name, version=resumed_run.name, purge_step=resumed_step)
    return {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": init_args}


def check_accelerator(name: Any) -> None:
    """Before the data module is built (a corpus download can come first): the requested accelerator must be usable
    here. A registered accelerator that cannot start raises its own error naming the missing piece."""
    if not isinstance(name, str) or name == "auto":
        return
    candidates = ["cuda", "mps"] if name == "gpu" else [name]
    registered = [candidate for candidate in candidates if candidate in AcceleratorRegistry]
    if registered and not any(AcceleratorRegistry.get(candidate).is_available() for candidate in registered):
        raise HardwareError(f"accelerator {name!r} is not available on this machine: use --trainer.accelerator cpu")


def check_compiler(compile_model: Any, accelerator: Any) -> None:
    """--model.compile true on the CPU: inductor builds C++ kernels there, and without a working compiler it would
    fail with a traceback at the first step. (With compile left to its default the module decides, and falls back.)"""
    on_cpu = accelerator == "cpu" or (
        accelerator in (None, "auto") and not torch.cuda.is_available() and not torch.backends.mps.is_available()
    )
    if compile_model is True and on_cpu and working_cpp_compiler() is None:
        raise HardwareError(
            f"--model.compile true needs a working C++ compiler on the CPU (torch.compile builds C++ kernels), and "
            f"none works here (tried {', '.join(inductor_cpp_compilers()) or 'none'}): install one (e.g. g++) or "
            "point CXX at it, or pass --model.compile false"
        )


TRAINER_RULES = {
    "accumulate_grad_batches": (lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
    "gradient_clip_val": (lambda v: v is None or v >= 0, "a number >= 0 (0 or null: no clipping)"),
    "max_steps": (lambda v: v == -1 or v >= 1, "a whole number >= 1"),
    "log_every_n_steps": (lambda v: v is None or v >= 1, "a whole number >= 1"),
    "val_check_interval": (lambda v: v is None or v > 0, "a number > 0 (batches, or a fraction of an epoch)"),
    # 0 would train nothing and still report the run as done.
    "limit_train_batches": (lambda v: v is None or v > 0, "a number > 0 (batches, or a fraction of an epoch)"),
    "num_sanity_val_steps": (lambda v: v is None or v >= -1, "a whole number >= 0, or -1 for the whole split"),
    "num_nodes": (lambda v: v >= 1, "a whole number >= 1"),
    "devices": (
        lambda v: v in ("auto", -1, "-1") or (isinstance(v, list) and v != []) or int(str(v)) >= 1,
        "a number of devices >= 1, a list of device ids, or auto",
    ),
}
"""Trainer options whose impossible values Lightning would only reject with a traceback (or not at all)."""


def check_trainer_options(trainer: Any) -> None:
    for name, (valid, requirement) in TRAINER_RULES.items():
        value = trainer.get(name)
        try:
            ok = valid(value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidConfigError(f"--trainer.{name} {value!r} is not possible: use {requirement}")


def check_typed_tokenizer(checkpoint_path: str, saved: dict[str, Any], typed: dict[str, Any]) -> None:
    """A --data.tokenizer other than the checkpoint's: its weights only fit the tokenizer they were trained with. Said
    before the data module is built, which for another tokenizer could read or even download a corpus."""
    if not saved or typed.get("tokenizer") in (None, saved["tokenizer"]):
        return
    raise InvalidConfigError(
        f"--ckpt_path {checkpoint_path} was trained with the {saved['tokenizer']} tokenizer, not the "
        f"--data.tokenizer {typed['tokenizer']} given: drop --data.tokenizer (the checkpoint's own tokenizer is "
        f"used), or train a new model with {typed['tokenizer']} without --ckpt_path"
    )


PATH_OPTIONS = {
    "ckpt_path", "ckpt_dir", "path", "cache_dir", "prepared_dir", "tokenizer_path", "prompts_file", "default_root_dir",
    "dirpath", "out", "output",
}  # fmt: skip
"""Options that name a file or directory: an empty string there would mean the current directory (a corpus, an
output folder) or no checkpoint at all, never what was meant."""


def check_no_empty_paths(config: Any, command_line: list[str], command: str) -> None:
    """In a config file (strings) or on the command line (where a Path option has already become '.')."""
    given = [key for key, value in config.items() if isinstance(value, str) and value == ""]
    for i, arg in enumerate(command_line):
        option, equals, value = arg.partition("=")
        if option.startswith("--") and (value == "" if equals else command_line[i + 1 : i + 2] == [""]):
            given.append(option.removeprefix("--"))
    for key in given:
        if key.rsplit(".", 1)[-1] in PATH_OPTIONS:
            raise InvalidConfigError(
                f"--{key} is an empty string: pass a path, or leave the option out ({PROG} {command} --help)"
            )


LOGGED_METRICS = ("val/loss", "val/perplexity")
"""What a fit's validation logs (NanoTricksterModule): the values --checkpoint.monitor can watch when checkpoints
are saved, at the end of validation."""


def check_monitored_metric(monitor: Any) -> None:
    """A metric the fit never logs would stop it with a traceback at the first checkpoint, after training."""
    if monitor is not None and monitor not in LOGGED_METRICS:
        raise InvalidConfigError(
            f"--checkpoint.monitor {monitor!r} is not a metric this model logs: choose one of "
            f"{', '.join(LOGGED_METRICS)} (val/loss is the default), or null to keep the newest checkpoints"
        )


class TricksterCLI(LightningCLI):
    def __init__(self, args: list[str] | None, quiet: bool = False, verbose: bool = False) -> None:
        """args None: read sys.argv. quiet: no progress bar; verbose: Lightning's model summary too."""
        self.quiet, self.verbose = quiet, verbose
        self._requested = next(
            (arg for arg in (sys.argv[1:] if args is None else args) if not arg.startswith("-")), None
        )
        super().__init__(
            NanoTricksterModule,
            ShakespeareDataModule,
            args=args,
            parser_class=OneLineErrorParser,
            parser_kwargs={"prog": PROG, "description": DESCRIPTION},
            # The run summary prints the exact parameter breakdown; Lightning's table comes with --verbose.
            trainer_defaults={
                "callbacks": [
                    RunSummary(),
                    RunReport(),
                    MetricsWriter(),
                    PredictionWriter(),
                    CheckpointDirectoryCheck(),
                ],
                "enable_model_summary": False,
            },
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )

    @property
    def project_command(self) -> str | None:
        subcommand = self.config.get("subcommand")
        return subcommand if subcommand in COMMANDS else None

    # ------------------------------------------------------------------------------------------------ the parser
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        parser = self.parser_class(**kwargs)
        parser.add_argument(
            "-c", "--config", action=ActionPresetFile,
            help=f"A YAML file, or a bundled preset by name ({', '.join(sorted(bundled_configs()))}); repeatable.",
        )  # fmt: skip
        return parser

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

    def _training_options_parser(self) -> LightningArgumentParser:
        """What `fit` parses, without fit's own --ckpt_path: the parser of every command that reads a preset."""
        parser = self.init_parser(prog=f"{PROG} fit")
        self._add_arguments(parser)
        return parser

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """Lightning's fit, validate, test and predict, then the project's commands. Only the command being run gets
        its full parser (each takes Lightning's signatures, a few hundred milliseconds); the others need just a name
        and a description for --help. An unknown command gets them all, for jsonargparse's error."""
        self._subcommand_parsers: dict[str, LightningArgumentParser] = {}
        self._command_options: dict[str, list[str]] = {}
        actions = parser.add_subcommands()
        names = [*self.subcommands(), *COMMANDS]
        build_all = self._requested is not None and self._requested not in names
        for name in names:
            command = COMMANDS.get(name)
            description = command.description if command else inspect.getdoc(getattr(Trainer, name)).split("\n")[0]
            if not build_all and name != self._requested:
                subparser = self.parser_class(description=description)
            elif command is None:
                subparser = self._prepare_subcommand_parser(
                    Trainer, name, description=description, **kwargs.get(name, {})
                )
            else:
                subparser = self._training_options_parser() if command.reads_preset else self.init_parser()
                subparser.description = description
                self._command_options[name] = subparser.add_function_arguments(
                    command.function,
                    nested_key=command.options_group,
                    skip={"preset"},
                    as_positional=command.positional,
                )
            self._subcommand_parsers[name] = subparser
            actions.add_subcommand(name, subparser, help=" ".join(description.split("\n\n")[0].split()))

    # ------------------------------------------------------------------------------------------------ parsing
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._command_line = list(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)
        self._resumed_run: Path | None = None
        subcommand = self.config.get("subcommand")
        if subcommand:
            check_no_empty_paths(self.config[subcommand], self._command_line, subcommand)
        if not subcommand or self.project_command:
            return
        config = self.config[subcommand]
        if subcommand == "fit":
            check_monitored_metric(config.checkpoint.monitor)
        if subcommand == "predict" and not config.get("ckpt_path"):
            # Without one it would sample noise from random weights, after building a vocabulary from the corpus
            # (downloading tiny Shakespeare when no --data.path is given).
            raise InvalidConfigError(
                "predict needs --ckpt_path: pass a .ckpt written by fit, or 'last' for the newest run's last.ckpt"
            )
        if config.get("ckpt_path") == "last":
            # Lightning's own "last" only looks inside the new run's directory; look across runs instead.
            checkpoint = newest_last_checkpoint(Path(config.trainer.default_root_dir or "."))
            config.ckpt_path = str(checkpoint)
            if subcommand == "fit":
                self._resumed_run = checkpoint.parent.parent

    def _parse_ckpt_path(self) -> None:
        """Take the model's shape and settings from the checkpoint, and the char vocabulary it was trained
        with; values typed on the command line (e.g. --model.temperature 0.5) still win.

        Replaces LightningCLI's version, which lets the checkpoint override the command line."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand and not self.project_command else None
        if ckpt_path == "best":  # Lightning's name for the best checkpoint of a fit that ran before, in Python
            raise InvalidConfigError(
                "--ckpt_path best has no earlier fit to refer to in a new command: pass a .ckpt file (a run's "
                "checkpoints/best-*.ckpt), or 'last' for the newest run's last.ckpt"
            )
        if not ckpt_path or ckpt_path == "hpc" or str(ckpt_path).startswith("registry"):
            return  # no checkpoint, or one of Lightning's own names: Lightning resolves it
        checkpoint = read_checkpoint(Path(ckpt_path))  # every checkpoint Lightning loads is checked here first
        self._checkpoint_step = checkpoint.get("global_step", 0)
        model = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
        model.pop("vocab_size", None)  # linked from the data module's tokenizer, restored below
        tokenizer = checkpoint.get(DATAMODULE_KEY, {}).get("tokenizer")
        data = data_args_from_tokenizer_state(tokenizer) if tokenizer else {}
        typed = self._values_given(read_config_files=False)  # what was typed: it wins over the checkpoint
        typed[subcommand].pop("ckpt_path", None)  # "last" was resolved to a file above
        check_typed_tokenizer(ckpt_path, data, typed[subcommand].get("data") or {})
        self._check_config_files_against(ckpt_path, model, data, subcommand, typed[subcommand])
        from_checkpoint = self.parser.parse_object({subcommand: {"model": model, "data": data}}, self.config)
        self.config = self.parser.parse_object(typed, from_checkpoint)

    def _values_given(self, read_config_files: bool) -> dict[str, Any]:
        """The values this command line sets, with or without its config files, and no defaults. (Links need their
        sources, which a parse without defaults lacks: jsonargparse skips them the same way when it reads a config
        file.)"""
        token = _read_config_files.set(read_config_files)
        try:
            with skip_apply_links():
                return self.parser.parse_args(self._command_line, defaults=False).as_dict()
        finally:
            _read_config_files.reset(token)

    def _check_config_files_against(
        self, checkpoint_path: str, model: dict[str, Any], data: dict[str, Any], subcommand: str,
        typed: dict[str, Any],
    ) -> None:  # fmt: skip
        """A config file that sets another model shape or tokenizer than the checkpoint's (e.g. nano.yaml with a
        cpu.yaml checkpoint): fit stops, naming the fields; an evaluation uses the checkpoint's and says so."""
        from_files = self._values_given(read_config_files=True)[subcommand]
        differences = [
            f"{group}.{name} {from_files[group][name]} in the config, {saved[name]} in the checkpoint"
            for group, saved, names in (
                ("model", model, [f.name for f in fields(NanoTricksterConfig) if f.name != "vocab_size"]),
                ("data", data, ["tokenizer"]),
            )
            for name in names
            if name in saved and name in from_files.get(group, {}) and name not in typed.get(group, {})
            and from_files[group][name] != saved[name]
        ]  # fmt: skip
        if not differences:
            return
        if subcommand == "fit":
            raise TricksterError(
                f"--ckpt_path {checkpoint_path} was trained with another model or tokenizer than the config file "
                f"sets ({'; '.join(differences[:3])}): resume with the config the run was trained with (its "
                "config.yaml is in the run's folder), or type the values on the command line to override"
            )
        rank_zero_info(f"using the checkpoint's settings, not the config file's: {'; '.join(differences[:3])}")

    def _set_seed(self) -> None:
        if self.project_command:  # project commands seed what they draw themselves
            return
        try:
            super()._set_seed()
        except ValueError as err:  # numpy's bounds
            raise InvalidConfigError(f"--seed_everything: {err}: pick a seed in that range") from None

    # ------------------------------------------------------------------------------------------------ running
    def before_instantiate_classes(self) -> None:
        if self.project_command:
            return
        subcommand = self.config.subcommand
        config = self.config[subcommand]
        root = Path(config.trainer.default_root_dir or ".")
        if subcommand != "fit":
            # Evaluations write into the evaluated run's eval/ folder, with no logger: no new version_N that plot,
            # stages, TensorBoard or --ckpt_path last would take for a training run.
            config.trainer.default_root_dir = str(evaluation_dir(subcommand, config.get("ckpt_path"), root))
            if config.trainer.logger in (None, True):
                config.trainer.logger = False
        elif config.trainer.logger in (None, True):
            resumed_step = self._checkpoint_step if self._resumed_run else 0
            config.trainer.logger = default_logger(root, self._resumed_run, resumed_step)
        if self.quiet:
            config.trainer.enable_progress_bar = False
        if self.verbose:
            config.trainer.enable_model_summary = True
        require_writable(
            Path(config.trainer.default_root_dir), "output directory",
            "pass --trainer.default_root_dir a directory you can write to",
        )  # fmt: skip
        check_trainer_options(config.trainer)
        check_accelerator(config.trainer.accelerator)
        check_compiler(config.model.get("compile"), config.trainer.accelerator)

    def instantiate_classes(self) -> None:
        if self.project_command:  # project commands build what they need themselves
            return
        try:
            super().instantiate_classes()
        except (TricksterError, TTError):  # already one line naming the fix
            raise
        except (MisconfigurationException, ValueError) as err:
            # Lightning checks the values TRAINER_RULES does not (a bad accelerator or strategy name, negative
            # limits or epochs, an unparsable max_time, ModelCheckpoint's save_top_k) as it builds the Trainer and
            # its callbacks; its messages name the option and the value.
            message = " ".join(str(err).split()).rstrip(".")
            raise InvalidConfigError(
                f"{message}: fix that option ({PROG} {self.config.subcommand} --help lists them)"
            ) from None

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        if config.get("enable_progress_bar") is not False:  # Lightning refuses a progress bar it was told not to show
            callbacks = [*callbacks, StepProgressBar()]
        return super()._instantiate_trainer(config, callbacks)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoint_io(trainer)
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        if not self.project_command:
            super()._run_subcommand(subcommand)
            return
        command, config = COMMANDS[subcommand], self.config[subcommand]
        option_keys = self._command_options[subcommand]
        if command.reads_preset:
            options = {key.rsplit(".", 1)[-1]: config[key] for key in option_keys}
            training_config = config.clone()
            for key in [command.options_group] if command.options_group else option_keys:
                del training_config[key]
            command.function(Preset(training_config, self._training_options_parser()), **options)
        else:
            built = self._subcommand_parsers[subcommand].instantiate_classes(config)
            command.function(**{key: built[key] for key in option_keys})


DESCRIPTION = """Train NanoTrickster from scratch and sample from it.

Global switches, anywhere on the line: -q/--quiet (warnings and errors only, no progress bar), -v/--verbose
(also Lightning's model summary), --debug (the traceback behind a one-line error; or TRICKSTER_DEBUG=1).
Every command has --help."""


def is_out_of_memory(err: BaseException) -> bool:
    """The device or host ran out of memory: a size the user chose does not fit this machine."""
    message = str(err)
    return isinstance(err, MemoryError | torch.OutOfMemoryError) or any(
        text in message for text in ("can't allocate memory", "out of memory", "Out of memory")
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of `python -m lightning_trickster` and the `trickster` command."""
    from_command_line = args is None
    args = list(sys.argv[1:] if from_command_line else args)
    switches = {"-q": "quiet", "--quiet": "quiet", "-v": "verbose", "--verbose": "verbose", "--debug": "debug"}
    given = {switches[arg] for arg in args if arg in switches}
    args = [arg for arg in args if arg not in switches]
    debug = "debug" in given or os.environ.get("TRICKSTER_DEBUG", "") not in ("", "0")
    # SIGINT and SIGTERM stop every command at once with 130/143 (a fit's training steps save last.ckpt first, see
    # CheckpointOnSignal); Lightning adds its own SIGTERM bookkeeping to this handler, it does not replace it.
    handlers = {signum: signal.signal(signum, raise_stopped_by_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    if "quiet" in given:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
    try:
        if from_command_line:  # LightningCLI reads sys.argv itself (and warns when given both)
            sys.argv[1:], args = args, None
        with warnings.catch_warnings():
            for message in UNACTIONABLE_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            TricksterCLI(args, quiet="quiet" in given, verbose="verbose" in given)
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None
    except (MemoryError, RuntimeError) as err:  # torch.OutOfMemoryError is a RuntimeError
        if debug or not is_out_of_memory(err):
            raise
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        sys.stderr.write(
            f"error: out of memory ({reason}): lower --data.batch_size, --model.max_seq_len or the model's size\n"
        )
        raise SystemExit(2) from None
    except (TricksterError, TTError, StoppedBySignal) as err:
        if debug:
            raise
        sys.stderr.write(f"\nerror: {err}\n" if isinstance(err, StoppedBySignal) else f"error: {err}\n")
        raise SystemExit(getattr(err, "exit_code", 2)) from None
    finally:  # main() called from Python (the tests) leaves signal handling and logging as it found them
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
