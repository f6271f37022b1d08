"""No lost work: atomic checkpoint writes, resume after SIGKILL, a checkpoint on SIGINT/SIGTERM, and the non-finite
guard. The full randomized suite is `python tests/faults.py`; these are its CI-sized cases."""

import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import fit_args, write_small_corpus
from faults import (
    InjectNonFiniteLoss,
    KillAtStep,
    SignalAfterBatch,
    SignalDuringStep,
    SleepAfterBatch,
    injector,
    logged_steps,
    run_cli,
)

from lightning_trickster.checkpoint import read_checkpoint
from lightning_trickster.cli import main
from lightning_trickster.reliability import AtomicCheckpointIO
from lightning_trickster.runs import read_scalars


@pytest.fixture(autouse=True)
def interactive_signal_handling():
    """Ctrl-C raises KeyboardInterrupt, as in a foreground shell, also when the suite runs as a background job."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def last_ckpt(root: Path) -> Path:
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def run_cli_process(args: list[str]) -> subprocess.CompletedProcess:
    return run_cli(args, timeout_s=300)


def test_a_checkpoint_file_gets_a_normal_files_mode(tmp_path):
    """(A write that fails half way, on a real full disk, is test_realfaults.py's.)"""
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 3, "state_dict": {"w": torch.ones(4)}}, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sigkill_at_a_step_resumes_from_last_and_ends_like_an_uninterrupted_run(small_corpus, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    main(fit_args(small_corpus, straight, max_steps=6))
    # A real SIGKILL right after step 5 completes: the step-6 checkpoint is never written.
    process = run_cli_process(fit_args(small_corpus, killed, *injector(KillAtStep, step=5), max_steps=6))
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]
    assert read_checkpoint(last_ckpt(killed))["global_step"] == 3  # lost 2 steps, less than the interval of 3

    main(fit_args(small_corpus, killed, "--ckpt_path", "last", max_steps=6))

    # The curve continues in the same run: steps the killed process logged after its checkpoint are purged.
    assert logged_steps(killed) == list(range(6))
    final, reference = read_checkpoint(last_ckpt(killed)), read_checkpoint(last_ckpt(straight))
    assert final["global_step"] == 6
    for name, tensor in reference["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], tensor, msg=name)


def test_sigterm_saves_last_ckpt_after_the_running_step_and_exits_143(small_corpus, tmp_path):
    process = run_cli_process(
        fit_args(small_corpus, tmp_path, *injector(SignalDuringStep, step=1, signal_name="SIGTERM", delay_s=0.0))
    )
    assert process.returncode == 128 + signal.SIGTERM, process.stderr[-3000:]
    message = process.stderr.strip().splitlines()[-1]
    assert "Traceback" not in process.stderr
    assert message.startswith("error: training stopped by SIGTERM after step ")
    stopped_after = int(message.split("after step ")[1].split(":")[0])
    assert message.endswith(f"saved {last_ckpt(tmp_path)}; continue it with --ckpt_path last")
    assert read_checkpoint(last_ckpt(tmp_path))["global_step"] == stopped_after < 6


def test_ctrl_c_saves_last_ckpt_and_the_resumed_curve_has_no_gap(small_corpus, tmp_path, capsys):
    # A real SIGINT, sent to this process by a timer thread once step 2 is done.
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(small_corpus, tmp_path, *injector(SignalDuringStep, step=2, signal_name="SIGINT", delay_s=0.0)))
    assert exit_info.value.code == 128 + signal.SIGINT
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: training stopped by SIGINT after step")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    stopped_after = int(message.split("after step ")[1].split(":")[0])
    assert read_checkpoint(last_ckpt(tmp_path))["global_step"] == stopped_after
    assert 2 <= stopped_after < 6
    main(fit_args(small_corpus, tmp_path, "--ckpt_path", "last"))
    assert logged_steps(tmp_path) == list(range(6))


