"""Found by a hostile pass over the command line (inputs no other suite tries): each case once ended in a misleading
message, a silent non-result, or damage to files the program did not create; each now ends in a correct run or one
line. (The pass's other finds are tested where their subject is: test_faults, test_ddp, test_advice, test_realfaults.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import fit_args, one_error_line, run_main, write_small_corpus
from faults import child_environment
from realfaults import small_filesystem, start_in_own_group

from lightning_trickster.cli import main
from lightning_trickster.commands.export import FILES
from lightning_trickster.export import STAGING_MARKER


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> dict[str, Path]:
    """A 3-step fit that logs train/loss only every 25 steps (cpu.yaml's log_every_n_steps): no train/loss at all."""
    workspace = tmp_path_factory.mktemp("hostile")
    corpus = write_small_corpus(workspace / "corpus.txt")
    args = fit_args(corpus, workspace / "runs", "-q", max_steps=3)
    at = args.index("--trainer.log_every_n_steps")
    main(args[:at] + args[at + 2 :])
    run = workspace / "runs" / "lightning_logs" / "version_0"
    return {"workspace": workspace, "corpus": corpus, "run": run, "last": run / "checkpoints" / "last.ckpt"}


def test_plot_of_a_run_that_logged_only_validation_so_far_draws_it(short_run, tmp_path, capsys):
    """It said `has no train/loss scalars: pass a run directory written by fit` of a run fit had just written."""
    status, out, err = run_main(["plot", str(short_run["run"]), "--output", str(tmp_path / "curves.png")], capsys)
    assert status == 0, err[-3000:]
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def device(path: Path, minor: int) -> Path:
    """A character device node like /dev/full (minor 7) or /dev/null (minor 3), made in the test's own folder."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root (CI runs the tests as root)")
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    return path


def test_plot_writes_into_a_device_as_asked_and_never_replaces_it(short_run, tmp_path, capsys):
    """`--output /dev/full` used to be renamed over: the device node became a regular file holding the image."""
    full, null = device(tmp_path / "full", 7), device(tmp_path / "null", 3)
    status, _, err = run_main(["plot", str(short_run["run"]), "--output", str(full)], capsys)
    assert status == 2
    assert one_error_line(err) == f"error: cannot write {full} (No space left on device): pass a writable --output path"
    assert run_main(["plot", str(short_run["run"]), "--output", str(null)], capsys)[0] == 0
    assert stat.S_ISCHR(full.stat().st_mode) and stat.S_ISCHR(null.stat().st_mode)  # both still devices


def test_plot_through_a_symbolic_link_writes_the_file_it_names_and_keeps_the_link(short_run, tmp_path, capsys):
    (tmp_path / "shared").mkdir()
    link = tmp_path / "curves.png"
    link.symlink_to(tmp_path / "shared" / "curves.png")
    assert run_main(["plot", str(short_run["run"]), "--output", str(link)], capsys)[0] == 0
    assert link.is_symlink() and (tmp_path / "shared" / "curves.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("kind", ["fifo", "file"])
def test_export_into_something_that_is_not_a_directory_says_so(short_run, tmp_path, capsys, kind):
    """A FIFO or a file as --out was `cannot write the export to X (File exists)`."""
    out = tmp_path / "out"
    if kind == "fifo":
        os.mkfifo(out)
    else:
        out.write_text("notes")
    status, _, err = run_main(["export", "--ckpt_path", str(short_run["last"]), "--out", str(out)], capsys)
    assert status == 2
    assert one_error_line(err) == f"error: --out {out} is not a directory: pass a directory to write the export into"
    assert run_main(["export", "--ckpt_path", str(short_run["last"]), "--out", str(tmp_path / "dir")], capsys)[0] == 0


def test_an_export_of_another_format_into_the_same_directory_is_refused_and_nothing_is_replaced(
    short_run, tmp_path, capsys
):
    """--format hf then --format trickster into one --out left a directory that was neither: the trickster
    config.json and weights beside the Hugging Face tokenizer files (transformers then failed on it)."""
    export = ["export", "--ckpt_path", str(short_run["last"]), "--out", str(tmp_path)]
    assert run_main([*export, "--format", "hf"], capsys)[0] == 0
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    status, _, err = run_main([*export, "--format", "trickster"], capsys)
    assert status == 2
    assert one_error_line(err) == (
        f"error: --out {tmp_path} already holds model.safetensors, config.json, written by an earlier --format hf "
        "export, which this export would replace: pass another --out (or move those files away first)"
    )
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    other = ["export", "--ckpt_path", str(short_run["last"]), "--out", str(tmp_path / "trickster")]
    assert run_main(other, capsys)[0] == 0  # the advice: another --out
    assert run_main([*export, "--format", "hf"], capsys)[0] == 0  # the same format again refreshes it
    assert run_main([*export, "--format", "gguf"], capsys)[0] == 0  # model.gguf replaces nothing
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*before, "model.gguf", "trickster"])


def test_an_export_never_replaces_a_users_own_file(short_run, tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"my": "settings"}')
    status, _, err = run_main(["export", "--ckpt_path", str(short_run["last"]), "--out", str(tmp_path)], capsys)
    assert status == 2
    assert "already holds config.json, written by something other than a trickster export" in (one_error_line(err))
    assert (tmp_path / "config.json").read_text() == '{"my": "settings"}'
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json"]


@pytest.mark.parametrize(("command", "option"), [("validate", "limit_val_batches"), ("test", "limit_test_batches")])
def test_an_evaluation_that_scores_nothing_is_one_line_not_a_silent_success(short_run, capsys, command, option):
    """It exited 0 with no metrics.json and not a word."""
    args = [command, "--config", "cpu.yaml", "--ckpt_path", str(short_run["last"]), "--data.path",
            str(short_run["corpus"]), "--data.cache_dir", str(short_run["workspace"] / "runs" / "data"),
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    status, _, err = run_main([*args, f"--trainer.{option}", "0"], capsys)
    assert status == 2
    assert one_error_line(err) == (
        f"error: {command} scored no batches (--trainer.{option} 0), so it wrote no metrics: pass a "
        f"--trainer.{option} above 0, or leave it out"
    )
    assert run_main([*args, f"--trainer.{option}", "2"], capsys)[0] == 0  # the advice


def test_ckpt_path_last_skips_a_folder_named_last_ckpt(short_run, tmp_path, capsys):
    """A folder named last.ckpt in a newer run made `--ckpt_path last` answer: pass ... or 'last' (which it was)."""
    (tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt").mkdir(parents=True)
    (tmp_path / "lightning_logs" / "version_0").symlink_to(short_run["run"])
    args = ["predict", "--config", "cpu.yaml", "--ckpt_path", "last", "--trainer.default_root_dir", str(tmp_path),
            "--data.prompts", '["Line"]', "--trainer.enable_progress_bar", "false"]  # fmt: skip
    status, out, err = run_main(args, capsys)
    assert status == 0, err[-3000:]
    assert out.startswith("--- 'Line'")
    assert list((tmp_path / "lightning_logs" / "version_0" / "eval").glob("predict-last-*/predictions.jsonl"))


def test_plot_of_a_folder_whose_events_hold_no_loss_says_pass_a_run_that_trained_and_that_works(
    short_run, tmp_path, capsys
):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path / "other")) as writer:  # another program's events: no loss curves
        writer.add_scalar("reward", 1.0, 0)
    status, _, err = run_main(["plot", str(tmp_path / "other"), "--output", str(tmp_path / "c.png")], capsys)
    assert status == 2 and "has no train/loss or val/loss scalars yet" in one_error_line(err)
    assert "pass a run directory written by fit that has trained that far" in err
    assert run_main(["plot", str(short_run["run"]), "--output", str(tmp_path / "c.png")], capsys)[0] == 0


def test_fsdp_on_a_machine_without_a_gpu_trains_sharded_over_cpu_processes(short_run, tmp_path):
    """It said FSDP needs a GPU, with a fix (accelerator='cuda') that cannot work here; torch's FSDP runs on CPU."""
    if torch.cuda.is_available():
        pytest.skip("with a GPU, --trainer.strategy fsdp is Lightning's own FSDP on it")
    args = fit_args(short_run["corpus"], tmp_path, "--trainer.strategy", "fsdp", max_steps=2)
    command = [sys.executable, "-m", "lightning_trickster", *args, "--model.optimization.optimizer"]
    fit = subprocess.run([*command, "adamw"], capture_output=True, text=True, env=child_environment(), timeout=300)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "fit done: 2/2 steps" in fit.stdout + fit.stderr
    assert torch.load(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")["global_step"] == 2


def test_a_context_length_of_zero_names_the_model_option_typed(short_run, tmp_path, capsys):
    """It named data.block_size, an option nobody typed (the model's max_seq_len sets it)."""
    args = fit_args(short_run["corpus"], tmp_path, "-q", max_steps=1)
    status, _, err = run_main([*args, "--model.max_seq_len", "0"], capsys)
    assert status == 2
    assert one_error_line(err) == (
        "error: --model.max_seq_len 0 is not possible: use a whole number >= 1 (the model's context length, which "
        "is also the length of the training windows)"
    )
    assert run_main([*args, "--model.max_seq_len", "16"], capsys)[0] == 0


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("--model.hidden_dim 0", "hidden_dim must be a positive integer, got 0: set it to a value >= 1"),
        (
            "--model.nope 3",
            "unrecognized arguments: --model.nope 3 (options: python -m lightning_trickster fit --help)",
        ),
        ('--model.hidden_dim "32', "No closing quotation: close the quote in --runs.bad"),
    ],
)
def test_a_sweep_run_with_a_mistake_is_named_before_any_run_trains(short_run, tmp_path, capsys, options, problem):
    args = [arg for arg in fit_args(short_run["corpus"], tmp_path / "runs") if arg != "fit"]
    sweep = ["sweep", *args, "--tokens", "2000", "--evals", "1", "--out", str(tmp_path / "sweep")]
    status, _, err = run_main([*sweep, "--runs.good", "--model.hidden_dim 32", "--runs.bad", options], capsys)
    assert status == 2
    assert one_error_line(err) == f"error: sweep run 'bad' ({options}): {problem}"
    assert not (tmp_path / "sweep" / "runs").exists()  # every run is checked before the first trains


