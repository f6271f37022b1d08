"""A run written before the settings were grouped (tests/data/legacy_run: a flat-layout config.yaml and last.ckpt, with
the data module's old class name as checkpoint key) still predicts, validates and resumes; old option names work
with one deprecation line."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, TINY_MODEL_ARGS, fit_args

from lightning_trickster.checkpoint import DATAMODULE_KEY, load_trained_model, read_checkpoint
from lightning_trickster.cli import main
from lightning_trickster.model import SamplingSettings
from lightning_trickster.module import NanoTricksterModule
from lightning_trickster.optim import Optimization
from lightning_trickster.runs import newest_last_checkpoint

LEGACY = REPO_ROOT / "tests" / "data" / "legacy_run"


@pytest.fixture
def legacy_run(tmp_path, monkeypatch) -> Path:
    """The fixture laid out as a run folder, its config's relative paths resolved from tmp_path."""
    run = tmp_path / "runs" / "legacy" / "lightning_logs" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(LEGACY / "last.ckpt", run / "checkpoints" / "last.ckpt")
    shutil.copy(LEGACY / "config.yaml", run / "config.yaml")
    (tmp_path / "tests" / "data").mkdir(parents=True)
    (tmp_path / "tests" / "data" / "tinyshakespeare.txt").symlink_to(
        REPO_ROOT / "tests" / "data" / "tinyshakespeare.txt"
    )
    monkeypatch.chdir(tmp_path)
    return run


def test_the_fixture_really_has_the_old_layout():
    raw = torch.load(LEGACY / "last.ckpt", weights_only=True)
    assert "ShakespeareDataModule" in raw and DATAMODULE_KEY not in raw
    assert {"learning_rate", "temperature", "optimizer"} <= set(raw["hyper_parameters"])
    assert "temperature:" in (LEGACY / "config.yaml").read_text()


def test_an_old_checkpoint_is_read_in_the_grouped_layout():
    checkpoint = read_checkpoint(LEGACY / "last.ckpt")
    assert checkpoint[DATAMODULE_KEY]["tokenizer"]["name"] == "char"
    assert checkpoint["hyper_parameters"]["optimization"]["optimizer"] == "muon"
    trained = load_trained_model(LEGACY / "last.ckpt")
    assert trained.sampling == SamplingSettings(max_new_tokens=200, temperature=0.5, top_k=10, top_p=None)


def test_load_from_checkpoint_restores_every_setting_of_an_old_checkpoint():
    module = NanoTricksterModule.load_from_checkpoint(str(LEGACY / "last.ckpt"))
    assert module.sampling == SamplingSettings(max_new_tokens=200, temperature=0.5, top_k=10)
    assert module.optimization == Optimization(optimizer="muon", learning_rate=0.005, muon_learning_rate=0.03,
                                               warmup_steps=100, min_lr_ratio=0.0)  # fmt: skip
    assert module.model.config.hidden_dim == 16 and module.model.config.vocab_size == 65


def test_predict_from_an_old_checkpoint_uses_its_sampling_settings(legacy_run, capsys):
    main(["predict", "--ckpt_path", "last", "--trainer.default_root_dir", "runs/legacy",
          "--data.prompts", '["ROMEO:"]', "--sampling.max_new_tokens", "5", "-q"])  # fmt: skip
    (predictions,) = legacy_run.glob("eval/predict-*/predictions.jsonl")
    record = json.loads(predictions.read_text().splitlines()[0])
    assert record["settings"] == {
        "max_new_tokens": 5,
        "temperature": 0.5,
        "top_k": 10,
        "top_p": None,
        "dtype": "float32",
    }
    assert len(record["completion"]) == 5 and record["step"] == 3


def test_an_old_run_resumes_under_its_own_config_yaml_with_one_deprecation_line(legacy_run, capsys):
    main(["fit", "--config", str(legacy_run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_steps", "4",
          "--trainer.val_check_interval", "1", "-q"])  # fmt: skip
    err = capsys.readouterr().err
    deprecations = [line for line in err.splitlines() if "deprecated option names" in line]
    assert len(deprecations) == 1 and "model.learning_rate -> model.optimization.learning_rate" in deprecations[0]
    resumed = read_checkpoint(newest_last_checkpoint(legacy_run.parents[1]))
    assert resumed["global_step"] == 4
    assert resumed["hyper_parameters"]["optimization"]["optimizer"] == "muon"
    assert resumed["hyper_parameters"]["sampling"]["temperature"] == 0.5


def test_validate_an_old_checkpoint(legacy_run, capsys):
    main(["validate", "--ckpt_path", str(legacy_run / "checkpoints" / "last.ckpt"), "-q",
          "--data.path", "tests/data/tinyshakespeare.txt", "--data.cache_dir", "data/cache"])  # fmt: skip
    (metrics,) = legacy_run.glob("eval/validate-*/metrics.json")
    assert json.loads(metrics.read_text())["metrics"]["val/loss"] == pytest.approx(4.1649, abs=1e-3)


def test_old_option_names_work_with_one_deprecation_line(small_corpus, tmp_path, capsys):
    args = fit_args(small_corpus, tmp_path, "--model.learning_rate", "0.001", "--model.temperature=0.3",
                    "--sampling.every_n_steps", "0", max_steps=1)  # fmt: skip
    main(args)
    err = capsys.readouterr().err
    assert err.count("deprecated option names") == 1
    assert "--model.learning_rate -> --model.optimization.learning_rate" in err
    (checkpoint,) = tmp_path.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    hparams = read_checkpoint(checkpoint)["hyper_parameters"]
    assert hparams["optimization"]["learning_rate"] == 0.001 and hparams["sampling"]["temperature"] == 0.3


def test_fit_help_has_one_max_new_tokens_and_every_sampling_option_has_one_name(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    fit_help = capsys.readouterr().out
    options = re.findall(r"^\s+(--[\w.]*max_new_tokens)\b", fit_help, re.MULTILINE)
    assert options == ["--sampling.max_new_tokens"]
    for command in ["predict", "stages"]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        missing = [
            name for name in ("max_new_tokens", "temperature", "top_k", "top_p") if f"--sampling.{name}" not in out
        ]
        assert not missing, (command, missing)
    # complete starts from the checkpoint's own settings unless --sampling.* is given: its group is optional, and its
    # fields are listed by --sampling.help.
    with pytest.raises(SystemExit):
        main(["complete", "--sampling.help", "SamplingSettings"])
    assert "--sampling.temperature" in capsys.readouterr().out


def test_the_shape_options_are_the_model_config_fields():
    import inspect
    from dataclasses import fields

    from lightning_trickster.model import NanoTricksterConfig

    parameters = inspect.signature(NanoTricksterModule.__init__).parameters
    for field in fields(NanoTricksterConfig):
        assert parameters[field.name].default == field.default, field.name


def test_tiny_model_args_use_todays_names():
    assert not any(arg in TINY_MODEL_ARGS for arg in ("--model.warmup_steps", "--sampling.prompts"))
