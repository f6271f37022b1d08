"""ShakespeareDataModule: a text corpus, tokenized, split 90/10 by position, served as training windows."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, get_worker_info

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
    last_error: Exception | None = None
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
    missing targets are -100 (ignored by the loss).

    pad_to_multiple_of appends windows whose targets are all -100 until the length is a multiple of it, so that
    several processes can each take an equal share without any real window being repeated.
    """

    def __init__(self, tokens: torch.Tensor, block_size: int, pad_to_multiple_of: int = 1):
        self.tokens = tokens
        self.block_size = block_size
        self.num_windows = -(-(len(tokens) - 1) // block_size)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __len__(self) -> int:
        return -(-self.num_windows // self.pad_to_multiple_of) * self.pad_to_multiple_of

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} of {len(self)}")
        start = i * self.block_size
        chunk = self.tokens[start : start + self.block_size + 1] if i < self.num_windows else self.tokens[:0]
        scored = max(len(chunk) - 1, 0)
        inputs = torch.zeros(self.block_size, dtype=torch.long)
        targets = torch.full((self.block_size,), -100, dtype=torch.long)
        inputs[:scored] = chunk[:scored]
        targets[:scored] = chunk[1 : scored + 1]
        return inputs, targets


class ShakespeareDataModule(pl.LightningDataModule):
    """Tiny Shakespeare (or any UTF-8 text file), first 90% for training and last 10% for validation."""

    def __init__(
        self,
        path: str | None = None,
        tokenizer: TokenizerName = "byte",
        block_size: int = 512,
        batch_size: int = 16,
        num_workers: int = 0,
        train_fraction: float = 0.9,
        cache_dir: str = "data/shakespeare",
        prompts: list[str] | None = None,
        prompts_file: str | None = None,
        vocab: str | None = None,
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
            vocab: the char tokenizer's vocabulary; by default built from the corpus. The CLI fills it from
                the checkpoint when one is given, so predict needs no corpus.
        """
        super().__init__()
        self.save_hyperparameters()
        for name in ("block_size", "batch_size"):
            if self.hparams[name] <= 0:
                raise InvalidConfigError(f"data.{name} must be positive, got {self.hparams[name]}")
        if num_workers < 0:
            raise InvalidConfigError(f"data.num_workers must be >= 0, got {num_workers}")
        if not 0.0 < train_fraction < 1.0:
            raise InvalidConfigError(f"data.train_fraction must be between 0 and 1, got {train_fraction}")
        self._corpus_path: Path | None = None
        # The vocabulary size is needed now: the CLI links it into the model before setup() runs.
        if tokenizer == "byte":
            self.tokenizer: Tokenizer = ByteTokenizer()
        else:
            self.tokenizer = CharTokenizer(vocab) if vocab is not None else CharTokenizer.from_text(self._read_text())
        self.train_tokens: torch.Tensor | None = None
        self.val_tokens: torch.Tensor | None = None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def corpus_path(self) -> Path:
        """The corpus file, downloaded on first use when no path was given."""
        if self._corpus_path is None:
            if self.hparams.path is None:
                self._corpus_path = download_tiny_shakespeare(Path(self.hparams.cache_dir))
            else:
                corpus = Path(self.hparams.path).expanduser()
                if not corpus.is_file():
                    raise DataError(f"data file {corpus} not found: pass --data.path pointing to a UTF-8 text file")
                if corpus.stat().st_size == 0:
                    raise DataError(f"data file {corpus} is empty: pass --data.path pointing to a UTF-8 text file")
                self._corpus_path = corpus
        return self._corpus_path

    def prepare_data(self) -> None:
        if not self.trainer or not self.trainer.predicting:  # completing prompts needs no corpus
            self.corpus_path  # noqa: B018 -- downloads once, on one process per node

    def _read_text(self) -> str:
        try:
            return self.corpus_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(
                f"{self.corpus_path} is not UTF-8 text ({err.reason} at byte {err.start}): "
                "convert it to UTF-8 or use --data.tokenizer byte"
            ) from None

    def setup(self, stage: str) -> None:
        if stage == "predict" or self.train_tokens is not None:
            return
        self._check_block_size_fits_the_model()
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

    def _check_block_size_fits_the_model(self) -> None:
        model = self.trainer.lightning_module if self.trainer else None
        max_seq_len = getattr(model, "hparams", {}).get("max_seq_len")
        if max_seq_len is not None and self.hparams.block_size > max_seq_len:
            raise InvalidConfigError(
                f"data.block_size={self.hparams.block_size} is longer than the model's max_seq_len={max_seq_len}: "
                "use block_size <= max_seq_len (the CLI sets data.block_size from --model.max_seq_len)"
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
        world_size = self.trainer.world_size if self.trainer else 1
        if world_size == 1:
            windows = ConsecutiveWindows(self.val_tokens, self.hparams.block_size)
            return DataLoader(windows, batch_size=self.hparams.batch_size)
        # Each window is scored once across processes: rank r takes windows r, r + world_size, ... of a list padded
        # with fully ignored windows to a multiple of world_size (they weigh 0 in the token-weighted val metrics,
        # which are summed over ranks when computed). Every rank runs the same number of batches, as FSDP requires.
        windows = ConsecutiveWindows(self.val_tokens, self.hparams.block_size, pad_to_multiple_of=world_size)
        sampler = DistributedSampler(windows, num_replicas=world_size, rank=self.trainer.global_rank, shuffle=False)
        return DataLoader(windows, batch_size=self.hparams.batch_size, sampler=sampler)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def prompt_texts(self) -> list[str]:
        texts = list(self.hparams.prompts or [])
        if self.hparams.prompts_file:
            prompts_file = Path(self.hparams.prompts_file)
            if not prompts_file.is_file():
                raise DataError(
                    f"prompts file {prompts_file} not found: pass --data.prompts_file with an existing file"
                )
            texts += [line for line in prompts_file.read_text(encoding="utf-8").splitlines() if line]
        if not texts:
            raise InvalidConfigError(
                "no prompts to complete: pass --data.prompts '[\"ROMEO:\"]' or --data.prompts_file"
            )
        if any(not text for text in texts):
            raise InvalidConfigError("a prompt is empty: give every prompt at least one character")
        return texts

    def predict_dataloader(self) -> DataLoader:
        """Prompts of equal token length share a batch, so they are generated together."""
        by_length: dict[int, list[tuple[str, torch.Tensor]]] = {}
        for text in self.prompt_texts():
            tokens = self.tokenizer.encode(text)
            by_length.setdefault(len(tokens), []).append((text, tokens))
        batches = [
            {"prompts": [text for text, _ in group], "tokens": torch.stack([tokens for _, tokens in group])}
            for group in by_length.values()
        ]
        return DataLoader(batches, batch_size=None)

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