def test_a_nan_loss_stops_training_and_no_checkpoint_holds_it(small_corpus, tmp_path, capsys):
    # Read on the host only every 7 steps: the NaN of step 4 poisons the weights, and the step-6 save is vetoed.
    args = fit_args(
        small_corpus,
        tmp_path,
        "--nonfinite.check_every_n_steps",
        "7",
        *injector(InjectNonFiniteLoss, step=4),
        max_steps=9,
    )
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: non-finite loss or gradient at step 4; training stopped at step 6")
    assert f"the newest checkpoint ({last_ckpt(tmp_path)}, step 3) predates it" in err
    checkpoint = read_checkpoint(last_ckpt(tmp_path))
    assert checkpoint["global_step"] == 3
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_skip_mode_drops_the_bad_update_counts_it_and_finishes(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path, "--nonfinite.action", "skip", *injector(InjectNonFiniteLoss, step=4)))
    checkpoint = read_checkpoint(last_ckpt(tmp_path))
    assert checkpoint["global_step"] == 6
    assert checkpoint["callbacks"]["NonFiniteGuard"] == {"skipped_steps": 1}
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_an_unwritable_checkpoint_directory_stops_a_resume_before_training(small_corpus, tmp_path, capsys):
    main(fit_args(small_corpus, tmp_path, max_steps=3))
    not_a_directory = tmp_path / "a_file"
    not_a_directory.write_text("")  # (chmod cannot make a directory read-only for root; this fails for everyone)
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(small_corpus, tmp_path, "--ckpt_path", "last", "--checkpoint.dirpath",
                      str(not_a_directory / "checkpoints"), max_steps=6))  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: checkpoint directory {not_a_directory / 'checkpoints'} is not writable")
    assert "nothing was trained" in err
    assert torch.load(last_ckpt(tmp_path), weights_only=True)["global_step"] == 3


def test_the_temporary_file_of_a_killed_save_is_removed_on_the_next_start(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path, max_steps=3))
    orphan = last_ckpt(tmp_path).parent / ".last.ckpt.abc123.tmp"
    orphan.write_bytes(b"PK\x03\x04 half a zip")
    main(fit_args(small_corpus, tmp_path, "--ckpt_path", "last", max_steps=6))
    assert not orphan.exists()


# ---------------------------------------------------------------------------------------------------------------
# Exact resume with gradient accumulation: 2 micro-batches per optimizer step, validation (and a checkpoint) every 4
# micro-batches = every 2 optimizer steps.

ACCUMULATE_2 = ["--trainer.accumulate_grad_batches", "2", "--trainer.val_check_interval", "4"]


@pytest.fixture(scope="module")
def accumulated(tmp_path_factory) -> dict[str, Path]:
    """An uninterrupted 6-step fit with accumulation 2: the reference every interrupted one must end at, exactly."""
    workspace = tmp_path_factory.mktemp("accumulated")
    corpus = write_small_corpus(workspace / "corpus.txt")
    main(fit_args(corpus, workspace / "straight", *ACCUMULATE_2))
    return {"corpus": corpus, "straight": workspace / "straight"}


def assert_same_run(resumed: Path, straight: Path) -> None:
    """Bit-identical weights (eager mode) and the same logged curve, no step twice or missing."""
    final, reference = read_checkpoint(last_ckpt(resumed)), read_checkpoint(last_ckpt(straight))
    assert final["global_step"] == 6
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(final["state_dict"][name], tensor), name
    ours, theirs = read_scalars(last_ckpt(resumed).parent.parent), read_scalars(last_ckpt(straight).parent.parent)
    for tag in ("train/loss", "val/loss"):
        assert [step for step, _ in ours[tag]] == [step for step, _ in theirs[tag]], tag
    assert ours["train/loss"][-1][1] == theirs["train/loss"][-1][1]


