"""Errors of the Tenstorrent plugin: each message is one line naming the problem and the fix."""


class TTError(Exception):
    """A Tenstorrent run cannot go ahead as configured."""


class TTConfigError(TTError, ValueError):
    """A setting (shape, precision, mesh, batch) the chips cannot run."""


class TTHardwareError(TTError):
    """The Tenstorrent software stack or the chips are missing or broken."""
