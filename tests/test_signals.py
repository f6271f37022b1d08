"""SIGINT and SIGTERM end every command promptly with 130 or 143 and one line, never 0 (driven through real
processes: the signal arrives while the command is busy)."""

import signal
from pathlib import Path

import pytest
from conftest import REPO_ROOT, fit_args
from faults import signal_when_ready

from lightning_trickster.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("signals")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(300)))
    main(fit_args(corpus, root, max_steps=3))
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def signal_after(args: list[str], signum: int, ready: str) -> tuple[int, str, float]:
    """Start the CLI, send signum once `ready` appears in its output, and return (exit status, the output's last
    line, seconds from the signal to the exit)."""
    code, rest, seconds = signal_when_ready(args, signum, ready, cwd=REPO_ROOT)
    return code, (rest.strip().splitlines() or [""])[-1], seconds


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_long_generation_in_predict_stops_at_once(checkpoint, signum, status):
    args = ["predict", "--config", "cpu.yaml", "--ckpt_path", str(checkpoint), "--trainer.enable_progress_bar", "false",
            "--data.prompts", '["Line"]', "--sampling.max_new_tokens", "1000000"]  # fmt: skip
    code, last_line, seconds = signal_after(args, signum, ready="Seed set")
    assert code == status and seconds < 5
    assert last_line == f"error: stopped by {signal.Signals(signum).name}: what was already written is kept"


def test_stages_stops_on_sigterm(checkpoint):
    args = ["stages", "--ckpt_dir", str(checkpoint.parent), "--prompt", "Line", "--sampling.max_new_tokens", "1000000"]
    code, last_line, _ = signal_after(args, signal.SIGTERM, ready="=== prompt")
    assert code == 143 and last_line.startswith("error: stopped by SIGTERM")


def test_sigterm_during_the_start_up_baseline_of_a_fit_is_143(checkpoint, tmp_path):
    corpus = REPO_ROOT / "tests" / "data" / "tinyshakespeare.txt"  # a long validation split: a slow baseline
    args = fit_args(corpus, tmp_path, "--model.max_seq_len", "128", "--model.hidden_dim", "128", max_steps=100)
    code, last_line, _ = signal_after(args, signal.SIGTERM, ready="steps: 100")
    assert code == 143 and last_line.startswith("error: stopped by SIGTERM")
    assert not (tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").exists()  # nothing trained
