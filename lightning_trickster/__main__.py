"""`python -m lightning_trickster` and the `trickster` command.

Loading the libraries takes seconds; a Ctrl-C, SIGTERM or SIGHUP meanwhile stops the command at once, in one line
with exit status 128 + signal, as it would later (cli.main then installs the handlers of the command itself)."""

import os
import signal


def stop_while_starting(signum: int, frame: object) -> None:
    """Nothing is written before the command starts: exit at once. Raising here instead could be swallowed by a
    library's import that catches every exception."""
    os.write(2, f"error: stopped by {signal.Signals(signum).name} while starting: nothing was written\n".encode())
    os._exit(128 + signum)


def entry() -> None:
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)  # Windows has no SIGHUP
        if signum is not None and not (name == "SIGHUP" and signal.getsignal(signum) is signal.SIG_IGN):  # nohup
            signal.signal(signum, stop_while_starting)
    from lightning_trickster.cli import main

    main()


if __name__ == "__main__":
    entry()
