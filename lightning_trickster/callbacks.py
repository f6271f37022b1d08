"""Callbacks: the start-of-run summary and the predict writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info


class RunSummary(pl.Callback):
    """Prints what a fit is about to do: device, exact parameter counts, data and batch sizes."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        counts = pl_module.model.parameter_breakdown()
        cfg = pl_module.model.config
        data = trainer.datamodule
        micro_batch = data.hparams.batch_size
        global_batch = micro_batch * trainer.accumulate_grad_batches * trainer.world_size
        lines = [
            f"device: {trainer.strategy.root_device} x {trainer.world_size} ({trainer.precision} precision)",
            f"model: {cfg.num_layers} layers, hidden {cfg.hidden_dim}, {cfg.num_heads} heads, mlp {cfg.mlp_dim}, "
            f"context {cfg.max_seq_len}, vocab {cfg.vocab_size}",
            f"parameters: {counts['total']:,} (embedding {counts['embedding']:,}, output {counts['output']:,}, "
            f"{cfg.num_layers} blocks x {counts['per_block']:,} = attention {counts['attention_per_block']:,} "
            f"+ MLP {counts['mlp_per_block']:,} + norms {counts['norms_per_block']:,}, final norm "
            f"{counts['final_norm']:,})",
            f"data: {data.corpus_path} ({data.tokenizer.name} tokenizer), train {len(data.train_tokens):,} / "
            f"val {len(data.val_tokens):,} tokens",
            f"batch: {micro_batch} windows per device x {trainer.accumulate_grad_batches} accumulation x "
            f"{trainer.world_size} devices = {global_batch} windows = {global_batch * cfg.max_seq_len:,} tokens "
            f"per optimizer step",
            f"steps: {trainer.max_steps:,}, logs in {trainer.log_dir}",
        ]
        rank_zero_info("\n".join(lines))


class PredictionWriter(BasePredictionWriter):
    """Prints each completion and appends it as a JSON line to predictions.jsonl in the run's log dir."""

    def __init__(self, filename: str = "predictions.jsonl") -> None:
        super().__init__(write_interval="batch")
        self.filename = filename
        self.path: Optional[Path] = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path = Path(trainer.log_dir or trainer.default_root_dir) / self.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Optional[Sequence[int]],
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        hp = pl_module.hparams
        completion = trainer.datamodule.tokenizer.decode(prediction["tokens"][0])
        record = {
            "prompt": prediction["prompt"],
            "completion": completion,
            "settings": {k: hp[k] for k in ("max_new_tokens", "temperature", "top_k", "top_p")},
            "checkpoint": trainer.ckpt_path,
            "step": pl_module.checkpoint_step,
        }
        print(f"--- {prediction['prompt']!r}\n{prediction['prompt']}{completion}", flush=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
