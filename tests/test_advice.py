"""Advice is executable: every message that tells the user to run a command or pass an option is triggered here, then
what it says is done, and the command succeeds (or, for a notice, the notice goes away).

Messages whose advice other tests already follow are listed in ALREADY_FOLLOWED; those that need hardware this suite
cannot rely on (a Tenstorrent chip, CUDA) in NOT_FOLLOWABLE_HERE, with the reason.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_SHAKESPEARE, fit_args, one_error_line, run_main, write_small_corpus
from faults import OFFLINE, InjectNonFiniteLoss, SignalDuringStep, child_environment, injector, no_cpp_compiler
from realfaults import PAGE, fill, small_filesystem

from lightning_trickster.checkpoint import read_checkpoint
from lightning_trickster.cli import main

ALREADY_FOLLOWED = {
    "could not write checkpoint ... then resume with --ckpt_path last": "test_realfaults.py (a real full disk)",
    "could not write tokens.bin/meta.json ... pass --data.prepared_dir ... with room": "test_realfaults.py",
    "the prepared copy ... is damaged: delete meta.json and run the command again": "test_realfaults.py, test_prepare",
    "training stopped by SIGINT/SIGTERM/SIGHUP ... continue it with --ckpt_path last": "test_faults, test_signals",
    "run ... is being written by ...: wait until that fit ends, or stop it": "test_runs.py",
    "--trainer.val_check_interval N is not a multiple of ...: use N or M": "test_resume_schedule.py",
    "BPE tokenizer has no <|endoftext|>: add it as a special token": "test_bpe.py",
    "BPE tokenizer cannot encode the corpus: drop --data.tokenizer_path": "test_bpe.py",
    "a held prepared-copy lock: waiting ... goes on once it is released": "test_realfaults.py",
}
"""Advice some other test already follows (before this file)."""

NOT_FOLLOWABLE_HERE = {
    "plugins/lightning_tt (17 messages) and tt-check (3)": "need a Tenstorrent chip or its ttnn/ttml stack",
    "model.optimization.fused true under 16-mixed with clipping": "only CUDA has a loss scaler (the CPU runs bf16)",
}


def fails(args: list[str], capsys, expect: str) -> str:
    """Run the CLI, expect one `error:` line (the last) that contains `expect`; return it."""
    status, _, err = run_main(args, capsys)
    assert status not in (0, None), err[-3000:]
    error = one_error_line(err)
    assert expect in error, error
    return error


def succeeds(args: list[str], capsys) -> str:
    status, out, err = run_main(args, capsys)
    assert status == 0, err[-3000:]
    return out + err


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """A finished 3-step fit of the tiny model (char tokenizer): its corpus, output directory and checkpoints."""
    workspace = tmp_path_factory.mktemp("advice")
    corpus = write_small_corpus(workspace / "corpus.txt")
    root = workspace / "runs"
    main(fit_args(corpus, root, "-q", max_steps=3))
    checkpoints = root / "lightning_logs" / "version_0" / "checkpoints"
    return {"workspace": workspace, "corpus": corpus, "root": root, "last": checkpoints / "last.ckpt"}


def copied_run(run: dict[str, Path], destination: Path) -> Path:
    """A copy of the fixture's run folder (for tests that change it); returns its last.ckpt."""
    shutil.copytree(run["last"].parent.parent, destination / "lightning_logs" / "version_0")
    return destination / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def predict(checkpoint: str | Path, root: Path, *extra: str) -> list[str]:
    return ["predict", "--config", "cpu.yaml", "--ckpt_path", str(checkpoint), "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", "--data.prompts", '["Line"]', "--sampling.max_new_tokens", "8",
            *extra]  # fmt: skip


def without(args: list[str], option: str, values: int = 1) -> list[str]:
    """args without `option` and the `values` arguments after it."""
    at = args.index(option)
    return args[:at] + args[at + 1 + values :]


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints and resuming


def test_a_missing_checkpoint_says_pass_last_and_last_works(run, tmp_path, capsys):
    fails(predict(tmp_path / "missing.ckpt", run["root"]), capsys, "not found: pass an existing .ckpt file, or 'last'")
    succeeds(predict("last", run["root"]), capsys)


def not_regular_files(directory: Path) -> dict[str, Path]:
    """What a path can name besides a regular file: reading a FIFO waits for a writer, /dev/zero never ends, and a
    symlink loop cannot be opened at all."""
    os.mkfifo(directory / "fifo")
    (directory / "loop").symlink_to(directory / "loop")
    return {"fifo": directory / "fifo", "device": Path("/dev/zero"), "loop": directory / "loop"}


WHAT_IT_IS = {
    "fifo": "is a FIFO (named pipe), not a regular file",
    "device": "is a character device, not a regular file",
    "loop": "is a symlink loop",
}


@pytest.mark.parametrize("kind", WHAT_IT_IS)
def test_a_checkpoint_that_is_not_a_regular_file_says_what_it_is_and_last_works(run, tmp_path, capsys, kind):
    bad = not_regular_files(tmp_path)[kind]
    fails(predict(bad, run["root"]), capsys, f"{WHAT_IT_IS[kind]}: pass a .ckpt file, or 'last'")
    succeeds(predict("last", run["root"]), capsys)


def test_a_directory_as_checkpoint_says_pass_a_file_in_it_and_that_works(run, capsys):
    fails(predict(run["last"].parent, run["root"]), capsys, "is a directory, not a file: pass one .ckpt file in it")
    succeeds(predict(run["last"].parent / "last.ckpt", run["root"]), capsys)


