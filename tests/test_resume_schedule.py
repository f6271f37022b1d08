"""Extending, re-running and accumulating runs have defined behaviour: a resumed step follows today's schedule, a
finished fit trains nothing and says so, and validation (so checkpoints) only falls between whole optimizer steps."""

import pytest
import torch
from conftest import fit_args

from lightning_trickster.cli import main
from lightning_trickster.optim import warmup_cosine, warmup_cosine_over_time
from lightning_trickster.runs import read_scalars


def run_dir(root, version=0):
    return root / "lightning_logs" / f"version_{version}"


def test_extending_a_finished_run_follows_the_new_schedule_and_says_so(small_corpus, tmp_path, capsys, caplog):
    # AdamW with a cosine that decays to 0 at max_steps: the first run ends at lr 0.
    settings = ["--model.optimization.optimizer", "adamw", "--model.optimization.min_lr_ratio", "0"]
    main(fit_args(small_corpus, tmp_path, *settings, max_steps=3))
    caplog.clear()
    main(fit_args(small_corpus, tmp_path, *settings, "--ckpt_path", "last", max_steps=6))
    peak = 5e-3  # cpu.yaml's learning_rate, which fit_args' base config sets
    expected = peak * warmup_cosine(3, 1, 6, 0.0)
    assert any(
        record.getMessage().startswith(
            f"schedule: the learning rate at step 3 is {expected:.1e} under today's settings"
        )
        and "had reached 0.0e+00" in record.getMessage()
        for record in caplog.records
    ), [record.getMessage() for record in caplog.records]
    logged = dict(read_scalars(run_dir(tmp_path))["train/lr"])
    # train/lr is logged after each step's update from the schedule: step 4's rate is the new cosine's, not zero.
    assert logged[4] == pytest.approx(peak * warmup_cosine(4, 1, 6, 0.0), rel=1e-5) and logged[4] > 0


def test_rerunning_a_finished_fit_trains_nothing_and_says_so(small_corpus, tmp_path, caplog):
    main(fit_args(small_corpus, tmp_path, max_steps=3))
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    before = last.stat().st_mtime_ns
    caplog.clear()
    main(fit_args(small_corpus, tmp_path, "--ckpt_path", "last", max_steps=3))
    messages = [record.getMessage() for record in caplog.records]
    assert any("already reached step 3 of --trainer.max_steps 3: nothing to train" in m for m in messages), messages
    assert not any(m.startswith("fit done") for m in messages)
    assert last.stat().st_mtime_ns == before and torch.load(last, weights_only=True)["global_step"] == 3


def test_a_validation_interval_inside_an_optimizer_step_is_one_line_and_its_advice_works(
    small_corpus, tmp_path, capsys
):
    accumulate = ["--trainer.accumulate_grad_batches", "2"]
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(small_corpus, tmp_path / "bad", *accumulate, max_steps=2))  # fit_args validates every 3 batches
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "error: --trainer.val_check_interval 3 is not a multiple of --trainer.accumulate_grad_batches"
    )
    assert err.endswith("use 2 or 4") and "\n" not in err
    main(fit_args(small_corpus, tmp_path / "good", *accumulate, "--trainer.val_check_interval", "4", max_steps=2))
    checkpoint = torch.load(run_dir(tmp_path / "good") / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2


def test_init_from_starts_a_fresh_run_from_a_checkpoints_weights_shape_and_tokenizer(small_corpus, tmp_path, caplog):
    main(fit_args(small_corpus, tmp_path / "source", "--model.hidden_dim", "16", max_steps=3))
    source = run_dir(tmp_path / "source") / "checkpoints" / "last.ckpt"
    caplog.clear()
    # The config file sets hidden_dim 96; the source's 16 is used, and the run starts at step 0 with a fresh schedule.
    args = fit_args(small_corpus, tmp_path / "new", "--init_from", str(source), max_steps=1)
    at = args.index("--model.hidden_dim")  # the tiny model's typed width, which would contradict the source
    main(args[:at] + args[at + 2 :])
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith(f"init: weights from {source} (step 3)") for m in messages), messages
    new = torch.load(run_dir(tmp_path / "new") / "checkpoints" / "last.ckpt", weights_only=True)
    assert new["global_step"] == 1 and new["hyper_parameters"]["hidden_dim"] == 16


