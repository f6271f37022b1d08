"""Real faults, not simulated ones: a filesystem that really fills up during a checkpoint save and during prepare, and a
second real process holding a lock. Each ends in one line naming the problem and the fix, keeps the previous good
state, and the fix it names is then done and works."""

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_SHAKESPEARE, fit_args, run_main, write_small_corpus
from faults import child_environment, run_cli
from realfaults import (
    PAGE,
    fill,
    free_bytes,
    hold_lock_in_another_process,
    read_until,
    small_filesystem,
    start_in_own_group,
)

from lightning_trickster.checkpoint import read_checkpoint
from lightning_trickster.cli import main
from lightning_trickster.reliability import AtomicCheckpointIO, CheckpointWriteError
from lightning_trickster.runs import read_scalars


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------------------------------------------------------
# A full disk


def test_a_full_disk_under_torch_save_is_one_line_and_the_previous_checkpoint_is_kept(tmp_path):
    with small_filesystem(tmp_path / "disk", "1m") as disk:
        checkpoint_io = AtomicCheckpointIO()
        target = disk / "last.ckpt"
        checkpoint_io.save_checkpoint({"global_step": 3, "w": torch.ones(50_000)}, target)  # 200 KB
        filler = fill(disk, leave_bytes=100_000)
        with pytest.raises(CheckpointWriteError) as raised:
            checkpoint_io.save_checkpoint({"global_step": 6, "w": torch.zeros(50_000)}, target)
        # torch reports the full disk as RuntimeError: [enforce fail at inline_container.cc:...] . unexpected pos
        assert isinstance(raised.value.__context__, RuntimeError) and "unexpected pos" in str(raised.value.__context__)
        message = str(raised.value)
        assert message.startswith(f"could not write checkpoint {target} (No space left on device): free disk space")
        assert "\n" not in message and "inline_container" not in message
        assert torch.load(target, weights_only=True)["global_step"] == 3
        assert sorted(p.name for p in disk.iterdir()) == ["filler.bin", "last.ckpt"]  # no partial temporary file
        filler.unlink()  # the advice: free disk space
        checkpoint_io.save_checkpoint({"global_step": 6, "w": torch.zeros(50_000)}, target)
        assert torch.load(target, weights_only=True)["global_step"] == 6


def test_a_fit_whose_disk_fills_up_stops_in_one_line_and_resumes_with_the_advice(small_corpus, tmp_path, capsys):
    root = tmp_path / "runs"
    assert run_main(fit_args(small_corpus, root, max_steps=3), capsys)[0] == 0
    checkpoints = root / "lightning_logs" / "version_0" / "checkpoints"
    shutil.move(checkpoints, tmp_path / "saved")
    with small_filesystem(checkpoints, "4m"):
        for saved in (tmp_path / "saved").iterdir():
            shutil.copy2(saved, checkpoints)
        filler = fill(checkpoints, leave_bytes=100_000)  # less than one checkpoint (about 210 KB)
        status, _, err = run_main(fit_args(small_corpus, root, "--ckpt_path", "last", max_steps=9), capsys)
        assert status == 2, err[-3000:]
        line = last_line(err)
        assert line.startswith(f"error: could not write checkpoint {checkpoints}/") and "inline_container" not in line
        assert "(No space left on device): free disk space" in line and line.endswith("is left as it was")
        assert read_checkpoint(checkpoints / "last.ckpt")["global_step"] == 3
        assert not list(checkpoints.glob(".*.tmp"))
        filler.unlink()  # the advice: free disk space, then resume with --ckpt_path last
        status, _, err = run_main(fit_args(small_corpus, root, "--ckpt_path", "last", max_steps=9), capsys)
        assert status == 0, err[-3000:]
        assert read_checkpoint(checkpoints / "last.ckpt")["global_step"] == 9


def prepare_args(corpus, prepared_dir) -> list[str]:
    return ["prepare", "--config", "cpu.yaml", "--data.path", str(corpus), "--data.prepared_dir", str(prepared_dir)]