def test_a_checkpoint_that_is_no_torch_file_says_pass_one_written_by_fit_and_that_works(run, tmp_path, capsys):
    text = tmp_path / "notes.ckpt"
    text.write_text("step 3, val loss 3.5\n")
    fails(predict(text, run["root"]), capsys, "pass a .ckpt file written by this project's fit")
    succeeds(predict(run["last"], run["root"]), capsys)


def test_a_checkpoint_with_non_finite_weights_says_use_an_earlier_one_and_that_works(run, tmp_path, capsys):
    last = copied_run(run, tmp_path)
    saved = torch.load(last, weights_only=True)
    name = next(iter(saved["state_dict"]))
    saved["state_dict"][name] = torch.full_like(saved["state_dict"][name], float("nan"))
    torch.save(saved, last.parent / "diverged.ckpt")
    fails(predict(last.parent / "diverged.ckpt", tmp_path), capsys, "use an earlier checkpoint of the run")
    succeeds(predict(next(last.parent.glob("best-*.ckpt")), tmp_path), capsys)


def test_a_checkpoint_whose_weights_contradict_its_shape_says_pass_one_written_by_fit_and_that_works(
    run, tmp_path, capsys
):
    saved = torch.load(run["last"], weights_only=True)
    saved["state_dict"] = {name: torch.zeros([n + 1 for n in t.shape]) for name, t in saved["state_dict"].items()}
    torch.save(saved, tmp_path / "edited.ckpt")
    export = ["export", "--out", str(tmp_path / "exported")]
    fails([*export, "--ckpt_path", str(tmp_path / "edited.ckpt")], capsys, "pass a .ckpt file written by this project")
    succeeds([*export, "--ckpt_path", str(run["last"])], capsys)


def test_another_tokenizer_than_the_checkpoints_says_drop_it_and_that_works(run, tmp_path, capsys):
    last = copied_run(run, tmp_path)
    args = fit_args(run["corpus"], tmp_path, "--ckpt_path", "last", max_steps=4)
    fails([*args, "--data.tokenizer", "byte"], capsys, "drop --data.tokenizer (the checkpoint's own tokenizer is used)")
    succeeds(args, capsys)
    assert read_checkpoint(last)["global_step"] == 4


def test_another_shape_typed_on_a_resume_says_drop_it_and_that_works(run, tmp_path, capsys):
    last = copied_run(run, tmp_path)
    args = fit_args(run["corpus"], tmp_path, "--ckpt_path", "last", max_steps=4)
    fails([*args, "--model.hidden_dim", "64"], capsys, "drop the --model shape options that differ")
    succeeds(args, capsys)
    assert read_checkpoint(last)["global_step"] == 4


def test_a_resume_under_a_config_of_another_shape_says_use_the_runs_config_yaml_and_that_works(run, tmp_path, capsys):
    last = copied_run(run, tmp_path)
    base = ["fit", "--ckpt_path", str(last), "--data.path", str(run["corpus"]), "--trainer.max_steps", "4",
            "--trainer.default_root_dir", str(tmp_path), "--data.cache_dir", str(run["root"] / "data")]  # fmt: skip
    fails([*base, "--config", "cpu.yaml"], capsys, "resume with the config the run was trained with (its config.yaml")
    succeeds([*base, "--config", str(last.parent.parent / "config.yaml")], capsys)


def test_predict_without_a_checkpoint_says_pass_last_and_that_works(run, capsys):
    args = predict("last", run["root"])
    fails(without(args, "--ckpt_path"), capsys, "predict needs --ckpt_path: pass a .ckpt written by fit, or 'last'")
    succeeds(args, capsys)


def test_ckpt_path_best_says_pass_a_best_checkpoint_file_and_that_works(run, capsys):
    fails(predict("best", run["root"]), capsys, "pass a .ckpt file (a run's checkpoints/best-*.ckpt)")
    succeeds(predict(next(run["last"].parent.glob("best-*.ckpt")), run["root"]), capsys)


def test_init_from_with_ckpt_path_says_pass_one_and_that_works(run, tmp_path, capsys):
    args = fit_args(run["corpus"], tmp_path, "--init_from", str(run["last"]), max_steps=1)
    args = without(
        without(without(without(args, "--model.hidden_dim"), "--model.num_layers"), "--model.num_heads"),
        "--model.mlp_dim",
    )  # fmt: skip  (the source's shape is used)
    fails([*args, "--ckpt_path", str(run["last"])], capsys, "pass one of them")
    succeeds(args, capsys)


def test_a_finished_run_says_pass_a_larger_max_steps_and_that_trains_on(run, tmp_path, caplog, capsys):
    last = copied_run(run, tmp_path)
    with caplog.at_level(logging.INFO):
        succeeds(fit_args(run["corpus"], tmp_path, "--ckpt_path", "last", max_steps=3), capsys)
    assert any("nothing to train; pass a larger --trainer.max_steps to train on" in m for m in caplog.messages)
    succeeds(fit_args(run["corpus"], tmp_path, "--ckpt_path", "last", max_steps=5), capsys)
    assert read_checkpoint(last)["global_step"] == 5


def test_ckpt_path_last_without_a_run_says_pass_a_checkpoint_path_and_that_works(run, tmp_path, capsys):
    fails(predict("last", tmp_path), capsys, "train with fit first, or pass a checkpoint file path")
    succeeds(predict(run["last"], tmp_path), capsys)


def test_a_signal_with_checkpoints_elsewhere_names_the_checkpoint_to_continue_from_and_that_works(
    small_corpus, tmp_path, capsys
):
    checkpoints = tmp_path / "elsewhere"
    args = fit_args(small_corpus, tmp_path / "runs", "--checkpoint.dirpath", str(checkpoints))
    stop = injector(SignalDuringStep, step=2, signal_name="SIGTERM", delay_s=0.0)
    line = fails([*args, *stop], capsys, f"; continue it with --ckpt_path {checkpoints / 'last.ckpt'}")
    assert line.startswith("error: training stopped by SIGTERM")
    succeeds([*args, "--ckpt_path", str(checkpoints / "last.ckpt")], capsys)  # `--ckpt_path last` would not find it
    assert read_checkpoint(checkpoints / "last.ckpt")["global_step"] == 6