def test_init_from_with_a_contradicting_shape_option_is_one_line(small_corpus, tmp_path, capsys):
    main(fit_args(small_corpus, tmp_path / "source", max_steps=1))
    source = run_dir(tmp_path / "source") / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit):
        main(fit_args(small_corpus, tmp_path / "new", "--init_from", str(source), "--model.hidden_dim", "64"))
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --init_from {source} fixes the model's shape, which --model.hidden_dim 64")
    with pytest.raises(SystemExit):
        main(fit_args(small_corpus, tmp_path / "new", "--init_from", str(source), "--ckpt_path", str(source)))
    assert "pass one of them" in capsys.readouterr().err


@pytest.mark.parametrize("tokenizer", ["char", "byte"])
def test_init_from_reads_back_a_hugging_face_export_exactly(tokenizer, small_corpus, tmp_path, caplog):
    pytest.importorskip("transformers")  # CI installs the export extra; this guards only a bare install
    from lightning_trickster.checkpoint import load_trained_model
    from lightning_trickster.init_from import read_initial_weights

    main(fit_args(small_corpus, tmp_path / "source", "--data.tokenizer", tokenizer, max_steps=1))
    source = run_dir(tmp_path / "source") / "checkpoints" / "last.ckpt"
    main(["export", "--ckpt_path", str(source), "--out", str(tmp_path / "hf"), "--format", "hf"])
    trained = load_trained_model(source)
    initial = read_initial_weights(str(tmp_path / "hf"))
    assert initial.tokenizer.state_dict() == trained.tokenizer.state_dict()
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(initial.weights[name], tensor), name
    args = fit_args(small_corpus, tmp_path / "new", "--init_from", str(tmp_path / "hf"), max_steps=1)
    main(args)
    assert any(r.getMessage().startswith("init: weights from the Hugging Face Llama model") for r in caplog.records)


# A run bounded by --trainer.max_time alone, on a clock the test drives: 10 s of budget at 1 s a step.
BUDGETED = [
    "--trainer.max_steps", "-1",
    "--trainer.callbacks+=clocks.SteppedTimer",
    "--trainer.callbacks.duration", "00:00:00:10",
    "--trainer.callbacks.seconds_per_step", "1",
    "--model.optimization.optimizer", "adamw",
    "--model.optimization.min_lr_ratio", "0.1",
]  # fmt: skip
PEAK = 5e-3  # cpu.yaml's learning_rate, which fit_args' base config sets


def budgeted_lr(step: int) -> float:
    """The rate of optimizer step `step` under BUDGETED: set after the step before it, when step seconds were spent."""
    return PEAK * warmup_cosine_over_time(step, 1, elapsed_fraction=step / 10, min_lr_ratio=0.1)


def test_a_run_bounded_by_time_decays_with_the_budget_spent_and_ends_at_the_floor(small_corpus, tmp_path, capsys):
    main(fit_args(small_corpus, tmp_path, *BUDGETED))
    assert "fit done: 10 steps" in capsys.readouterr().out  # the budget, not a step count, ended the run
    logged = dict(read_scalars(run_dir(tmp_path))["train/lr"])
    assert sorted(logged) == list(range(10))
    for step, lr in logged.items():
        assert lr == pytest.approx(budgeted_lr(step), rel=1e-5), step
    last = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(PEAK * 0.1)  # the floor


def test_a_resumed_run_bounded_by_time_continues_the_schedule_from_the_time_its_checkpoint_had_spent(
    small_corpus, tmp_path
):
    main(fit_args(small_corpus, tmp_path / "first", *BUDGETED))
    # The checkpoint of the validation at step 6, as if the run had been stopped there: 6 of its 10 s spent.
    [at_step_6] = (run_dir(tmp_path / "first") / "checkpoints").glob("*step=6*.ckpt")
    main(fit_args(small_corpus, tmp_path / "resumed", *BUDGETED, "--ckpt_path", str(at_step_6)))
    logged = dict(read_scalars(run_dir(tmp_path / "resumed"))["train/lr"])
    assert sorted(logged) == [6, 7, 8, 9]  # the remaining 4 s of budget
    for step, lr in logged.items():
        assert lr == pytest.approx(budgeted_lr(step), rel=1e-5), step
