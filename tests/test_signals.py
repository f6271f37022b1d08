"""SIGINT, SIGTERM and SIGHUP end every command promptly with 130, 143 or 129 and one line, never 0 (driven through
real processes: the signal arrives while the command is busy, and to the whole process group as a terminal sends it,
DataLoader workers included); under nohup SIGHUP stays ignored."""

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, fit_args
from faults import signal_when_ready
from realfaults import children, read_until, start_in_own_group

from lightning_trickster.checkpoint import read_checkpoint
from lightning_trickster.cli import main
from lightning_trickster.errors import StoppedBySignal, raise_stopped_by_signal
from lightning_trickster.reliability import install_stop_handlers


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
    assert code == status and seconds < 10  # generating a million tokens would take hours
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


def nonblank(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def gone(pids: list[int], timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize(("name", "status"), [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_signal_to_the_whole_process_group_with_workers_alive_saves_last_ckpt(small_corpus, tmp_path, name, status):
    """Ctrl-C in a terminal (SIGINT), a scheduler (SIGTERM) or a closed terminal (SIGHUP) reach every process of the
    foreground group: the DataLoader workers too, not just the fit."""
    fit = start_in_own_group(fit_args(small_corpus, tmp_path, "--data.num_workers", "2", max_steps=100_000))
    try:
        read_until(fit, "step 3/")
        workers = children(fit.pid)
        assert len(workers) >= 2, workers  # alive when the signal comes
        os.killpg(fit.pid, signal.Signals[name])
        rest, _ = fit.communicate(timeout=120)
    finally:
        fit.kill()
    message = nonblank(rest)[-1]
    assert fit.returncode == status, rest[-3000:]
    assert "Traceback" not in rest and "exited unexpectedly" not in rest
    assert message.startswith(f"error: training stopped by {name} after step ")
    stopped_after = int(message.split("after step ")[1].split(":")[0])
    checkpoint = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert message.endswith(f"saved {checkpoint}; continue it with --ckpt_path last")
    assert read_checkpoint(checkpoint)["global_step"] == stopped_after >= 3
    assert gone(workers)  # no worker outlives the fit


def test_under_nohup_a_closed_terminal_does_not_stop_a_fit(small_corpus, tmp_path):
    fit = start_in_own_group(
        fit_args(small_corpus, tmp_path, "--data.num_workers", "2", max_steps=9), ignore_sighup=True
    )
    try:
        read_until(fit, "step 2/")
        os.killpg(fit.pid, signal.SIGHUP)
        rest, _ = fit.communicate(timeout=180)
    finally:
        fit.kill()
    assert fit.returncode == 0, rest[-3000:]
    checkpoint = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(checkpoint)["global_step"] == 9


def test_stop_handlers_cover_sighup_unless_it_is_ignored_and_are_restored():
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {signum: signal.getsignal(signum) for signum in signals}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        restore = install_stop_handlers()
        try:
            assert all(signal.getsignal(signum) is raise_stopped_by_signal for signum in signals)
            with pytest.raises(StoppedBySignal) as raised:
                os.kill(os.getpid(), signal.SIGHUP)  # a real signal: the handler runs in this (the main) thread
                time.sleep(5)
            assert raised.value.exit_code == 129
            assert str(raised.value) == "stopped by SIGHUP: what was already written is kept"
        finally:
            restore()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL

        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a program
        restore = install_stop_handlers()
        try:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGINT) is raise_stopped_by_signal
            os.kill(os.getpid(), signal.SIGHUP)  # ignored: nothing happens
        finally:
            restore()
        assert {signum: signal.getsignal(signum) for signum in signals[:2]} == {s: saved[s] for s in signals[:2]}
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_sighup_stops_a_long_generation_in_predict_with_129(checkpoint):
    args = ["predict", "--config", "cpu.yaml", "--ckpt_path", str(checkpoint), "--trainer.enable_progress_bar", "false",
            "--data.prompts", '["Line"]', "--sampling.max_new_tokens", "1000000"]  # fmt: skip
    code, last_line, seconds = signal_after(args, signal.SIGHUP, ready="Seed set")
    assert code == 129 and seconds < 5
    assert last_line == "error: stopped by SIGHUP: what was already written is kept"
