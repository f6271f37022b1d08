"""Errors a user can fix: the CLI prints their message on one line and exits non-zero."""

import signal


class TricksterError(Exception):
    """A problem with the user's input, data, config or environment; the message says how to fix it."""

    exit_code = 2


class InvalidConfigError(TricksterError, ValueError):
    """A config value is out of range or inconsistent with another."""


class DataError(TricksterError):
    """The corpus is missing, unreadable or too small."""


class HardwareError(TricksterError):
    """The selected accelerator cannot run here: its software stack or its device is missing."""


class NonFiniteError(TricksterError):
    """Training produced a non-finite loss or gradient; the checkpoints on disk predate it."""


class TrainingInterrupted(TricksterError):
    """SIGINT or SIGTERM stopped a fit after it saved last.ckpt; exits like a process killed by that signal."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number


class StoppedBySignal(BaseException):
    """SIGINT or SIGTERM outside a fit's training steps (which CheckpointOnSignal handles): the command stops at once
    and exits like a process killed by that signal (130, 143). A BaseException, as KeyboardInterrupt is, so that no
    `except Exception` on the way swallows it."""

    def __init__(self, signal_number: int) -> None:
        self.signal_name = signal.Signals(signal_number).name
        super().__init__(f"stopped by {self.signal_name}: what was already written is kept")
        self.exit_code = 128 + signal_number


def raise_stopped_by_signal(signal_number: int, frame: object) -> None:
    """A signal handler: stop the command where it is."""
    raise StoppedBySignal(signal_number)
