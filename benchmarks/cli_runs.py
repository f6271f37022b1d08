"""What the benchmark scripts share: they run the real command line, as a user does, and read what a fit left."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightning_trickster.runs import read_scalars, training_runs  # noqa: E402

CORPUS = REPO / "tests" / "data" / "tinyshakespeare.txt"
"""Tiny Shakespeare as shipped with the tests: no download, also on a machine without network."""


def run_cli(
    command: list[str], timeout_s: float | None = None, program: str = "lightning_trickster"
) -> tuple[str, float]:
    """Run `python -m lightning_trickster COMMAND...` (or `python -m benchmarks HARNESS...` with program="benchmarks")
    from the repository; its output (stdout, then stderr) and wall seconds. Exits with the command's stderr on a
    non-zero status."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", program, *command],
        cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"error: `{' '.join(command[:3])} ...` exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr, seconds


def fit_result(output: str, root: Path) -> dict:
    """Steps trained (from fit's summary line, `fit done: N/M steps, ...`, or `fit done: N steps, ...` under a time
    budget) and the best and final validation losses of the newest run under root (step 0, the untrained baseline,
    left out)."""
    val = [(step, value) for step, value in read_scalars(training_runs(root)[-1])["val/loss"] if step > 0]
    return {
        "steps": int(re.search(r"fit done: (\d+)\b", output).group(1)),
        "best_val": round(min(value for _, value in val), 4),
        "final_val": round(val[-1][1], 4),
    }
