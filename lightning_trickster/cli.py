"""The one front door: `python -m lightning_trickster COMMAND` (or `trickster COMMAND`).

A small dispatch in front: `--help` lists every command, and each command has a parser of its own from one parser
family (jsonargparse). fit, validate, test and predict run on LightningCLI's public API (run=False, its hooks, then
the Trainer method called here); every project command (lightning_trickster.commands) takes options derived from
its function's signature. `--config` takes a YAML path or a bundled preset's name; `--ckpt_path last` means the
newest run's last.ckpt, and a checkpoint's settings are the defaults that config files and the command line override.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import lightning_tt.register  # noqa: F401  registers accelerator "tt" and strategies "tt", "tt_ddp" by name
import torch
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, set_parsing_settings
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning_tt.errors import TTError

from lightning_trickster.callbacks import MetricsWriter, PredictionWriter, RunSummary, SampleText
from lightning_trickster.checkpoint import (
    DATAMODULE_KEY,
    check_same_architecture,
    read_checkpoint,
    reconcile_with_checkpoint,
    saved_settings,
)
from lightning_trickster.commands import COMMANDS, Command, FitConfig
from lightning_trickster.data import CorpusDataModule, data_args_from_tokenizer_state
from lightning_trickster.errors import InvalidConfigError, StoppedBySignal, TricksterError, not_a_readable_file
from lightning_trickster.init_from import InitialWeights, check_typed_shape, read_initial_weights
from lightning_trickster.legacy import translate_arguments, translate_config
from lightning_trickster.model import SamplingSettings
from lightning_trickster.module import NanoTricksterModule
from lightning_trickster.option_checks import (
    check_accelerator,
    check_compiler,
    check_context_length,
    check_monitored_metric,
    check_no_empty_paths,
    check_seed,
    check_trainer_options,
    typed_options,
)
from lightning_trickster.progress import RunReport, StepProgressBar, use_line_buffered_output
from lightning_trickster.reliability import (
    CheckpointDirectoryCheck,
    CheckpointOnSignal,
    NonFiniteGuard,
    install_stop_handlers,
    require_writable,
    use_atomic_checkpoint_io,
)
from lightning_trickster.runs import (
    RunLock,
    evaluation_dir,
    newest_last_checkpoint,
    run_folder_of,
    wait_for_a_later_event_file_name,
)

# The console script `trickster` is the same program under its own name.
PROG = "trickster" if Path(sys.argv[0]).name == "trickster" else "python -m lightning_trickster"

UNACTIONABLE_WARNINGS = (
    # Lightning 2.6 calls a torch pytree API that newer torch deprecates.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # ModelCheckpoint on a resumed run's existing checkpoints/ folder, and on a resume from a checkpoint written
    # elsewhere (its best-so-far bookkeeping restarts; the run's own lines account for it).
    r"Checkpoint directory .* exists and is not empty",
    r"The dirpath has changed from",
    # FSDP on one process has nothing to shard: torch says so at the start and at every full checkpoint.
    r"FSDP is switching to use `NO_SHARD`",
    r"When using ``NO_SHARD`` for ``ShardingStrategy``",
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
    problem = not_a_readable_file(Path(value)) if value else None
    if problem and problem != "not found":
        raise TricksterError(f"config {value} {problem}: pass a YAML file, or a bundled preset's name")
    presets = bundled_configs()
    name = Path(value).stem
    if Path(value).name in (name, f"{name}.yaml") and name in presets:
        return str(presets[name])
    raise TricksterError(
        f"config {value!r} not found: pass an existing YAML path or a bundled preset ({', '.join(sorted(presets))})"
    )


def own_error_behind(err: BaseException) -> TricksterError | None:
    """The first of this program's one-line errors among the causes of err."""
    seen: set[int] = set()
    cause = err.__cause__ or err.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, TricksterError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def fsdp_without_a_gpu(strategy: object, accelerator: object) -> bool:
    """`--trainer.strategy fsdp` where the run has no GPU: on the CPU accelerator, or "auto" without CUDA."""
    if not isinstance(strategy, str) or strategy.lower() != "fsdp":
        return False
    return accelerator == "cpu" or (accelerator in ("auto", None) and not torch.cuda.is_available())


OPTION_GROUPS = ("trainer", "model", "data", "sampling", "checkpoint", "samples", "interrupt", "nonfinite")
"""The top-level keys of a config file that hold options of their own (trainer: max_steps: ...)."""