def test_a_diverging_fresh_fit_says_lower_the_learning_rate_and_run_it_again_and_that_works(
    small_corpus, tmp_path, capsys
):
    args = fit_args(small_corpus, tmp_path, "--trainer.gradient_clip_val", "0", max_steps=5)
    huge = ["--model.optimization.learning_rate", "1e9", "--model.optimization.muon_learning_rate", "1e9"]
    line = fails([*args, *huge], capsys, "lower --model.optimization.learning_rate")
    assert "no checkpoint was written since the fit started" in line and "and run the fit again" in line
    assert "--ckpt_path last" not in line  # nothing to resume from
    succeeds(args, capsys)


def test_a_nan_after_a_checkpoint_says_resume_or_skip_and_both_work(small_corpus, tmp_path, capsys):
    args = fit_args(small_corpus, tmp_path, "--nonfinite.check_every_n_steps", "7", max_steps=9)
    nan = injector(InjectNonFiniteLoss, step=4)
    line = fails([*args, *nan], capsys, "set --trainer.gradient_clip_val and resume with --ckpt_path last")
    assert line.endswith("or pass --nonfinite.action skip to drop such steps")
    succeeds([*args, "--trainer.gradient_clip_val", "0.5", "--ckpt_path", "last"], capsys)
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == 9
    succeeds([*fit_args(small_corpus, tmp_path / "skip", max_steps=9), *nan, "--nonfinite.action", "skip"], capsys)


def test_an_unwritable_checkpoint_dirpath_says_pass_another_and_that_works(run, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    args = fit_args(run["corpus"], tmp_path / "runs", max_steps=1)
    fails([*args, "--checkpoint.dirpath", str(tmp_path / "a_file" / "ckpts")], capsys,
          "make it writable or pass --checkpoint.dirpath a directory you can write to")  # fmt: skip
    succeeds([*args, "--checkpoint.dirpath", str(tmp_path / "ckpts")], capsys)
    assert read_checkpoint(tmp_path / "ckpts" / "last.ckpt")["global_step"] == 1


def read_only(directory: Path) -> None:
    """Make the filesystem mounted on directory read-only (for root too, unlike chmod)."""
    subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)


def test_read_only_checkpoints_say_pass_another_output_directory_and_the_checkpoint_and_that_resumes_it(
    run, tmp_path, capsys
):
    last = copied_run(run, tmp_path / "runs")
    shutil.move(last.parent, tmp_path / "saved")
    with small_filesystem(last.parent, "8m") as checkpoints:
        copy_into(tmp_path / "saved", checkpoints)
        read_only(checkpoints)
        args = fit_args(run["corpus"], tmp_path / "runs", "--ckpt_path", "last", max_steps=4)
        line = fails(args, capsys, f"checkpoint directory {checkpoints} is not writable (Read-only file system)")
        assert line.endswith(
            f"pass --trainer.default_root_dir a directory you can write to and --ckpt_path {last}; nothing was trained"
        )
        args[args.index("--trainer.default_root_dir") + 1] = str(tmp_path / "writable")
        args[args.index("--ckpt_path") + 1] = str(last)
        succeeds(args, capsys)
    resumed = tmp_path / "writable" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(resumed)["global_step"] == 4


def copy_into(source: Path, directory: Path) -> None:
    for path in source.iterdir():
        shutil.copy2(path, directory / path.name)


def test_evaluating_a_read_only_run_writes_under_the_output_directory_and_says_pass_one_if_that_is_not_writable(
    run, tmp_path, capsys
):
    (tmp_path / "a_file").write_text("")
    with small_filesystem(tmp_path / "runs", "8m") as root:
        last = copied_run(run, root)
        read_only(root)
        fails(predict(last, tmp_path / "a_file" / "out"), capsys, "pass --trainer.default_root_dir a directory you can")
        succeeds(predict(last, tmp_path / "out"), capsys)  # the read-only run is left alone
    assert len((tmp_path / "out" / "eval" / "predict-last-1" / "predictions.jsonl").read_text().splitlines()) == 1


def test_no_room_for_the_run_lock_says_free_space_and_run_again_and_that_works(run, tmp_path, capsys):
    with small_filesystem(tmp_path / "runs", "1m") as root:
        filler = fill(root, leave_bytes=0)
        args = fit_args(run["corpus"], root, "--data.cache_dir", str(tmp_path / "data"), max_steps=1)
        fails(args, capsys, "(No space left on device): free disk space on its filesystem, then run this command again")
        filler.unlink()
        succeeds(args, capsys)


def test_no_room_in_the_run_folder_as_it_is_set_up_says_free_space_and_run_again_and_that_works(run, tmp_path, capsys):
    with small_filesystem(tmp_path / "runs", "1m") as root:
        filler = fill(root, leave_bytes=PAGE)  # the run lock's record, not TensorBoard's first event
        args = fit_args(run["corpus"], root, "--data.cache_dir", str(tmp_path / "data"), max_steps=1)
        line = fails(args, capsys, f"error: could not write {root / 'lightning_logs' / 'version_0'} (No space left")
        assert "free disk space on its filesystem, then run the command again" in line
        filler.unlink()
        succeeds(args, capsys)


