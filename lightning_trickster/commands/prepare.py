"""`prepare`: tokenize a corpus once into memory-mapped tokens, as `fit` does by itself when the copy is missing."""

from __future__ import annotations

import torch

from lightning_trickster.commands.fit_config import FitConfig


def prepare(fit_config: FitConfig) -> None:
    """Tokenize the configured corpus once into memory-mapped token files (reused until the corpus, tokenizer or
    split change; fit prepares a missing or stale copy by itself) and print what was prepared and where.

    Args:
        fit_config: the configuration, read as fit reads it: --data.path (a file, a directory or a quoted glob),
            --data.tokenizer (byte, char or bpe with --data.vocab_size N), --data.train_fraction, ...
    """
    with torch.device("meta"):  # only the data module is used; the model's weights take no memory
        _, data = fit_config.instantiate()
    print(f"prepared: {data.describe_prepared()}", flush=True)
