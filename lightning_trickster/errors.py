"""Errors a user can fix: the CLI prints their message on one line and exits non-zero."""


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
