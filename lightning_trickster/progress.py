"""What a fit shows while it runs: a progress bar counted in optimizer steps with the metrics that matter on a line
of their own, one line per validation that stays in the scroll-back, and a closing summary (also with -q).

When stdout is not a terminal (nohup, SLURM, CI, `> log`) the same lines are written as plain text instead: no bars,
no carriage-return redraws, no escape codes; the status line every log_every_n_steps, each line flushed as written.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.utilities import rank_zero_info

from lightning_trickster.module import tokens_per_optimizer_step


def output_is_terminal(stream: Any = None) -> bool:
    """Whether stream (default: sys.stdout, looked up now) is a terminal, where bars can redraw in place."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def use_line_buffered_output() -> None:
    """Make a stdout that is not a terminal line-buffered, as a terminal's is. Python buffers a file or pipe in
    blocks of several KB, so a SLURM or nohup log would lag minutes behind the run; the front door calls this first.
    (stderr is line-buffered already.) A stdout that cannot be reconfigured (replaced by a test harness) is left."""
    if output_is_terminal():
        return
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):  # closed or detached
            reconfigure(line_buffering=True)


def short_number(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def best_val_loss(trainer: pl.Trainer) -> float | None:
    """The lowest val/loss so far: the checkpoint callback's best (kept across resumes) or the latest validation's,
    which that callback may not have seen yet."""
    scores = []
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.monitor == "val/loss" and callback.best_model_score:
        scores.append(float(callback.best_model_score))
    if "val/loss" in trainer.callback_metrics:
        scores.append(float(trainer.callback_metrics["val/loss"]))
    return min(scores, default=None)


def status_line(trainer: pl.Trainer) -> str:
    """The latest logged metrics, short enough for an 80-column terminal: loss, val loss, lr, tokens/s, grad norm."""
    metrics = trainer.callback_metrics
    parts = []
    if "train/loss" in metrics:
        parts.append(f"loss {float(metrics['train/loss']):.3f}")
    if "val/loss" in metrics:
        parts.append(f"val {float(metrics['val/loss']):.3f} (best {best_val_loss(trainer):.3f})")
    if "train/lr" in metrics:
        parts.append(f"lr {float(metrics['train/lr']):.1e}")
    if "train/tokens_per_sec" in metrics:
        parts.append(f"{short_number(float(metrics['train/tokens_per_sec']))} tok/s")
    if "train/grad_norm" in metrics:
        parts.append(f"grad {float(metrics['train/grad_norm']):.2f}")
    return "  ".join(parts)


def steps_so_far(trainer: pl.Trainer) -> str:
    """`N/MAX`, or `N` when a time budget rather than --trainer.max_steps bounds the run."""
    return f"{trainer.global_step}/{trainer.max_steps}" if trainer.max_steps > 0 else f"{trainer.global_step}"


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counted in optimizer steps out of trainer.max_steps (right after a resume too), with the
    metrics on a status line below the bar instead of squeezed into it (the step format shows no postfix, so no
    v_num).

    Plain (by default: whenever stdout is not a terminal): no bars at all; the status line is printed as
    `step N/MAX: ...` every trainer.log_every_n_steps optimizer steps, and lines written above the bars (a
    validation's) are printed as they are, each flushed."""

    STEP_FORMAT = "step {n_fmt}/{total_fmt} |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]"
    """The training bar's; the sanity-check, validation and predict bars keep Lightning's BAR_FORMAT."""

    def __init__(self, plain: bool | None = None) -> None:
        """Args:
        plain: plain lines instead of bars; None: when stdout is not a terminal (decided as each bar starts).
        """
        super().__init__()
        self.status: Tqdm | None = None
        self._plain = plain
        self._last_printed_step = -1

    @property
    def plain(self) -> bool:
        return self._plain if self._plain is not None else not output_is_terminal()

    def init_sanity_tqdm(self) -> Tqdm:
        return Tqdm(disable=True) if self.plain else super().init_sanity_tqdm()

    def init_train_tqdm(self) -> Tqdm:
        if self.plain:
            return Tqdm(disable=True)
        trainer = self.trainer
        # After a resume the bar starts where the run is, and so does its ETA.
        return Tqdm(
            total=trainer.max_steps if trainer.max_steps > 0 else None, initial=trainer.global_step,
            position=2 * self.process_position, disable=self.is_disabled, leave=True, dynamic_ncols=True,
            file=sys.stdout, smoothing=0, bar_format=self.STEP_FORMAT,
        )  # fmt: skip

    def init_validation_tqdm(self) -> Tqdm:
        if self.plain:
            return Tqdm(disable=True)
        fitting = self.trainer.state.fn == "fit"
        return Tqdm(
            desc=self.validation_description,
            position=2 * self.process_position + (2 if fitting else 0),  # below the training bar and its status
            disable=self.is_disabled, leave=not fitting, dynamic_ncols=True, file=sys.stdout,
            bar_format=self.BAR_FORMAT,
        )  # fmt: skip

    def init_test_tqdm(self) -> Tqdm:
        return Tqdm(disable=True) if self.plain else super().init_test_tqdm()

    def init_predict_tqdm(self) -> Tqdm:
        return Tqdm(disable=True) if self.plain else super().init_predict_tqdm()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_progress_bar = self.init_train_tqdm()
        if self.plain:
            return
        self.status = Tqdm(
            position=2 * self.process_position + 1, bar_format="{desc}", leave=True, disable=self.is_disabled,
            dynamic_ncols=True, file=sys.stdout,
        )  # fmt: skip

    def on_train_epoch_start(self, *_: Any) -> None:
        pass  # one endless epoch of random windows: the bar counts optimizer steps over the whole fit

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any) -> None:
        if self.plain:
            self._print_status(trainer)
            return
        bar = self.train_progress_bar
        if bar.n != trainer.global_step and self._should_update(trainer.global_step, bar.total):
            bar.n = trainer.global_step
            bar.refresh()
            self.status.set_description_str(status_line(trainer))

    def _print_status(self, trainer: pl.Trainer) -> None:
        """The plain status line, once per logging step (not per micro-batch of an accumulated step)."""
        step, every = trainer.global_step, trainer.log_every_n_steps
        if self.is_enabled and every > 0 and step % every == 0 and step != self._last_printed_step:
            self._last_printed_step = step
            if trainer.is_global_zero:
                self.write(f"step {steps_so_far(trainer)}: {status_line(trainer)}")

    def on_train_epoch_end(self, *_: Any) -> None:
        pass  # the status line, not a postfix, shows the metrics; the bar closes at the end of training

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if self.status is not None:
            self.status.set_description_str(status_line(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_progress_bar.n = trainer.global_step
        self.train_progress_bar.refresh()
        super().on_train_end(trainer, pl_module)
        if self.status is not None:
            self.status.close()

    def write(self, line: str) -> None:
        """A line above the bars, kept in the scroll-back (plain: printed and flushed)."""
        if self.plain:
            print(line, file=sys.stdout, flush=True)
        else:
            Tqdm.write(line, file=sys.stdout)


class RunReport(pl.Callback):
    """The lines a fit leaves behind: one per validation (step, val loss, best so far, elapsed) and, with the
    progress bar off, one per logging step; at the end one summary line, printed even with -q."""

    def __init__(self) -> None:
        self._started = 0.0
        self._first_step = 0
        self._last_reported = -1

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._first_step = trainer.global_step  # a resumed run's step is restored by now, not yet at on_fit_start

    def _say(self, trainer: pl.Trainer, line: str) -> None:
        bar = trainer.progress_bar_callback
        if isinstance(bar, StepProgressBar) and bar.is_enabled:
            if trainer.is_global_zero:
                bar.write(line)
        else:
            rank_zero_info(line)

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        every = trainer.log_every_n_steps
        bar = trainer.progress_bar_callback
        no_bar = bar is None or not bar.is_enabled
        if no_bar and every > 0 and trainer.global_step % every == 0 and trainer.global_step != self._last_reported:
            self._last_reported = trainer.global_step
            rank_zero_info(f"step {steps_so_far(trainer)}: {status_line(trainer)}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking or "val/loss" not in trainer.callback_metrics:
            return
        val_loss, best = float(trainer.callback_metrics["val/loss"]), best_val_loss(trainer)
        elapsed = duration(time.perf_counter() - self._started)
        self._say(trainer, f"step {trainer.global_step}: val loss {val_loss:.4f} (best {best:.4f}), {elapsed} elapsed")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds = time.perf_counter() - self._started
        data = trainer.datamodule.hparams
        tokens = (trainer.global_step - self._first_step) * tokens_per_optimizer_step(
            data.batch_size, pl_module.model.config.max_seq_len, trainer.accumulate_grad_batches, trainer.world_size
        )
        best = best_val_loss(trainer)
        callback = trainer.checkpoint_callback
        best_path = getattr(callback, "best_model_path", "") if isinstance(callback, ModelCheckpoint) else ""
        best_text = (
            "no validation" if best is None else f"best val loss {best:.4f}" + (f" {best_path}" if best_path else "")
        )
        tokens_per_sec = tokens / seconds if seconds > 0 else math.nan
        # print, not logging: -q silences Lightning's info messages, and this line is what a quiet run leaves.
        print(
            f"fit done: {steps_so_far(trainer)} steps, {best_text}, {duration(seconds)} for "
            f"{tokens:,} tokens ({short_number(tokens_per_sec)} tokens/s)",
            flush=True,
        )
