"""Mixed precision with gradient clipping: bf16 keeps the fused AdamW (nothing to unscale), fp16 takes the
implementation that can be clipped after unscaling. Lightning's CLI turns fp16 on a CPU into bf16, so fp16 is driven
here through its precision plugin, on the CPU, by the same code path a GPU takes."""

import lightning.pytorch as pl
import pytest
import torch
from conftest import fit_args
from lightning.pytorch.plugins.precision import MixedPrecision

from lightning_trickster import CorpusDataModule, NanoTricksterModule
from lightning_trickster.cli import main
from lightning_trickster.errors import InvalidConfigError
from lightning_trickster.optim import Optimization


def tiny_fit(corpus, precision: str, **module_args) -> NanoTricksterModule:
    data = CorpusDataModule(path=str(corpus), tokenizer="char", block_size=32, batch_size=4)
    model = NanoTricksterModule(
        vocab_size=data.vocab_size, hidden_dim=32, num_layers=2, num_heads=2, mlp_dim=64, max_seq_len=32,
        optimization=Optimization(warmup_steps=1, **module_args), compile=False,
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", plugins=[MixedPrecision(precision, "cpu")], gradient_clip_val=0.5, max_steps=3,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=2,
    )  # fmt: skip
    trainer.fit(model, data)
    assert trainer.global_step == 3
    return model


@pytest.mark.parametrize(("precision", "fused"), [("bf16-mixed", True), ("16-mixed", None)])
def test_mixed_precision_trains_with_gradient_clipping(precision, fused, small_corpus):
    model = tiny_fit(small_corpus, precision)
    assert all(group["fused"] is fused for group in model.trainer.optimizers[0].param_groups)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_fused_optimizer_asked_for_under_fp16_clipping_is_refused(small_corpus):
    with pytest.raises(InvalidConfigError, match="optimization.fused true cannot be clipped under 16-mixed"):
        tiny_fit(small_corpus, "16-mixed", fused=True)


def test_bf16_with_clipping_trains_from_the_command_line(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path, "--trainer.precision", "bf16-mixed", "--trainer.gradient_clip_val", "0.5"))
    checkpoint = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 6