SLOW_EXPORT = """
import sys, time
import lightning_trickster.export as export
from lightning_trickster.cli import main

write = export.export_trickster
def written_then_held(trained, directory):
    files = write(trained, directory)
    time.sleep(300)  # the files are in the staging directory, not yet moved into --out: killed here
    return files
export.export_trickster = written_then_held
main(sys.argv[1:])
"""


def test_an_export_killed_outright_leaves_staging_that_the_next_export_removes_and_nothing_else(short_run, tmp_path):
    """SIGKILL cannot be handled: the killed export's .export-* folder stayed in --out for good. The next export
    removes what it can tell is a killed export's (its marker names this host and a process that is gone), and keeps
    a user's folder of that name and a running export's."""
    out = tmp_path / "out"
    export = ["export", "--ckpt_path", str(short_run["last"]), "--out", str(out)]
    killed = subprocess.Popen([sys.executable, "-c", SLOW_EXPORT, *export], env=child_environment())
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".export-*/model.safetensors")) and time.monotonic() < deadline:
            assert killed.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)  # config.json too
    finally:
        killed.kill()
        killed.wait()
    [leftover] = out.glob(".export-*")
    assert not (out / "model.safetensors").exists()
    (out / ".export-mine").mkdir()  # a user's own folder of that name
    (out / ".export-mine" / "notes.txt").write_text("mine")
    running = out / ".export-running"  # an export that still runs: its process (init) is alive
    running.mkdir()
    (running / STAGING_MARKER).write_text(json.dumps({"host": socket.gethostname(), "pid": 1}))

    main(export)

    assert not leftover.exists()
    assert (out / ".export-mine" / "notes.txt").read_text() == "mine" and running.is_dir()
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [".export-mine", ".export-running", *FILES["trickster"]]
    )


