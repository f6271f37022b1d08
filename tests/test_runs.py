"""Run folders: one writer per run (a real second process holds the lock), and what `--ckpt_path last` finds."""

import os
import shutil
import signal
import socket
import time

import pytest
from conftest import fit_args
from realfaults import hold_lock_in_another_process

from lightning_trickster.cli import main
from lightning_trickster.errors import TricksterError
from lightning_trickster.runs import (
    RunLock,
    evaluation_dir,
    newest_last_checkpoint,
    run_folder_of,
    wait_for_a_later_event_file_name,
)


def hold_run_lock(run) -> "object":
    return hold_lock_in_another_process(
        f"from lightning_trickster.runs import RunLock\nlock = RunLock({str(run)!r}).acquire()"
    )


def test_a_second_writer_of_a_run_gets_one_line_naming_the_holder_and_goes_on_once_it_is_stopped(tmp_path):
    run = tmp_path / "lightning_logs" / "version_0"
    holder = hold_run_lock(run)
    try:
        with pytest.raises(TricksterError) as raised:
            RunLock(run).acquire()
        message = str(raised.value)
        assert message.startswith(
            f"run {run} is being written by process {holder.pid} on host {socket.gethostname()} (training this run, "
        )
        assert message.endswith("wait until that fit ends, or stop it, then run this command again")
        assert "\n" not in message
        holder.send_signal(signal.SIGTERM)  # the advice: stop it (or wait until it ends) ...
        holder.wait(timeout=30)
        with RunLock(run):  # ... then run this command again
            pass
    finally:
        holder.kill()


def test_the_run_lock_is_free_again_once_its_holder_releases_it_and_readers_are_never_blocked(tmp_path):
    run = tmp_path / "run"
    first = RunLock(run).acquire()
    with pytest.raises(TricksterError, match="is being written by process"):
        RunLock(run).acquire()  # another lock in the same process is refused too (flock is per open file)
    assert (run / RunLock.FILE).read_text()  # the holder's record is readable while held
    first.release()
    assert (run / RunLock.FILE).read_text() == ""  # the record is valid only while the lock is held
    with RunLock(run) as again:
        assert again.lock.held


def test_a_run_folder_that_cannot_be_a_directory_is_one_line(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the run folder should be")
    with pytest.raises(TricksterError, match=r"cannot lock run folder .*\(Not a directory\): it must be a directory"):
        RunLock(blocker / "version_0").acquire()
    blocker.unlink()
    blocker.mkdir()  # a directory you can write to
    RunLock(blocker / "version_0").acquire().release()


def test_evaluations_read_a_run_while_a_fit_holds_its_lock(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path, max_steps=3))
    checkpoint = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    holder = hold_run_lock(checkpoint.parent.parent)
    try:
        args = ["validate", "--config", "cpu.yaml", "--data.path", str(small_corpus), "--data.cache_dir",
                str(tmp_path / "data"), "--ckpt_path", str(checkpoint), "--trainer.enable_progress_bar",
                "false"]  # fmt: skip
        main(args)  # no exception: a reader takes no lock
        assert list((checkpoint.parent.parent / "eval").glob("validate-last-*"))
    finally:
        holder.kill()


def test_ckpt_path_last_finds_lightnings_hpc_checkpoints_too(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path, max_steps=3))
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert newest_last_checkpoint(tmp_path) == last and run_folder_of(last) == last.parent.parent
    hpc = tmp_path / "hpc_ckpt_1.ckpt"  # where Lightning's SLURM handler saves on SIGUSR1: default_root_dir
    shutil.copy2(last, hpc)
    later = time.time() + 5
    os.utime(hpc, (later, later))
    assert newest_last_checkpoint(tmp_path) == hpc
    assert run_folder_of(hpc) is None  # no run folder holds it: evaluations of it go under the root
    assert evaluation_dir("validate", str(hpc), tmp_path) == tmp_path / "eval" / "validate-hpc_ckpt_1-1"
    shutil.rmtree(tmp_path / "lightning_logs")
    assert newest_last_checkpoint(tmp_path) == hpc


def test_ckpt_path_last_without_any_checkpoint_names_both_places(tmp_path):
    with pytest.raises(TricksterError, match=r"no run under .*lightning_logs has checkpoints/last.ckpt \(nor has "):
        newest_last_checkpoint(tmp_path)


def test_a_run_resumed_in_the_same_second_writes_an_event_file_that_tensorboard_reads_last(tmp_path):
    # TensorBoard reads event files in name order, and the name starts with the second it was created in.
    interrupted = tmp_path / f"events.out.tfevents.{int(time.time())}.host.99999.0"
    interrupted.touch()
    (tmp_path / "events.out.tfevents.notanumber").touch()
    wait_for_a_later_event_file_name(tmp_path)
    resumed = tmp_path / f"events.out.tfevents.{int(time.time())}.host.1.0"  # a smaller PID sorts first
    assert sorted([resumed.name, interrupted.name])[-1] == resumed.name
