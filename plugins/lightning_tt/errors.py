"""The plugin's own error types. An application maps TTError to one `error: <message>` line (the message already
says the problem and the fix, on one line), so the plugin depends on no application code."""


class TTError(Exception):
    """Base of every error the plugin raises for a user to fix; its message is one line: problem, then fix."""


class TTConfigError(TTError, ValueError):
    """A setting cannot run on Tenstorrent as given: precision, mesh shape, batch split, model shape."""


class TTHardwareError(TTError):
    """The Tenstorrent software stack (ttnn, ttml, environment) or a chip is missing or broken."""