def test_an_export_that_cannot_create_its_out_folder_names_the_folder_to_make_writable(short_run, tmp_path, capsys):
    """It said `make …/ro/x writable` of the --out that could not be created, instead of the read-only folder."""
    with small_filesystem(tmp_path / "disk") as disk:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        export = ["export", "--ckpt_path", str(short_run["last"]), "--out", str(disk / "x")]
        status, _, err = run_main(export, capsys)
        assert status == 2
        assert one_error_line(err).startswith(
            f"error: could not write the export to {disk / 'x'} (Read-only file system): make {disk} writable, then "
        )
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)  # the advice
        assert run_main(export, capsys)[0] == 0


def test_a_file_as_the_output_directory_says_it_is_not_a_directory(short_run, tmp_path, capsys):
    """/dev/null as --trainer.default_root_dir was `is not writable (File exists)`."""
    args = fit_args(short_run["corpus"], Path("/dev/null"), "-q", max_steps=1)
    status, _, err = run_main(args, capsys)
    assert status == 2
    assert one_error_line(err) == (
        "error: output directory /dev/null is not a directory: pass --trainer.default_root_dir a directory you can "
        "write to"
    )
    assert run_main(fit_args(short_run["corpus"], tmp_path, "-q", max_steps=1), capsys)[0] == 0


