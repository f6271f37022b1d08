"""A fit whose output goes to a file (nohup, SLURM, CI, `> log`): plain lines, no redraws or escape codes, each line
in the file as soon as it is printed. (The terminal display is tested in test_run_display.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, fit_args

from lightning_trickster.progress import StepProgressBar, output_is_terminal

STEPS, LOG_EVERY, VALIDATE_EVERY = 60, 10, 20


def plain_fit_args(corpus: Path, root: Path) -> list[str]:
    """A 60-step fit with the progress display a user gets by default (the tests' runs turn it off)."""
    return fit_args(
        corpus, root,
        "--trainer.enable_progress_bar", "true",
        "--trainer.log_every_n_steps", str(LOG_EVERY),
        "--trainer.val_check_interval", str(VALIDATE_EVERY),
        "--samples.every_n_steps", str(VALIDATE_EVERY),
        max_steps=STEPS,
    )  # fmt: skip


@pytest.fixture(scope="module")
def logged_fit(tmp_path_factory) -> tuple[str, list[str]]:
    """A fit run as `python -m lightning_trickster fit ... > log 2>&1`: the log's text, and what the log held each time
    it was looked at while the fit ran."""
    root = tmp_path_factory.mktemp("plain")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(300)))
    log = root / "log"
    snapshots = []
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lightning_trickster", *plain_fit_args(corpus, root)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        )  # fmt: skip
        while process.poll() is None:
            snapshots.append(log.read_bytes().decode(errors="replace"))
            time.sleep(0.02)
    text = log.read_bytes().decode()
    assert process.returncode == 0, text[-3000:]
    return text, snapshots


def test_the_log_holds_no_redraws_or_escape_codes_and_stays_small(logged_fit):
    text, _ = logged_fit
    assert "\x1b" not in text and "\r" not in text
    size = len(text.encode())
    assert size <= 20_000, f"{size} bytes"


def test_the_status_line_is_printed_every_logging_step(logged_fit):
    text, _ = logged_fit
    status = re.findall(r"^step (\d+)/60: loss \d+\.\d{3}  .*lr .* tok/s  grad \d", text, flags=re.MULTILINE)
    assert [int(step) for step in status] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))


def test_validations_samples_and_the_summary_are_there(logged_fit):
    text, _ = logged_fit
    validations = re.findall(r"^step (\d+): val loss \d\.\d{4} \(best \d\.\d{4}\), \d+:\d\d elapsed$", text, re.M)
    assert [int(step) for step in validations] == list(range(VALIDATE_EVERY, STEPS + 1, VALIDATE_EVERY))
    samples = re.findall(r"^--- sample at step (\d+) ---$", text, flags=re.MULTILINE)
    assert [int(step) for step in samples] == [0, *range(VALIDATE_EVERY, STEPS + 1, VALIDATE_EVERY)]
    assert text.rstrip().splitlines()[-1].startswith(f"fit done: {STEPS}/{STEPS} steps, best val loss")


def test_each_line_is_in_the_file_when_it_is_printed(logged_fit):
    """Not all at the end, as a block-buffered stdout would leave them: while the fit still ran, the file held the
    first status line and not yet the last."""
    _, snapshots = logged_fit
    first, last = f"step {LOG_EVERY}/{STEPS}:", f"step {STEPS}/{STEPS}:"
    assert any(first in snapshot and last not in snapshot for snapshot in snapshots), len(snapshots)


def test_use_line_buffered_output_flushes_a_redirected_stdout_at_every_line(tmp_path):
    """A print without flush=True reaches the file at its line end, while the program still runs."""
    program = (
        "import sys\n"
        "from lightning_trickster.progress import use_line_buffered_output\n"
        "if sys.argv[1] == 'on':\n"
        "    use_line_buffered_output()\n"
        "print('first line')\n"
        "sys.stdin.readline()\n"  # wait until the test has looked at the file
    )
    for setting, expected in (("on", "first line\n"), ("off", "")):
        log = tmp_path / f"{setting}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", program, setting], stdin=subprocess.PIPE, stdout=out, cwd=REPO_ROOT
            )
            deadline = time.monotonic() + 60
            while log.read_text() != expected and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)  # time for more output, if any were coming
            seen = log.read_text()
            process.communicate(b"\n", timeout=60)
        assert seen == expected, setting  # off: Python's block buffering holds the line until the exit
        assert log.read_text() == "first line\n"


def test_the_progress_bar_is_plain_exactly_when_stdout_is_not_a_terminal(monkeypatch):
    class Stream:
        def __init__(self, tty: bool):
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr(sys, "stdout", Stream(True))
    assert output_is_terminal() and not StepProgressBar().plain
    assert StepProgressBar(plain=True).plain
    monkeypatch.setattr(sys, "stdout", Stream(False))
    assert not output_is_terminal() and StepProgressBar().plain
    assert not StepProgressBar(plain=False).plain
    monkeypatch.setattr(sys, "stdout", object())  # no isatty at all
    assert not output_is_terminal()
