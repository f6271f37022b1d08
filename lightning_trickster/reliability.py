"""No lost work in fit: atomic checkpoint files, a checkpoint on SIGINT/SIGTERM/SIGHUP, and a guard that stops (or
skips) on a non-finite loss or gradient before a bad step reaches a checkpoint; the handlers that stop every other
command at once on those signals (install_stop_handlers)."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_trickster.errors import (
    NO_ROOM,
    WRITE_FAILURES,
    InvalidConfigError,
    NonFiniteError,
    StoppedBySignal,
    TrainingInterrupted,
    TricksterError,
    WriteFailedError,
    raise_stopped_by_signal,
    write_failure,
)

STOP_SIGNAL_NAMES = ("SIGINT", "SIGTERM", "SIGHUP")
"""Ctrl-C, a scheduler's or `kill`'s default, and a closed terminal: each stops a command (a fit saves first)."""


def install_stop_handlers() -> Callable[[], None]:
    """Make SIGINT, SIGTERM and SIGHUP stop the command where it is, with StoppedBySignal (exit 128 + signal, one
    line); a fit's training steps save last.ckpt first (CheckpointOnSignal). A signal ignored when the program
    started stays ignored where that is the convention: SIGHUP under `nohup`. Call from the main thread; returns the
    function that restores the previous handlers (main() called from Python leaves signal handling as it found it).
    Lightning adds its own SIGTERM bookkeeping to the handler installed here, it does not replace it."""
    previous: dict[int, Any] = {}
    for name in STOP_SIGNAL_NAMES:
        signum = getattr(signal, name, None)  # Windows has no SIGHUP
        if signum is None or (name == "SIGHUP" and signal.getsignal(signum) is signal.SIG_IGN):
            continue
        previous[signum] = signal.signal(signum, raise_stopped_by_signal)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file in the target's directory, fsyncs it and renames it over the target,
    so a crash during a save leaves the previous file whole. Loads with ``weights_only=True`` unless told otherwise.

    Lightning's own TorchCheckpointIO writes through an fsspec transaction whose temporary file is in the system temp
    directory: the final move is a copy when that is another filesystem, and nothing is fsynced.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        target = Path(path)
        temporary: str | None = None
        recorder: _WriteErrorRecorder | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX)
            with os.fdopen(fd, "wb") as file:
                recorder = _WriteErrorRecorder(file)
                self.write(checkpoint, recorder)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes it 0600; give it a normal file's mode
            os.replace(temporary, target)
        except BaseException as err:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
            cause = recorder.error if recorder is not None and recorder.error is not None else err
            if isinstance(cause, OSError):
                raise CheckpointWriteError(
                    f"could not write checkpoint {target} ({cause.strerror or cause}): free disk space or make "
                    f"{target.parent} writable, then {resume_from_directory(target.parent)}; any earlier "
                    f"{target.name} is left as it was"
                ) from None
            raise
        fsync_directory(target.parent)  # make the rename itself durable

    @staticmethod
    def write(checkpoint: dict[str, Any], file: IO[bytes]) -> None:
        torch.save(checkpoint, file)

    def load_checkpoint(
        self,
        path: str | os.PathLike,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location, weights_only=True if weights_only is None else weights_only)


def resume_from_directory(checkpoints: Path) -> str:
    """How to go on after a save into `checkpoints` failed: from its last.ckpt (`--ckpt_path last` finds it in a
    run's own checkpoints/ folder, elsewhere it is named), or from the start when none was saved yet."""
    last = checkpoints / "last.ckpt"
    if not last.is_file():
        return "run the command again (no last.ckpt was saved yet)"
    in_a_run = checkpoints.name == "checkpoints" and checkpoints.parent.parent.name == "lightning_logs"
    return f"resume with --ckpt_path {'last' if in_a_run else last}"


class _WriteErrorRecorder:
    """The file torch.save writes to, keeping the OSError of a failed write: torch turns it into RuntimeError
    `[enforce fail at inline_container.cc:...] . unexpected pos ...`, which names neither the file nor the reason
    (a real full disk), so the caller reports the OSError instead."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as err:
            self.error = err
            raise


TEMPORARY_SUFFIX = ".tmp"
"""A checkpoint being written is `.<name>.<random>.tmp` beside its target until it is complete."""


class CheckpointWriteError(WriteFailedError):
    """A checkpoint could not be written (disk full, permissions); the previous file of that name is intact."""


# ---------------------------------------------------------------------------------------------------------------
# Writes that fail: the fit's files and standard output (errors.write_failure makes the one line)


def resume_advice(trainer: pl.Trainer) -> str:
    """How to go on after a fit stopped: resume from its last.ckpt if it has one, else start it again."""
    last = last_checkpoint_path(trainer)
    if last.is_file():
        return f"resume with {resume_option(trainer, last)} (the checkpoints written so far are kept)"
    return "run the command again (no checkpoint was written yet)"


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write data to a temporary file beside path, fsync it and rename it over path: a failed write (a full disk)
    leaves any earlier file of that name whole, and removes its own partial file. Creates the parent directory. A
    symbolic link is followed (the file it names is replaced, the link kept); a path that is not a regular file (a
    device such as /dev/null or /dev/full, a FIFO) is written into as it is, never replaced."""
    path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        with open(path, "wb") as file:
            file.write(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def standard_output_failed(err: OSError) -> bool:
    """Whether a failed write was the command's standard output: it is /dev/full, a terminal that went away, or a
    file on a filesystem with no room left."""
    try:
        fd = sys.stdout.fileno()
        mode = os.fstat(fd).st_mode
        if stat.S_ISCHR(mode):
            device = os.fstat(fd).st_rdev
            return (os.major(device), os.minor(device)) == (1, 7) or err.errno == errno.EIO  # /dev/full; a hung-up tty
        if stat.S_ISREG(mode) and err.errno in NO_ROOM:
            room = os.fstatvfs(fd)
            return room.f_bavail * room.f_frsize < 64 * 1024
    except (OSError, ValueError, AttributeError):  # no real file behind sys.stdout (a test's capture)
        return False
    return False


def unhandled_write_failure(err: OSError, command: str) -> str:
    """The one line for a failed write that no handler of the command named (main's last resort)."""
    reason = err.strerror or str(err)
    then = "then run the command again" + (
        " (a fit that saved a last.ckpt goes on from it with --ckpt_path last)" if command == "fit" else ""
    )
    if standard_output_failed(err):
        return (
            f"could not write to standard output ({reason}): redirect it to a file on a disk with room, or to "
            f"/dev/null, {then}; the files the command wrote are kept"
        )
    what = f"{err.filename}" if err.filename else "a file"
    if err.errno in NO_ROOM:
        fix = "free disk space on its filesystem"
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "make its directory writable"
    else:
        fix = "check the disk that holds it"
    return f"could not write {what} ({reason}): {fix}, {then}; what was written before is kept"


class _TensorBoardWriteGuard:
    """Turns a failed write of a TensorBoard logger (its event file, written by a background thread and flushed by
    the fit; hparams.yaml) into one WriteFailedError naming the run folder. The writer thread's own report of the
    error (a traceback printed by threading.excepthook) is left out: the fit raises the same error at its next write.
    A failure while the fit is already stopping for another error is dropped, so that error is the one reported."""

    def __init__(self, trainer: pl.Trainer, logger: Any) -> None:
        self.trainer = trainer
        self.logger = logger
        self.directory = Path(logger.log_dir)
        for name in ("log_metrics", "log_hyperparams", "log_graph", "save"):
            setattr(logger, name, self._guarded(getattr(logger, name)))
        finalize = logger.finalize

        def guarded_finalize(status: str) -> None:
            if status == "success":
                self._guarded(finalize)(status)
            else:
                with contextlib.suppress(OSError):
                    finalize(status)

        logger.finalize = guarded_finalize
        event_writer = logger.experiment._get_file_writer().event_writer
        for name in ("add_event", "flush", "close"):
            setattr(event_writer, name, self._guarded(getattr(event_writer, name)))

    def _guarded(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except OSError as err:
                if isinstance(err, TricksterError):
                    raise
                raise write_failure(
                    f"the TensorBoard logs in {self.directory}", err, self.directory, resume_advice(self.trainer)
                ) from err

        return guarded


def _quiet_tensorboard_writer_threads() -> None:
    """TensorBoard's event writer thread prints a traceback when its write fails, then leaves the error for the
    fit's next write (which reports it in one line): keep the traceback out of the output."""
    previous = threading.excepthook
    if getattr(previous, "quiets_tensorboard", False):
        return

    def excepthook(args: threading.ExceptHookArgs) -> None:
        writer_thread = type(args.thread).__module__.startswith("tensorboard.summary.writer")
        if writer_thread and isinstance(args.exc_value, OSError):
            return
        previous(args)

    excepthook.quiets_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = excepthook


class CheckpointDirectoryCheck(Callback):
    """The fit's own files. Before the first step: the checkpoint directory must be writable (a resumed run into a
    read-only checkpoints/ would otherwise train and then lose those steps at the first save), and the temporary files
    of a save that was killed half way are removed. During the fit: a write of the TensorBoard logger that fails (a
    full disk) stops the fit in one line naming the run folder and how to go on (_TensorBoardWriteGuard); every
    checkpoint holds whole optimizer steps (one saved inside an accumulation window, by a signal or by
    --checkpoint.train_time_interval, holds the window's start: rewind_to_the_last_optimizer_step). At the end: the
    final step is in last.ckpt also when the checkpoint settings save by steps or time only (Lightning then skips
    the save after the last validation)."""

    def __init__(self) -> None:
        self._last_saved_step: int | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._last_saved_step = checkpoint.get("global_step")
        if not trainer.training or trainer.num_training_batches != float("inf") or "loops" not in checkpoint:
            return  # a finite loader steps on its last batch whatever the window (this project's never ends)
        inside_window = trainer.fit_loop.epoch_loop.batch_progress.current.ready % trainer.accumulate_grad_batches
        if inside_window:
            rewind_to_the_last_optimizer_step(checkpoint, inside_window)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_saved_step = trainer.global_step if trainer.ckpt_path else None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        callback = trainer.checkpoint_callback
        if not isinstance(callback, ModelCheckpoint) or not callback.save_last or trainer.fast_dev_run:
            return
        if self._last_saved_step != trainer.global_step:
            trainer.save_checkpoint(last_checkpoint_path(trainer), weights_only=False)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                _TensorBoardWriteGuard(trainer, logger)
                _quiet_tensorboard_writer_threads()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """A write into the run's (or evaluation's) folder that failed as the command set up, before the guard was in
        place: TensorBoard's event file, LightningCLI's config.yaml, hparams.yaml. Their OSError names no file; name
        the folder, for the front door's one line."""
        if (
            isinstance(exception, OSError)
            and not isinstance(exception, TricksterError)
            and exception.filename is None
            and exception.errno in WRITE_FAILURES
            and trainer.is_global_zero
            and trainer.log_dir
            and _raised_by_a_run_folder_writer(exception)
        ):
            exception.filename = trainer.log_dir

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        callback = trainer.checkpoint_callback
        if not isinstance(callback, ModelCheckpoint) or not callback.dirpath or not trainer.is_global_zero:
            return
        directory = Path(callback.dirpath)
        logger = trainer.logger
        run = Path(logger.log_dir) if isinstance(logger, TensorBoardLogger) else Path(trainer.default_root_dir)
        if directory == run / "checkpoints":  # where the output directory puts them
            # A resume then names its checkpoint: `--ckpt_path last` would look under the new directory.
            fix = "pass --trainer.default_root_dir a directory you can write to" + (
                f" and --ckpt_path {trainer.ckpt_path}" if trainer.ckpt_path else ""
            )
        else:
            fix = "pass --checkpoint.dirpath a directory you can write to"
        require_writable(directory, "checkpoint directory", f"make it writable or {fix}; nothing was trained")
        for orphan in directory.glob(f".*.ckpt.*{TEMPORARY_SUFFIX}"):
            orphan.unlink(missing_ok=True)
            rank_zero_info(f"removed {orphan}, left by a checkpoint save that was cut short")


RUN_FOLDER_WRITERS = (
    "/tensorboard/", "/jsonargparse/", "/lightning/pytorch/cli.py", "/lightning/pytorch/core/saving.py",
)  # fmt: skip
"""Where the files of a run folder that no handler here writes are written: TensorBoard's events, LightningCLI's
config.yaml (through jsonargparse), Lightning's hparams.yaml."""


def _raised_by_a_run_folder_writer(exception: BaseException) -> bool:
    frames = traceback.extract_tb(exception.__traceback__)
    return any(writer in frame.filename for frame in frames for writer in RUN_FOLDER_WRITERS)


def require_writable(directory: Path, what: str, fix: str) -> None:
    """Create the directory if needed and write a file there, or raise one line: `<what> <directory> is not
    writable (<reason>): <fix>`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        if err.errno == errno.EEXIST:  # mkdir's answer for a file or a device of that name
            raise TricksterError(f"{what} {directory} is not a directory: {fix}") from None
        raise TricksterError(f"{what} {directory} is not writable ({err.strerror or err}): {fix}") from None


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def use_atomic_checkpoint_io(trainer: pl.Trainer) -> None:
    """Replace the strategy's stock TorchCheckpointIO; a strategy with its own checkpoint IO keeps it."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def last_checkpoint_path(trainer: pl.Trainer) -> Path:
    """Where ModelCheckpoint keeps last.ckpt, which `--ckpt_path last` resumes from."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.dirpath:
        return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class CheckpointOnSignal(Callback):
    """SIGINT (Ctrl-C), SIGTERM or SIGHUP (the terminal closed) during fit: finish the running training batch, write
    last.ckpt, and stop with a one-line message and exit status 128 + signal number. A second Ctrl-C stops at once,
    without saving. A signal that is ignored when training starts stays ignored (SIGHUP under `nohup`).

    The checkpoint is written at the end of the batch, like ModelCheckpoint's; the fit stops as the next batch begins,
    after Lightning has logged the step's metrics (and run validation, if it was due), so the curve has no gap. With
    gradient accumulation a signal can land between the micro-batches of one optimizer step: the checkpoint then holds
    the last complete step (the weights and optimizer have not moved since) and its loop position is rewound to the
    start of the unfinished accumulation window, so the resumed run redoes that window's micro-batches from their
    first and ends exactly where the uninterrupted run does.

    Several processes (DDP, FSDP): each process's handler only records the signal; at the end of every batch the
    processes agree (one all-reduce of the signal number, the maximum wins) whether any of them received one, so a
    batch system's SIGTERM to every process, Ctrl-C to the process group or a `kill` of one rank all save ONE
    checkpoint (every rank takes part in the save, rank 0 writes it) and stop every rank after the same batch. Rank 0
    reports it; the ranks it started itself are waited for before it exits.

    Its handlers are in place from the fit's setup. Before the first training batch (the start-up random baseline)
    there is nothing to save: one process stops at once (exit 128 + signal); several processes finish the baseline's
    collectives, agree as the first batch begins, and all stop there.

    Replaces Lightning's handling for the fit: its SIGTERM handler raises only at step boundaries but saves nothing
    (and broadcasts from inside the handler, which under DDP breaks the other rank's collectives), and Ctrl-C raises
    KeyboardInterrupt wherever it lands, possibly half way through an optimizer step. Lightning installs its SIGTERM
    handler after the callbacks' `setup` (calling ours after its own); the first hooks after that (the sanity check's
    start or, without one, the training's start) put ours back in its place. In between, a short stretch of
    Lightning's start-up (a barrier, the training data loader's creation), a SIGTERM still goes through Lightning's
    handler first: one process then saves and stops as usual; under DDP a rank that meets the broadcast inside
    another collective may hang or fail there.
    """

    def __init__(self, signals: tuple[str, ...] = STOP_SIGNAL_NAMES) -> None:
        """
        Args:
            signals: the signals that save a checkpoint and stop; empty to leave them to Lightning.
        """
        supported = (*STOP_SIGNAL_NAMES, "SIGUSR1", "SIGUSR2")
        unknown = [name for name in signals if name not in supported]
        if unknown:
            raise InvalidConfigError(f"interrupt.signals: {unknown} not supported: choose from {', '.join(supported)}")
        self.signals = [signal.Signals[name] for name in signals if hasattr(signal, name)]
        self.received: signal.Signals | None = None
        self._saved: tuple[Path, int] | None = None
        self._children: list[subprocess.Popen] = []
        self._previous_handlers: dict[signal.Signals, Any] = {}
        self._handlers: dict[signal.Signals, Callable[[int, Any], None]] = {}
        self._before_first_batch = True
        self._several_processes = False
        self._active = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._handlers = {}
        if stage != "fit":
            # Evaluations stop at once (the front door's handler): kept so it can be taken back from Lightning.
            for signum in self.signals:
                handler = signal.getsignal(signum)
                if callable(handler):
                    self._handlers[signum] = handler
            return
        self.received = None
        self._saved = None
        self._before_first_batch = True
        self._several_processes = trainer.world_size > 1
        self._active = True
        for signum in self.signals:
            if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. SIGHUP under nohup
                self._previous_handlers[signum] = signal.signal(signum, self._handle)
                self._handlers[signum] = self._handle

    def _take_back_signals(self) -> None:
        """Put this command's handlers back in place of the one Lightning installs for SIGTERM as its run starts, after
        `setup`: Lightning's broadcasts from inside the handler, which under DDP meets the other rank inside another
        collective (a barrier, the start-up baseline's reduction) and hangs or breaks it, before it calls ours. Called
        from the first hooks after Lightning installs it; its teardown restores the handlers it found, ours."""
        for signum, handler in self._handlers.items():
            if signal.getsignal(signum) != handler:  # a bound method: equal, not the same object
                signal.signal(signum, handler)

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_back_signals()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_back_signals()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_back_signals()

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_back_signals()

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_back_signals()

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.received is None
        if (
            not self._active
            or (not first and signum == signal.SIGINT)
            or (self._before_first_batch and not self._several_processes)
        ):
            # After the fit (Lightning puts this handler back as it tears down), a second Ctrl-C, or one process
            # with nothing trained yet: stop at once.
            self._restore_handlers()
            raise StoppedBySignal(signum)
        self.received = signal.Signals(signum)
        if first:
            rank_zero_info(
                f"\n{self.received.name} received: "
                + ("stopping as training begins" if self._before_first_batch else "saving last.ckpt after the current "
                   "training batch")
            )  # fmt: skip

    def _agreed_signal(self, trainer: pl.Trainer) -> signal.Signals | None:
        """The signal this process received, or with several processes the one any of them received (the same
        answer on every rank: the all-reduce is their only agreement, so no rank stops alone)."""
        if trainer.world_size <= 1:
            return self.received
        mine = torch.tensor(int(self.received or 0), device=trainer.strategy.root_device)
        agreed = int(trainer.strategy.reduce(mine, reduce_op="max"))
        return signal.Signals(agreed) if agreed else None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self._saved is not None or not self.signals:
            return
        received = self._agreed_signal(trainer)
        if received is None:
            return
        self.received = received
        path = last_checkpoint_path(trainer)
        # Resumable: with optimizer and loop state; one inside an accumulation window holds its start
        # (rewind_to_the_last_optimizer_step, applied to every save by CheckpointDirectoryCheck).
        trainer.save_checkpoint(path, weights_only=False)
        self._saved = (path, trainer.global_step)
        if trainer.world_size > 1:
            self._children = take_over_child_ranks(trainer)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if self._before_first_batch:
            self._before_first_batch = False
            if self._several_processes and self.signals:
                self._stop_before_training(trainer)
        self._stop_if_saved(trainer)

    def _stop_before_training(self, trainer: pl.Trainer) -> None:
        """Several processes: a signal that came during the start-up baseline stops every rank before its first
        step (they agree here, as the first batch begins)."""
        received = self._agreed_signal(trainer)
        if received is None:
            return
        self._restore_handlers()
        if trainer.is_global_zero:
            self._children = take_over_child_ranks(trainer)
        last = last_checkpoint_path(trainer)
        then = f"continue it with {resume_option(trainer, last)}" if last.is_file() else "run the command again"
        raise TrainingInterrupted(
            f"training stopped by {received.name} before its first training step (step {trainer.global_step}): "
            f"nothing new to save; {then}",
            received.value,
            report=trainer.is_global_zero,
        )

    def _stop_if_saved(self, trainer: pl.Trainer) -> None:
        if self._saved is None or self.received is None:
            return
        self._restore_handlers()
        path, step = self._saved
        raise TrainingInterrupted(
            f"training stopped by {self.received.name} after step {step}: saved {path}; continue it with "
            f"{resume_option(trainer, path)}",
            self.received.value,
            report=trainer.is_global_zero,
        )

    def _restore_handlers(self) -> None:
        self._active = False
        self._handlers = {}
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()
        children, self._children = self._children, []
        for child in children:  # the other ranks stop after the same batch: let them finish before rank 0 exits
            try:
                child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()
        self._stop_if_saved(trainer)  # the signal came during the last step


def rewind_to_the_last_optimizer_step(checkpoint: dict[str, Any], micro_batches: int) -> None:
    """Make a checkpoint written `micro_batches` micro-batches into an accumulation window hold the loop position of
    the window's start: exactly the state Lightning saves at the end of the window's previous optimizer step (as a
    ModelCheckpoint with every_n_train_steps would), which its restart logic resumes from. The weights, optimizer and
    schedule have not changed inside the window (the accumulated gradient is not saved), and the training data
    position follows the optimizer step count (CorpusDataModule.train_dataloader), so the resumed run redoes the
    window from its first micro-batch."""
    loop = checkpoint["loops"]["fit_loop"]
    progress = loop["epoch_loop.batch_progress"]
    for counts in (progress["total"], progress["current"]):
        for key in ("ready", "started", "processed", "completed"):
            counts[key] -= micro_batches
    # Lightning counts the optimizer step of a window once its last micro-batch has ended; at that batch's end (where
    # a checkpoint of the window's start is taken) it has not yet, and its restart adds it.
    loop["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1


def take_over_child_ranks(trainer: pl.Trainer) -> list[subprocess.Popen]:
    """The processes of the other ranks that this one started (Lightning's launcher re-runs the command for each
    local rank), taken from the launcher's watch: its observer thread SIGKILLs the launching process as soon as a
    child exits non-zero, and after a signal every rank exits with 128 + signal. The caller waits for them."""
    procs = getattr(trainer.strategy.launcher, "procs", None)
    if not isinstance(procs, list):
        return []
    children = list(procs)
    procs.clear()  # in place: the observer holds this very list
    return children


def resume_option(trainer: pl.Trainer, checkpoint: Path) -> str:
    """`--ckpt_path last` where that finds this checkpoint (a run's own checkpoints/last.ckpt under the output
    directory), else the path itself (a --checkpoint.dirpath elsewhere)."""
    root = Path(trainer.default_root_dir).resolve()
    in_a_run = checkpoint.name == "last.ckpt" and checkpoint.resolve().parent.parent.parent == root / "lightning_logs"
    return "--ckpt_path last" if in_a_run and checkpoint.parent.name == "checkpoints" else f"--ckpt_path {checkpoint}"


class NonFiniteGuard(Callback):
    """Stops a fit on a non-finite gradient before any checkpoint holds the damage, or skips such steps.

    A non-finite loss gives non-finite gradients through backward, so the check reads the total gradient norm after
    backward and before the optimizer step (one fused reduction on the device).

    ``stop`` (default) adds no host-device sync per step: the first bad step is recorded on the device and read on
    the host every ``check_every_n_steps`` steps and before every checkpoint save; a bad step vetoes the save, so the
    checkpoints on disk all predate it. ``skip`` reads the flag on the host every step (one sync per step, the price of
    deciding before the update), drops the gradients of a bad step so the optimizer leaves weights and moments
    untouched (the step counter and LR schedule still advance), and counts the skips.
    """

    def __init__(
        self, action: Literal["stop", "skip"] = "stop", check_every_n_steps: int | None = None, max_skips: int = 10
    ) -> None:
        """
        Args:
            action: "stop" ends the fit with an error; "skip" drops the step's update and goes on.
            check_every_n_steps: how often "stop" reads the device flag (default: trainer.log_every_n_steps).
            max_skips: with "skip", stop once more than this many steps were skipped (the run is diverging).
        """
        if check_every_n_steps is not None and check_every_n_steps <= 0:
            raise InvalidConfigError(f"nonfinite.check_every_n_steps must be positive, got {check_every_n_steps}")
        if max_skips < 0:
            raise InvalidConfigError(f"nonfinite.max_skips must be >= 0, got {max_skips}")
        self.action = action
        self.check_every_n_steps = check_every_n_steps
        self.max_skips = max_skips
        self.skipped_steps = 0
        self.last_saved_step: int | None = None
        self._step: torch.Tensor | None = None  # optimizer step counter, on the device
        self._first_bad_step: torch.Tensor | None = None  # -1 while every step was finite

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._step = torch.tensor(trainer.global_step, device=pl_module.device)
        self._first_bad_step = torch.tensor(-1, device=pl_module.device)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        finite = torch.isfinite(torch.nn.utils.get_total_norm([p.grad for p in params]))
        if self.action == "skip":
            if trainer.strategy.reduce_boolean_decision(not bool(finite), all=False):  # bool(): host sync
                self._skip(trainer, params)
        else:
            self._first_bad_step = torch.where(finite | (self._first_bad_step >= 0), self._first_bad_step, self._step)
            self._step += 1

    def _skip(self, trainer: pl.Trainer, params: list[torch.nn.Parameter]) -> None:
        for p in params:
            p.grad = None  # the optimizer leaves parameters without a gradient alone
        self.skipped_steps += 1
        if self.skipped_steps > self.max_skips:
            raise NonFiniteError(
                f"non-finite gradients in {self.skipped_steps} steps (last at step {trainer.global_step}), more than "
                f"nonfinite.max_skips={self.max_skips}: the run is diverging; lower "
                "--model.optimization.learning_rate or set --trainer.gradient_clip_val, and "
                f"{go_on_after_a_bad_step(trainer)}"
            )
        rank_zero_warn(f"step {trainer.global_step}: non-finite gradient, update skipped ({self.skipped_steps} so far)")

    def check(self, trainer: pl.Trainer) -> None:
        """Raise NonFiniteError if a step since the start of the fit had a non-finite gradient (reads the device)."""
        if self._first_bad_step is None:
            return
        bad_step = int(self._first_bad_step)  # host sync
        if not trainer.strategy.reduce_boolean_decision(bad_step >= 0, all=False):
            return
        kept = (
            f"the newest checkpoint ({last_checkpoint_path(trainer)}, step {self.last_saved_step}) predates it"
            if self.last_saved_step is not None
            else "no checkpoint was written since the fit started"
        )
        raise NonFiniteError(
            f"non-finite loss or gradient at step {bad_step}; training stopped at step {trainer.global_step} and "
            f"{kept}: lower --model.optimization.learning_rate or set --trainer.gradient_clip_val and "
            f"{go_on_after_a_bad_step(trainer)}, or pass --nonfinite.action skip to drop such steps"
        )

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        every = self.check_every_n_steps or trainer.log_every_n_steps or 1
        if self.action == "stop" and trainer.global_step % every == 0:
            self.check(trainer)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.action == "stop":
            self.check(trainer)  # raising here vetoes the save: it happens before anything is written
        self.last_saved_step = checkpoint["global_step"]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.action == "stop":
            self.check(trainer)
        elif self.skipped_steps:
            rank_zero_info(f"non-finite gradients: {self.skipped_steps} steps skipped")

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = state_dict.get("skipped_steps", 0)


def go_on_after_a_bad_step(trainer: pl.Trainer) -> str:
    """Resume from the run's last.ckpt (which predates the bad step: the guard vetoes later saves) if there is one,
    else start the fit again."""
    last = last_checkpoint_path(trainer)
    return f"resume with {resume_option(trainer, last)}" if last.is_file() else "run the fit again"


def inductor_cpp_compilers() -> list[str]:
    """The C++ compilers torch.compile's inductor tries on the CPU, in its order: $CXX, else g++ (clang++ on macOS).
    Its other candidate, a g++ downloaded from conda-forge, is only tried with TORCH_INDUCTOR_INSTALL_GXX set."""
    from torch._inductor import config as inductor_config

    search = inductor_config.cpp.cxx
    return [name for name in (search if isinstance(search, (list, tuple)) else (search,)) if name is not None]


@functools.cache
def working_cpp_compiler() -> str | None:
    """The path of the C++ compiler inductor would use on the CPU, if it really compiles a program here; None if
    none does. Found once per process: the check runs the compiler (a fraction of a second)."""
    for name in inductor_cpp_compilers():
        path = shutil.which(name)
        if path is not None and _compiles(path):
            return path
    return None


def _compiles(compiler: str, timeout_s: float = 60.0) -> bool:
    # Finding the executable is not enough: a compiler without its headers or linker fails only when used.
    with tempfile.TemporaryDirectory(prefix="trickster-cxx-") as scratch:
        source = Path(scratch) / "check.cpp"
        source.write_text("#include <cmath>\nint main() { return std::isfinite(1.0) ? 0 : 1; }\n")
        try:
            result = subprocess.run(
                [compiler, str(source), "-o", str(Path(scratch) / "check")],
                capture_output=True, timeout=timeout_s, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return False
        return result.returncode == 0
