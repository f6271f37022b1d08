"""The `stages` comparison and the `complete` REPL, on a real (tiny) training run."""

import io
import re
import signal
from pathlib import Path

import pytest
import torch
from conftest import fit_args

from lightning_trickster.cli import main
from lightning_trickster.errors import StoppedBySignal


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny char-level run that kept its checkpoints at steps 3, 6 and 9."""
    root = tmp_path_factory.mktemp("run")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(300)))
    main(fit_args(corpus, root, "--checkpoint.save_top_k", "-1", max_steps=9))
    return root


def test_stages_prints_every_checkpoint_by_step_beside_the_untrained_model(trained_run, capsys):
    main(["stages", "--ckpt_dir", str(trained_run), "--prompt", "[Line, the]", "--sampling.max_new_tokens", "20",
          "--width", "200"])  # fmt: skip
    out = capsys.readouterr().out
    headings = [line for line in out.splitlines() if line.startswith("step 0")]
    assert len(headings) == 2  # one table per prompt
    columns = [cell.strip() for cell in headings[0].split("|")]
    assert columns[0].startswith("step 0 (random init")
    assert [c.split(" (")[0] for c in columns[1:]] == ["step 3", "step 6", "step 9"]
    assert all("(val " in c for c in columns[1:])
    assert "=== prompt 'Line'" in out and "=== prompt 'the'" in out


def test_stages_samples_are_reproducible(trained_run, capsys):
    args = ["stages", "--ckpt_dir", str(trained_run), "--prompt", "Line", "--sampling.max_new_tokens", "20"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first


def test_stages_on_a_directory_without_checkpoints_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["stages", "--ckpt_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: no *.ckpt files under")


def run_repl(ckpt: Path, typed: str, monkeypatch, capsys, *extra: str) -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(typed))
    main(["complete", "--ckpt_path", str(ckpt), *extra])
    return capsys.readouterr().out


def test_complete_continues_multi_line_input_and_changes_settings(trained_run, monkeypatch, capsys):
    ckpt = next(trained_run.rglob("last.ckpt"))
    typed = "Line 1: the\nLine 2\n\n:temperature 0\n:max_new_tokens 5\n:settings\nthe\n\n"
    out = run_repl(ckpt, typed, monkeypatch, capsys, "--sampling.max_new_tokens", "8")
    assert "step 9" in out
    assert "Line 1: the\nLine 2" in out
    assert "max_new_tokens=5, temperature=0.0, top_k=None, top_p=None" in out
    # The prompt "the" is echoed after the continuation marker, followed by exactly 5 sampled characters.
    completion = out.rsplit("... ", 1)[1].split("\n\n>>> ")[0]
    assert completion.startswith("the") and len(completion) == 3 + 5


def test_complete_reports_bad_input_and_keeps_going(trained_run, monkeypatch, capsys):
    ckpt = next(trained_run.rglob("last.ckpt"))
    out = run_repl(ckpt, "Zebra§\n\n:top_p 2\n:bogus\n:quit\nnever read\n\n", monkeypatch, capsys)
    assert "error: text contains characters outside the char vocabulary: 'Z§'" in out
    assert "error: sampling.top_p must be in (0, 1], got 2.0" in out
    assert "unknown command ':bogus'" in out
    assert "never read" not in out


def test_ctrl_c_stops_a_completion_and_ctrl_c_at_the_prompt_leaves_with_130(trained_run, monkeypatch, capsys):
    ckpt = next(trained_run.rglob("last.ckpt"))
    typed = iter(["Line", ""])

    def keyboard(prompt=""):  # what the front door's SIGINT handler raises wherever Ctrl-C lands
        try:
            return next(typed)
        except StopIteration:
            raise StoppedBySignal(signal.SIGINT) from None

    stream_calls = []

    def interrupted_stream(*args, **kwargs):
        stream_calls.append(1)
        yield from []
        raise StoppedBySignal(signal.SIGINT)

    monkeypatch.setattr("builtins.input", keyboard)
    monkeypatch.setattr("lightning_trickster.model.NanoTrickster.stream", interrupted_stream)
    with pytest.raises(SystemExit) as exit_info:
        main(["complete", "--ckpt_path", str(ckpt)])
    assert exit_info.value.code == 130
    captured = capsys.readouterr()
    assert stream_calls and "Line [stopped]" in captured.out
    assert captured.err.strip() == "error: stopped by SIGINT: what was already written is kept"


def test_complete_with_a_corrupt_checkpoint_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(SystemExit) as exit_info:
        main(["complete", "--ckpt_path", str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: checkpoint {bad} could not be read") and "\n" not in err


def test_a_checkpoint_with_non_finite_weights_is_a_one_line_error(trained_run, tmp_path, capsys):
    checkpoint = torch.load(next(trained_run.rglob("last.ckpt")), weights_only=True)
    checkpoint["state_dict"]["model.embedding.weight"][0, 0] = float("nan")
    torch.save(checkpoint, tmp_path / "nan.ckpt")
    with pytest.raises(SystemExit) as exit_info:
        main(["complete", "--ckpt_path", str(tmp_path / "nan.ckpt")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "holds non-finite weights" in err and "model.embedding.weight" in err and "\n" not in err


def test_complete_survives_any_setting_value(trained_run, monkeypatch, capsys):
    ckpt = next(trained_run.rglob("last.ckpt"))
    typed = ":temperature nan\n:temperature 1e-30\n:top_k 1e9\n:seed 99999999999999999999999\n:seed -1\nLine\n\n"
    out = run_repl(ckpt, typed, monkeypatch, capsys, "--sampling.max_new_tokens", "5")
    assert "error: sampling.temperature must be a finite number" in out
    assert out.count("error: :seed takes a whole number") == 2  # out of range: the previous seed stays
    assert re.search(r"Line[^\n]{5}\n", out)  # then completed 5 tokens, greedily at temperature 1e-30
