"""The one way a harness runs work in a fresh process.

`in_fresh_process(function, **kwargs)` calls a module-level function of an importable module in a new
`python -m benchmarks.child` process and returns the dict it returned, read back from one JSON line, with the child's
peak resident memory added (`peak_rss_mb`: Python, torch and Lightning included). A fresh process has its own peak
memory and its own allocator state, which in-process measurements cannot give.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT = "RESULT "
"""The prefix of the child's result line; anything else it prints is left alone."""


def peak_resident_bytes() -> int:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: in a process started by exec that also counts the
    peak of the memory it replaced, which, when its parent spawned it with vfork, is the parent's: a child of a large
    parent would report the parent's peak."""
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    return int(kib) * 1024


def peak_rss_mb() -> float:
    return peak_resident_bytes() / 2**20


def in_fresh_process(function: Callable[..., dict[str, Any]], env: dict[str, str] | None = None, **kwargs: Any) -> dict:
    """function(**kwargs) in a new Python process (JSON-serialisable kwargs; the same working directory, the
    repository importable, environment variables `env` added). Raises RuntimeError with the child's output tail if
    it fails."""
    target = f"{function.__module__}:{function.__qualname__}"
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.child", target, json.dumps(kwargs)],
        env={**os.environ, "PYTHONPATH": python_path, **(env or {})}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        output = f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        raise RuntimeError(f"{target} failed in its own process (exit {done.returncode}):\n{output}")
    return json.loads(lines[-1].removeprefix(RESULT))


def main(argv: list[str]) -> None:
    module, _, name = argv[0].partition(":")
    result = getattr(importlib.import_module(module), name)(**json.loads(argv[1]))
    result["peak_rss_mb"] = peak_rss_mb()
    print(f"\n{RESULT}{json.dumps(result)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
