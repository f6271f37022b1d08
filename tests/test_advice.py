"""Advice is executable: every message that tells the user to run a command or pass an option is triggered here, then
what it says is done, and the command succeeds (or, for a notice, the notice goes away).

Messages whose advice other tests already follow are listed in ALREADY_FOLLOWED; those that need hardware this suite
cannot rely on (a Tenstorrent chip, CUDA) in NOT_FOLLOWABLE_HERE, with the reason.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import fit_args, write_small_corpus
from faults import InjectNonFiniteLoss, SignalDuringStep, injector, no_cpp_compiler
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


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """cli.main in this process: (exit status, stdout, stderr); a traceback would escape as an exception."""
    try:
        main(args)
    except SystemExit as exit_info:
        status = exit_info.code
    else:
        status = 0
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def fails(args: list[str], capsys, expect: str) -> str:
    """Run the CLI, expect one `error:` line (the last) that contains `expect`; return it."""
    status, _, err = run_main(args, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert status not in (0, None) and len(errors) == 1 and lines[-1] == errors[0], err[-3000:]
    assert expect in errors[0], errors[0]
    return errors[0]


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
        with caplog.at_level(logging.INFO):
            succeeds([*without(args, "--model.compile"), "--model.compile", "null"], capsys)  # auto: trains eagerly
        notice = "no working C++ compiler found: training without torch.compile"
        assert any(notice in m and "pass --model.compile false to silence this" in m for m in caplog.messages)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            succeeds(args, capsys)  # --model.compile false: the notice is gone
        assert not any(notice in m for m in caplog.messages)


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


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