def test_no_room_for_the_first_checkpoint_says_run_again_and_that_works(run, tmp_path, capsys):
    checkpoints = tmp_path / "checkpoints"
    with small_filesystem(checkpoints, "1m") as disk:
        filler = fill(disk, leave_bytes=16 * PAGE)  # less than one checkpoint (about 200 KB)
        args = fit_args(run["corpus"], tmp_path / "runs", "--checkpoint.dirpath", str(disk), max_steps=3)
        line = fails(args, capsys, f"error: could not write checkpoint {checkpoints}/")
        assert "then run the command again (no last.ckpt was saved yet)" in line
        filler.unlink()  # the advice: free disk space, then run the command again
        succeeds(args, capsys)
        assert read_checkpoint(disk / "last.ckpt")["global_step"] == 3


# ---------------------------------------------------------------------------------------------------------------
# Config files and options


def test_an_unknown_config_says_pass_a_bundled_preset_and_that_works(run, tmp_path, capsys):
    args = fit_args(run["corpus"], tmp_path, max_steps=1)
    fails(["fit", "--config", "giant", *args[3:]], capsys, "pass an existing YAML path or a bundled preset (cpu,")
    succeeds(["fit", "--config", "cpu", *args[3:]], capsys)


def test_a_directory_as_config_says_pass_a_yaml_file_in_it_and_that_works(run, tmp_path, capsys):
    args = fit_args(run["corpus"], tmp_path, max_steps=1)
    folder = run["last"].parent.parent
    fails(["fit", "--config", str(folder), *args[3:]], capsys, "is a directory: pass a YAML file in it")
    succeeds(["fit", "--config", str(folder / "config.yaml"), *args[3:]], capsys)


@pytest.mark.parametrize("kind", WHAT_IT_IS)
def test_a_config_that_is_not_a_regular_file_says_what_it_is_and_a_preset_works(run, tmp_path, capsys, kind):
    args = fit_args(run["corpus"], tmp_path, max_steps=1)
    bad = not_regular_files(tmp_path)[kind]
    fails(["fit", "--config", str(bad), *args[3:]], capsys, f"{WHAT_IT_IS[kind]}: pass a YAML file, or a bundled")
    succeeds(["fit", "--config", "cpu", *args[3:]], capsys)


def test_a_binary_config_says_pass_a_yaml_file_and_that_works(run, tmp_path, capsys):
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00model: 1")
    args = fit_args(run["corpus"], tmp_path, max_steps=1)
    fails(["fit", "--config", str(tmp_path / "binary.yaml"), *args[3:]], capsys, "cannot be read (not UTF-8 text")
    (tmp_path / "good.yaml").write_text("trainer:\n  max_steps: 1\n")
    succeeds(["fit", "--config", "cpu.yaml", "--config", str(tmp_path / "good.yaml"), *args[3:]], capsys)


