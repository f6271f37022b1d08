"""The command line, driven in-process: fit, checkpoints, TensorBoard events, resume, presets and errors."""

import json
import logging
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import fit_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_trickster.cli import main

TAGS = {"train/loss", "val/loss", "val/perplexity", "train/lr", "train/grad_norm", "train/tokens_per_sec"}


def run_dir(root: Path, version: int = 0) -> Path:
    return root / "lightning_logs" / f"version_{version}"


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_fit_writes_checkpoints_and_tensorboard_events_with_the_documented_tags(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path))
    run = run_dir(tmp_path)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "checkpoints").glob("best-step=*.ckpt"))
    logged = scalars(run)
    assert logged.keys() >= TAGS
    assert [step for step, _ in logged["train/loss"]] == list(range(6))
    assert [step for step, _ in logged["val/loss"]] == [0, 2, 5]  # step 0: the untrained model (random baseline)
    val_loss, val_ppl = logged["val/loss"][-1][1], logged["val/perplexity"][-1][1]
    assert val_ppl == pytest.approx(torch.tensor(val_loss).exp().item(), rel=1e-4)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 6
    assert checkpoint["hyper_parameters"]["vocab_size"] == len(set(small_corpus.read_text()))


def test_resume_from_last_continues_at_the_saved_step_exactly(small_corpus, tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    main(fit_args(small_corpus, straight, "--checkpoint.save_top_k", "-1", max_steps=6))
    # An interrupted run: it had written its step-3 checkpoint as last.ckpt when it stopped.
    (run_dir(interrupted) / "checkpoints").mkdir(parents=True)
    shutil.copy(
        run_dir(straight) / "checkpoints" / "best-step=3.ckpt", run_dir(interrupted) / "checkpoints" / "last.ckpt"
    )

    main(fit_args(small_corpus, interrupted, "--ckpt_path", "last", max_steps=6))

    # The resumed run keeps logging into the run it resumed, continuing the step numbers.
    assert not run_dir(interrupted, 1).exists()
    assert [step for step, _ in scalars(run_dir(interrupted))["train/loss"]] == [3, 4, 5]
    final = torch.load(run_dir(interrupted) / "checkpoints" / "last.ckpt", weights_only=True)
    reference = torch.load(run_dir(straight) / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 6
    # Same data windows, optimizer state and LR schedule as the uninterrupted run: same weights.
    for name, tensor in reference["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], tensor, msg=name)


def test_resume_without_a_previous_run_is_a_clear_error(small_corpus, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(small_corpus, tmp_path, "--ckpt_path", "last"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --ckpt_path last: no run under") and "\n" not in err


def test_bundled_preset_name_works_from_any_directory(small_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not Path("cpu.yaml").exists()
    main(fit_args(small_corpus, Path("runs"), max_steps=1))
    config = (run_dir(Path("runs")) / "config.yaml").read_text()
    assert "tokenizer: char" in config  # the bundled cpu.yaml was read


def test_unknown_preset_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "giant.yaml"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config 'giant.yaml' not found") and "nano" in err and "\n" not in err


def test_invalid_model_shape_is_a_one_line_error(small_corpus, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(small_corpus, tmp_path, "--model.num_heads", "3"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "hidden_dim=32 is not divisible by num_heads=3" in err and "\n" not in err


def test_sequence_length_is_set_once_by_the_model(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path, "--model.max_seq_len", "16", max_steps=1))
    checkpoint = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["datamodule_hyper_parameters"]["block_size"] == 16


def predict_args(root: Path, *extra: str) -> list[str]:
    """A predict run that knows only the run directory: no corpus, model shape and vocabulary from the checkpoint."""
    return ["predict", "--config", "cpu.yaml", "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", "--ckpt_path", "last", *extra]  # fmt: skip


def test_predict_writes_completions_as_json_lines_without_needing_the_corpus(small_corpus, tmp_path, capsys):
    main(fit_args(small_corpus, tmp_path / "run", max_steps=3))
    small_corpus.unlink()
    main(
        predict_args(
            tmp_path / "run", "--data.prompts", '["Line 1", "the ", "Line 2"]', "--sampling.max_new_tokens", "12"
        )
    )
    records = [
        json.loads(line)
        for line in (run_dir(tmp_path / "run") / "eval" / "predict-last-1" / "predictions.jsonl")
        .read_text()
        .splitlines()
    ]
    assert sorted(r["prompt"] for r in records) == ["Line 1", "Line 2", "the "]
    assert all(len(r["completion"]) == 12 for r in records)
    # The command line beat the checkpoint's max_new_tokens (200); the rest came from the checkpoint.
    assert records[0]["settings"] == {
        "max_new_tokens": 12,
        "temperature": 0.8,
        "top_k": None,
        "top_p": None,
        "dtype": "float32",
    }
    assert records[0]["step"] == 3 and os.path.basename(records[0]["checkpoint"]) == "last.ckpt"
    assert "Line 1" in capsys.readouterr().out


def test_predict_is_reproducible_with_a_seed(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path, max_steps=3))
    completions = []
    for seed in ("5", "5", "6"):
        main(predict_args(tmp_path, "--data.prompts", '["Line"]', "--seed_everything", seed))
        newest = max(
            tmp_path.glob("lightning_logs/version_0/eval/*/predictions.jsonl"), key=lambda p: p.stat().st_mtime
        )
        completions.append(json.loads(newest.read_text())["completion"])
    assert completions[0] == completions[1] != completions[2]


def test_prompt_with_characters_outside_the_vocabulary_is_a_one_line_error(small_corpus, tmp_path, capsys):
    main(fit_args(small_corpus, tmp_path, max_steps=3))
    with pytest.raises(SystemExit) as exit_info:
        main(predict_args(tmp_path, "--data.prompts", '["Zebra§"]'))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: text contains characters outside the char vocabulary: 'Z§'") and "\n" not in err


def test_fit_logs_the_random_baseline_and_text_samples(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path, "--samples.every_n_steps", "3"))
    events = EventAccumulator(str(run_dir(tmp_path)))
    events.Reload()
    baseline = events.Scalars("baseline/val_loss_at_init")[0].value
    vocab = len(set(small_corpus.read_text()))
    assert events.Scalars("baseline/uniform_loss")[0].value == pytest.approx(math.log(vocab))
    assert abs(baseline - math.log(vocab)) < 0.5
    assert baseline > scalars(run_dir(tmp_path))["val/loss"][-1][1]  # training improved on the random model
    samples = events.Tensors("samples/Line")
    assert [s.step for s in samples] == [0, 3, 6]
    assert samples[-1].tensor_proto.string_val[0].decode().startswith("```\nLine")


@pytest.fixture
def restore_lightning_log_levels():
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=False):
        logger.setLevel(level)


def test_quiet_prints_no_progress_summary_or_samples(
    small_corpus, tmp_path, caplog, capfd, restore_lightning_log_levels
):
    main(["fit", *fit_args(small_corpus, tmp_path / "normal", max_steps=3)[1:]])
    assert any("random baseline" in record.getMessage() for record in caplog.records)
    caplog.clear()
    main(["fit", "-q", *fit_args(small_corpus, tmp_path / "quiet", max_steps=3)[1:]])
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "random baseline" not in messages and "parameters:" not in messages and "sample at step" not in messages
    assert (run_dir(tmp_path / "quiet") / "checkpoints" / "last.ckpt").is_file()


def test_verbose_adds_lightnings_model_summary(small_corpus, tmp_path, caplog, capsys):
    def summary_shown() -> bool:  # logged by ModelSummary, or printed by RichModelSummary where rich is installed
        logged = any("Trainable params" in record.getMessage() for record in caplog.records)
        caplog.clear()
        return logged or "Trainable params" in capsys.readouterr().out

    main(["fit", *fit_args(small_corpus, tmp_path / "normal", max_steps=3)[1:]])
    assert not summary_shown()
    main(["fit", "--verbose", *fit_args(small_corpus, tmp_path / "verbose", max_steps=3)[1:]])
    assert summary_shown()


def test_train_tokens_keep_counting_across_a_resume_with_another_batch_size(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path, max_steps=3))  # 4 windows x 32 tokens = 128 tokens per step
    main(fit_args(small_corpus, tmp_path, "--ckpt_path", "last", "--data.batch_size", "8", max_steps=6))  # 256
    tokens = [value for _, value in scalars(run_dir(tmp_path))["train/tokens"]]
    assert tokens == [128, 256, 384, 640, 896, 1152]
    assert torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)["tokens_trained"] == 1152


def test_resuming_under_a_config_file_with_another_shape_stops_naming_the_fields(small_corpus, tmp_path, capsys):
    main(fit_args(small_corpus, tmp_path / "run", max_steps=3))
    checkpoint = run_dir(tmp_path / "run") / "checkpoints" / "last.ckpt"
    args = ["fit", "--config", "nano.yaml", "--ckpt_path", str(checkpoint), "--data.path", str(small_corpus),
            "--trainer.default_root_dir", str(tmp_path / "other")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: --ckpt_path {checkpoint} was trained with another model")
    assert "model.hidden_dim 256 in the config, 32 in the checkpoint" in err
    assert "model.num_layers 6 in the config, 2 in the checkpoint" in err  # the first three differences are named


def test_an_evaluation_under_another_config_file_uses_the_checkpoint_and_says_so(small_corpus, tmp_path, caplog):
    main(fit_args(small_corpus, tmp_path, max_steps=3))
    with caplog.at_level(logging.INFO):
        main(predict_args(tmp_path, "--data.prompts", '["Line"]'))  # cpu.yaml's hidden_dim 96, the checkpoint's 32
    assert any(m.startswith("using the checkpoint's settings, not the config file's: model.hidden_dim 96 in the")
               for m in caplog.messages)  # fmt: skip


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--trainer.accumulate_grad_batches", "0"], "--trainer.accumulate_grad_batches 0 is not possible"),
        (["--trainer.gradient_clip_val", "-1"], "--trainer.gradient_clip_val -1 is not possible"),
        (["--trainer.devices", "0"], "--trainer.devices '0' is not possible"),
        (["--trainer.val_check_interval", "0"], "--trainer.val_check_interval 0 is not possible"),
        (["--seed_everything", "99999999999999"], "--seed_everything: 99999999999999 is not in bounds"),
        (["--trainer.accelerator", "gpu"], "accelerator 'gpu' is not available on this machine"),
    ],
)
def test_impossible_trainer_values_are_one_line_errors(option, message, small_corpus, tmp_path, capsys):
    if "gpu" in option and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(small_corpus, tmp_path, *option))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message}") and "\n" not in err


def test_a_binary_prompts_file_is_a_one_line_error(small_corpus, tmp_path, capsys):
    main(fit_args(small_corpus, tmp_path, max_steps=3))
    binary = tmp_path / "prompts.bin"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(SystemExit) as exit_info:
        main(predict_args(tmp_path, "--data.prompts_file", str(binary)))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: prompts file {binary} is not UTF-8 text") and "\n" not in err