def test_a_full_disk_while_prepare_writes_tokens_is_one_line_and_keeps_the_earlier_copy(small_corpus, tmp_path, capsys):
    with small_filesystem(tmp_path / "disk", "4m") as disk:
        prepared = disk / "prepared"
        assert run_main(prepare_args(small_corpus, prepared), capsys)[0] == 0  # an earlier copy, of another corpus
        earlier = (prepared / "meta.json").read_text()
        filler = fill(disk, leave_bytes=512 * 1024)  # tiny Shakespeare's char tokens take 1.1 MB
        status, _, err = run_main(prepare_args(TINY_SHAKESPEARE, prepared), capsys)
        assert status == 2 and "Traceback" not in err
        line = last_line(err)
        assert line.startswith(f"error: could not write {prepared}/build-") and "/tokens.bin (No space left" in line
        assert line.endswith("any earlier prepared copy is kept")
        assert (prepared / "meta.json").read_text() == earlier
        assert len(list(prepared.glob("build-*"))) == 1  # the failed build removed itself
        status, out, _ = run_main(prepare_args(small_corpus, prepared), capsys)
        assert status == 0 and out.rstrip().endswith("(reused)")

        # The advice, both ways: another --data.prepared_dir with room, or free space and run again.
        status, _, err = run_main(prepare_args(TINY_SHAKESPEARE, tmp_path / "roomy"), capsys)
        assert status == 0 and json.loads((tmp_path / "roomy" / "meta.json").read_text())["num_tokens"] > 1_000_000
        filler.unlink()
        assert run_main(prepare_args(TINY_SHAKESPEARE, prepared), capsys)[0] == 0
        assert len(list(prepared.glob("build-*"))) == 1  # the copy it replaced is gone


def test_no_room_for_meta_json_is_one_line_and_leaves_no_copy_a_later_run_trusts(small_corpus, tmp_path, capsys):
    # Five inodes: the mount itself, .lock, .builds.json, the build directory and tokens.bin; meta.json finds none.
    with small_filesystem(tmp_path / "disk", "4m", inodes=5) as prepared:
        status, _, err = run_main(prepare_args(small_corpus, prepared), capsys)
        assert status == 2 and "Traceback" not in err
        assert last_line(err).startswith(f"error: could not write {prepared}/meta.json (No space left on device)")
        assert not (prepared / "meta.json").exists() and not list(prepared.glob("build-*"))
    status, _, err = run_main(prepare_args(small_corpus, tmp_path / "roomy"), capsys)  # the advice
    assert status == 0 and (tmp_path / "roomy" / "meta.json").is_file()


def test_fill_leaves_what_it_says(tmp_path):
    with small_filesystem(tmp_path / "disk", "1m") as disk:
        fill(disk, leave_bytes=3 * PAGE)
        assert 3 * PAGE <= free_bytes(disk) < 4 * PAGE


# ---------------------------------------------------------------------------------------------------------------
# A prepared copy damaged where only a batch reads it


def test_a_copy_damaged_in_the_middle_stops_a_fit_with_workers_in_one_line_and_the_advice_rebuilds_it(tmp_path, capsys):
    corpus = tmp_path / "long.txt"  # longer than the 2 x 64 Ki ids checked at start
    corpus.write_text("".join(f"Line {i}: the quick brown fox and {i % 17} lazy dogs.\n" for i in range(5000)))
    args = fit_args(corpus, tmp_path / "runs", "--data.num_workers", "2", "--data.train_fraction", "0.97", max_steps=6)
    assert run_main(["prepare", *args[1:]], capsys)[0] == 0
    prepared = next((tmp_path / "runs" / "data" / "prepared").glob("long.txt-*/char"))
    meta = json.loads((prepared / "meta.json").read_text())
    with (prepared / meta["tokens_file"]).open("r+b") as out:
        out.seek(70_000)
        out.write(b"\xfe" * 100_000)  # ids 70,000 to 170,000 of 265,000: the training split's middle
    result = run_cli(args)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert last_line(result.stderr) == (
        f"error: the prepared copy in {prepared} is damaged ({meta['tokens_file']} holds token id 254, outside the "
        f"{meta['tokenizer']['vocab_size']}-token vocabulary): delete {prepared / 'meta.json'} and run the command "
        "again, which rebuilds it"
    )
    (prepared / "meta.json").unlink()  # the advice
    result = run_cli(args)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = tmp_path / "runs" / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(checkpoint)["global_step"] == 6


