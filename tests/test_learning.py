"""End to end: the LightningModule, DataModule and Trainer really learn."""

from pathlib import Path

import lightning.pytorch as pl

from lightning_trickster import CorpusDataModule, NanoTricksterModule, SamplingSettings
from lightning_trickster.optim import Optimization


def test_tiny_model_overfits_a_short_text(tmp_path: Path):
    text = "First Citizen: Before we proceed any further, hear me speak.\n" * 40
    path = tmp_path / "short.txt"
    path.write_text(text)
    pl.seed_everything(0)
    data = CorpusDataModule(path=str(path), tokenizer="char", block_size=32, batch_size=16)
    model = NanoTricksterModule(
        vocab_size=data.vocab_size, hidden_dim=64, num_layers=2, num_heads=4, mlp_dim=128, max_seq_len=32,
        optimization=Optimization(learning_rate=3e-3, warmup_steps=10, weight_decay=0.0), compile=False,
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=150, val_check_interval=150, check_val_every_n_epoch=None,
        log_every_n_steps=10, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, gradient_clip_val=1.0,
    )  # fmt: skip
    trainer.fit(model, data)
    assert trainer.callback_metrics["train/loss"] < 0.5
    assert trainer.callback_metrics["val/loss"] < 0.5
    prompt = data.tokenizer.encode("First Citizen: ").unsqueeze(0)
    sample = model.model.generate(prompt, SamplingSettings(40, temperature=0))
    assert data.tokenizer.decode(sample[0]).startswith("First Citizen: Before we proceed any further")
