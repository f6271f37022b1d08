"""Real faults, not simulated ones: a filesystem that really fills up during a checkpoint save and during prepare, and a
second real process holding a lock. Each ends in one line naming the problem and the fix, keeps the previous good
state, and the fix it names is then done and works."""

import json
import shutil
import socket
import sys

import pytest
import torch
from conftest import TINY_SHAKESPEARE, fit_args
from faults import run_cli
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


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


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


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
