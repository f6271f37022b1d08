"""Training runs on disk: root/lightning_logs/version_N holds a fit's TensorBoard events and checkpoints/; what
validate, test and predict write goes to an eval/ folder inside the evaluated run, where nothing takes it for a run."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from lightning_trickster.errors import TricksterError


def training_runs(root: Path) -> list[Path]:
    """The run folders under root/lightning_logs, oldest first (by modification time)."""
    return sorted(root.glob("lightning_logs/version_*"), key=lambda run: run.stat().st_mtime)


def newest_last_checkpoint(root: Path) -> Path:
    """The last.ckpt of the most recently written run under root/lightning_logs (what `--ckpt_path last` means)."""
    candidates = list(root.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    if not candidates:
        raise TricksterError(
            f"--ckpt_path last: no run under {root / 'lightning_logs'} has checkpoints/last.ckpt; "
            "train with fit first, or pass a checkpoint file path"
        )
    return max(candidates, key=lambda path: path.stat().st_mtime)


def read_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series TensorBoard shows for a run folder: tag -> [(step, value)] in the order written. Events a
    resumed run purged (those logged after its checkpoint by the interrupted run) are not included."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # it reports the purge of orphaned events
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def evaluation_dir(command: str, ckpt_path: str | None, root: Path) -> Path:
    """A new folder for one evaluation's outputs: RUN/eval/COMMAND-CHECKPOINT-N inside the run that wrote the
    checkpoint, or root/eval/... for a checkpoint from elsewhere (or none)."""
    checkpoint = Path(ckpt_path) if ckpt_path else None
    in_a_run = checkpoint is not None and checkpoint.parent.name == "checkpoints"
    base = checkpoint.parent.parent if in_a_run else root
    name = f"{command}-{checkpoint.stem if checkpoint else 'untrained'}"
    return next(
        base / "eval" / f"{name}-{n}" for n in itertools.count(1) if not (base / "eval" / f"{name}-{n}").exists()
    )
