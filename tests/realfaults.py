"""Real faults for the tests, not simulated ones: a small filesystem that really fills up (a tmpfs, mounted as root),
signals sent to a whole process group with DataLoader workers alive, and a second real process holding a lock.

A full disk seen through torch.save is `RuntimeError: [enforce fail at inline_container.cc:...] . unexpected pos ...`,
not the OSError a test would inject; a terminal's Ctrl-C reaches every process of the foreground group, workers
included, not one PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults import child_environment

PAGE = 4096


def mount_failure(directory: Path, options: str) -> str | None:
    """Mount a tmpfs with options (size=4m, nr_inodes=...) on directory; None on success, else why it is impossible
    here (not root, no mount)."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (CI runs the tests as root)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount command"
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True, text=True
    )
    return None if result.returncode == 0 else f"mount -t tmpfs failed: {result.stderr.strip()}"


@contextlib.contextmanager
def small_filesystem(directory: Path, size: str = "4m", inodes: int | None = None) -> Iterator[Path]:
    """A real filesystem of `size` bytes (and at most `inodes` files and directories, itself included) mounted on
    directory (created if needed) for the block; unmounted after. Skips the test, with the reason, only where
    mounting is impossible."""
    directory.mkdir(parents=True, exist_ok=True)
    failure = mount_failure(directory, f"size={size}" + (f",nr_inodes={inodes}" if inodes else ""))
    if failure is not None:
        pytest.skip(f"no real small filesystem: {failure}")
    try:
        yield directory
    finally:
        for _ in range(50):  # a child that just exited may still hold a file open for a moment
            if subprocess.run(["umount", str(directory)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def free_bytes(directory: Path) -> int:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


def fill(directory: Path, leave_bytes: int, name: str = "filler.bin") -> Path:
    """Write a file that leaves about leave_bytes (rounded down to whole pages) free on directory's filesystem."""
    filler = directory / name
    size = max(free_bytes(directory) - leave_bytes, 0) // PAGE * PAGE
    with filler.open("wb") as out:
        out.write(b"\0" * size)
    return filler


def start_in_own_group(args: list[str], *, ignore_sighup: bool = False, cwd: Path | None = None) -> subprocess.Popen:
    """`python -m lightning_trickster ARGS` as the leader of a new process group (as a shell starts a foreground
    job), with SIGINT and SIGTERM at their defaults and SIGHUP ignored if asked (as under nohup)."""

    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN if ignore_sighup else signal.SIG_DFL)

    return subprocess.Popen(
        [sys.executable, "-u", "-m", "lightning_trickster", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, cwd=cwd, env=child_environment(), start_new_session=True, preexec_fn=setup,
    )  # fmt: skip


def children(pid: int) -> list[int]:
    """The live child processes of pid (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def read_until(process: subprocess.Popen, marker: str, timeout_s: float = 240) -> str:
    """The child's output up to and including the first line containing marker."""
    seen = []
    deadline = time.monotonic() + timeout_s
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise AssertionError(f"{marker!r} never appeared; output:\n{''.join(seen)[-3000:]}")


def hold_lock_in_another_process(code: str) -> subprocess.Popen:
    """A real second process that runs `code` (which takes a lock), prints 'held' and sleeps until killed."""
    script = f"{code}\nprint('held', flush=True)\nimport time\ntime.sleep(600)\n"
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=child_environment()
    )
    assert holder.stdout.readline().strip() == "held"
    return holder