# ---------------------------------------------------------------------------------------------------------------
# A lock held by another process


def test_a_prepare_waiting_for_a_held_lock_says_who_holds_it_and_goes_on_once_released(small_corpus, tmp_path):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    holder = hold_lock_in_another_process(
        "from pathlib import Path\nfrom lightning_trickster.prepared import prepared_lock\n"
        f"lock = prepared_lock(Path({str(prepared)!r}))\nassert lock.try_acquire()"
    )
    waiter = start_in_own_group(prepare_args(small_corpus, prepared))
    try:
        seen = read_until(waiter, "waiting for")
        line = last_line(seen)
        assert (
            f"waiting for the prepared copy in {prepared}: process {holder.pid} on host {socket.gethostname()}" in line
        )
        assert "preparing or checking this prepared copy" in line
        assert waiter.poll() is None  # it waits, it does not fail
        holder.kill()
        holder.wait()
        rest, _ = waiter.communicate(timeout=120)
        assert waiter.returncode == 0, rest[-3000:]
        assert "prepared: " in rest and (prepared / "meta.json").is_file()
    finally:
        holder.kill()
        waiter.kill()


# ---------------------------------------------------------------------------------------------------------------
# Every other path that writes: TensorBoard, metrics.json, predictions.jsonl, export, plot, standard output


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A 3-step fit of the tiny model: its corpus, output directory and last.ckpt."""
    root = tmp_path_factory.mktemp("trained")
    corpus = write_small_corpus(root / "corpus.txt")
    main(fit_args(corpus, root / "runs", "-q", max_steps=3))
    checkpoint = root / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    return {"corpus": corpus, "root": root / "runs", "checkpoint": checkpoint}


def copy_onto(source: Path, disk: Path) -> None:
    for path in source.iterdir():
        if path.is_dir():
            shutil.copytree(path, disk / path.name, symlinks=True)
        else:
            shutil.copy2(path, disk / path.name)


def test_a_full_disk_under_the_tensorboard_logs_stops_the_fit_in_one_line_and_the_advice_resumes_it(
    small_corpus, tmp_path, capsys
):
    """The run folder fills up while checkpoints still have room (a second, roomy filesystem on its checkpoints/):
    TensorBoard's event file is what fails, written by its background thread and flushed by the fit."""
    root = tmp_path / "runs"
    assert run_main(fit_args(small_corpus, root, max_steps=3), capsys)[0] == 0
    run = root / "lightning_logs" / "version_0"
    shutil.move(run, tmp_path / "saved")
    with small_filesystem(run, "1m") as disk:
        copy_onto(tmp_path / "saved", disk)
        shutil.rmtree(disk / "checkpoints")
        with small_filesystem(disk / "checkpoints", "64m") as checkpoints:
            copy_onto(tmp_path / "saved" / "checkpoints", checkpoints)
            filler = fill(disk, leave_bytes=2 * PAGE)  # a few dozen steps of events
            args = fit_args(small_corpus, root, "--ckpt_path", "last", "--checkpoint.save_top_k", "1", max_steps=90)
            status, _, err = run_main(args, capsys)
            assert status == 2 and "Traceback" not in err and "Exception" not in err, err[-3000:]
            assert last_line(err) == (
                f"error: could not write the TensorBoard logs in {run} (No space left on device): free disk space on "
                f"the filesystem of {run}, then resume with --ckpt_path last (the checkpoints written so far are kept)"
            )
            saved = read_checkpoint(checkpoints / "last.ckpt")["global_step"]
            assert 3 < saved < 90  # it trained, and saved, until the logs failed
            assert read_scalars(run)["train/loss"][0][0] == 0  # the events written before are readable
            filler.unlink()  # the advice: free disk space, then resume with --ckpt_path last
            status, _, err = run_main(args, capsys)
            assert status == 0, err[-3000:]
            assert read_checkpoint(checkpoints / "last.ckpt")["global_step"] == 90
            assert [step for step, _ in read_scalars(run)["train/loss"]] == list(range(90))  # no gap, no step twice