@pytest.mark.parametrize("batch", [2, 4])
def test_a_signal_between_micro_batches_saves_the_last_complete_step_and_resumes_exactly(
    accumulated, tmp_path, capsys, batch
):
    """SIGTERM at the end of micro-batch `batch` (0-based), the first of an optimizer step's two: the checkpoint holds
    the step before, its loop position the start of the unfinished window; the resume redoes that window."""
    args = fit_args(accumulated["corpus"], tmp_path, *ACCUMULATE_2)
    with pytest.raises(SystemExit) as exit_info:
        main([*args, *injector(SignalAfterBatch, batch=batch, signal_name="SIGTERM")])
    assert exit_info.value.code == 143
    message = capsys.readouterr().err.strip().splitlines()[-1]
    complete_steps = batch // 2
    assert message == (
        f"error: training stopped by SIGTERM after step {complete_steps}: saved {last_ckpt(tmp_path)}; continue it "
        "with --ckpt_path last"
    )
    saved = read_checkpoint(last_ckpt(tmp_path))
    assert saved["global_step"] == complete_steps
    assert saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["ready"] == 2 * complete_steps

    main([*args, "--ckpt_path", "last"])  # the advice

    assert_same_run(tmp_path, accumulated["straight"])


def test_a_sigkill_after_a_checkpoint_with_accumulation_resumes_exactly(accumulated, tmp_path):
    args = fit_args(accumulated["corpus"], tmp_path, *ACCUMULATE_2)
    killed = run_cli_process([*args, *injector(KillAtStep, step=3)])  # inside step 4's window; saved at step 2
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert read_checkpoint(last_ckpt(tmp_path))["global_step"] == 2

    main([*args, "--ckpt_path", "last"])

    assert_same_run(tmp_path, accumulated["straight"])


def test_checkpoints_saved_by_time_inside_an_optimizer_step_hold_its_start_and_resume_exactly(accumulated, tmp_path):
    """--checkpoint.train_time_interval saves wherever the time runs out: here always on the first micro-batch of a
    step (steps 3 and 5 are saved there; 2, 4, 6 by validation). Each holds the loop position of a step's start."""
    timed = ["--checkpoint.save_top_k", "-1", "--checkpoint.train_time_interval", "0:00:00.2",
             "--checkpoint.filename", "timed-{step}"]  # fmt: skip
    args = fit_args(accumulated["corpus"], tmp_path / "timed", *ACCUMULATE_2, *timed)
    main([*args, *injector(SleepAfterBatch, seconds=0.3)])
    checkpoints = last_ckpt(tmp_path / "timed").parent
    saved = {path.name: read_checkpoint(path) for path in checkpoints.glob("timed-*.ckpt")}
    assert {"timed-step=3.ckpt", "timed-step=5.ckpt"} <= saved.keys()
    for name, checkpoint in saved.items():
        progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]
        assert progress["ready"] == 2 * checkpoint["global_step"], name  # a step's start, not half way through one
    assert read_checkpoint(checkpoints / "last.ckpt")["global_step"] == 6

    interrupted = tmp_path / "interrupted"  # as if the run had stopped right after its time-based save at step 3
    (last_ckpt(interrupted).parent).mkdir(parents=True)
    shutil.copy(checkpoints / "timed-step=3.ckpt", last_ckpt(interrupted))
    main([*fit_args(accumulated["corpus"], interrupted, *ACCUMULATE_2), "--ckpt_path", "last"])
    final, reference = read_checkpoint(last_ckpt(interrupted)), read_checkpoint(last_ckpt(accumulated["straight"]))
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(final["state_dict"][name], tensor), name


def test_a_fit_that_saves_by_steps_keeps_its_final_step_in_last_ckpt(small_corpus, tmp_path):
    """With --checkpoint.every_n_train_steps Lightning saves nothing after the final validation: 12 steps every 5
    left last.ckpt at step 10, while the run said it was done at 12."""
    main(fit_args(small_corpus, tmp_path, "--checkpoint.every_n_train_steps", "5", max_steps=12))
    assert read_checkpoint(last_ckpt(tmp_path))["global_step"] == 12
