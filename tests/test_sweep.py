"""`sweep`: two tiny runs for the same token budget, each a real `fit`; JSON per run and a PNG plot."""

import json

import pytest
from conftest import TINY_MODEL_ARGS
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_trickster.cli import main


def test_sweep_trains_each_run_for_the_token_budget_and_writes_json_and_png(small_corpus, tmp_path, capsys):
    out = tmp_path / "sweep"
    common = ["--data.path", str(small_corpus), *TINY_MODEL_ARGS, "--model.optimization.warmup_steps", "0"]
    main([
        "sweep", "--config", "cpu.yaml", "--tokens", "1000", "--evals", "2", "--out", str(out),
        "--runs.narrow", "--model.hidden_dim 16 --model.mlp_dim 32",
        "--runs.wide", "--model.hidden_dim 48 --model.mlp_dim 96",
        *common,
    ])  # fmt: skip
    results = json.loads((out / "sweep.json").read_text())
    assert [run["name"] for run in results] == ["narrow", "wide"]
    for run in results:
        assert json.loads((out / f"{run['name']}.json").read_text()) == run
        # 4 windows x 32 tokens = 128 tokens per step: 1000 tokens -> 8 steps (a multiple of the 2 evaluations).
        assert (run["tokens_per_step"], run["steps"], run["tokens"]) == (128, 8, 1024)
        events = EventAccumulator(run["log_dir"])
        events.Reload()
        val_loss = [(e.step, e.value) for e in events.Scalars("val/loss") if e.step > 0]
        assert [step for step, _ in val_loss] == [3, 7]  # validation at the middle and the final step
        assert run["final_val_loss"] == pytest.approx(val_loss[-1][1])
        assert run["best_val_loss"] == pytest.approx(min(loss for _, loss in val_loss))
        assert run["final_val_perplexity"] == pytest.approx(events.Scalars("val/perplexity")[-1].value)
        assert run["wall_time_s"] > 0
    narrow, wide = results
    assert narrow["parameters"] < wide["parameters"]
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote 2 run JSON files" in capsys.readouterr().out


def test_sweep_without_runs_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--tokens", "1000", "--runs", "{}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no runs to train") and "\n" not in err


def test_a_run_with_a_bad_option_stops_the_sweep_before_any_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--tokens", "1000", "--out", str(tmp_path), "--runs.bad", "--model.hidden_dimm 8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "hidden_dimm" in err and "\n" not in err
    assert not (tmp_path / "runs").exists()
