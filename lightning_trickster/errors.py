"""Errors a user can fix: the CLI prints their message on one line and exits non-zero."""


class TricksterError(Exception):
    """A problem with the user's input, data, config or environment; the message says how to fix it."""


class InvalidConfigError(TricksterError, ValueError):
    """A config value is out of range or inconsistent with another."""


class DataError(TricksterError):
    """The corpus is missing, unreadable or too small."""


class HardwareError(TricksterError):
    """The selected accelerator cannot run here: its software stack or its device is missing."""
