"""Tiny checkpoints, one per tokenizer, for the export tests: each made once per test session by a real `fit`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import fit_args

from lightning_trickster.checkpoint import TrainedModel, load_trained_model
from lightning_trickster.cli import main
from lightning_trickster.model import NanoTrickster

TOKENIZERS = ("char", "byte", "bpe")

CORPUS = "".join(
    f"Line {i}: the quick brown fox jumps over the lazy dog; ¿naïve? {i * 7 % 13} birds sing.\n" for i in range(250)
)
"""Enough text for 32-token windows, with a few characters beyond ASCII (multi-byte in UTF-8)."""

_made: dict[str, Path] = {}


def tiny_checkpoint(tokenizer: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last.ckpt of a 3-step fit of the tiny test model with this tokenizer (made on first use)."""
    if tokenizer not in _made:
        root = tmp_path_factory.mktemp(f"export-{tokenizer}")
        corpus = root / "corpus.txt"
        corpus.write_text(CORPUS, encoding="utf-8")
        extra = ["--data.tokenizer", tokenizer] + (["--data.vocab_size", "300"] if tokenizer == "bpe" else [])
        main(fit_args(corpus, root, "-q", *extra, max_steps=3))
        _made[tokenizer] = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    return _made[tokenizer]


def sharpened(trained: TrainedModel, seed: int = 0, **config_changes) -> TrainedModel:
    """The checkpoint's tokenizer and shape (with config_changes) holding random weights large enough (std 0.3) that
    its logits span several units. A 3-step model's are all near zero: a wrong RoPE layout or a missing norm would
    change them by less than the tolerances the tests check."""
    config = dataclasses.replace(trained.model.config, **config_changes)
    model = NanoTrickster(config)
    draw = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.3, generator=draw)
            else:  # norm weights: away from 1, so a norm that is left out or misplaced shows
                parameter.uniform_(0.5, 1.5, generator=draw)
    return dataclasses.replace(trained, model=model.eval())


def load(tokenizer: str, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return load_trained_model(tiny_checkpoint(tokenizer, tmp_path_factory))
