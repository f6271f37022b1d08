"""Errors a user can fix: the CLI prints their message on one line and exits non-zero; and the one line for a write
that failed (write_failure). Free of Lightning: the model and export modules import it."""

import errno
import os
import re
import signal
import stat
import sys
from pathlib import Path


def not_a_readable_file(path: Path) -> str | None:
    """What is wrong with reading `path` as a file, as the end of "<what> <path> ...": "not found", "is a symlink
    loop", "is a FIFO (named pipe), not a regular file" (reading one would wait for a writer), "is a character device,
    not a regular file" (/dev/zero never ends), ...; None for a regular file (also through symbolic links)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symlink loop"
        if path.is_symlink():
            return f"is a symlink to {os.readlink(path)}, which does not exist"
        if err.errno == errno.ENOENT:
            return "not found"
        return f"cannot be read ({err.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    kinds = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    kind = next((name for test, name in kinds.items() if test(mode)), "a socket")
    return f"is {kind}, not a regular file"


class TricksterError(Exception):
    """A problem with the user's input, data, config or environment; the message says how to fix it."""

    exit_code = 2

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (original_message(args[0]),)
        super().__init__(*args)


def original_message(message: str) -> str:
    """The error's own one-line message when it was raised in a DataLoader worker process: PyTorch re-raises it in
    the main process as the same class built from "Caught X in DataLoader worker process N." and the worker's whole
    traceback, which ends in "module.X: <message>"."""
    if not message.startswith("Caught ") or "\nOriginal Traceback" not in message:
        return message
    last = message.rstrip().splitlines()[-1]
    name, separator, original = last.partition(": ")
    return original if separator and " " not in name else message


class InvalidConfigError(TricksterError, ValueError):
    """A config value is out of range or inconsistent with another."""


class DataError(TricksterError):
    """The corpus is missing, unreadable or too small."""


class HardwareError(TricksterError):
    """The selected accelerator cannot run here: its software stack or its device is missing."""


class NonFiniteError(TricksterError):
    """Training produced a non-finite loss or gradient; the checkpoints on disk predate it."""


class WriteFailedError(TricksterError, OSError):
    """A file could not be written (a full disk, a quota, a read-only filesystem, permissions); what was written
    before is left as it was."""


class TrainingInterrupted(TricksterError):
    """SIGINT, SIGTERM or SIGHUP stopped a fit after it saved last.ckpt; exits like a process killed by that
    signal. With several processes every rank raises it and only rank 0 reports it (report=False on the others)."""

    def __init__(self, message: str, signal_number: int, report: bool = True) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number
        self.report = report


class StoppedBySignal(BaseException):
    """SIGINT, SIGTERM or SIGHUP outside a fit's training steps (which CheckpointOnSignal handles): the command stops
    at once and exits like a process killed by that signal (130, 143, 129). A BaseException, as KeyboardInterrupt
    is, so that no `except Exception` on the way swallows it."""

    def __init__(self, signal_number: int) -> None:
        self.signal_name = signal.Signals(signal_number).name
        super().__init__(f"stopped by {self.signal_name}: what was already written is kept")
        self.exit_code = 128 + signal_number
        # With several processes (a fit's DDP ranks) each stops; rank 0 alone reports it (as Lightning numbers them:
        # read only where Lightning is loaded, so this module stays free of it).
        rank_zero = sys.modules.get("lightning.fabric.utilities.rank_zero")
        self.report = getattr(getattr(rank_zero, "rank_zero_only", None), "rank", 0) == 0


def raise_stopped_by_signal(signal_number: int, frame: object) -> None:
    """A signal handler: stop the command where it is."""
    raise StoppedBySignal(signal_number)


# ---------------------------------------------------------------------------------------------------------------
# Writes that fail: one line naming the file, the reason and the fix


WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})
"""What the filesystem answers when a write cannot be done: the disk is full, a quota or the file size limit is
reached, the filesystem is read-only, permissions, a failing device."""

NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def failed_write_errno(err: BaseException, directory: Path | None = None) -> int | None:
    """The errno behind a failed write, also where a library hides it: safetensors' `SafetensorError: ... I/O error:
    No space left on device (os error 28)`, numpy's `OSError: N requested and M written` (no errno: then a filesystem
    with no room left is the reason), or an OSError in the chain of causes."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno:
            return current.errno
        found = re.search(r"\(os error (\d+)\)", str(current))
        if found:
            return int(found.group(1))
        current = current.__cause__ or current.__context__
    if directory is not None and free_bytes(directory) < 64 * 1024:
        return errno.ENOSPC
    return None


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged write could still use on directory's filesystem (its nearest existing ancestor's)."""
    directory = Path(directory)
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        stat = os.statvfs(directory)
    except OSError:
        return 1 << 62
    return stat.f_bavail * stat.f_frsize


def write_failure(what: str | Path, err: BaseException, directory: Path, then: str) -> WriteFailedError:
    """`could not write <what> (<reason>): <fix for that reason>, then <then>` as one line."""
    number = failed_write_errno(err, directory)
    reason = os.strerror(number) if number else " ".join(str(err).split())[:200]
    if number in NO_ROOM:
        fix = f"free disk space on the filesystem of {directory}"
    elif number in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = f"make {directory} writable"
    else:
        fix = f"check the disk that holds {directory}"
    return WriteFailedError(f"could not write {what} ({reason}): {fix}, then {then}")
