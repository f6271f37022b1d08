"""A clock the tests drive, for runs bounded by --trainer.max_time: schedules that follow time are tested without
sleeping and give the same steps on any machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Timer


class SteppedTimer(Timer):
    """Lightning's Timer (what --trainer.max_time creates: it stops the run and keeps its count in checkpoints) on a
    clock that advances by `seconds_per_step` as each training batch starts, so a budget of `duration` lasts exactly
    duration / seconds_per_step steps. Under DDP each rank's clock runs (1 + rank_drift * rank) times as fast, as no
    two processes' clocks agree exactly."""

    def __init__(self, duration: str, seconds_per_step: float, rank_drift: float = 0.0) -> None:
        super().__init__(duration=duration, verbose=False)
        self.seconds_per_step = seconds_per_step
        self.rank_drift = rank_drift
        self.elapsed = 0.0

    def time_elapsed(self, stage: str = "train") -> float:
        return self.elapsed

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.elapsed += self.seconds_per_step * (1 + self.rank_drift * trainer.global_rank)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.elapsed = state_dict["time_elapsed"]["train"]


class LearningRates(pl.Callback):
    """Writes the learning rate each optimizer step of this process used to lr-rank<N>.json in the run's root."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_end(self, trainer: pl.Trainer, *args: Any) -> None:
        path = Path(trainer.default_root_dir) / f"lr-rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.rates))
