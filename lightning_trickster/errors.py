"""Errors a user can fix: the CLI prints their message on one line and exits non-zero."""

import signal


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


def raise_stopped_by_signal(signal_number: int, frame: object) -> None:
    """A signal handler: stop the command where it is."""
    raise StoppedBySignal(signal_number)
