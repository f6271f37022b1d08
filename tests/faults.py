"""The fault suite: `python tests/faults.py [--kills N] [--seed S]`. Kills fits with SIGKILL at random steps and in
the middle of a checkpoint write, stops them with SIGINT/SIGTERM, feeds them a NaN loss, fills a real disk (a small
tmpfs, mounted as root) under a checkpoint save, resumes each with --ckpt_path last and compares the result with an
uninterrupted run; then drives the CLI with every bad input of the reliability list. Prints a summary table. Its
CI-sized cases are tests/test_faults.py, tests/test_realfaults.py and tests/test_bad_input.py.

The fault injectors below are ordinary callbacks, added to a real `fit` with --trainer.callbacks+=... (the child
processes import this file as the module `faults`, with tests/ on their PYTHONPATH).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from conftest import fit_args, write_small_corpus

from lightning_trickster.checkpoint import DATAMODULE_KEY, read_checkpoint
from lightning_trickster.errors import TricksterError
from lightning_trickster.model import NanoTrickster, NanoTricksterConfig, pick_fields
from lightning_trickster.runs import newest_last_checkpoint, read_scalars

TESTS_DIR = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------------------------------
# Fault injectors


class KillAtStep(pl.Callback):
    """SIGKILL this process right after optimizer step `step` completes (before that step's checkpoint, if any)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class FailingCheckpointWrite(pl.Callback):
    """Replace the `save_number`-th checkpoint write of this process (1 = the first) with `fail`."""

    def __init__(self, save_number: int) -> None:
        self.save_number = save_number
        self.saves = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        checkpoint_io = trainer.strategy.checkpoint_io
        complete_write = checkpoint_io.write

        def write(checkpoint: dict[str, Any], file: Any) -> None:
            self.saves += 1
            if self.saves == self.save_number:
                self.fail(checkpoint, file)
            complete_write(checkpoint, file)

        checkpoint_io.write = write

    def fail(self, checkpoint: dict[str, Any], file: Any) -> None:
        raise NotImplementedError


class KillDuringCheckpointWrite(FailingCheckpointWrite):
    """SIGKILL this process half way through writing its `save_number`-th checkpoint file (1 = the first)."""

    def fail(self, checkpoint: dict[str, Any], file: Any) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        file.write(buffer.getvalue()[: buffer.tell() // 2])
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)


class SignalDuringStep(pl.Callback):
    """Send `signal_name` to this process `delay_s` seconds after optimizer step `step` completes, so it lands at
    an arbitrary point of a later step (a real signal through the kernel, from a timer thread)."""

    def __init__(self, step: int, signal_name: str, delay_s: float) -> None:
        self.step = step
        self.signum = signal.Signals[signal_name]
        self.delay_s = delay_s

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            threading.Timer(self.delay_s, os.kill, (os.getpid(), self.signum)).start()


class SignalAfterBatch(pl.Callback):
    """Send `signal_name` to this process (a real signal through the kernel) at the end of micro-batch `batch` (0 =
    the fit's first; counted over the whole run, resumes included), so with gradient accumulation it can land between
    the micro-batches of one optimizer step."""

    def __init__(self, batch: int, signal_name: str) -> None:
        self.batch = batch
        self.signum = signal.Signals[signal_name]

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.fit_loop.epoch_loop.total_batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


class SignalRanksAtStep(pl.Callback):
    """Rank 0 sends `signal_name` right after optimizer step `step` completes, through the kernel, to `target`: "group"
    (its whole process group, every rank and DataLoader worker, as a batch system's time limit or a terminal's Ctrl-C
    reaches them) or "other_ranks" (only the ranks it started, as a `kill` of one process would)."""

    def __init__(self, step: int, signal_name: str, target: Literal["group", "other_ranks"] = "group") -> None:
        self.step = step
        self.signum = signal.Signals[signal_name]
        self.target = target
        self.sent = False

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.sent or not trainer.is_global_zero or trainer.global_step != self.step:
            return
        self.sent = True
        if self.target == "group":
            os.killpg(os.getpgid(0), self.signum)
        else:
            for child in trainer.strategy.launcher.procs:
                os.kill(child.pid, self.signum)


class SignalGroupAtStart(pl.Callback):
    """Rank 0 sends `signal_name` to its whole process group as the fit starts: at `hook` "on_fit_start" (before
    Lightning installs its own SIGTERM handler) or "on_train_start" (before the start-up baseline's collectives)."""

    def __init__(self, hook: Literal["on_fit_start", "on_train_start"], signal_name: str = "SIGTERM") -> None:
        self.hook = hook
        self.signum = signal.Signals[signal_name]

    def _send(self, trainer: pl.Trainer, hook: str) -> None:
        if hook == self.hook and trainer.is_global_zero:
            os.killpg(os.getpgid(0), self.signum)

    def on_fit_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._send(trainer, "on_fit_start")

    def on_train_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._send(trainer, "on_train_start")


class SleepAfterBatch(pl.Callback):
    """Sleep `seconds` at the end of every micro-batch whose index (0-based, over the run) is a multiple of `every`:
    with accumulation 2 and every=2, the first micro-batch of each optimizer step, so that a checkpoint saved by time
    (--checkpoint.train_time_interval, checked after this callback) falls inside the step."""

    def __init__(self, seconds: float, every: int = 2) -> None:
        self.seconds = seconds
        self.every = every

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.fit_loop.epoch_loop.total_batch_idx % self.every == 0:
            time.sleep(self.seconds)


class InjectNonFiniteLoss(pl.Callback):
    """Make the loss of optimizer step `step` NaN (its gradients follow), as a numerical blow-up would."""

    def __init__(self, step: int) -> None:
        self.step = step
        self._hook: Any = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.step and self._hook is None:
            self._hook = pl_module.model.register_forward_hook(lambda m, i, out: (out[0], out[1] * math.nan))

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self._hook is not None and trainer.global_step > self.step:
            self._hook.remove()
            self._hook = None


def injector(cls: type, **init_args: Any) -> list[str]:
    spec = {"class_path": f"faults.{cls.__name__}", "init_args": init_args}
    return [f"--trainer.callbacks+={json.dumps(spec)}"]


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs: each must end in one `error: ...` line on stderr, a non-zero exit and no traceback.


def fit_command(corpus: Path, root: Path, max_steps: int, *extra: str) -> list[str]:
    return fit_args(corpus, root, *extra, max_steps=max_steps)


@dataclass
class BadInput:
    name: str
    args: list[str]
    expect: str
    """A fragment the one-line message must contain."""
    env: dict[str, str] = field(default_factory=dict)
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    """What the case changes in this process while it runs (e.g. the C++ compiler inductor looks for)."""


# A proxy that refuses connections: the real download path fails at once, as it does offline.
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}


@contextlib.contextmanager
def no_cpp_compiler() -> Iterator[None]:
    """Inductor finds no C++ compiler, as on a machine without one (its $CXX is read once, at import; so this
    replaces its search list instead)."""
    from torch._inductor import config as inductor_config

    from lightning_trickster.reliability import working_cpp_compiler

    saved = inductor_config.cpp.cxx
    inductor_config.cpp.cxx = (None, "/nonexistent/g++")
    working_cpp_compiler.cache_clear()
    try:
        yield
    finally:
        inductor_config.cpp.cxx = saved
        working_cpp_compiler.cache_clear()


def write_bad_checkpoints(workspace: Path, checkpoint: Path) -> None:
    """Files that are valid torch files but not complete checkpoints of this project, and the checkpoint of the same
    run as if it had been trained with the byte tokenizer."""
    saved = torch.load(checkpoint, weights_only=True)
    weights = saved["state_dict"]
    torch.save({"foo": 1}, workspace / "foreign.ckpt")
    torch.save(weights, workspace / "bare_state_dict.ckpt")
    torch.save({k: v for k, v in saved.items() if k != "hyper_parameters"}, workspace / "no_hparams.ckpt")
    torch.save({**saved, "state_dict": {"encoder.weight": torch.ones(3, 3)}}, workspace / "other_model.ckpt")
    bigger = {name: torch.zeros([size + 1 for size in tensor.shape]) for name, tensor in weights.items()}
    torch.save({**saved, "state_dict": bigger}, workspace / "other_shapes.ckpt")
    (workspace / "empty.ckpt").write_bytes(b"")
    (workspace / "text.ckpt").write_text("step 3, val loss 5.2\n")
    (workspace / "directory.ckpt").mkdir(exist_ok=True)
    byte_shape = {**saved["hyper_parameters"], "vocab_size": 256}
    byte_model = NanoTrickster(NanoTricksterConfig(**pick_fields(NanoTricksterConfig, byte_shape)))
    byte_weights = {f"model.{name}": tensor for name, tensor in byte_model.state_dict().items()}
    torch.save({**saved, "hyper_parameters": byte_shape, "state_dict": byte_weights,
                DATAMODULE_KEY: {"tokenizer": {"name": "byte"}}}, workspace / "byte.ckpt")  # fmt: skip
    stages_run = workspace / "truncated_run" / "checkpoints"
    stages_run.mkdir(parents=True, exist_ok=True)
    data = checkpoint.read_bytes()
    (stages_run / "last.ckpt").write_bytes(data[: len(data) // 2])


def bad_input_cases(workspace: Path, checkpoint: Path) -> list[BadInput]:
    """The reliability list; `checkpoint` is a last.ckpt of a finished tiny fit on workspace/corpus.txt."""
    workspace.mkdir(parents=True, exist_ok=True)
    corpus = workspace / "corpus.txt"
    if not corpus.exists():
        write_small_corpus(corpus)
    (workspace / "empty.txt").write_bytes(b"")
    (workspace / "short.txt").write_text("To be, or not to be.")
    (workspace / "latin1.txt").write_bytes("café crème brûlée ".encode("latin-1") * 50)
    (workspace / "random.ckpt").write_bytes(random.Random(0).randbytes(8192))
    data = checkpoint.read_bytes()
    (workspace / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (workspace / "a_file").write_text("not a directory")
    runs = workspace / "runs"
    write_bad_checkpoints(workspace, checkpoint)
    (workspace / "prompts.bin").write_bytes(b"Line\n\xff\xfe\x00\x01")
    (workspace / "corpus_dir").mkdir(exist_ok=True)
    (workspace / "corpus_dir" / "weights.bin").write_bytes(bytes(range(256)) * 4)

    def fit(*extra: str) -> list[str]:
        return fit_command(corpus, runs, 3, *extra)

    def predict(*extra: str) -> list[str]:
        return [
            "predict",
            "--config",
            "cpu.yaml",
            "--trainer.default_root_dir",
            str(runs),
            "--trainer.enable_progress_bar",
            "false",
            "--ckpt_path",
            str(checkpoint),
            "--data.prompts",
            '["Line"]',
            *extra,
        ]

    def evaluate(command: str, *extra: str) -> list[str]:
        return [
            command, "--config", "cpu.yaml", "--data.path", str(corpus), "--trainer.default_root_dir", str(runs),
            "--data.cache_dir", str(runs / "data"), "--trainer.enable_progress_bar", "false", *extra,
        ]  # fmt: skip

    def ckpt(name: str) -> str:
        return str(workspace / name)

    return [
        BadInput("missing data file", fit("--data.path", str(workspace / "missing.txt")), "not found"),
        BadInput("empty data file", fit("--data.path", str(workspace / "empty.txt")), "is empty"),
        BadInput(
            "corpus shorter than one window",
            fit("--data.path", str(workspace / "short.txt")),
            "shorter than one window",
        ),
        BadInput("non-UTF-8 file, char tokenizer", fit("--data.path", str(workspace / "latin1.txt")), "not UTF-8"),
        BadInput("hidden_dim not divisible by num_heads", fit("--model.num_heads", "3"), "not divisible"),
        BadInput("odd head dim", fit("--model.hidden_dim", "6", "--model.num_heads", "2"), "is odd"),
        BadInput("non-positive size (num_layers 0)", fit("--model.num_layers", "0"), "num_layers must be a positive"),
        BadInput("non-positive size (batch_size -1)", fit("--data.batch_size", "-1"), "batch_size must be positive"),
        BadInput(
            "block size set apart from max_seq_len",
            fit("--data.block_size", "64"),
            'must be given via "model.max_seq_len"',
        ),
        BadInput("negative learning rate", fit("--model.optimization.learning_rate", "-0.001"),
                 "learning_rate must be positive"),
        BadInput("negative warmup", fit("--model.optimization.warmup_steps", "-1"), "warmup_steps must be >= 0"),
        BadInput("unknown config name", ["fit", "--config", "giant"], "config 'giant' not found"),
        BadInput(
            "corrupt checkpoint (random bytes)", fit("--ckpt_path", str(workspace / "random.ckpt")), "could not be read"
        ),
        BadInput(
            "corrupt checkpoint (truncated)",
            predict("--ckpt_path", str(workspace / "truncated.ckpt")),
            "could not be read",
        ),
        BadInput("missing checkpoint file", fit("--ckpt_path", str(workspace / "missing.ckpt")), "not found"),
        BadInput(
            "checkpoint of another architecture",
            fit("--ckpt_path", str(checkpoint), "--model.hidden_dim", "64", "--trainer.max_steps", "6"),
            "different model shape",
        ),
        BadInput(
            "prompt outside the char vocabulary", predict("--data.prompts", '["Zebra§"]'), "outside the char vocabulary"
        ),
        BadInput("empty prompt", predict("--data.prompts", '[""]'), "prompt is empty"),
        BadInput(
            "negative temperature", predict("--sampling.temperature", "-1"), "temperature must be a finite number >= 0"
        ),
        BadInput("top_k < 0", predict("--sampling.top_k", "-1"), "top_k must be between 1"),
        BadInput("top_k > vocab", predict("--sampling.top_k", "1000"), "top_k must be between 1"),
        BadInput("top_p = 0", predict("--sampling.top_p", "0"), "top_p must be in (0, 1]"),
        BadInput("top_p > 1", predict("--sampling.top_p", "1.5"), "top_p must be in (0, 1]"),
        BadInput("negative max_new_tokens", predict("--sampling.max_new_tokens", "-5"), "max_new_tokens must be >= 0"),
        BadInput(
            "offline, no local corpus",
            [*fit_command(corpus, runs, 3), "--data.path", "null", "--data.cache_dir", str(workspace / "no_cache")],
            "could not download tiny Shakespeare",
            env=OFFLINE,
        ),
        BadInput(
            "unwritable output directory",
            fit("--trainer.default_root_dir", str(workspace / "a_file" / "runs")),
            "not writable",
        ),
        BadInput(
            "accelerator tt without ttnn/ttml/chip",
            fit("--trainer.accelerator", "tt", "--trainer.strategy", "tt"),
            "cannot run here",
        ),
        # Checkpoints that torch can load but that are not complete checkpoints of this project, for every command
        # that takes one.
        BadInput("checkpoint of another program (no state_dict), fit", fit("--ckpt_path", ckpt("foreign.ckpt")),
                 "foreign.ckpt is not a complete checkpoint of this project: it has no state_dict"),
        BadInput("checkpoint of bare weights, predict", predict("--ckpt_path", ckpt("bare_state_dict.ckpt")),
                 "it holds bare weights"),
        BadInput("checkpoint without hyper_parameters, validate",
                 evaluate("validate", "--ckpt_path", ckpt("no_hparams.ckpt")), "it has no hyper_parameters"),
        BadInput("checkpoint of another model's weights, test",
                 evaluate("test", "--ckpt_path", ckpt("other_model.ckpt")), "its weights are not this model's"),
        BadInput("checkpoint whose weights contradict its shape, export",
                 ["export", "--ckpt_path", ckpt("other_shapes.ckpt"), "--out", str(workspace / "exported")],
                 "its weights do not have the shapes its hyper_parameters describe"),
        BadInput("empty checkpoint file, complete", ["complete", "--ckpt_path", ckpt("empty.ckpt")],
                 "empty.ckpt could not be read (the file is empty"),
        BadInput("text file as checkpoint, predict", predict("--ckpt_path", ckpt("text.ckpt")),
                 "it is not a file torch.save wrote"),
        BadInput("directory as checkpoint, fit", fit("--ckpt_path", ckpt("directory.ckpt")),
                 "directory.ckpt is a directory, not a file"),
        BadInput("truncated checkpoint in a run, stages",
                 ["stages", "--ckpt_dir", str(workspace / "truncated_run"), "--sampling.max_new_tokens", "4"],
                 "could not be read (the file is truncated or corrupt"),
        # Messages that used to name another problem than the real one.
        BadInput("another tokenizer than the checkpoint's, fit",
                 fit("--ckpt_path", str(checkpoint), "--data.tokenizer", "byte"),
                 "was trained with the char tokenizer, not the --data.tokenizer byte given: drop --data.tokenizer"),
        BadInput("byte checkpoint predicted with --data.tokenizer char, offline",
                 predict("--ckpt_path", ckpt("byte.ckpt"), "--data.tokenizer", "char"),
                 "was trained with the byte tokenizer, not the --data.tokenizer char given", env=OFFLINE),
        BadInput("directory without text files as corpus", fit("--data.path", str(workspace / "corpus_dir")),
                 "has no text files"),
        BadInput("resume under a config that sets another model shape",
                 ["fit", "--config", "cpu.yaml", "--data.path", str(corpus), "--trainer.default_root_dir", str(runs),
                  "--data.cache_dir", str(runs / "data"), "--ckpt_path", str(checkpoint)],
                 "was trained with another model or tokenizer than the config file sets"),
        # Impossible Trainer values: the project's own rules, then Lightning's, all before anything is built.
        BadInput("accumulate_grad_batches 0", fit("--trainer.accumulate_grad_batches", "0"),
                 "--trainer.accumulate_grad_batches 0 is not possible"),
        BadInput("negative gradient_clip_val", fit("--trainer.gradient_clip_val", "-1"),
                 "--trainer.gradient_clip_val -1 is not possible"),
        BadInput("devices 0", fit("--trainer.devices", "0"), "--trainer.devices '0' is not possible"),
        BadInput("seed out of range", fit("--seed_everything", "99999999999999"), "pick a seed in that range"),
        BadInput("unknown accelerator name", fit("--trainer.accelerator", "bogus"),
                 "invalid accelerator name: `accelerator='bogus'`"),
        BadInput("unknown strategy name", fit("--trainer.strategy", "bogus"), "invalid strategy name"),
        BadInput("negative max_epochs", fit("--trainer.max_epochs", "-2"), "`max_epochs` must be a non-negative"),
        BadInput("negative limit_val_batches", fit("--trainer.limit_val_batches", "-1"),
                 "invalid value -1 for limit_val_batches"),
        BadInput("unparsable max_time", fit("--trainer.max_time", "soon"), "is not a valid duration"),
        # Sampling.
        BadInput("binary prompts file", predict("--data.prompts_file", str(workspace / "prompts.bin")),
                 "prompts.bin is not UTF-8 text"),
        BadInput("predict without --ckpt_path",
                 ["predict", "--config", "cpu.yaml", "--trainer.default_root_dir", str(runs), "--data.prompts",
                  '["Line"]'], "predict needs --ckpt_path"),
        # Found by going through every option and file the CLI takes.
        BadInput("empty string as --data.path", fit("--data.path", ""), "--data.path is an empty string"),
        BadInput("empty string as export --out", ["export", "--ckpt_path", str(checkpoint), "--out", ""],
                 "--out is an empty string"),
        BadInput("data cache directory under a file", fit("--data.cache_dir", str(workspace / "a_file" / "cache")),
                 "cannot be created (Not a directory): pass --data.cache_dir"),
        BadInput("checkpoint directory under a file", fit("--checkpoint.dirpath", str(workspace / "a_file" / "ckpts")),
                 "checkpoint directory"),
        BadInput("--checkpoint.monitor that validation never logs", fit("--checkpoint.monitor", "train/loss"),
                 "is not a metric this model logs"),
        BadInput("negative --checkpoint.save_top_k", fit("--checkpoint.save_top_k", "-5"), "save_top_k=-5"),
        BadInput("model.optimization.betas outside [0, 1)", fit("--model.optimization.betas", "[1.5, 0.9]"),
                 "model.optimization.betas must be two numbers"),
        BadInput("negative weight decay", fit("--model.optimization.weight_decay", "-1"),
                 "model.optimization.weight_decay must be >= 0"),
        BadInput("binary config file", fit("--config", str(workspace / "prompts.bin")), "not UTF-8 text"),
        BadInput("--ckpt_path best in a new command", predict("--ckpt_path", "best"), "--ckpt_path best has no"),
        BadInput("--model.compile true without a C++ compiler", fit("--model.compile", "true",
                 "--trainer.accelerator", "cpu"), "needs a working C++ compiler", context=no_cpp_compiler),
    ]  # fmt: skip


@dataclass
class Outcome:
    exit_code: int | None
    stderr: str
    traceback: bool

    def is_clean_error(self, expect: str) -> bool:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        return (
            not self.traceback
            and self.exit_code not in (0, None)
            and len(errors) == 1
            and bool(lines)
            and lines[-1] == errors[0]
            and expect in errors[0]
        )


def run_in_process(case: BadInput) -> Outcome:
    """Drive the real CLI entry point (cli.main) in this process, capturing what it writes to stderr."""
    from lightning_trickster.cli import main

    stderr = io.StringIO()
    saved_env = {key: os.environ.get(key) for key in case.env}
    os.environ.update(case.env)
    exit_code, traceback = 0, False
    try:
        with case.context(), contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            main(list(case.args))
    except SystemExit as exit_info:
        exit_code = exit_info.code if isinstance(exit_info.code, int) else 1
    except BaseException as err:  # escaped the CLI: Python would print a traceback
        exit_code, traceback = 1, True
        stderr.write(f"Traceback (most recent call last): {type(err).__name__}: {err}\n")
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Outcome(exit_code, stderr.getvalue(), traceback)


# ---------------------------------------------------------------------------------------------------------------
# Fault scenarios, each in a child process


def run_cli(args: list[str], timeout_s: float = 600) -> subprocess.CompletedProcess:
    """The CLI in a child process that can import the injectors of this file."""
    return subprocess.run(
        [sys.executable, "-m", "lightning_trickster", *args], capture_output=True, text=True, timeout=timeout_s,
        env=child_environment(), preexec_fn=default_signal_handling,
    )  # fmt: skip


def child_environment() -> dict[str, str]:
    """This environment, with tests/ on PYTHONPATH so the child can import the injectors as the module `faults`."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))}


def default_signal_handling() -> None:
    """SIGINT and SIGTERM as in an interactive shell's foreground job, whatever this process inherited (a background
    job starts with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def checkpoints_intact(root: Path) -> tuple[int, int]:
    """(readable, total) over every *.ckpt under root; leftover temporary files are not checkpoints."""
    paths = sorted(root.glob("lightning_logs/version_*/checkpoints/*.ckpt"))
    readable = 0
    for path in paths:
        with contextlib.suppress(TricksterError):
            checkpoint = read_checkpoint(path)
            readable += all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    return readable, len(paths)


def last_checkpoint(root: Path) -> Path | None:
    with contextlib.suppress(TricksterError):
        return newest_last_checkpoint(root)
    return None


def saved_step(root: Path) -> int | None:
    path = last_checkpoint(root)
    return read_checkpoint(path)["global_step"] if path else None


def same_weights(a: Path, b: Path) -> bool:
    first, second = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    return first.keys() == second.keys() and all(torch.allclose(first[k], second[k]) for k in first)


def logged_steps(root: Path) -> list[int]:
    """train/loss steps as TensorBoard shows them (events purged on resume do not count)."""
    return [step for step, _ in read_scalars(last_checkpoint(root).parent.parent)["train/loss"]]


@dataclass
class FaultResult:
    scenario: str
    detail: str
    traceback: bool
    steps_lost: int | None
    intact: tuple[int, int]
    resumed_equal: bool | None
    clean_message: bool | None = None


def resume_and_compare(corpus: Path, root: Path, max_steps: int, reference: Path) -> tuple[bool, str]:
    resumed = run_cli(fit_command(corpus, root, max_steps, *(["--ckpt_path", "last"] if last_checkpoint(root) else [])))
    if resumed.returncode != 0:
        return False, f"resume failed ({resumed.returncode}): {resumed.stderr.strip().splitlines()[-1:]}"
    steps = logged_steps(root)
    curve_ok = steps == list(range(max_steps))
    equal = same_weights(last_checkpoint(root), reference) and curve_ok
    return equal, f"train/loss steps after resume {'0..' + str(max_steps - 1) if curve_ok else steps}"


def kill_at_step(corpus: Path, root: Path, max_steps: int, reference: Path, step: int) -> FaultResult:
    killed = run_cli(fit_command(corpus, root, max_steps, *injector(KillAtStep, step=step)))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    kept = saved_step(root) or 0
    intact = checkpoints_intact(root)
    equal, detail = resume_and_compare(corpus, root, max_steps, reference)
    saved = f"last.ckpt at step {kept}" if kept else "no checkpoint yet (restarted from step 0)"
    return FaultResult(
        "SIGKILL at a random step",
        f"killed after step {step}, {saved}; {detail}",
        "Traceback" in killed.stderr,
        step - kept,
        intact,
        equal,
    )


def kill_during_save(corpus: Path, root: Path, max_steps: int, reference: Path, save_number: int) -> FaultResult:
    killed = run_cli(
        fit_command(corpus, root, max_steps, *injector(KillDuringCheckpointWrite, save_number=save_number))
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    kept = saved_step(root) or 0
    intact = checkpoints_intact(root)
    leftovers = len(list(root.glob("lightning_logs/version_*/checkpoints/.*.tmp")))
    # The save that was cut short belongs to the next validation step after `kept`.
    lost = min(kept + 3, max_steps) - kept
    equal, detail = resume_and_compare(corpus, root, max_steps, reference)
    return FaultResult(
        "SIGKILL during a checkpoint write",
        f"killed in save #{save_number}, last.ckpt at step {kept}, {leftovers} partial temp file(s) "
        f"left beside it; {detail}",
        "Traceback" in killed.stderr,
        lost,
        intact,
        equal,
    )


def stop_with_signal(
    corpus: Path, root: Path, max_steps: int, reference: Path, name: str, step: int, delay_s: float
) -> FaultResult:
    stopped = run_cli(
        fit_command(corpus, root, max_steps, *injector(SignalDuringStep, step=step, signal_name=name, delay_s=delay_s))
    )
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else ""
    clean = stopped.returncode == 128 + signal.Signals[name] and message.startswith(
        f"error: training stopped by {name}"
    )
    kept = saved_step(root) or 0
    stopped_after = int(message.split("after step ")[1].split(":")[0]) if "after step " in message else None
    intact = checkpoints_intact(root)
    equal, detail = resume_and_compare(corpus, root, max_steps, reference)
    return FaultResult(
        f"{name} during a step",
        f"signal {delay_s * 1000:.0f} ms after step {step}; exit {stopped.returncode}, stopped after "
        f"step {stopped_after}, last.ckpt at step {kept}; {detail}",
        "Traceback" in stopped.stderr,
        None if stopped_after is None else stopped_after - kept,
        intact,
        equal,
        clean,
    )


def nonfinite(corpus: Path, root: Path, max_steps: int, action: str, step: int) -> FaultResult:
    run = run_cli(
        fit_command(
            corpus,
            root,
            max_steps,
            "--nonfinite.action",
            action,
            "--nonfinite.check_every_n_steps",
            "5",
            *injector(InjectNonFiniteLoss, step=step),
        )
    )
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    kept = saved_step(root) or 0
    intact = checkpoints_intact(root)
    if action == "stop":
        clean = run.returncode == 2 and lines[-1].startswith(f"error: non-finite loss or gradient at step {step}")
        detail = f"NaN loss at step {step}, checked every 5 steps; exit {run.returncode}; last.ckpt at step {kept}"
        lost = step - kept
    else:
        skipped = read_checkpoint(last_checkpoint(root))["callbacks"].get("NonFiniteGuard", {}).get("skipped_steps")
        clean = run.returncode == 0 and kept == max_steps and skipped == 1
        detail = f"NaN loss at step {step}; exit {run.returncode}; finished at step {kept} with {skipped} step skipped"
        lost = 1 if clean else None  # the skipped step's update
    return FaultResult(
        f"NaN loss, --nonfinite.action {action}", detail, "Traceback" in run.stderr, lost, intact, None, clean
    )


def disk_full(corpus: Path, root: Path, max_steps: int, reference: Path, save_number: int) -> FaultResult:
    """A real full filesystem: the run's checkpoints/ on a small tmpfs (root is needed to mount it) with room for
    less than one more checkpoint once save #save_number is on it; torch.save then fails as it does on a real disk
    (RuntimeError: [enforce fail at inline_container.cc] unexpected pos). Then space is freed and the run resumed."""
    import shutil

    from realfaults import fill, small_filesystem

    kept_step = 3 * save_number
    killed = run_cli(fit_command(corpus, root, max_steps, *injector(KillAtStep, step=kept_step + 1)))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    checkpoints = root / "lightning_logs" / "version_0" / "checkpoints"
    shutil.move(checkpoints, root / "checkpoints_before_the_disk_filled")
    with small_filesystem(checkpoints, "4m"):
        for saved in (root / "checkpoints_before_the_disk_filled").iterdir():
            shutil.copy2(saved, checkpoints)
        filler = fill(checkpoints, leave_bytes=64 * 1024)
        run = run_cli(fit_command(corpus, root, max_steps, "--ckpt_path", "last"))
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        clean = (
            run.returncode == 2
            and bool(lines)
            and lines[-1].startswith("error: could not write checkpoint")
            and "(No space left on device)" in lines[-1]
        )
        kept = saved_step(root) or 0
        intact = checkpoints_intact(root)
        leftovers = len(list(checkpoints.glob(".*.tmp")))
        filler.unlink()  # the advice: free disk space, then resume with --ckpt_path last
        equal, detail = resume_and_compare(corpus, root, max_steps, reference)
    return FaultResult(
        "real full disk during a checkpoint write",
        f"checkpoints/ on a 4 MB tmpfs filled after save #{save_number}; exit {run.returncode}, last.ckpt at step "
        f"{kept}, {leftovers} temp file(s) left; {detail}",
        "Traceback" in run.stderr,
        min(kept + 3, max_steps) - kept,
        intact,
        equal and kept == kept_step,
        clean,
    )


def signal_when_ready(args: list[str], signum: int, ready: str, cwd: Path | None = None) -> tuple[int, str, float]:
    """Start the CLI (`python -m lightning_trickster ARGS`), send signum once `ready` appears in its output (it is
    then busy), and return its exit status, the output after `ready`, and the seconds from the signal to the exit."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "lightning_trickster", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, cwd=cwd, env=child_environment(), preexec_fn=default_signal_handling,
    )  # fmt: skip
    try:
        for line in process.stdout:
            if ready in line:
                break
        time.sleep(0.5)  # inside the long-running part
        sent = time.monotonic()
        process.send_signal(signum)
        rest, _ = process.communicate(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        process.kill()
    return process.returncode, rest, seconds


def signal_during_command(command: str, args: list[str], ready: str, name: str) -> FaultResult:
    """Start a command other than fit, send the signal once `ready` appears in its output (it is then busy), and
    expect it to stop at once with 128 + signal and one line."""
    returncode, rest, seconds = signal_when_ready(args, signal.Signals[name], ready)
    lines = [line for line in rest.splitlines() if line.strip()]
    clean = (
        returncode == 128 + signal.Signals[name]
        and bool(lines)
        and lines[-1] == f"error: stopped by {name}: what was already written is kept"
        and seconds < 10
    )
    return FaultResult(
        f"{name} during another command",
        f"{command}: exit {returncode} {seconds:.1f} s after the signal",
        "Traceback" in rest,
        None,
        (0, 0),
        None,
        clean,
    )


def signals_in_every_command(checkpoint: Path, corpus: Path, root: Path) -> list[FaultResult]:
    """Every command that runs for long besides fit: its own evaluation loops, generation and tokenizing."""
    root.mkdir(parents=True, exist_ok=True)
    long_corpus = root / "long_corpus.txt"  # the checkpoint's characters, long enough that validate is still busy
    long_corpus.write_text(corpus.read_text() * 50)
    endless = "1000000"
    # Training a BPE vocabulary on 1 MB takes well under a second: 8 MB keep prepare busy when the signal comes.
    long_shakespeare = root / "long_shakespeare.txt"
    long_shakespeare.write_text((TESTS_DIR / "data" / "tinyshakespeare.txt").read_text() * 8)
    commands = {
        "validate": (["validate", "--config", "cpu.yaml", "--data.path", str(long_corpus), "--data.cache_dir",
                      str(root / "data"), "--ckpt_path", str(checkpoint), "--trainer.enable_progress_bar", "false",
                      "--data.batch_size", "1"],
                     "Seed set"),
        "predict": (["predict", "--config", "cpu.yaml", "--ckpt_path", str(checkpoint), "--data.prompts", '["Line"]',
                     "--sampling.max_new_tokens", endless, "--trainer.enable_progress_bar", "false"], "Seed set"),
        "stages": (["stages", "--ckpt_dir", str(checkpoint.parent), "--prompt", "Line", "--sampling.max_new_tokens",
                    endless], "=== prompt"),
        "prepare": (["prepare", "--config", "cpu.yaml", "--data.path", str(long_shakespeare), "--data.tokenizer", "bpe",
                     "--data.vocab_size", "4096"], "prepare: tokenizing"),
    }  # fmt: skip
    results = []
    for command, (args, ready) in commands.items():
        for name in ("SIGINT", "SIGTERM"):
            if command == "prepare":
                # A cache of its own for each signal: a run stopped near its end may still complete the prepared
                # copy, and the next run would then find it ready and never be busy.
                args = [*commands[command][0], "--data.cache_dir", str(root / "bpe" / name)]
            results.append(signal_during_command(command, args, ready, name))
    return results


def precision_with_clipping(corpus: Path, root: Path, max_steps: int, precision: str) -> FaultResult:
    run = run_cli(fit_command(corpus, root, max_steps, "--trainer.precision", precision,
                              "--trainer.gradient_clip_val", "0.5"))  # fmt: skip
    kept = saved_step(root) or 0
    return FaultResult(
        f"{precision} with gradient clipping",
        f"exit {run.returncode}, finished at step {kept} of {max_steps}",
        "Traceback" in run.stderr,
        None,
        checkpoints_intact(root),
        None,
        run.returncode == 0 and kept == max_steps,
    )


# ---------------------------------------------------------------------------------------------------------------
# The suite


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


def run_suite(
    kills: int = 5,
    save_kills: int = 2,
    max_steps: int = 12,
    seed: int | None = None,
    workdir: Path | None = None,
    only: Literal["bad_input", "commands"] | None = None,
) -> None:
    """Run every fault scenario and bad input and print the summary table.

    Args:
        kills: SIGKILL-at-a-random-step runs.
        save_kills: SIGKILL-during-a-checkpoint-write runs.
        max_steps: steps per fit (validation and checkpoint every 3).
        seed: seed of the random fault points (default: random).
        workdir: keep the runs here (default: a temporary directory).
        only: "bad_input" runs just the bad inputs, against a checkpoint of one 3-step fit (about a minute);
            "commands" just SIGINT/SIGTERM in the other commands, a full disk and mixed precision with clipping.
    """
    seed = seed if seed is not None else random.SystemRandom().randrange(10_000)
    rng = random.Random(seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trickster-faults-") as temporary:
        workspace = workdir or Path(temporary)
        workspace.mkdir(parents=True, exist_ok=True)
        corpus = write_small_corpus(workspace / "corpus.txt")
        if only is not None:
            max_steps, kills, save_kills = 3 if only == "bad_input" else 6, 0, 0
        print(f"fault suite (seed {seed}): tiny model, {max_steps} steps, validation and checkpoint every 3 steps")
        reference_run = run_cli(fit_command(corpus, workspace / "reference", max_steps))
        if reference_run.returncode != 0:
            raise TricksterError(f"the uninterrupted reference fit failed: {reference_run.stderr.strip()[-500:]}")
        reference = last_checkpoint(workspace / "reference")

        results: list[FaultResult] = []
        for i in range(kills):
            results.append(
                kill_at_step(corpus, workspace / f"kill{i}", max_steps, reference, rng.randrange(1, max_steps))
            )
        for i in range(save_kills):
            results.append(
                kill_during_save(
                    corpus, workspace / f"savekill{i}", max_steps, reference, rng.randrange(2, 2 * (max_steps // 3))
                )
            )
        for name in ("SIGINT", "SIGTERM") if only is None else ():
            results.append(
                stop_with_signal(
                    corpus,
                    workspace / name,
                    max_steps,
                    reference,
                    name,
                    rng.randrange(1, max_steps - 2),
                    rng.uniform(0.0, 0.05),
                )
            )
        if only is None:
            nan_step = rng.randrange(4, max_steps - 1)
            results.append(nonfinite(corpus, workspace / "nan_stop", max_steps, "stop", nan_step))
            results.append(nonfinite(corpus, workspace / "nan_skip", max_steps, "skip", nan_step))
        if only in (None, "commands"):
            save_number = rng.randrange(1, max_steps // 3)  # a save that has another after it
            try:
                results.append(disk_full(corpus, workspace / "disk_full", max_steps, reference, save_number))
            except BaseException as err:  # pytest's Skipped: no small filesystem can be mounted here
                if type(err).__name__ != "Skipped":
                    raise
                print(f"  real full disk during a checkpoint write: not run ({err})")
            results.extend(signals_in_every_command(reference, corpus, workspace / "commands"))
            for precision in ("bf16-mixed", "16-mixed"):  # the CLI runs fp16 as bf16 on a CPU (see test_precision)
                results.append(precision_with_clipping(corpus, workspace / precision, max_steps, precision))
        for result in results:
            print(f"  {result.scenario}: {result.detail}")

        cases = bad_input_cases(workspace / "bad", reference) if only in (None, "bad_input") else []
        for name in ("lightning.pytorch", "lightning.fabric"):  # keep the report readable: errors only
            logging.getLogger(name).setLevel(logging.WARNING)
        outcomes = [(case, run_in_process(case)) for case in cases]
        for case, outcome in outcomes:
            lines = outcome.stderr.strip().splitlines()
            verdict = "clean" if outcome.is_clean_error(case.expect) else "NOT CLEAN"
            print(f"  bad input, {case.name}: exit {outcome.exit_code}, {verdict}: {lines[-1] if lines else ''}")

    rows = [
        [
            "scenario",
            "cases",
            "clean errors",
            "tracebacks",
            "steps lost (max)",
            "checkpoints intact",
            "resume = uninterrupted",
        ]
    ]
    by_scenario: dict[str, list[FaultResult]] = {}
    for result in results:
        by_scenario.setdefault(result.scenario, []).append(result)
    for scenario, group in by_scenario.items():
        intact = sum(r.intact[0] for r in group), sum(r.intact[1] for r in group)
        lost = [r.steps_lost for r in group if r.steps_lost is not None]
        clean = [r.clean_message for r in group if r.clean_message is not None]
        resumed = [r.resumed_equal for r in group if r.resumed_equal is not None]
        rows.append(
            [
                scenario,
                str(len(group)),
                f"{sum(clean)}/{len(clean)}" if clean else "-",
                str(sum(r.traceback for r in group)),
                str(max(lost)) if lost else "-",
                f"{intact[0]}/{intact[1]}" if intact[1] else "-",
                f"{sum(resumed)}/{len(resumed)}" if resumed else "-",
            ]
        )
    if outcomes:
        rows.append(
            [
                "bad inputs (CLI)",
                str(len(outcomes)),
                f"{sum(o.is_clean_error(c.expect) for c, o in outcomes)}/{len(outcomes)}",
                str(sum(o.traceback or "Traceback" in o.stderr for _, o in outcomes)),
                "-",
                "-",
                "-",
            ]
        )
    print()
    print_table(rows)
    print(f"\n{time.perf_counter() - started:.0f} s; rerun these fault points with --seed {seed}")


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(run_suite)