def test_an_accelerator_that_is_not_here_says_use_cpu_and_that_works(run, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args = fit_args(run["corpus"], tmp_path, max_steps=1)
    fails([*args, "--trainer.accelerator", "gpu"], capsys, "use --trainer.accelerator cpu")
    succeeds([*args, "--trainer.accelerator", "cpu"], capsys)


def test_compile_without_a_compiler_says_pass_compile_false_and_that_works(run, tmp_path, capsys, caplog):
    args = fit_args(run["corpus"], tmp_path, max_steps=1)
    with no_cpp_compiler():
        fails([*without(args, "--model.compile"), "--model.compile", "true"], capsys, "or pass --model.compile false")
        succeeds(args, capsys)  # --model.compile false
        with caplog.at_level(logging.INFO):
            succeeds([*without(args, "--model.compile"), "--model.compile", "null"], capsys)
        # The default on a CPU trains eagerly, so a missing compiler is nothing to report.
        assert not any("compiler" in message for message in caplog.messages)


def test_a_monitor_validation_never_logs_says_choose_val_loss_and_that_works(run, tmp_path, capsys):
    args = fit_args(run["corpus"], tmp_path, max_steps=1)
    fails([*args, "--checkpoint.monitor", "train/loss"], capsys, "choose one of val/loss")
    succeeds([*args, "--checkpoint.monitor", "val/loss"], capsys)


@pytest.mark.parametrize(
    ("option", "bad", "good", "advice"),
    [
        ("accumulate_grad_batches", "0", "1", "use a whole number >= 1"),
        ("gradient_clip_val", "-1", "0", "use a number >= 0"),
        ("log_every_n_steps", "0", "1", "use a whole number >= 1"),
        ("limit_train_batches", "0", "1.0", "use a number > 0"),
        ("num_sanity_val_steps", "-2", "0", "use a whole number >= 0, or -1"),
        ("devices", "0", "1", "use a number of devices >= 1"),
    ],
)
def test_an_impossible_trainer_value_says_what_to_use_and_that_works(run, tmp_path, capsys, option, bad, good, advice):
    args = fit_args(run["corpus"], tmp_path, max_steps=1)
    fails([*args, f"--trainer.{option}", bad], capsys, advice)
    succeeds([*args, f"--trainer.{option}", good], capsys)


def test_no_max_steps_says_set_it_and_that_works(run, tmp_path, capsys):
    args = fit_args(run["corpus"], tmp_path, max_steps=1)
    fails([*args, "--trainer.max_steps", "-1", "--trainer.max_epochs", "1"], capsys, "set --trainer.max_steps")
    succeeds(args, capsys)


def test_an_empty_path_says_leave_the_option_out_and_that_works(run, tmp_path, capsys):
    args = fit_args(run["corpus"], tmp_path, max_steps=1)
    fails([*args, "--checkpoint.dirpath", ""], capsys, "--checkpoint.dirpath is an empty string: pass a path, or leave")
    succeeds(args, capsys)


def test_a_width_the_heads_do_not_divide_says_which_width_and_that_works(run, tmp_path, capsys):
    args = without(fit_args(run["corpus"], tmp_path, max_steps=1), "--model.num_heads")
    line = fails([*args, "--model.num_heads", "3"], capsys, "choose hidden_dim as a multiple of num_heads (e.g. 96)")
    assert line
    succeeds([*without(args, "--model.hidden_dim"), "--model.num_heads", "3", "--model.hidden_dim", "96"], capsys)


def test_an_odd_head_size_says_make_it_even_and_that_works(run, tmp_path, capsys):
    args = without(fit_args(run["corpus"], tmp_path, max_steps=1), "--model.hidden_dim")
    fails([*args, "--model.hidden_dim", "6"], capsys, "so that hidden_dim/num_heads is even")
    succeeds([*args, "--model.hidden_dim", "8"], capsys)


def test_an_unsupported_interrupt_signal_says_choose_a_supported_one_and_that_works(run, tmp_path, capsys):
    args = fit_args(run["corpus"], tmp_path, max_steps=1)
    fails([*args, "--interrupt.signals", '["SIGKILL"]'], capsys, "choose from SIGINT, SIGTERM, SIGHUP")
    succeeds([*args, "--interrupt.signals", '["SIGTERM"]'], capsys)


def test_out_of_memory_says_lower_the_models_size_and_that_works(run, tmp_path, capsys):
    args = without(fit_args(run["corpus"], tmp_path, max_steps=1), "--model.mlp_dim")
    fails([*args, "--model.mlp_dim", str(2**40)], capsys, "lower --data.batch_size, --model.max_seq_len or the model")
    succeeds([*args, "--model.mlp_dim", "64"], capsys)


def test_sample_prompts_outside_the_vocabulary_say_train_with_the_byte_tokenizer_and_that_works(run, tmp_path, capsys):
    args = without(fit_args(run["corpus"], tmp_path, max_steps=1), "--samples.prompts")
    fails([*args, "--samples.prompts", '["ROMEO:"]'], capsys, "remove them or train with --data.tokenizer byte")
    succeeds([*args, "--samples.prompts", '["ROMEO:"]', "--data.tokenizer", "byte"], capsys)
    succeeds([*args, "--samples.prompts", '["Line"]'], capsys)  # or remove them


# ---------------------------------------------------------------------------------------------------------------
# Data


def prepare(corpus: Path | str, cache: Path, *extra: str) -> list[str]:
    return ["prepare", "--config", "cpu.yaml", "--data.path", str(corpus), "--data.cache_dir", str(cache), *extra]


def test_offline_without_a_corpus_says_save_the_file_there_and_that_works(tmp_path, capsys, monkeypatch):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    args = ["prepare", "--config", "cpu.yaml", "--data.cache_dir", str(tmp_path / "shakespeare")]
    line = fails(args, capsys, "could not download tiny Shakespeare")
    target = Path(line.split("; save that file as ")[1].split(" or pass --data.path")[0])
    assert target == tmp_path / "shakespeare" / "input.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(TINY_SHAKESPEARE, target)  # the advice, as a download by hand would
    assert "1,115,394 char tokens" in succeeds(args, capsys)
    fails(args[:3] + ["--data.cache_dir", str(tmp_path / "other")], capsys, "or pass --data.path /path/to/your.txt")
    succeeds([*args, "--data.path", str(TINY_SHAKESPEARE)], capsys)


def test_bpe_without_a_size_says_pass_one_and_that_works(run, tmp_path, capsys):
    args = prepare(run["corpus"], tmp_path, "--data.tokenizer", "bpe")
    fails(args, capsys, "--data.tokenizer bpe needs --data.vocab_size N")
    succeeds([*args, "--data.vocab_size", "300"], capsys)


def test_a_bpe_size_the_corpus_cannot_fill_says_which_size_and_that_works(run, tmp_path, capsys):
    args = prepare(run["corpus"], tmp_path, "--data.tokenizer", "bpe")
    line = fails([*args, "--data.vocab_size", "5000"], capsys, "BPE tokens (every pair of tokens in it is already")
    supported = line.split("use --data.vocab_size ")[1].split(" or less")[0]
    succeeds([*args, "--data.vocab_size", supported], capsys)


def test_a_bpe_size_beyond_uint16_says_the_limit_and_a_size_within_it_works(run, tmp_path, capsys):
    args = prepare(run["corpus"], tmp_path, "--data.tokenizer", "bpe")
    fails([*args, "--data.vocab_size", "70000"], capsys, "must be between 257")
    succeeds([*args, "--data.vocab_size", "300"], capsys)


def bpe_tokenizer_file(run: dict[str, Path], directory: Path, capsys) -> Path:
    """A tokenizer.json that prepare trained (300 tokens)."""
    succeeds(prepare(run["corpus"], directory, "--data.tokenizer", "bpe", "--data.vocab_size", "300"), capsys)
    return next(directory.rglob("tokenizer.json"))


def test_a_size_that_contradicts_the_given_tokenizer_says_drop_it_and_that_works(run, tmp_path, capsys):
    tokenizer = bpe_tokenizer_file(run, tmp_path / "trained", capsys)
    args = prepare(
        run["corpus"], tmp_path / "cache", "--data.tokenizer", "bpe", "--data.tokenizer_path", str(tokenizer)
    )
    fails([*args, "--data.vocab_size", "400"], capsys, "drop --data.vocab_size or make it match")
    succeeds(args, capsys)


def test_a_tokenizer_file_that_does_not_load_says_drop_it_and_training_one_works(run, tmp_path, capsys):
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "Unigram"')
    args = prepare(run["corpus"], tmp_path / "cache", "--data.tokenizer", "bpe")
    fails([*args, "--data.tokenizer_path", str(tmp_path / "tokenizer.json")], capsys,
          "or drop --data.tokenizer_path to train one on the corpus")  # fmt: skip
    succeeds([*args, "--data.vocab_size", "300"], capsys)


def test_a_missing_tokenizer_file_says_pass_an_existing_one_and_that_works(run, tmp_path, capsys):
    tokenizer = bpe_tokenizer_file(run, tmp_path / "trained", capsys)
    args = prepare(run["corpus"], tmp_path / "cache", "--data.tokenizer", "bpe")
    fails([*args, "--data.tokenizer_path", str(tmp_path / "missing.json")], capsys,
          "pass --data.tokenizer_path an existing tokenizer.json")  # fmt: skip
    succeeds([*args, "--data.tokenizer_path", str(tokenizer)], capsys)


def test_a_tokenizer_too_large_for_uint16_says_use_a_smaller_one_and_that_works(run, tmp_path, capsys):
    from tokenizers import Tokenizer, models, pre_tokenizers

    big = Tokenizer(models.WordLevel({f"w{i}": i for i in range(70_000)}, unk_token="w0"))
    big.pre_tokenizer = pre_tokenizers.Whitespace()
    big.save(str(tmp_path / "big.json"))
    args = prepare(run["corpus"], tmp_path / "cache", "--data.tokenizer", "bpe")
    fails([*args, "--data.tokenizer_path", str(tmp_path / "big.json")], capsys, "use a tokenizer with a smaller")
    succeeds([*args, "--data.tokenizer_path", str(bpe_tokenizer_file(run, tmp_path / "trained", capsys))], capsys)


def test_a_corpus_too_short_for_a_window_says_use_a_smaller_context_and_that_works(tmp_path, capsys):
    corpus = tmp_path / "short.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 7)  # a validation split of 32 characters
    args = [*fit_args(corpus, tmp_path / "runs", max_steps=1), "--samples.prompts", '["the"]']
    fails(args, capsys, "use a larger corpus or a smaller --model.max_seq_len")
    succeeds([*without(args, "--model.max_seq_len"), "--model.max_seq_len", "8"], capsys)


@pytest.mark.parametrize(
    "problem", ["missing", "empty", "empty directory", "binary directory", "binary glob", *WHAT_IT_IS]
)
def test_a_corpus_that_is_not_there_says_pass_a_text_file_and_that_works(run, tmp_path, capsys, problem):
    others = not_regular_files(tmp_path)
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "weights.bin").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "nothing").mkdir()
    bad, advice = {
        "missing": (tmp_path / "missing.txt", "not found: pass --data.path pointing to a UTF-8 text file"),
        "empty": (tmp_path / "empty.txt", "is empty: pass --data.path pointing to a UTF-8 text file"),
        "empty directory": (tmp_path / "nothing", "has no text files: pass --data.path a directory with UTF-8"),
        "binary directory": (binary, "pass --data.path a file, directory or glob of UTF-8 text"),
        "binary glob": (f"{binary}/*.bin", "pass --data.path a file, directory or glob of UTF-8 text"),
        **{
            kind: (others[kind], f"{what}: pass --data.path pointing to a UTF-8 text file")
            for kind, what in WHAT_IT_IS.items()
        },
    }[problem]
    fails(prepare(bad, tmp_path / "cache"), capsys, advice)
    texts = tmp_path / "texts"
    texts.mkdir()
    shutil.copy(run["corpus"], texts / "a.txt")
    good = texts if "directory" in problem else None if "glob" in problem else run["corpus"]
    succeeds(prepare(good or f"{texts}/*.txt", tmp_path / "cache"), capsys)


