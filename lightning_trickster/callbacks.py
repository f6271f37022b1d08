"""Callbacks: the start-of-run summary, text samples during training and the predict writer."""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from tensorboard.plugins.text.summary_v2 import text_pb

from lightning_trickster.errors import InvalidConfigError, write_failure
from lightning_trickster.model import NanoTrickster
from lightning_trickster.module import time_budget, tokens_per_optimizer_step
from lightning_trickster.reliability import write_file_atomically


def full_parameter_counts(pl_module: pl.LightningModule) -> dict[str, int]:
    """The model's exact parameter breakdown, also when a sharded strategy holds only a slice of it here."""
    with torch.device("meta"):
        return NanoTrickster(pl_module.model.config).parameter_breakdown()


def accelerator_name(trainer: pl.Trainer) -> str:
    """cpu, cuda, tt, ...: what runs the steps (a tt strategy keeps the host copy of the model on the CPU)."""
    return type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()


class RunSummary(pl.Callback):
    """Prints what a fit is about to do: device, exact parameter counts, data and batch sizes."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        counts = full_parameter_counts(pl_module)
        cfg = pl_module.model.config
        data = trainer.datamodule
        micro_batch = data.hparams.batch_size
        accumulation = trainer.accumulate_grad_batches
        devices = trainer.num_devices * trainer.num_nodes
        # A strategy can drive several devices from one process (tt_ddp: one process, a mesh of chips): then each
        # process's micro-batch is split over its devices.
        devices_per_process = devices // trainer.world_size
        global_batch = micro_batch * accumulation * trainer.world_size
        tokens = tokens_per_optimizer_step(micro_batch, cfg.max_seq_len, accumulation, trainer.world_size)
        if devices_per_process > 1:
            batch_line = (
                f"batch: {micro_batch} windows per micro-batch = {micro_batch // devices_per_process} per device x "
                f"{devices_per_process} devices per process x {trainer.world_size} processes x {accumulation} "
                f"accumulation = {global_batch} windows = {tokens:,} tokens per optimizer step"
            )
        else:
            batch_line = (
                f"batch: {micro_batch} windows per device x {accumulation} accumulation x {trainer.world_size} "
                f"devices = {global_batch} windows = {tokens:,} tokens per optimizer step"
            )
        lines = [
            f"device: {accelerator_name(trainer)} x {devices} ({trainer.precision} precision)",
            f"model: {cfg.num_layers} layers, hidden {cfg.hidden_dim}, {cfg.num_heads} heads, mlp {cfg.mlp_dim}, "
            f"context {cfg.max_seq_len}, vocab {cfg.vocab_size}",
            f"parameters: {counts['total']:,} (embedding {counts['embedding']:,}, output {counts['output']:,}, "
            f"{cfg.num_layers} blocks x {counts['per_block']:,} = attention {counts['attention_per_block']:,} "
            f"+ MLP {counts['mlp_per_block']:,} + norms {counts['norms_per_block']:,}, final norm "
            f"{counts['final_norm']:,})",
            f"data: {data.corpus_path} ({data.tokenizer.name} tokenizer, "
            f"{data.prepared.characters_per_token:.2f} characters per token), train {len(data.train_tokens):,} / "
            f"val {len(data.val_tokens):,} tokens",
            batch_line,
            steps_line(trainer)
            + ("fast_dev_run: no logs or checkpoints" if trainer.fast_dev_run else f"logs in {trainer.log_dir}"),
        ]
        rank_zero_info("\n".join(lines))


def steps_line(trainer: pl.Trainer) -> str:
    """How long the run trains: its steps, or the time budget they must fit in."""
    budget = time_budget(trainer)
    if budget is None:
        return f"steps: {trainer.max_steps:,}, "
    remaining = timedelta(seconds=round(budget.time_remaining()))
    return f"steps: as many as {remaining} of training allows (--trainer.max_time; the schedule follows the clock), "


def run_hyperparameters(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
    """What distinguishes one run from another: model and data settings, size and batch arithmetic."""
    return {
        "model": {k: v for k, v in pl_module.hparams.items() if not k.startswith("_")},
        "data": {k: v for k, v in trainer.datamodule.hparams.items() if not k.startswith("_") and k != "vocab"},
        "parameters": full_parameter_counts(pl_module)["total"],
        "trainer": {
            "max_steps": trainer.max_steps,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "world_size": trainer.world_size,
            "precision": trainer.precision,
            "gradient_clip_val": trainer.gradient_clip_val,
        },
    }


class MetricsWriter(pl.Callback):
    """validate/test: writes the metrics as metrics.json into the evaluation's folder and says where. An evaluation
    that scored no batch at all (--trainer.limit_val_batches 0: Lightning skips it without a word) is an error, not
    a success with no metrics."""

    def __init__(self) -> None:
        self.written = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.written = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._write(trainer, pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        stage = getattr(stage, "value", stage)  # Lightning passes a TrainerFn
        if stage not in ("validate", "test") or self.written or not trainer.is_global_zero:
            return
        option = "limit_val_batches" if stage == "validate" else "limit_test_batches"
        raise InvalidConfigError(
            f"{stage} scored no batches (--trainer.{option} {getattr(trainer, option)}), so it wrote no metrics: "
            f"pass a --trainer.{option} above 0, or leave it out"
        )

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.written = True
        if not trainer.is_global_zero:
            return
        path = Path(trainer.log_dir or trainer.default_root_dir) / "metrics.json"
        record = {
            "metrics": {name: float(value) for name, value in trainer.callback_metrics.items()},
            "checkpoint": trainer.ckpt_path,
            "step": pl_module.checkpoint_step,
        }
        try:
            write_file_atomically(path, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
        except OSError as err:
            command = trainer.state.fn.value if trainer.state.fn else "the evaluation"
            raise write_failure(path, err, path.parent, f"run {command} again") from None
        rank_zero_info(f"metrics written to {path}")


class PredictionWriter(pl.Callback):
    """Prints each completion and appends it as a JSON line to predictions.jsonl in the evaluation's folder, as each
    batch of prompts is done (a plain callback: Lightning's BasePredictionWriter would ask for batch indices that a
    batch of prompts does not have)."""

    def __init__(self, filename: str = "predictions.jsonl") -> None:
        self.filename = filename
        self.path: Path | None = None
        self.written = 0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path = Path(trainer.log_dir or trainer.default_root_dir) / self.filename
        self.written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_failure(self.path, err, self.path.parent, "run predict again") from None

    def on_predict_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: dict[str, Any], *_: Any
    ) -> None:
        lines = []
        for prompt, completion in zip(prediction["prompts"], prediction["completions"], strict=True):
            print(f"--- {prompt!r}\n{prompt}{completion}\n", flush=True)
            record = {
                "prompt": prompt,
                "completion": completion,
                "settings": asdict(pl_module.sampling),
                "checkpoint": trainer.ckpt_path,
                "step": pl_module.checkpoint_step,
            }
            lines.append(json.dumps(record) + "\n")
        self._append("".join(lines).encode("utf-8"), len(lines))

    def _append(self, data: bytes, records: int) -> None:
        """Append whole lines or nothing: a write a full disk cut short is taken back, so the file holds only the
        complete records written before."""
        fd = None
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            size = os.fstat(fd).st_size
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
            except OSError:
                os.ftruncate(fd, size)
                raise
        except OSError as err:
            kept = f"; {self.path} keeps the {self.written} completions written before" if self.written else ""
            raise write_failure(self.path, err, self.path.parent, f"run predict again{kept}") from None
        finally:
            if fd is not None:
                os.close(fd)
        self.written += records

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rank_zero_info(f"predictions written to {self.path}")


class SampleText(pl.Callback):
    """Shows what the model writes as it learns.

    At the start of a fresh fit it logs the random baseline: the untrained model's loss on the whole
    validation split (``baseline/val_loss_at_init``) beside ln(vocab) (``baseline/uniform_loss``), and one
    sample. Then every ``every_n_steps`` optimizer steps and at the end it completes each prompt, prints
    the text and logs it to TensorBoard as ``samples/<prompt>``.
    """

    def __init__(self, prompts: Sequence[str] = ("\n",), every_n_steps: int = 500):
        """
        Args:
            prompts: text to continue (default: a line break, which any corpus has); each is sampled with the
                --sampling.* settings.
            every_n_steps: optimizer steps between samples (0 disables sampling during training).
        """
        if every_n_steps < 0:
            raise InvalidConfigError(f"samples.every_n_steps must be >= 0, got {every_n_steps}")
        if not prompts or any(not prompt for prompt in prompts):
            raise InvalidConfigError("samples.prompts must hold at least one non-empty prompt")
        self.prompts = list(prompts)
        self.every_n_steps = every_n_steps
        self._last_sampled_step: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if isinstance(trainer.strategy, FSDPStrategy):
            rank_zero_info(
                "no random baseline or samples under FSDP (the weights are sharded): use predict on a checkpoint"
            )
        for prompt in self.prompts:  # fail now, not at the first sample
            try:
                trainer.datamodule.tokenizer.encode(prompt)
            except InvalidConfigError as err:
                raise InvalidConfigError(f"--samples.prompts: {err}") from None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step > 0 or isinstance(trainer.strategy, FSDPStrategy):
            # A resumed run already logged its baseline; under FSDP the sharded model only runs inside
            # Lightning's own steps (see on_fit_start).
            return
        vocab_size = pl_module.model.config.vocab_size
        val_loss_at_init = self._full_split_loss(trainer, pl_module)  # every process takes part
        if not trainer.is_global_zero:
            return
        baseline = {"baseline/val_loss_at_init": val_loss_at_init, "baseline/uniform_loss": math.log(vocab_size)}
        hyperparameters = run_hyperparameters(trainer, pl_module)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # val/loss at step 0 is the untrained model's: it makes val/loss the HPARAMS tab's metric.
                logger.log_hyperparams(hyperparameters, metrics={"val/loss": val_loss_at_init, **baseline}, step=0)
            else:
                logger.log_hyperparams(hyperparameters)
                logger.log_metrics(baseline, step=0)
        rank_zero_info(
            f"random baseline: val loss at init {val_loss_at_init:.4f} "
            f"(uniform guessing over {vocab_size} tokens: ln({vocab_size}) = {baseline['baseline/uniform_loss']:.4f})"
        )
        self._sample(trainer, pl_module, prompts=self.prompts[:1])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self._last_sampled_step:
            self._sample(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self._last_sampled_step:
            self._sample(trainer, pl_module)

    @staticmethod
    @torch.no_grad()
    def _full_split_loss(trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        """Mean per-token loss over the val split, or over the batches trainer.limit_val_batches leaves validation
        (fast_dev_run: one); each process scores its share and the sums are added."""
        was_training = pl_module.training
        pl_module.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=pl_module.device)  # summed loss, scored tokens
        batches = trainer.datamodule.val_dataloader()
        limit = trainer.limit_val_batches  # as Lightning reads it: an int counts batches, a float is a fraction
        count = min(len(batches), limit) if isinstance(limit, int) else int(len(batches) * limit)
        for inputs, targets in itertools.islice(batches, count):
            inputs, targets = inputs.to(pl_module.device), targets.to(pl_module.device)
            scored = (targets != -100).sum()
            if scored:
                _, loss = pl_module.model(inputs, targets)
                totals += torch.stack([loss.double() * scored, scored.double()])
        totals = trainer.strategy.reduce(totals, reduce_op="sum")
        pl_module.train(was_training)
        return (totals[0] / totals[1]).item()

    def _sample(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prompts: list[str] | None = None) -> None:
        self._last_sampled_step = trainer.global_step
        if (
            not trainer.is_global_zero
            or not pl_module.sampling.max_new_tokens
            or isinstance(trainer.strategy, FSDPStrategy)
        ):
            return  # under FSDP one process cannot run the sharded model alone (see on_fit_start)
        # The weights as the strategy holds them: a strategy that trains a copy on its device (tt) brings it to the
        # host here; for the others this copies the module's weights onto themselves.
        pl_module.load_state_dict(trainer.strategy.lightning_module_state_dict())
        tokenizer = trainer.datamodule.tokenizer
        generator = torch.Generator(device=pl_module.device).manual_seed(trainer.global_step)
        was_training = pl_module.training
        pl_module.eval()
        for prompt in prompts or self.prompts:
            tokens = tokenizer.encode(prompt).unsqueeze(0).to(pl_module.device)
            new_tokens = pl_module.model.generate(tokens, pl_module.sampling, generator=generator)[0, tokens.size(1) :]
            text = prompt + tokenizer.decode(new_tokens)
            rank_zero_info(f"--- sample at step {trainer.global_step} ---\n{text}\n")
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    # Markdown would swallow the line breaks of verse: log it as a code block.
                    tag = "samples/" + prompt.encode("unicode_escape").decode("ascii")
                    # SummaryWriter.add_text would append "/text_summary" to the tag.
                    summary = text_pb(tag, f"```\n{text}\n```")
                    logger.experiment._get_file_writer().add_summary(summary, trainer.global_step)
        pl_module.train(was_training)
