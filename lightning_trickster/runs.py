"""Training runs on disk: root/lightning_logs/version_N holds a fit's TensorBoard events and checkpoints/."""

from __future__ import annotations

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
