"""Training runs on disk: root/lightning_logs/version_N holds a fit's TensorBoard events and checkpoints/; what
validate, test and predict write goes to an eval/ folder inside the evaluated run, where nothing takes it for a run.
One process at a time writes a run (RunLock); locks here say who holds them (LockFile)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from lightning_trickster.errors import TricksterError


def training_runs(root: Path) -> list[Path]:
    """The run folders under root/lightning_logs, oldest first (by modification time)."""
    return sorted(root.glob("lightning_logs/version_*"), key=lambda run: run.stat().st_mtime)


def newest_last_checkpoint(root: Path) -> Path:
    """What `--ckpt_path last` means: the newest (by modification time) of every run's checkpoints/last.ckpt under
    root/lightning_logs and of the hpc_ckpt_N.ckpt files Lightning saves in root itself when SLURM sends SIGUSR1
    before a time limit (run_folder_of tells the two apart)."""
    found = [*root.glob("lightning_logs/version_*/checkpoints/last.ckpt"), *root.glob("hpc_ckpt_*.ckpt")]
    candidates = [path for path in found if path.is_file()]  # not a folder or a dangling link of that name
    if not candidates:
        raise TricksterError(
            f"--ckpt_path last: no run under {root / 'lightning_logs'} has checkpoints/last.ckpt (nor has {root} an "
            "hpc_ckpt_N.ckpt); train with fit first, or pass a checkpoint file path"
        )
    return max(candidates, key=lambda path: path.stat().st_mtime)


def run_folder_of(checkpoint: Path) -> Path | None:
    """The run folder that wrote a checkpoint (RUN/checkpoints/x.ckpt), or None for one saved elsewhere, such as
    Lightning's root/hpc_ckpt_N.ckpt, which no run folder holds."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def read_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series TensorBoard shows for a run folder: tag -> [(step, value)] in the order written. Events a
    resumed run purged (those logged after its checkpoint by the interrupted run) are not included."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # it reports the purge of orphaned events
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def wait_for_a_later_event_file_name(run: Path) -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with the second it was created in
    (then host and PID): an event file created in the same second as the newest one already there could sort before
    it, and the interrupted run's steps would be drawn after the resumed run's. A resumed run waits (at most a
    second) until its file's name will sort last."""
    seconds = (path.name.split(".")[3] for path in run.glob("events.out.tfevents.*"))
    newest = max((int(second) for second in seconds if second.isdigit()), default=None)
    if newest is not None and time.time() < newest + 1:
        time.sleep(newest + 1 - time.time())


def evaluation_dir(command: str, ckpt_path: str | None, root: Path) -> Path:
    """A new folder for one evaluation's outputs: RUN/eval/COMMAND-CHECKPOINT-N inside the run that wrote the
    checkpoint, or root/eval/... for a checkpoint from elsewhere (or none), or whose run folder this process cannot
    write (a read-only copy of a run: the outputs then go under --trainer.default_root_dir)."""
    checkpoint = Path(ckpt_path) if ckpt_path else None
    run = run_folder_of(checkpoint) if checkpoint else None
    base = run if run is not None and can_write_under(run / "eval") else root
    name = f"{command}-{checkpoint.stem if checkpoint else 'untrained'}"
    return next(
        base / "eval" / f"{name}-{n}" for n in itertools.count(1) if not (base / "eval" / f"{name}-{n}").exists()
    )