def check_option_groups(content: dict[str, Any], config: str) -> None:
    """A group given a plain value (`trainer: 5`, `data: [1]`) would end in a traceback when its options are read."""
    for key in OPTION_GROUPS:
        value = content.get(key)
        if value is not None and not isinstance(value, (dict, str)):
            raise TricksterError(
                f"config {config} sets {key} to {value!r}, but {key} holds options: write them indented under "
                f"{key}: (e.g. `{key}:` then `  {EXAMPLE_OPTION[key]}` on the next line), or leave {key} out"
            )


EXAMPLE_OPTION = {
    "trainer": "max_steps: 100", "model": "hidden_dim: 64", "data": "batch_size: 8", "sampling": "temperature: 0.8",
    "checkpoint": "save_top_k: 1", "samples": "every_n_steps: 100", "interrupt": "signals: [SIGINT]",
    "nonfinite": "action: stop",
}  # fmt: skip


class ActionPresetFile(ActionConfigFile):
    """--config: a YAML file, or a bundled preset by name. A file that uses old option names (a run's config.yaml
    from before the settings were grouped) is read with them moved to today's, one deprecation line each."""

    def __call__(self, parser, cfg, values, option_string=None):
        path = resolve_config(values)
        try:
            content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except yaml.YAMLError:
            content = None  # jsonargparse reports the syntax error
        if isinstance(content, dict):
            check_option_groups(content, values)
        if isinstance(content, dict) and translate_config(content, path):
            super().__call__(parser, cfg, yaml.safe_dump(content, sort_keys=False), option_string)
        else:
            super().__call__(parser, cfg, path, option_string)


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
        wait_for_a_later_event_file_name(resumed_run)
    return {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": init_args}


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


class TricksterCLI(LightningCLI):
    """fit, validate, test or predict of NanoTricksterModule on CorpusDataModule, on LightningCLI's public hooks. With
    `command_options` it only parses: a project command's own options beside every fit option (FitConfig)."""

    def __init__(
        self, command: str, args: list[str], quiet: bool = False, verbose: bool = False,
        command_options: Command | None = None, prog: str | None = None,
    ) -> None:  # fmt: skip
        """quiet: no progress bar; verbose: Lightning's model summary too. prog: the command as --help shows it."""
        self.command, self.command_line = command, args
        self.quiet, self.verbose = quiet, verbose
        self.command_options = command_options
        self.option_keys: list[str] = []
        self.checkpoint: dict[str, Any] | None = None
        self.resumed_run: Path | None = None
        self.initial_weights: InitialWeights | None = None
        self.seed: Any = None
        description = command_options.description if command_options else _first_paragraph(getattr(Trainer, command))
        super().__init__(
            NanoTricksterModule,
            CorpusDataModule,
            args=args,
            run=False,
            parser_class=OneLineErrorParser,
            parser_kwargs={"prog": prog or f"{PROG} {command}", "description": description},
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
        # One sampling group in every command; the module keeps it in its hyper-parameters (checkpoints).
        parser.add_class_arguments(SamplingSettings, "sampling")
        parser.link_arguments("sampling", "model.sampling")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # Before sampling: its hooks then run first, so a NaN model is reported before anything samples from it.
        parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")
        parser.add_lightning_class_args(SampleText, "samples")
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
        if self.command == "fit" and self.command_options is None:
            parser.add_argument(
                "--init_from", type=str | None, default=None,
                help="Start a new run from the weights of a .ckpt written by fit, a directory written by export, or a "
                "Hugging Face Llama directory, with a fresh optimizer, schedule and step count; the model's shape and "
                "tokenizer are the source's.",
            )  # fmt: skip
        if self.command_options is None:
            parser.add_argument(
                "--ckpt_path", type=str | None, default=None,
                help="A .ckpt written by fit, or 'last' for the newest run's last.ckpt under "
                "--trainer.default_root_dir. Its model shape, tokenizer, optimization and sampling settings are the "
                "defaults; config files and the command line override them.",
            )  # fmt: skip
        else:
            command = self.command_options
            self.option_keys = parser.add_function_arguments(
                command.function, nested_key=command.options_group, skip={"fit_config"},
                as_positional=command.positional,
            )  # fmt: skip

    # ------------------------------------------------------------------------------------------------ parsing
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self.config = parser.parse_args(args)
        check_no_empty_paths(self.config, args, parser.prog)
        check_seed(self.config.seed_everything)
        if self.command_options is not None:
            # Only parsed: a project command seeds what it draws itself (and Lightning would print the seed).
            self.seed, self.config.seed_everything = self.config.seed_everything, False
            return
        if self.command == "fit":
            check_monitored_metric(self.config.checkpoint.monitor)
        ckpt_path = self.config.ckpt_path
        if self.command == "predict" and not ckpt_path:
            # Without one it would sample noise from random weights, after building a vocabulary from the corpus
            # (downloading tiny Shakespeare when no --data.path is given).
            raise InvalidConfigError(
                "predict needs --ckpt_path: pass a .ckpt written by fit, or 'last' for the newest run's last.ckpt"
            )
        if ckpt_path == "best":  # Lightning's name for the best checkpoint of a fit that ran before, in Python
            raise InvalidConfigError(
                "--ckpt_path best has no earlier fit to refer to in a new command: pass a .ckpt file (a run's "
                "checkpoints/best-*.ckpt), or 'last' for the newest run's last.ckpt"
            )
        if self.config.get("init_from"):
            self.start_from_weights(parser, args, self.config.init_from)
            return
        if not ckpt_path or ckpt_path == "hpc" or ckpt_path.startswith("registry"):
            return  # no checkpoint, or one of Lightning's own names: Lightning resolves it
        if ckpt_path == "last":
            # Lightning's own "last" only looks inside the new run's directory; look across runs instead.
            ckpt_path = str(newest_last_checkpoint(Path(self.config.trainer.default_root_dir or ".")))
            if self.command == "fit":
                self.resumed_run = run_folder_of(Path(ckpt_path))  # None for Lightning's hpc_ckpt: a new run
        self.checkpoint = read_checkpoint(ckpt_path)  # every checkpoint Lightning loads is checked here first
        saved = saved_settings(self.checkpoint)
        tokenizer = self.checkpoint.get(DATAMODULE_KEY, {}).get("tokenizer")
        if tokenizer:
            saved.update({f"data.{key}": value for key, value in data_args_from_tokenizer_state(tokenizer).items()})
        self.parse_with_saved_defaults(parser, args, saved, f"--ckpt_path {ckpt_path}", self.command)
        self.config.ckpt_path = ckpt_path

    def start_from_weights(self, parser: LightningArgumentParser, args: list[str], path: str) -> None:
        """fit --init_from: the source's shape and tokenizer become this run's, and its weights the starting point."""
        if self.config.ckpt_path:
            raise InvalidConfigError(
                "--init_from starts a new run from a model's weights and --ckpt_path resumes a run with its optimizer "
                "and schedule: pass one of them"
            )
        self.initial_weights = read_initial_weights(path)
        saved = {f"model.{name}": value for name, value in self.initial_weights.shape.items() if name != "vocab_size"}
        tokenizer = self.initial_weights.tokenizer.state_dict()
        saved.update({f"data.{key}": value for key, value in data_args_from_tokenizer_state(tokenizer).items()})
        self.parse_with_saved_defaults(parser, args, saved, f"--init_from {path}", "init_from")
        configured = {key: self.config.get(key) for key in saved}
        check_typed_shape(self.initial_weights, path, configured, typed_options(args))

    def parse_with_saved_defaults(
        self, parser: LightningArgumentParser, args: list[str], saved: dict[str, Any], source: str, command: str
    ) -> None:
        """Parse again with a checkpoint's settings as defaults: config files and the command line win, within the
        rule of reconcile_with_checkpoint."""
        parser.set_defaults(saved)
        self.config = parser.parse_args(args)
        configured = {key: self.config.get(key) for key in saved}
        kept = reconcile_with_checkpoint(source, saved, configured, typed_options(args), command)
        if kept:
            rank_zero_info(
                "using the checkpoint's settings, not the config file's: "
                + "; ".join(f"{key} {mine} in the config, {theirs} in the checkpoint" for key, (mine, theirs) in
                            list(kept.items())[:3])
            )  # fmt: skip
            # Options after the config files override them.
            overrides = [f"--{key}={yaml.safe_dump(theirs).splitlines()[0]}" for key, (_, theirs) in kept.items()]
            self.config = parser.parse_args([*args, *overrides])

    # ------------------------------------------------------------------------------------------------ building
    def before_instantiate_classes(self) -> None:
        if self.command_options is not None:
            return
        config = self.config
        root = Path(config.trainer.default_root_dir or ".")
        if self.command != "fit":
            # Evaluations write into the evaluated run's eval/ folder, with no logger: no new version_N that plot,
            # stages, TensorBoard or --ckpt_path last would take for a training run.
            config.trainer.default_root_dir = str(evaluation_dir(self.command, config.ckpt_path, root))
            if config.trainer.logger in (None, True):
                config.trainer.logger = False
        elif config.trainer.logger in (None, True):
            resumed_step = self.checkpoint.get("global_step", 0) if self.resumed_run else 0
            config.trainer.logger = default_logger(root, self.resumed_run, resumed_step)
        if self.quiet:
            config.trainer.enable_progress_bar = False
        if self.verbose:
            config.trainer.enable_model_summary = True
        require_writable(
            Path(config.trainer.default_root_dir), "output directory",
            "pass --trainer.default_root_dir a directory you can write to",
        )  # fmt: skip
        check_trainer_options(config.trainer)
        check_context_length(config.model.max_seq_len)
        check_accelerator(config.trainer.accelerator)
        check_compiler(config.model.compile, config.trainer.accelerator)
        if config.trainer.enable_progress_bar is not False:  # Lightning refuses a bar it was told not to show
            self.trainer_defaults["callbacks"] = [*self.trainer_defaults["callbacks"], StepProgressBar()]

    def instantiate_classes(self) -> None:
        if self.command_options is not None:  # parse only: the command builds what it needs
            return
        try:
            super().instantiate_classes()
        except (TricksterError, TTError):  # already one line naming the fix
            raise
        except (MisconfigurationException, ValueError) as err:
            own = own_error_behind(err)
            if own is not None:  # a check of ours behind jsonargparse's report on a linked group (--sampling.*)
                raise own from None
            # Lightning checks the values TRAINER_RULES does not (a bad accelerator or strategy name, negative
            # limits or epochs, an unparsable max_time, ModelCheckpoint's save_top_k) as it builds the Trainer and
            # its callbacks; its messages name the option and the value.
            message = " ".join(str(err).split()).rstrip(".")
            raise InvalidConfigError(f"{message}: fix that option ({PROG} {self.command} --help lists them)") from None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        settings = self.config_init.get("trainer") or Namespace()
        if fsdp_without_a_gpu(settings.get("strategy"), settings.get("accelerator")):
            # Lightning's FSDPStrategy refuses a CPU; torch's FSDP shards over CPU processes (gloo) as well.
            from lightning_trickster.sharding import ShardedStrategy

            kwargs["strategy"] = ShardedStrategy()
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoint_io(trainer)
        return trainer

    # ------------------------------------------------------------------------------------------------ running
    def run(self) -> None:
        if self.checkpoint is not None:  # before Lightning loads it: a fit that is already done loads nothing
            check_same_architecture(self.checkpoint, self.model.hparams, self.model.state_dict())
        if self.command == "fit" and self.checkpoint is not None:
            step, max_steps = self.checkpoint.get("global_step", 0), self.trainer.max_steps
            if 0 < max_steps <= step:
                rank_zero_info(
                    f"fit: --ckpt_path {self.config.ckpt_path} already reached step {step} of --trainer.max_steps "
                    f"{max_steps}: nothing to train; pass a larger --trainer.max_steps to train on"
                )
                return
        if self.initial_weights is not None:
            self.model.model.load_state_dict(self.initial_weights.weights)
            rank_zero_info(f"init: weights from {self.initial_weights.description}; fresh optimizer and schedule")
        arguments: dict[str, Any] = {"datamodule": self.datamodule, "ckpt_path": self.config.ckpt_path}
        if self.command == "predict":
            arguments["return_predictions"] = False  # PredictionWriter writes them as they come
        run_lock = self.run_lock()
        try:
            getattr(self.trainer, self.command)(self.model, **arguments)
        finally:
            if run_lock is not None:
                run_lock.release()

    def run_lock(self) -> RunLock | None:
        """One writer per run folder: a fit's rank 0 holds its run's lock for the whole fit (evaluations only read)."""
        if self.command != "fit" or not self.trainer.is_global_zero:
            return None
        logger = self.trainer.logger
        run = self.resumed_run or (Path(logger.log_dir) if isinstance(logger, TensorBoardLogger) else None)
        return RunLock(run).acquire() if run is not None else None

    def fit_config(self) -> FitConfig:
        """The parsed fit options without the command's own (seed as given)."""
        config = self.config.clone()
        config.seed_everything = self.seed
        return FitConfig(config, self.parser, self.option_keys)


def _first_paragraph(function: Any) -> str:
    return (function.__doc__ or "").strip().split("\n\n")[0]


def run_command(command: Command, args: list[str], prog: str) -> None:
    """Parse a command function's options from args (with every fit option too, when it takes a FitConfig) and call
    it. The project's commands run through here, and so do the harnesses under benchmarks/."""
    if command.reads_fit_config:
        cli = TricksterCLI(prog.rsplit(" ", 1)[-1], args, command_options=command, prog=prog)
        fit_config = cli.fit_config()
        options = {key.rsplit(".", 1)[-1]: fit_config.full[key] for key in cli.option_keys}
        command.function(fit_config, **options)
        return
    parser = OneLineErrorParser(prog=prog, description=command.description)
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="A YAML file of this command's options.")
    keys = parser.add_function_arguments(
        command.function, nested_key=command.options_group, as_positional=command.positional
    )
    config = parser.parse_args(args)
    check_no_empty_paths(config, args, parser.prog)
    built = parser.instantiate(config)
    command.function(**{key.rsplit(".", 1)[-1]: built[key] for key in keys})


def commands_parser() -> ArgumentParser:
    """What `--help` shows: every command with the first line of its description."""
    parser = OneLineErrorParser(prog=PROG, description=DESCRIPTION)
    subcommands = parser.add_subcommands(required=True, dest="command")
    for name in [*LIGHTNING_COMMANDS, *COMMANDS]:
        description = COMMANDS[name].description if name in COMMANDS else _first_paragraph(getattr(Trainer, name))
        subcommands.add_subcommand(name, ArgumentParser(description=description),
                                   help=" ".join(description.split("\n\n")[0].split()))  # fmt: skip
    return parser


def run(args: list[str], quiet: bool = False, verbose: bool = False) -> None:
    if not args or args[0] not in (*LIGHTNING_COMMANDS, *COMMANDS):
        commands_parser().parse_args(args)  # --help, or an error naming the choices
        return
    name, args = args[0], translate_arguments(args[1:])
    # --help of a dataclass option (the model shape, SamplingSettings) shows each field's docstring; reading them
    # parses the classes' source, about a second of every start-up, so only a command that shows help reads them.
    set_parsing_settings(docstring_parse_attribute_docstrings=shows_help(args))
    if name in LIGHTNING_COMMANDS:
        TricksterCLI(name, args, quiet=quiet, verbose=verbose).run()
    else:
        run_command(COMMANDS[name], args, f"{PROG} {name}")


def shows_help(args: list[str]) -> bool:
    """Whether a command's arguments ask for help text: --help, a group's help (--model.help) or a commented
    --print_config."""
    return any(arg in ("-h", "--help") or arg.endswith(".help") or arg.startswith("--print_config") for arg in args)


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
    use_line_buffered_output()  # a log file or pipe gets each line as it is printed
    from_command_line = args is None
    args = list(sys.argv[1:] if from_command_line else args)
    switches = {"-q": "quiet", "--quiet": "quiet", "-v": "verbose", "--verbose": "verbose", "--debug": "debug"}
    given = {switches[arg] for arg in args if arg in switches}
    args = [arg for arg in args if arg not in switches]
    debug = "debug" in given or os.environ.get("TRICKSTER_DEBUG", "") not in ("", "0")
    # SIGINT, SIGTERM and SIGHUP stop every command at once with 130/143/129 (a fit's training steps save last.ckpt
    # first, see CheckpointOnSignal); Lightning adds its own SIGTERM bookkeeping to this handler, it does not
    # replace it.
    restore_signal_handlers = install_stop_handlers()
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    if "quiet" in given:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in UNACTIONABLE_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            run(args, quiet="quiet" in given, verbose="verbose" in given)
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
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone (EIO)
            if getattr(err, "report", True):  # a fit's signal stop is reported by rank 0 alone
                sys.stderr.write(f"\nerror: {err}\n" if isinstance(err, StoppedBySignal) else f"error: {err}\n")
        raise SystemExit(getattr(err, "exit_code", 2)) from None
    except OSError as err:  # a write no handler named: standard output (`> /dev/full`), a library's own file
        from lightning_trickster.reliability import WRITE_FAILURES, standard_output_failed, unhandled_write_failure

        if debug or err.errno not in WRITE_FAILURES:
            raise
        message = unhandled_write_failure(err, args[0] if args else "")
        if standard_output_failed(err):  # what is still buffered for it must not fail again at exit
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        with contextlib.suppress(OSError):
            sys.stderr.write(f"error: {message}\n")
        raise SystemExit(2) from None
    finally:  # main() called from Python (the tests) leaves signal handling and logging as it found them
        restore_signal_handlers()
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