def test_a_latin_1_corpus_says_convert_it_or_use_bytes_and_both_work(tmp_path, capsys):
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("café crème brûlée, déjà vu à la carte. ".encode("latin-1") * 100)
    fails(prepare(corpus, tmp_path / "cache"), capsys, "convert it to UTF-8 or use --data.tokenizer byte")
    succeeds([*prepare(corpus, tmp_path / "cache"), "--data.tokenizer", "byte"], capsys)
    converted = tmp_path / "utf8.txt"
    converted.write_text(corpus.read_bytes().decode("latin-1"), encoding="utf-8")
    succeeds(prepare(converted, tmp_path / "cache"), capsys)


def test_a_non_utf8_file_in_a_corpus_directory_says_skip_it_and_that_works(run, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(run["corpus"], corpus / "good.txt")
    (corpus / "notes.txt").write_bytes("café".encode("latin-1") * 50)
    fails(prepare(corpus, tmp_path / "cache"), capsys, "or pass --data.on_bad_file skip to leave such files out")
    succeeds([*prepare(corpus, tmp_path / "cache"), "--data.on_bad_file", "skip"], capsys)


def test_an_uncreatable_data_directory_says_pass_another_and_that_works(run, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    fails(
        prepare(run["corpus"], tmp_path / "a_file" / "cache"), capsys, "pass --data.cache_dir (or --data.prepared_dir)"
    )
    succeeds(prepare(run["corpus"], tmp_path / "cache"), capsys)


def test_a_prepared_copy_of_another_tokenizer_says_three_ways_and_each_works(run, tmp_path, capsys):
    prepared = tmp_path / "prepared"
    base = prepare(run["corpus"], tmp_path / "cache", "--data.prepared_dir", str(prepared))
    succeeds([*base, "--data.tokenizer", "char"], capsys)
    line = fails([*base, "--data.tokenizer", "byte"], capsys, "use the tokenizer it was prepared with, or another")
    assert f"(or delete {prepared / 'meta.json'} to rebuild it)" in line
    succeeds([*base, "--data.tokenizer", "char"], capsys)
    succeeds([*prepare(run["corpus"], tmp_path / "cache", "--data.prepared_dir", str(tmp_path / "other")),
              "--data.tokenizer", "byte"], capsys)  # fmt: skip
    (prepared / "meta.json").unlink()
    succeeds([*base, "--data.tokenizer", "byte"], capsys)


def test_a_checkpoint_on_a_corpus_with_other_characters_says_start_a_new_run_or_use_bytes_and_both_work(
    run, tmp_path, capsys
):
    other = tmp_path / "other.txt"
    other.write_text("Zebras quack! " * 400)
    args = [*fit_args(other, tmp_path / "runs", max_steps=1), "--samples.prompts", '["Zebras"]']
    fails([*args, "--ckpt_path", str(run["last"]), "--trainer.max_steps", "4"], capsys,
          "train with the vocabulary built from this corpus (drop --data.vocab, or the --ckpt_path")  # fmt: skip
    succeeds(args, capsys)  # without --ckpt_path: a new run on this corpus's characters
    succeeds([*args, "--data.tokenizer", "byte", "--trainer.default_root_dir", str(tmp_path / "bytes")], capsys)


# ---------------------------------------------------------------------------------------------------------------
# Prompts


@pytest.mark.parametrize("problem", ["none", "directory", "missing", "binary", *WHAT_IT_IS])
def test_prompts_that_cannot_be_read_say_pass_a_text_file_and_that_works(run, tmp_path, capsys, problem):
    others = not_regular_files(tmp_path)
    (tmp_path / "binary.txt").write_bytes(b"Line\n\xff\xfe")
    args = without(predict(run["last"], run["root"]), "--data.prompts")
    bad, advice = {
        "none": ([], "no prompts to complete: pass --data.prompts"),
        "directory": (["--data.prompts_file", str(tmp_path)], "pass --data.prompts_file a text file"),
        "missing": (["--data.prompts_file", str(tmp_path / "no.txt")], "not found: pass --data.prompts_file a text"),
        "binary": (["--data.prompts_file", str(tmp_path / "binary.txt")], "pass a text file with one prompt per line"),
        **{
            kind: (["--data.prompts_file", str(others[kind])], f"{what}: pass --data.prompts_file a text file")
            for kind, what in WHAT_IT_IS.items()
        },
    }[problem]
    fails([*args, *bad], capsys, advice)
    (tmp_path / "prompts.txt").write_text("Line 1\nthe \n")
    succeeds([*args, "--data.prompts_file", str(tmp_path / "prompts.txt")], capsys)


# ---------------------------------------------------------------------------------------------------------------
# The other commands


def test_plot_into_a_directory_says_name_the_png_and_that_works(run, tmp_path, capsys):
    fails(["plot", str(run["root"]), "--output", str(tmp_path)], capsys, "pass the PNG file to write (e.g.")
    succeeds(["plot", str(run["root"]), "--output", str(tmp_path / "curves.png")], capsys)


def test_plot_of_a_folder_without_runs_says_pass_a_run_directory_and_that_works(run, tmp_path, capsys):
    fails(["plot", str(tmp_path)], capsys, "no TensorBoard event files under")
    succeeds(["plot", str(run["root"]), "--output", str(tmp_path / "curves.png")], capsys)


def test_plot_in_an_unknown_format_says_which_endings_work_and_one_does(run, tmp_path, capsys):
    fails(["plot", str(run["root"]), "--output", str(tmp_path / "curves.xyz")], capsys, "pass a file ending in one of")
    succeeds(["plot", str(run["root"]), "--output", str(tmp_path / "curves.svg")], capsys)
    assert (tmp_path / "curves.svg").read_text().lstrip().startswith("<?xml")


def test_plot_under_a_file_says_pass_a_writable_path_and_that_works(run, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    fails(
        ["plot", str(run["root"]), "--output", str(tmp_path / "a_file" / "c.png")], capsys, "pass a writable --output"
    )
    succeeds(["plot", str(run["root"]), "--output", str(tmp_path / "new" / "c.png")], capsys)


def test_stages_of_a_file_or_an_empty_folder_say_pass_a_run_or_train_first_and_that_works(run, tmp_path, capsys):
    stages = ["stages", "--prompt", "Line", "--sampling.max_new_tokens", "4"]
    fails(
        [*stages, "--ckpt_dir", str(run["corpus"])], capsys, "is not a directory: pass a run directory written by fit"
    )
    fails([*stages, "--ckpt_dir", str(tmp_path)], capsys, "no *.ckpt files under")
    succeeds(fit_args(run["corpus"], tmp_path, max_steps=3), capsys)  # the advice: train with fit first
    succeeds([*stages, "--ckpt_dir", str(tmp_path)], capsys)


def test_a_sweep_without_runs_says_pass_runs_and_that_works(run, tmp_path, capsys):
    sweep = ["sweep", *fit_args(run["corpus"], tmp_path / "runs", max_steps=1)[1:], "--tokens", "512", "--evals", "1",
             "--out", str(tmp_path / "sweep")]  # fmt: skip
    fails([*sweep, "--runs", "{}"], capsys, 'pass --runs.NAME "FIT OPTIONS" once per run')
    succeeds([*sweep, "--runs.small", "--data.batch_size 4"], capsys)


def test_an_export_under_a_file_says_pass_a_writable_out_and_that_works(run, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    export = ["export", "--ckpt_path", str(run["last"])]
    fails([*export, "--out", str(tmp_path / "a_file" / "out")], capsys, "pass a writable --out")
    succeeds([*export, "--out", str(tmp_path / "out")], capsys)


def test_gguf_without_its_package_says_install_it_and_then_it_works(run, tmp_path, capsys, monkeypatch):
    export = ["export", "--ckpt_path", str(run["last"]), "--format", "gguf", "--out", str(tmp_path)]
    with monkeypatch.context() as without_gguf:
        without_gguf.setitem(sys.modules, "gguf", None)  # as if it were not installed
        fails(export, capsys, 'pip install gguf (or pip install -e ".[export]")')
    succeeds(export, capsys)  # installed (the export extra)
    assert (tmp_path / "model.gguf").stat().st_size > 0


@pytest.mark.parametrize("problem", ["missing", "foreign", "unreadable"])
def test_init_from_something_else_says_pass_a_checkpoint_or_an_export_and_that_works(run, tmp_path, capsys, problem):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text('{"architectures": ["GPT2"]}')
    (tmp_path / "unreadable").mkdir()
    (tmp_path / "unreadable" / "config.json").write_text("{")
    source, advice = {
        "missing": (tmp_path / "missing.ckpt", "not found: pass a .ckpt written by fit or a directory written by"),
        "foreign": (tmp_path / "foreign", "export: pass a directory written by export"),
        "unreadable": (tmp_path / "unreadable", "could not be read"),
    }[problem]
    args = fit_args(run["corpus"], tmp_path / "runs", max_steps=1)
    for option in ("--model.hidden_dim", "--model.num_layers", "--model.num_heads", "--model.mlp_dim"):
        args = without(args, option)  # the source's shape is used
    fails([*args, "--init_from", str(source)], capsys, advice)
    succeeds(["export", "--ckpt_path", str(run["last"]), "--out", str(tmp_path / "exported")], capsys)
    succeeds([*args, "--init_from", str(tmp_path / "exported")], capsys)


@pytest.mark.parametrize(
    ("bad", "advice", "good"),
    [
        (["--trainer.strategy", "deepspeed"], "use ddp, fsdp, lightning_trickster", ["--trainer.strategy", "ddp"]),
        (["--trainer.strategy", "single_device", "--trainer.devices", "2"], "use ddp or fsdp",
         ["--trainer.strategy", "fsdp", "--trainer.devices", "2"]),
        (["--trainer.precision", "64-true"], "use 32-true, bf16-mixed", ["--trainer.precision", "bf16-mixed"]),
    ],
)  # fmt: skip
def test_what_info_cannot_estimate_it_says_what_to_use_and_that_works(run, tmp_path, capsys, bad, advice, good):
    info = ["info", "--config", "cpu.yaml", "--data.path", str(run["corpus"]), "--data.cache_dir", str(tmp_path)]
    fails([*info, *bad], capsys, advice)
    succeeds([*info, *good], capsys)


def test_info_with_automatic_devices_says_pass_a_count_and_that_estimates_for_it(run, tmp_path, capsys):
    info = ["info", "--config", "cpu.yaml", "--data.path", str(run["corpus"]), "--data.cache_dir", str(tmp_path)]
    assert "devices: auto -> estimated for 1 device per node (pass --trainer.devices N)" in succeeds(
        [*info, "--trainer.devices", "auto"], capsys
    )
    out = succeeds([*info, "--trainer.devices", "2", "--trainer.strategy", "ddp"], capsys)
    assert "devices: auto" not in out and "2" in out


def test_bench_generation_compiled_without_a_compiler_says_pass_compiled_false_and_that_works(run, tmp_path, capsys):
    bench = ["bench-generation", *fit_args(run["corpus"], tmp_path, max_steps=1)[1:], "--new_tokens", "2",
             "--batch_sizes", "[1]"]  # fmt: skip
    with no_cpp_compiler():
        fails([*bench, "--compiled", "true"], capsys, "install one (e.g. g++), or pass --compiled false")
        succeeds([*bench, "--compiled", "false"], capsys)


# ---------------------------------------------------------------------------------------------------------------
# Several processes


def test_muon_under_fsdp_says_use_adamw_and_the_fsdp_run_says_predict_its_checkpoint_and_both_work(
    run, tmp_path, capsys
):
    """Two CPU processes under the project's own sharded strategy (FSDP on CPU, gloo)."""
    sharded = ["--trainer.devices", "2", "--trainer.strategy", "lightning_trickster.sharding.ShardedStrategy",
               "--trainer.strategy.auto_wrap_policy", "[lightning_trickster.model.Block]"]  # fmt: skip
    args = [*fit_args(run["corpus"], tmp_path, max_steps=2), *sharded]
    command = [sys.executable, "-m", "lightning_trickster", *args, "--model.optimization.optimizer"]
    muon = subprocess.run([*command, "muon"], capture_output=True, text=True, env=child_environment(), timeout=300)
    assert muon.returncode == 2 and "Traceback" not in muon.stderr, muon.stderr[-3000:]
    assert "use --model.optimization.optimizer adamw with FSDP, or DDP with muon" in muon.stderr.splitlines()[-1]
    adamw = subprocess.run([*command, "adamw"], capture_output=True, text=True, env=child_environment(), timeout=300)
    assert adamw.returncode == 0, adamw.stderr[-3000:]
    assert "no random baseline or samples under FSDP (the weights are sharded): use predict on a checkpoint" in (
        adamw.stdout + adamw.stderr
    )
    out = succeeds(predict("last", tmp_path), capsys)  # the advice
    assert "--- 'Line'" in out


# ---------------------------------------------------------------------------------------------------------------
# The Python API


def test_a_window_longer_than_the_model_says_use_shorter_windows_and_that_works():
    from lightning_trickster.errors import InvalidConfigError
    from lightning_trickster.model import NanoTrickster, NanoTricksterConfig

    model = NanoTrickster(NanoTricksterConfig(vocab_size=16, hidden_dim=8, num_layers=1, num_heads=2, mlp_dim=16,
                                              max_seq_len=8))  # fmt: skip
    tokens = torch.zeros(1, 12, dtype=torch.long)
    with pytest.raises(InvalidConfigError, match="use shorter windows or a model with a larger max_seq_len"):
        model(tokens)
    assert model(tokens[:, -8:])[0].shape == (1, 8, 16)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