def can_write_under(directory: Path) -> bool:
    """Whether this process could create files in directory, or create it (judged at its nearest existing ancestor;
    a read-only filesystem counts, also for root)."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


class LockFile:
    """An exclusive flock on a file that records who holds it (host, PID and what for), so that whoever finds it
    taken can say who. The kernel releases it when the holder exits, however it ends: a lock is never stale."""

    def __init__(self, path: Path, purpose: str) -> None:
        """
        Args:
            path: the lock file (created if missing; its content is the holder's record, valid while it is held).
            purpose: what the holder does, for others' messages ("training this run").
        """
        self.path = path
        self.purpose = purpose
        self._stream = None
        self.record_error: OSError | None = None
        """Why the holder's record could not be written (a full disk), if it could not."""

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False if another process (or another LockFile in this one) holds it."""
        stream = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.close()
            return False
        record = {"host": socket.gethostname(), "pid": os.getpid(), "purpose": self.purpose, "since": time.time()}
        self.record_error = None
        try:  # unbuffered: nothing a full disk refused is left in the stream to fail again at close
            os.ftruncate(stream.fileno(), 0)
            os.pwrite(stream.fileno(), (json.dumps(record) + "\n").encode(), 0)
        except OSError as err:  # a full disk: the lock holds all the same, others just cannot say by whom
            self.record_error = err
        self._stream = stream
        return True

    def holder(self) -> str:
        """Who holds the lock, as read from the file: 'process 123 on host h (training this run, for 12 s)'."""
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
            pid, host, purpose, since = record["pid"], record["host"], record["purpose"], float(record["since"])
        except (OSError, ValueError, KeyError, TypeError):
            return "another process (it has not recorded which yet)"
        return f"process {pid} on host {host} ({purpose}, for {max(time.time() - since, 0):.0f} s)"

    def acquire_waiting(
        self, report: Callable[[str], None], what: str, poll_s: float = 0.2, quiet_s: float = 2.0
    ) -> None:
        """Take the lock, waiting as long as another holds it. A wait longer than quiet_s (not the moment several
        processes of one run take turns) is reported, naming who holds the lock and what is waited for, and again
        after 1, 2, 4, ... minutes."""
        started, next_report = time.monotonic(), quiet_s
        while not self.try_acquire():
            waited = time.monotonic() - started
            if waited >= next_report:
                if next_report == quiet_s:
                    report(
                        f"waiting for {what}: {self.holder()} holds its lock {self.path}; this goes on once it is "
                        "released"
                    )
                    next_report = 60.0
                else:
                    report(f"still waiting for {what} after {waited:.0f} s: {self.holder()} holds its lock {self.path}")
                    next_report *= 2
            time.sleep(poll_s)

    def release(self) -> None:
        if self._stream is None:
            return
        stream, self._stream = self._stream, None
        with contextlib.suppress(OSError):
            os.ftruncate(stream.fileno(), 0)  # the record is valid only while the lock is held
        fcntl.flock(stream, fcntl.LOCK_UN)
        stream.close()

    @property
    def held(self) -> bool:
        return self._stream is not None


class RunLock:
    """One writer per run folder: held by the process that trains a run (rank 0 of a fit, for the whole fit), so a
    second fit on the same run (`--ckpt_path last` twice) stops at once with one line naming the holder instead of
    both overwriting the run's checkpoints. Commands that only read a run (validate, test, predict, stages) do not
    take it and are never blocked.

        lock = RunLock(run_folder).acquire()  # raises TricksterError if another process holds it
        ...
        lock.release()  # or let the process exit

    It is also a context manager (`with RunLock(run_folder): ...`)."""

    FILE = ".writer.lock"

    def __init__(self, run: Path) -> None:
        self.run = Path(run)
        self.lock = LockFile(self.run / self.FILE, "training this run")

    def acquire(self) -> RunLock:
        try:
            self.run.mkdir(parents=True, exist_ok=True)
            taken = self.lock.try_acquire()
        except OSError as err:
            raise TricksterError(
                f"cannot lock run folder {self.run} ({err.strerror or err}): it must be a directory you can write to"
            ) from None
        if not taken:
            raise TricksterError(
                f"run {self.run} is being written by {self.lock.holder()}: wait until that fit ends, or stop it, then "
                "run this command again"
            )
        error = self.lock.record_error
        if error is not None and error.errno in (errno.ENOSPC, errno.EDQUOT):
            # Not even a hundred bytes fit: neither would the run's logs, config or checkpoints. Nothing was trained.
            self.release()
            raise TricksterError(
                f"cannot write in run folder {self.run} ({error.strerror}): free disk space on its filesystem, then "
                "run this command again; nothing was trained"
            )
        return self

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