def test_no_room_for_metrics_json_is_one_line_and_earlier_evaluations_are_kept(trained, tmp_path, capsys):
    run = trained["checkpoint"].parent.parent
    args = ["validate", "--config", "cpu.yaml", "--ckpt_path", str(trained["checkpoint"]), "--data.path",
            str(trained["corpus"]), "--data.cache_dir", str(trained["root"] / "data"),
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert run_main(args, capsys)[0] == 0
    earlier = sorted(run.glob("eval/validate-last-*/metrics.json"))[-1]
    before = earlier.read_bytes()
    shutil.move(run / "eval", tmp_path / "eval")
    try:
        with small_filesystem(run / "eval", "1m") as disk:
            copy_onto(tmp_path / "eval", disk)
            filler = fill(disk, leave_bytes=PAGE)  # room for the evaluation's config.yaml, none for metrics.json
            status, _, err = run_main(args, capsys)
            assert status == 2 and "Traceback" not in err, err[-3000:]
            new = sorted(disk.glob("validate-last-*"), key=lambda path: int(path.name.rsplit("-", 1)[1]))[-1]
            assert last_line(err) == (
                f"error: could not write {new / 'metrics.json'} (No space left on device): free disk space on the "
                f"filesystem of {new}, then run validate again"
            )
            assert (disk / earlier.parent.name / "metrics.json").read_bytes() == before
            assert not list(new.glob(".*.tmp")) and not (new / "metrics.json").exists()
            filler.unlink()  # the advice
            status, _, err = run_main(args, capsys)
            assert status == 0, err[-3000:]
            newest = sorted(disk.glob("validate-last-*"), key=lambda path: int(path.name.rsplit("-", 1)[1]))[-1]
            assert json.loads((newest / "metrics.json").read_text())["metrics"]["val/loss"] > 0
            saved = tmp_path / "eval_after"
            shutil.copytree(disk, saved)
    finally:
        if (tmp_path / "eval_after").exists():
            shutil.rmtree(run / "eval", ignore_errors=True)
            shutil.move(tmp_path / "eval_after", run / "eval")


def test_a_disk_that_fills_during_predict_keeps_whole_lines_in_predictions_jsonl(trained, tmp_path, capsys):
    prompts = json.dumps([f"Line {i}" for i in range(40)])
    args = ["predict", "--config", "cpu.yaml", "--ckpt_path", str(trained["checkpoint"]), "--data.prompts", prompts,
            "--data.batch_size", "4", "--sampling.max_new_tokens", "300", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path / "out")]  # fmt: skip
    shutil.copytree(trained["checkpoint"].parent.parent, tmp_path / "run")  # predictions go into the run's eval/
    args[4] = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    with small_filesystem(tmp_path / "run" / "eval", "1m") as disk:
        filler = fill(disk, leave_bytes=3 * PAGE)  # config.yaml, then a few batches of predictions
        status, _, err = run_main(args, capsys)
        assert status == 2 and "Traceback" not in err, err[-3000:]
        written = disk / "predict-last-1" / "predictions.jsonl"
        line = last_line(err)
        assert line.startswith(f"error: could not write {written} (No space left on device): free disk space on")
        records = [json.loads(line) for line in written.read_text().splitlines()]  # every line whole
        assert 0 < len(records) < 40
        assert line.endswith(f"then run predict again; {written} keeps the {len(records)} completions written before")
        filler.unlink()  # the advice
        status, _, err = run_main(args, capsys)
        assert status == 0, err[-3000:]
        assert len((disk / "predict-last-2" / "predictions.jsonl").read_text().splitlines()) == 40


