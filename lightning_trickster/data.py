"""ShakespeareDataModule: a text corpus, tokenized, split 90/10 by position, served as training windows."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.request
from itertools import count
from pathlib import Path
from typing import Any, Iterator, Optional

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from lightning_trickster.errors import DataError, InvalidConfigError
from lightning_trickster.tokenizer import ByteTokenizer, CharTokenizer, Tokenizer, TokenizerName

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def download_tiny_shakespeare(cache_dir: Path, attempts: int = 3, timeout_s: float = 30.0) -> Path:
    """Return the cached tiny Shakespeare file, downloading and verifying it first if needed.

    The file is downloaded to a temporary name in cache_dir and renamed only after its md5 matches,
    so an interrupted or corrupted download never becomes the cached copy.
    """
    target = cache_dir / "input.txt"
    if target.is_file() and _md5(target) == TINY_SHAKESPEARE_MD5:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    last_error: Optional[Exception] = None
    for attempt in range(attempts):
        fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=".input.txt.")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(TINY_SHAKESPEARE_URL, timeout=timeout_s) as resp:
                out.write(resp.read())
            if _md5(tmp) != TINY_SHAKESPEARE_MD5:
                raise OSError(f"md5 mismatch (expected {TINY_SHAKESPEARE_MD5})")
            tmp.replace(target)
            return target
        except OSError as err:  # URLError and timeouts are OSErrors
            last_error = err
            time.sleep(min(2**attempt, 5))
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(
        f"could not download tiny Shakespeare from {TINY_SHAKESPEARE_URL} ({last_error}); "
        f"save that file as {target} or pass --data.path /path/to/your.txt"
    )


class RandomWindows(IterableDataset):
    """Endless batches of random (input, target) windows from one token stream.

    Batch number i is drawn from a generator seeded by (seed, rank, i), so the sequence is
    reproducible, differs between ranks, and continues where it left off when started at a later i.
    """

    def __init__(self, tokens: torch.Tensor, block_size: int, batch_size: int, seed: int, rank: int, first_batch: int):
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.first_batch = first_batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        offsets = torch.arange(self.block_size + 1)
        generator = torch.Generator()
        # The DataLoader takes batches from its workers in turn, so worker w serves every num_workers-th batch.
        for batch_index in count(self.first_batch + worker_id, num_workers):
            generator.manual_seed(hash((self.seed, self.rank, batch_index)) & 0x7FFF_FFFF_FFFF_FFFF)
            starts = torch.randint(len(self.tokens) - self.block_size, (self.batch_size, 1), generator=generator)
            windows = self.tokens[starts + offsets]
            yield windows[:, :-1], windows[:, 1:]


class ConsecutiveWindows(Dataset):
    """Every position of a token stream exactly once, in non-overlapping windows; the last window's
    missing targets are -100 (ignored by the loss)."""

    def __init__(self, tokens: torch.Tensor, block_size: int):
        self.tokens = tokens
        self.block_size = block_size

    def __len__(self) -> int:
        return -(-(len(self.tokens) - 1) // self.block_size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.block_size
        chunk = self.tokens[start : start + self.block_size + 1]
        inputs = torch.zeros(self.block_size, dtype=torch.long)
        targets = torch.full((self.block_size,), -100, dtype=torch.long)
        inputs[: len(chunk) - 1] = chunk[:-1]
        targets[: len(chunk) - 1] = chunk[1:]
        return inputs, targets


class ShakespeareDataModule(pl.LightningDataModule):
    """Tiny Shakespeare (or any UTF-8 text file), first 90% for training and last 10% for validation."""

    def __init__(
        self,
        path: Optional[str] = None,
        tokenizer: TokenizerName = "byte",
        block_size: int = 512,
        batch_size: int = 16,
        num_workers: int = 0,
        train_fraction: float = 0.9,
        cache_dir: str = "data/shakespeare",
        prompts: Optional[list[str]] = None,
        prompts_file: Optional[str] = None,
    ) -> None:
        """
        Args:
            path: UTF-8 text file to train on; when omitted tiny Shakespeare is downloaded into cache_dir.
            tokenizer: "byte" (vocabulary 256, any text) or "char" (one id per distinct corpus character).
            block_size: tokens per training window; the CLI sets it from --model.max_seq_len.
            batch_size: windows per batch on each device (per micro-batch under gradient accumulation).
            num_workers: DataLoader worker processes for training batches.
            train_fraction: leading fraction of the corpus used for training; the rest is validation.
            cache_dir: where the downloaded corpus is kept.
            prompts: prompts for predict, e.g. '["ROMEO:", "JULIET:"]'.
            prompts_file: a text file with one predict prompt per line (added after prompts).
        """
        super().__init__()
        self.save_hyperparameters()
        for name in ("block_size", "batch_size"):
            if getattr(self, "hparams")[name] <= 0:
                raise InvalidConfigError(f"data.{name} must be positive, got {self.hparams[name]}")
        if num_workers < 0:
            raise InvalidConfigError(f"data.num_workers must be >= 0, got {num_workers}")
        if not 0.0 < train_fraction < 1.0:
            raise InvalidConfigError(f"data.train_fraction must be between 0 and 1, got {train_fraction}")
        self.corpus_path = self._resolve_corpus(path, Path(cache_dir))
        # The char vocabulary comes from the corpus and is needed now: the CLI links it into the model.
        self.tokenizer: Tokenizer = (
            CharTokenizer.from_text(self._read_text()) if tokenizer == "char" else ByteTokenizer()
        )
        self.train_tokens: Optional[torch.Tensor] = None
        self.val_tokens: Optional[torch.Tensor] = None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @staticmethod
    def _resolve_corpus(path: Optional[str], cache_dir: Path) -> Path:
        if path is None:
            return download_tiny_shakespeare(cache_dir)
        corpus = Path(path).expanduser()
        if not corpus.is_file():
            raise DataError(f"data file {corpus} not found: pass --data.path pointing to a UTF-8 text file")
        return corpus

    def _read_text(self) -> str:
        try:
            return self.corpus_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(
                f"{self.corpus_path} is not UTF-8 text ({err.reason} at byte {err.start}): "
                "convert it to UTF-8 or use --data.tokenizer byte"
            ) from None

    def setup(self, stage: str) -> None:
        if self.train_tokens is not None:
            return
        corpus = self.corpus_path.read_bytes() if self.tokenizer.name == "byte" else self._read_text()
        tokens = self.tokenizer.encode(corpus)
        split = int(len(tokens) * self.hparams.train_fraction)
        self.train_tokens, self.val_tokens = tokens[:split], tokens[split:]
        block_size = self.hparams.block_size
        for name, part in (("training", self.train_tokens), ("validation", self.val_tokens)):
            if len(part) < block_size + 1:
                raise DataError(
                    f"{self.corpus_path} has {len(tokens)} tokens, so its {name} split ({len(part)}) is shorter than "
                    f"one window of block_size + 1 = {block_size + 1} tokens: use a larger corpus or a smaller "
                    "--model.max_seq_len"
                )

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        # On resume, continue the batch sequence after the micro-batches already consumed.
        first_batch = trainer.global_step * trainer.accumulate_grad_batches if trainer else 0
        windows = RandomWindows(
            self.train_tokens,
            self.hparams.block_size,
            self.hparams.batch_size,
            seed=torch.initial_seed(),
            rank=trainer.global_rank if trainer else 0,
            first_batch=first_batch,
        )
        return DataLoader(
            windows,
            batch_size=None,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            ConsecutiveWindows(self.val_tokens, self.hparams.block_size), batch_size=self.hparams.batch_size
        )

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def prompt_texts(self) -> list[str]:
        texts = list(self.hparams.prompts or [])
        if self.hparams.prompts_file:
            prompts_file = Path(self.hparams.prompts_file)
            if not prompts_file.is_file():
                raise DataError(f"prompts file {prompts_file} not found: pass --data.prompts_file with an existing file")
            texts += [line for line in prompts_file.read_text(encoding="utf-8").splitlines() if line]
        if not texts:
            raise InvalidConfigError("no prompts to complete: pass --data.prompts '[\"ROMEO:\"]' or --data.prompts_file")
        if any(not text for text in texts):
            raise InvalidConfigError("a prompt is empty: give every prompt at least one character")
        return texts

    def predict_dataloader(self) -> DataLoader:
        prompts = [{"prompt": text, "tokens": self.tokenizer.encode(text)} for text in self.prompt_texts()]
        return DataLoader(prompts, batch_size=1, collate_fn=_collate_prompt)

    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict["tokenizer"]
        if saved != self.tokenizer.state_dict():
            raise InvalidConfigError(
                f"the checkpoint was trained with a different tokenizer/vocabulary ({saved['name']}, "
                f"{len(saved.get('vocab', '')) or 256} tokens) than --data gives now ({self.tokenizer.name}, "
                f"{self.vocab_size} tokens): use the same --data.tokenizer and --data.path as the training run"
            )


def _collate_prompt(items: list[dict[str, Any]]) -> dict[str, Any]:
    (item,) = items
    return {"prompt": item["prompt"], "tokens": item["tokens"].unsqueeze(0)}