def test_a_corpus_under_an_unknown_users_home_is_not_found(short_run, tmp_path, capsys):
    """`~nosuchuser/corpus.txt` ended in `RuntimeError: Could not determine home directory`."""
    status, _, err = run_main(fit_args(Path("~nosuchuser/corpus.txt"), tmp_path, "-q", max_steps=1), capsys)
    assert status == 2
    assert one_error_line(err) == (
        "error: data file ~nosuchuser/corpus.txt not found: pass --data.path pointing to a UTF-8 text file, a "
        "directory or a glob"
    )


def test_plot_of_a_symlink_loop_says_so(short_run, tmp_path, capsys):
    """It said the path `does not exist`."""
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    status, _, err = run_main(["plot", str(tmp_path / "loop"), "--output", str(tmp_path / "c.png")], capsys)
    assert status == 2
    assert one_error_line(err) == (
        f"error: {tmp_path / 'loop'} is a symlink loop: pass run directories written by fit (e.g. runs/cpu)"
    )


def test_a_sampling_value_out_of_range_is_our_one_line_not_jsonargparses_union_report(short_run, capsys):
    """predict said `Does not validate against any of the Union subtypes ... Given value: Namespace(...)`."""
    args = ["predict", "--ckpt_path", str(short_run["last"]), "--data.prompts", '["Line"]', "--sampling.temperature"]
    status, _, err = run_main([*args, "-1"], capsys)
    assert status == 2
    assert one_error_line(err) == "error: sampling.temperature must be a finite number >= 0 (0 means greedy), got -1.0"
    assert run_main([*args, "0"], capsys)[0] == 0


