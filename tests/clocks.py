"""A clock the tests drive, for runs bounded by --trainer.max_time: schedules that follow time are tested without
sleeping and give the same steps on any machine."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Timer


class SteppedTimer(Timer):
    """Lightning's Timer (what --trainer.max_time creates: it stops the run and keeps its count in checkpoints) on a
    clock that advances by `seconds_per_step` as each training batch starts, so a budget of `duration` lasts exactly
    duration / seconds_per_step steps."""

    def __init__(self, duration: str, seconds_per_step: float) -> None:
        super().__init__(duration=duration, verbose=False)
        self.seconds_per_step = seconds_per_step
        self.elapsed = 0.0

    def time_elapsed(self, stage: str = "train") -> float:
        return self.elapsed

    def on_train_batch_start(self, *args: Any) -> None:
        self.elapsed += self.seconds_per_step

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.elapsed = state_dict["time_elapsed"]["train"]