@pytest.mark.parametrize("export_format", ["trickster", "hf", "gguf"])
def test_a_full_disk_during_export_is_one_line_and_an_earlier_export_is_kept(trained, tmp_path, capsys, export_format):
    args = ["export", "--ckpt_path", str(trained["checkpoint"]), "--format", export_format]
    with small_filesystem(tmp_path / "disk", "2m") as disk:
        out = disk / "exported"
        assert run_main([*args, "--out", str(out)], capsys)[0] == 0
        earlier = {path.name: path.read_bytes() for path in out.iterdir()}
        filler = fill(disk, leave_bytes=16 * PAGE)  # less than the model's weights (88 KB in float32)
        status, _, err = run_main([*args, "--out", str(out)], capsys)
        assert status == 2 and "Traceback" not in err, err[-3000:]
        assert last_line(err) == (
            f"error: could not write the export to {out} (No space left on device): free disk space on the filesystem "
            f"of {out}, then run export again (or pass --out on a disk with room); any earlier export in {out} is "
            "left as it was"
        )
        assert {path.name: path.read_bytes() for path in out.iterdir()} == earlier  # no partial file, no staging
        status, _, err = run_main([*args, "--out", str(disk / "new")], capsys)  # an export it creates is removed
        assert status == 2 and not (disk / "new").exists()
        status, _, _ = run_main([*args, "--out", str(tmp_path / "roomy")], capsys)  # the advice: --out with room
        assert status == 0 and sorted(path.name for path in (tmp_path / "roomy").iterdir()) == sorted(earlier)
        filler.unlink()  # the advice: free disk space, run it again
        assert run_main([*args, "--out", str(out)], capsys)[0] == 0


def test_a_full_disk_under_plot_is_one_line_and_an_earlier_image_is_kept(trained, tmp_path, capsys):
    run = trained["checkpoint"].parent.parent
    with small_filesystem(tmp_path / "disk", "1m") as disk:
        image = disk / "curves.png"
        assert run_main(["plot", str(run), "--output", str(image)], capsys)[0] == 0
        earlier = image.read_bytes()
        filler = fill(disk, leave_bytes=PAGE)
        status, _, err = run_main(["plot", str(run), "--output", str(image)], capsys)
        assert status == 2 and "Traceback" not in err, err[-3000:]
        assert last_line(err) == (
            f"error: could not write {image} (No space left on device): free disk space on the filesystem of {disk}, "
            "then run plot again; any earlier curves.png is left as it was"
        )
        assert image.read_bytes() == earlier and sorted(path.name for path in disk.iterdir()) == [
            "curves.png", "filler.bin",
        ]  # fmt: skip
        filler.unlink()  # the advice
        assert run_main(["plot", str(run), "--output", str(image)], capsys)[0] == 0
        assert image.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def run_with_stdout(args: list[str], stdout: Path) -> subprocess.CompletedProcess:
    """The CLI in a child process whose standard output is `stdout` (e.g. /dev/full, a disk with no room left)."""
    with stdout.open("w") as out:
        return subprocess.run(
            [sys.executable, "-m", "lightning_trickster", *args], stdout=out, stderr=subprocess.PIPE, text=True,
            env=child_environment(), timeout=300,
        )  # fmt: skip


@pytest.mark.parametrize("command", ["fit", "predict"])
def test_standard_output_on_a_full_device_is_one_line_and_the_advice_works(trained, tmp_path, command):
    if command == "fit":  # the plain status lines go to standard output when it is not a terminal
        args = fit_args(trained["corpus"], tmp_path / "runs", "--trainer.enable_progress_bar", "true", max_steps=3)
    else:
        args = ["predict", "--config", "cpu.yaml", "--ckpt_path", str(trained["checkpoint"]),
                "--trainer.default_root_dir", str(tmp_path), "--data.prompts", '["Line"]']  # fmt: skip
    result = run_with_stdout(args, Path("/dev/full"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert last_line(result.stderr) == (
        "error: could not write to standard output (No space left on device): redirect it to a file on a disk with "
        "room, or to /dev/null, then run the command again"
        + (" (a fit that saved a last.ckpt goes on from it with --ckpt_path last)" if command == "fit" else "")
        + "; the files the command wrote are kept"
    )
    result = run_with_stdout(args, tmp_path / "out.txt")  # the advice
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out.txt").read_text().strip()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