@pytest.mark.parametrize(
    ("bad", "message", "good"),
    [
        (  # it ended in a traceback from attention (float64 queries, float32 rotary tables)
            ["--trainer.precision", "64-true"],
            "--trainer.precision '64-true' is not possible: use 32-true (the default), bf16-mixed or 16-mixed",
            ["--trainer.precision", "32-true"],
        ),
        (  # Lightning's refusal, with 'fix that option', of a ModelCheckpoint nobody can leave out
            ["--trainer.enable_checkpointing", "false"],
            "--trainer.enable_checkpointing False is not possible: use true: a fit always writes last.ckpt, to "
            "resume from",
            ["--trainer.enable_checkpointing", "true"],
        ),
        (  # it trained nothing and exited 0
            ["--trainer.max_time", "00:00:00:00"],
            "--trainer.max_time '00:00:00:00' is not possible: use a duration above zero, DD:HH:MM:SS (e.g. "
            "00:01:00:00)",
            ["--trainer.max_time", "00:01:00:00"],
        ),
    ],
)
def test_trainer_options_that_cannot_work_here_are_one_line_and_the_advice_works(
    short_run, tmp_path, capsys, bad, message, good
):
    args = fit_args(short_run["corpus"], tmp_path, "-q", max_steps=1)
    status, _, err = run_main([*args, *bad], capsys)
    assert status == 2
    assert one_error_line(err) == f"error: {message}"
    assert run_main([*args, *good], capsys)[0] == 0


def test_a_config_that_gives_an_option_group_a_plain_value_says_indent_its_options(short_run, tmp_path, capsys):
    """`trainer: 5` ended in AttributeError, `data: [1]` in KeyError."""
    args = fit_args(short_run["corpus"], tmp_path, "-q", max_steps=1)
    (tmp_path / "flat.yaml").write_text("trainer: 5\n")
    status, _, err = run_main([*args, "--config", str(tmp_path / "flat.yaml")], capsys)
    assert status == 2
    assert one_error_line(err) == (
        f"error: config {tmp_path / 'flat.yaml'} sets trainer to 5, but trainer holds options: write them indented "
        "under trainer: (e.g. `trainer:` then `  max_steps: 100` on the next line), or leave trainer out"
    )
    (tmp_path / "nested.yaml").write_text("trainer:\n  max_steps: 1\n")
    assert run_main([*args, "--config", str(tmp_path / "nested.yaml")], capsys)[0] == 0


def test_a_checkpoint_damaged_after_it_was_written_is_refused_not_loaded(short_run, tmp_path, capsys):
    """64 zeroed bytes inside the weights loaded silently (torch does not check the archive's checksums), and
    predict wrote completions of a damaged model."""
    data = bytearray(short_run["last"].read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    (tmp_path / "damaged.ckpt").write_bytes(bytes(data))
    args = ["predict", "--data.prompts", '["Line"]', "--trainer.default_root_dir", str(tmp_path), "--ckpt_path"]
    status, _, err = run_main([*args, str(tmp_path / "damaged.ckpt")], capsys)
    assert status == 2
    line = one_error_line(err)
    assert line.startswith(f"error: checkpoint {tmp_path / 'damaged.ckpt'} could not be read (its record archive/")
    assert "does not match its checksum: the file was damaged after it was written): pass a .ckpt file" in line
    assert run_main([*args, str(short_run["last"])], capsys)[0] == 0


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_while_the_command_starts_is_one_line_and_its_exit_status(short_run, tmp_path, signal_name):
    """While the libraries load (seconds), Ctrl-C was a KeyboardInterrupt traceback and SIGTERM or SIGHUP killed
    the process without a word. Whether the signal lands while loading or just after, the command stops alike."""
    signum = signal.Signals[signal_name]
    command = start_in_own_group(["export", "--ckpt_path", str(short_run["last"]), "--out", str(tmp_path / "x")])
    time.sleep(0.5)
    os.killpg(command.pid, signum)
    output, _ = command.communicate(timeout=120)
    assert command.returncode == 128 + signum, output[-3000:]
    assert "Traceback" not in output
    assert one_error_line(output).startswith(f"error: stopped by {signal_name}")
    assert not (tmp_path / "x").exists()
