"""CorpusDataModule: a corpus prepared once into memory-mapped tokens, split 90/10, served as training windows.

See lightning_trickster.prepared for the prepared format and how the split is made."""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, get_worker_info

from lightning_trickster.checkpoint import check_same_tokenizer
from lightning_trickster.errors import DataError, InvalidConfigError, not_a_readable_file
from lightning_trickster.prepared import (
    CorpusScan,
    DamagedCopy,
    OnBadFile,
    PreparedCorpus,
    TokenizerRequest,
    find_prepared,
    list_corpus_files,
    make_data_directory,
    prepare_corpus,
    scan_corpus,
)
from lightning_trickster.tokenizer import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    TokenizerName,
    tokenizer_from_state_dict,
)

Tokens = torch.Tensor | np.ndarray
"""A token stream: an in-memory tensor, or a memory-mapped array of a prepared copy (read per window)."""


def as_long_tensor(tokens: Tokens) -> torch.Tensor:
    """Token ids as int64, whatever unsigned dtype they are stored in; copies only the ids given."""
    if isinstance(tokens, torch.Tensor):
        return tokens.long()
    return torch.from_numpy(np.asarray(tokens, dtype=np.int64))


def check_token_ids(ids: torch.Tensor, vocab_size: int | None, tokens: Tokens) -> None:
    """Every id a batch read must index the vocabulary: one max over the batch (a few thousand ids), so that a damaged
    token file stops with one line instead of an IndexError deep in the model (or, on a GPU, a device assert)."""
    if vocab_size is None or not len(ids):
        return
    largest = int(ids.max())
    if largest < vocab_size:
        return
    problem = f"holds token id {largest}, outside the {vocab_size:,}-token vocabulary"
    if isinstance(tokens, np.memmap) and tokens.filename is not None:
        file = Path(tokens.filename)  # DIR/build-<id>/tokens.bin
        raise DataError(DamagedCopy.fix(file.parent.parent, f"{file.parent.name}/{file.name} {problem}"))
    raise DataError(f"the token stream {problem}: every id must be below {vocab_size:,}")


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """A DataLoader worker's start: ignore SIGINT, SIGTERM and SIGHUP. Ctrl-C, a closed terminal or a scheduler's
    SIGTERM reach the whole process group; a worker that died of them would end the fit with "DataLoader worker
    exited unexpectedly" before the main process saves last.ckpt. The main process handles them and stops its
    workers; a worker whose main process is gone exits by itself (PyTorch's watchdog)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def data_args_from_tokenizer_state(state: dict[str, Any]) -> dict[str, Any]:
    """The --data.* values that rebuild a checkpoint's tokenizer with no corpus.

    Args:
        state: the tokenizer state a checkpoint stores (checkpoint["CorpusDataModule"]["tokenizer"]).
    """
    tokenizer = tokenizer_from_state_dict(state)  # validates the state
    if isinstance(tokenizer, CharTokenizer):
        return {"tokenizer": "char", "vocab": tokenizer.vocab}
    if isinstance(tokenizer, BPETokenizer):
        return {"tokenizer": "bpe", "vocab": tokenizer.json, "vocab_size": tokenizer.vocab_size}
    return {"tokenizer": tokenizer.name}


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
    make_data_directory(cache_dir)
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

    def __init__(
        self,
        tokens: Tokens,
        block_size: int,
        batch_size: int,
        seed: int,
        rank: int,
        first_batch: int,
        vocab_size: int | None = None,
    ):
        """
        Args:
            vocab_size: when given, every batch's ids are checked to be below it (see check_token_ids).
        """
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.first_batch = first_batch
        self.vocab_size = vocab_size
        self.mapped = not isinstance(tokens, torch.Tensor)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started by spawn (macOS, Windows) receive the dataset pickled: send where the memory
        # map is, not a copy of the corpus (numpy pickles a memmap as an in-memory array).
        state = dict(self.__dict__)
        if isinstance(self.tokens, np.memmap):
            state["tokens"] = (self.tokens.filename, self.tokens.dtype.str, self.tokens.offset, len(self.tokens))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["tokens"], tuple):
            filename, dtype, offset, length = state["tokens"]
            state["tokens"] = np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=(length,))
        self.__dict__.update(state)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        offsets = torch.arange(self.block_size + 1)
        generator = torch.Generator()
        # The DataLoader takes batches from its workers in turn, so worker w serves every num_workers-th batch.
        for batch_index in count(self.first_batch + worker_id, num_workers):
            generator.manual_seed(hash((self.seed, self.rank, batch_index)) & 0x7FFF_FFFF_FFFF_FFFF)
            starts = torch.randint(len(self.tokens) - self.block_size, (self.batch_size, 1), generator=generator)
            # Only these batch_size x (block_size + 1) ids are read (from the page cache for a memory map).
            windows = as_long_tensor(self.tokens[(starts + offsets).numpy() if self.mapped else starts + offsets])
            check_token_ids(windows, self.vocab_size, self.tokens)
            yield windows[:, :-1], windows[:, 1:]


class ConsecutiveWindows(Dataset):
    """Every position of a token stream exactly once, in non-overlapping windows; the last window's
    missing targets are -100 (ignored by the loss).

    pad_to_multiple_of appends windows whose targets are all -100 until the length is a multiple of it, so that
    several processes can each take an equal share without any real window being repeated.
    """

    def __init__(self, tokens: Tokens, block_size: int, pad_to_multiple_of: int = 1, vocab_size: int | None = None):
        """
        Args:
            vocab_size: when given, every window's ids are checked to be below it (see check_token_ids).
        """
        self.tokens = tokens
        self.block_size = block_size
        self.num_windows = -(-(len(tokens) - 1) // block_size)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.vocab_size = vocab_size

    def __len__(self) -> int:
        return -(-self.num_windows // self.pad_to_multiple_of) * self.pad_to_multiple_of

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} of {len(self)}")
        start = i * self.block_size
        end = start + self.block_size + 1 if i < self.num_windows else start
        chunk = as_long_tensor(self.tokens[start:end])
        check_token_ids(chunk, self.vocab_size, self.tokens)
        scored = max(len(chunk) - 1, 0)
        inputs = torch.zeros(self.block_size, dtype=torch.long)
        targets = torch.full((self.block_size,), -100, dtype=torch.long)
        inputs[:scored] = chunk[:scored]
        targets[:scored] = chunk[1 : scored + 1]
        return inputs, targets


class CorpusDataModule(pl.LightningDataModule):
    """Tiny Shakespeare or any corpus (a UTF-8 file, a directory or a glob of them), prepared once into
    memory-mapped tokens; the first 90% for training and the last 10% for validation."""

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
        vocab_size: int | None = None,
        tokenizer_path: str | None = None,
        prepared_dir: str | None = None,
        on_bad_file: OnBadFile = "fail",
    ) -> None:
        """
        Args:
            path: the corpus: a UTF-8 text file, a directory (every non-hidden text file under it) or a quoted glob
                such as 'src/**/*.py'; when omitted tiny Shakespeare is downloaded into cache_dir.
            tokenizer: "byte" (vocabulary 256, any text), "char" (one id per distinct corpus character) or "bpe"
                (byte-level BPE: trained on the training split with vocab_size tokens, or read from tokenizer_path).
            block_size: tokens per training window; the CLI sets it from --model.max_seq_len.
            batch_size: windows per batch on each device (per micro-batch under gradient accumulation).
            num_workers: DataLoader worker processes for training batches.
            train_fraction: leading fraction of the corpus used for training; the rest is validation.
            cache_dir: where the downloaded corpus and, by default, prepared copies are kept.
            prompts: prompts for predict, e.g. '["ROMEO:", "JULIET:"]'.
            prompts_file: a text file with one predict prompt per line (added after prompts).
            vocab: the tokenizer's vocabulary as a checkpoint stores it (char: its characters; bpe: its tokenizer.json
                text); by default built from the corpus. The CLI fills it from the checkpoint when one is given, so
                predict needs no corpus.
            vocab_size: the BPE vocabulary size to train (257 to 65,536, including the <|endoftext|> separator).
            tokenizer_path: an existing Hugging Face tokenizer.json to use as the BPE tokenizer instead of training
                one.
            prepared_dir: where the prepared (tokenized) copy of the corpus is kept; by default under
                cache_dir/prepared, one per corpus path and tokenizer. A directory named here that holds a copy
                made with another tokenizer is an error rather than rebuilt.
            on_bad_file: a non-UTF-8 file in a directory or glob corpus: "fail" (name it and stop) or "skip" it.
        """
        super().__init__()
        # vocab_size is left out: Lightning merges these with the model's hyper-parameters, whose vocab_size is the
        # tokenizer's (the same number for bpe, while this argument is None for byte and char).
        self.save_hyperparameters(ignore=["vocab_size"])
        self.requested_vocab_size = vocab_size
        for name in ("block_size", "batch_size"):
            if self.hparams[name] <= 0:
                raise InvalidConfigError(f"data.{name} must be positive, got {self.hparams[name]}")
        if num_workers < 0:
            raise InvalidConfigError(f"data.num_workers must be >= 0, got {num_workers}")
        if not 0.0 < train_fraction < 1.0:
            raise InvalidConfigError(f"data.train_fraction must be between 0 and 1, got {train_fraction}")
        self._corpus_path: Path | None = None
        self._scan: CorpusScan | None = None
        self.prepared: PreparedCorpus | None = None
        self.train_tokens: Tokens | None = None
        self.val_tokens: Tokens | None = None
        self._request = self._tokenizer_request()
        self._tokenizer: Tokenizer | None = self._request.given

    @property
    def tokenizer(self) -> Tokenizer | None:
        """The tokenizer. A char vocabulary not given is the corpus's characters (from its prepared copy if there is
        a current one), read on first use rather than in __init__: a data module that only completes prompts with a
        given vocabulary touches no corpus. A BPE still to be trained is None until prepare_data trains it."""
        if self._tokenizer is None and self.hparams.tokenizer == "char":
            prepared = find_prepared(*self._prepare_arguments())
            if prepared is not None:
                self._tokenizer = prepared.tokenizer
            else:
                self._scan = scan_corpus(
                    str(self.corpus_path), require_utf8=True, on_bad_file=self.hparams.on_bad_file,
                    collect_characters=True,
                )  # fmt: skip
                self._tokenizer = CharTokenizer(self._scan.char_vocab(CharTokenizer.separator))
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer

    def _tokenizer_request(self) -> TokenizerRequest:
        """The tokenizer the arguments ask for, checked for consistency; built here when given in full."""
        name, vocab, tokenizer_path = (self.hparams[key] for key in ("tokenizer", "vocab", "tokenizer_path"))
        vocab_size = self.requested_vocab_size
        if name != "bpe" and (vocab_size is not None or tokenizer_path is not None):
            option = "vocab_size" if vocab_size is not None else "tokenizer_path"
            raise InvalidConfigError(
                f"--data.{option} only applies to --data.tokenizer bpe (got {name}): drop it or use bpe"
            )
        if name == "byte":
            return TokenizerRequest("byte", given=ByteTokenizer())
        if name == "char":
            return TokenizerRequest("char", given=CharTokenizer(vocab) if vocab is not None else None)
        if vocab is not None or tokenizer_path is not None:
            given = BPETokenizer(vocab) if vocab is not None else BPETokenizer.from_file(Path(tokenizer_path))
            if vocab_size is not None and vocab_size != given.vocab_size:
                raise InvalidConfigError(
                    f"--data.vocab_size {vocab_size} differs from the given BPE tokenizer's {given.vocab_size}: "
                    "drop --data.vocab_size or make it match"
                )
            return TokenizerRequest("bpe", given=given)
        if vocab_size is None:
            raise InvalidConfigError(
                "--data.tokenizer bpe needs --data.vocab_size N (train a BPE on the corpus) or --data.tokenizer_path "
                "tokenizer.json (use an existing one)"
            )
        if not 257 <= vocab_size <= 65_536:
            raise InvalidConfigError(
                f"--data.vocab_size must be between 257 (256 bytes + <|endoftext|>) and 65,536 (uint16 token ids), "
                f"got {vocab_size}"
            )
        return TokenizerRequest("bpe", vocab_size=vocab_size)

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size (for a BPE still to be trained: the size it is trained to)."""
        return self.tokenizer.vocab_size if self.tokenizer is not None else self._request.vocab_size

    @property
    def corpus_path(self) -> Path:
        """The corpus (a file, a directory or a glob), downloaded on first use when no path was given."""
        if self._corpus_path is None:
            if self.hparams.path is None:
                self._corpus_path = download_tiny_shakespeare(Path(self.hparams.cache_dir))
            else:
                list_corpus_files(self.hparams.path)  # a one-line error if it is missing, empty or matches nothing
                self._corpus_path = Path(os.path.expanduser(self.hparams.path))
        return self._corpus_path

    @property
    def prepared_path(self) -> Path:
        """Where the prepared copy is kept: prepared_dir, or cache_dir/prepared/<corpus name>-<hash>/<tokenizer>."""
        if self.hparams.prepared_dir is not None:
            return Path(os.path.expanduser(self.hparams.prepared_dir))
        corpus = os.path.abspath(self.corpus_path)
        name = Path(corpus.split("*")[0].split("?")[0].split("[")[0].rstrip("/") or "corpus").name or "corpus"
        key = hashlib.sha256(corpus.encode("utf-8")).hexdigest()[:8]
        return Path(self.hparams.cache_dir) / "prepared" / f"{name}-{key}" / self._request.name

    def _prepare_arguments(self) -> tuple[str, Path, TokenizerRequest, float, OnBadFile]:
        # Absolute, so the same corpus named from another directory (or as ./x and x) is the same prepared copy.
        return (
            os.path.abspath(self.corpus_path),
            self.prepared_path,
            self._request,
            self.hparams.train_fraction,
            self.hparams.on_bad_file,
        )

    def prepare_data(self) -> None:
        """Download tiny Shakespeare if no path was given, and prepare the corpus unless a current prepared copy
        exists. Lightning runs this on one process per node; it also works without a Trainer."""
        if self.trainer and self.trainer.predicting:  # completing prompts needs no corpus
            return
        self._prepare()
        rank_zero_info(f"corpus: {self.describe_prepared()}")

    def _prepare(self) -> PreparedCorpus:
        if self.prepared is None:
            spec, directory, request, train_fraction, on_bad_file = self._prepare_arguments()
            self.prepared = prepare_corpus(
                spec,
                directory,
                request,
                train_fraction=train_fraction,
                on_bad_file=on_bad_file,
                must_match_tokenizer=self.hparams.prepared_dir is not None,
                scan=self._scan,
            )
            self._scan = None  # the prepared copy replaces it
            prepared_tokenizer = self.prepared.tokenizer
            if self._tokenizer is not None and prepared_tokenizer.state_dict() != self._tokenizer.state_dict():
                raise DataError(
                    f"the corpus {spec} changed while this run started ({self.tokenizer.name} vocabulary "
                    f"{self.tokenizer.vocab_size:,} then {prepared_tokenizer.vocab_size:,}): start the run again"
                )
            self.tokenizer = prepared_tokenizer
        return self.prepared

    def describe_prepared(self) -> str:
        """One line on the prepared corpus: files, size, tokens, characters per token, split and where it is kept."""
        return self._prepare().describe()

    def setup(self, stage: str) -> None:
        if stage == "predict" or self.train_tokens is not None:
            return
        self._check_block_size_fits_the_model()
        # On the process that ran prepare_data this is the copy it made; on the others a quick check finds the
        # copy current (it was prepared before Lightning's barrier) and maps it.
        prepared = self._prepare()
        self.train_tokens, self.val_tokens = prepared.train, prepared.val
        block_size = self.hparams.block_size
        for name, part in (("training", self.train_tokens), ("validation", self.val_tokens)):
            if len(part) < block_size + 1:
                raise DataError(
                    f"{self.corpus_path} has {len(prepared.tokens)} tokens, so its {name} split ({len(part)}) is "
                    f"shorter than one window of block_size + 1 = {block_size + 1} tokens: use a larger corpus or a "
                    "smaller --model.max_seq_len"
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
            vocab_size=self.tokenizer.vocab_size,
        )
        return DataLoader(
            windows,
            batch_size=None,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=leave_stop_signals_to_the_main_process,
        )

    def val_dataloader(self) -> DataLoader:
        world_size = self.trainer.world_size if self.trainer else 1
        vocab_size = self.tokenizer.vocab_size
        if world_size == 1:
            windows = ConsecutiveWindows(self.val_tokens, self.hparams.block_size, vocab_size=vocab_size)
            return DataLoader(windows, batch_size=self.hparams.batch_size)
        # Each window is scored once across processes: rank r takes windows r, r + world_size, ... of a list padded
        # with fully ignored windows to a multiple of world_size (they weigh 0 in the token-weighted val metrics,
        # which are summed over ranks when computed). Every rank runs the same number of batches, as FSDP requires.
        windows = ConsecutiveWindows(
            self.val_tokens, self.hparams.block_size, pad_to_multiple_of=world_size, vocab_size=vocab_size
        )
        sampler = DistributedSampler(windows, num_replicas=world_size, rank=self.trainer.global_rank, shuffle=False)
        return DataLoader(windows, batch_size=self.hparams.batch_size, sampler=sampler)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def prompt_texts(self) -> list[str]:
        texts = list(self.hparams.prompts or [])
        if self.hparams.prompts_file:
            prompts_file = Path(self.hparams.prompts_file)
            if prompts_file.is_dir():
                raise DataError(
                    f"prompts file {prompts_file} is a directory: pass --data.prompts_file a text file with one prompt "
                    "per line"
                )
            problem = not_a_readable_file(prompts_file)
            if problem:
                raise DataError(
                    f"prompts file {prompts_file} {problem}: pass --data.prompts_file a text file with one prompt per "
                    "line"
                )
            try:
                lines = prompts_file.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as err:
                raise DataError(
                    f"prompts file {prompts_file} is not UTF-8 text ({err.reason} at byte {err.start}): pass a text "
                    "file with one prompt per line"
                ) from None
            except OSError as err:
                raise DataError(
                    f"prompts file {prompts_file} cannot be read ({err.strerror or err}): pass a readable text file"
                ) from None
            texts += [line for line in lines if line]
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
        check_same_tokenizer(state_dict["tokenizer"], self.tokenizer)


def __getattr__(name: str) -> Any:
    if name == "ShakespeareDataModule":  # the class's name until 2026-12: it takes any corpus
        import warnings

        warnings.warn("ShakespeareDataModule is now CorpusDataModule", DeprecationWarning, stacklevel=2)
        return CorpusDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
