"""What a user sees during and after a fit: an 80-column progress display, validation lines, a closing summary."""

import fcntl
import logging
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

import pytest
from conftest import REPO_ROOT, fit_args

from lightning_trickster.cli import main

METRICS = ("loss ", "val ", "lr ", "tok/s", "grad ")


def fit_in_terminal(args: list[str], columns: int = 80) -> str:
    """The fit's stdout as a terminal of this width receives it: stdout is a pseudo-terminal of that size (on a pipe
    or file the fit writes plain lines instead, see test_plain_output.py)."""
    master, slave = pty.openpty()
    # tqdm keeps one column free; it reads the width from the terminal.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns + 1, 0, 0))
    attributes = termios.tcgetattr(slave)
    attributes[1] &= ~termios.ONLCR  # line feeds as written, not turned into CR LF
    termios.tcsetattr(slave, termios.TCSANOW, attributes)
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "lightning_trickster", *args], stdout=slave, stderr=stderr, cwd=REPO_ROOT
        )
        os.close(slave)
        chunks = []
        while True:  # read as it comes: a terminal holds only a few KB the fit would block on
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the fit closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        returncode = process.wait()
        stderr.seek(0)
        assert returncode == 0, stderr.read().decode(errors="replace")[-2000:]
    return b"".join(chunks).decode()


def screen_lines(output: str) -> list[str]:
    """Each line tqdm draws (it redraws with carriage returns and moves the cursor with ESC[A)."""
    return [segment.replace("\x1b[A", "") for segment in re.split(r"[\r\n]", output)]


@pytest.fixture(scope="module")
def terminal_run(tmp_path_factory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("terminal")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(300)))
    args = fit_args(corpus, root, "--trainer.enable_progress_bar", "true", "--trainer.log_every_n_steps", "2")
    return fit_in_terminal(args), root


def test_the_progress_display_fits_80_columns_and_shows_every_metric(terminal_run):
    lines = screen_lines(terminal_run[0])
    bars = [line for line in lines if line.startswith("step ") and "|" in line]
    status = [line for line in lines if line.startswith("loss ")]
    assert bars and status
    assert all(len(line) <= 80 for line in bars + status)
    assert bars[-1].startswith("step 6/6 |")  # counted in optimizer steps, to max_steps
    assert all(metric in status[-1] for metric in METRICS), status[-1]
    assert "v_num" not in terminal_run[0]


def test_each_validation_leaves_a_line_and_the_fit_a_summary(terminal_run):
    output, root = terminal_run
    validations = [line for line in screen_lines(output) if re.match(r"step \d+: val loss \d\.\d{4} \(best", line)]
    assert [line.split(":")[0] for line in validations] == ["step 3", "step 6"]
    summary = output.strip().splitlines()[-1]
    expected = (
        r"fit done: 6/6 steps, best val loss \d\.\d{4} .*best-step=\d\.ckpt, \d+:\d\d for 768 tokens "
        r"\([\d.k]+ tokens/s\)$"
    )
    assert re.match(expected, summary)


def test_a_resumed_fit_counts_on_from_its_step(terminal_run, tmp_path):
    _, root = terminal_run
    corpus = root / "corpus.txt"
    args = fit_args(corpus, root, "--trainer.enable_progress_bar", "true", "--ckpt_path", "last", max_steps=9)
    bars = [line for line in screen_lines(fit_in_terminal(args)) if line.startswith("step ") and "|" in line]
    assert bars[0].startswith("step 6/9 |") and bars[-1].startswith("step 9/9 |")


def test_quiet_fit_prints_only_the_summary_line(small_corpus, tmp_path, capsys):
    main([*fit_args(small_corpus, tmp_path), "-q"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("fit done: 6/6 steps, best val loss")


def test_without_a_progress_bar_the_loss_is_printed_every_logging_step(small_corpus, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        main(fit_args(small_corpus, tmp_path, "--trainer.log_every_n_steps", "2"))  # the tests' runs have no bar
    steps = [m for m in caplog.messages if re.match(r"step \d+/6: loss \d", m)]
    assert [m.split(":")[0] for m in steps] == ["step 2/6", "step 4/6", "step 6/6"]


def test_a_run_shorter_than_its_validation_interval_validates_at_its_end(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path, "--trainer.val_check_interval", "100", max_steps=4))
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert (checkpoints / "best-step=4.ckpt").is_file()


def test_resume_validate_and_predict_raise_no_warning_a_user_cannot_act_on(small_corpus, tmp_path, recwarn):
    main(fit_args(small_corpus, tmp_path, max_steps=3))
    main(fit_args(small_corpus, tmp_path, "--ckpt_path", "last", max_steps=6))
    main(["validate", *fit_args(small_corpus, tmp_path)[1:], "--ckpt_path", "last"])
    main(["predict", "--config", "cpu.yaml", "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", "last",
          "--trainer.enable_progress_bar", "false", "--data.prompts", '["Line"]'])  # fmt: skip
    noise = ("dirpath has changed", "batch indices", "exists and is not empty", "weights_only")
    assert not [str(w.message) for w in recwarn if any(text in str(w.message) for text in noise)]
    # Evaluations leave the run list alone: plot still finds exactly the one training run.
    main(["plot", str(tmp_path), "--output", str(tmp_path / "curves.png")])
    assert (tmp_path / "curves.png").is_file() and len(list(tmp_path.glob("lightning_logs/version_*"))) == 1


def test_the_console_script_is_the_same_front_door():
    script = shutil.which("trickster")
    assert script is not None, "pip install -e . installs the trickster console script"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: trickster") and "tt-check" in result.stdout


def test_the_summary_of_a_resumed_fit_counts_only_the_steps_it_trained(small_corpus, tmp_path, capsys):
    main(fit_args(small_corpus, tmp_path, max_steps=3))
    capsys.readouterr()
    main([*fit_args(small_corpus, tmp_path, "--ckpt_path", "last", max_steps=6), "-q"])
    summary = capsys.readouterr().out.strip()
    assert summary.startswith("fit done: 6/6 steps") and " for 384 tokens (" in summary  # 3 steps x 128 tokens
