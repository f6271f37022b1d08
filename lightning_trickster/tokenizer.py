"""Byte, character and byte-level BPE tokenizers: text <-> token ids.

Each tokenizer also defines the separator that joins the documents of a multi-file corpus, and its
state_dict is plain Python data (str/int/dict), so checkpoints load with torch.load(weights_only=True).
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lightning_trickster.errors import DataError, InvalidConfigError

TokenizerName = Literal["byte", "char", "bpe"]

END_OF_TEXT = "<|endoftext|>"
"""The BPE tokenizer's document separator: a special token with its own id, never split into bytes."""

PLAIN_TEXT_SEPARATOR = "\n\n"
"""The byte and char tokenizers' document separator: a blank line (they have no special tokens)."""

ENCODING_PROBES = ("the", "Zebra", "42", "x=y;", "naïve", "日本", "🎭")
"""Text a tokenizer.json from elsewhere must encode as at least one token each (see BPETokenizer._check_ids)."""


def _id_list(ids: torch.Tensor | np.ndarray | list[int]) -> list[int]:
    """Token ids as Python ints, from a tensor, a (memory-mapped, read-only) array or a list."""
    return ids.tolist() if isinstance(ids, torch.Tensor | np.ndarray) else list(ids)


class ByteTokenizer:
    """Token ids are the UTF-8 bytes of the text: vocabulary 256, works for any text."""

    name = "byte"
    vocab_size = 256
    separator = PLAIN_TEXT_SEPARATOR

    def encode(self, text: str | bytes) -> torch.Tensor:
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()

    def decode(self, ids: torch.Tensor | np.ndarray | list[int]) -> str:
        # A sample may stop in the middle of a multi-byte character.
        return bytes(_id_list(ids)).decode("utf-8", errors="replace")

    def incremental_decoder(self) -> Callable[[int], str]:
        """Decode a stream one id at a time; a multi-byte character appears once all its bytes arrived."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda token_id: decoder.decode(bytes([token_id]))

    def state_dict(self) -> dict:
        return {"name": self.name}


class CharTokenizer:
    """One token id per distinct character of the corpus, in sorted order (65 for tiny Shakespeare)."""

    name = "char"
    separator = PLAIN_TEXT_SEPARATOR

    def __init__(self, vocab: str) -> None:
        if not vocab:
            raise DataError("the char tokenizer got an empty vocabulary: the corpus has no text")
        self.vocab = vocab
        self.vocab_size = len(vocab)
        # Code point -> token id, -1 outside the vocabulary: one array lookup per character. At least 128 entries,
        # so that any ASCII byte is a valid index.
        codepoints = np.array([ord(char) for char in vocab], dtype=np.int64)
        self._table = np.full(max(128, int(codepoints.max()) + 1), -1, dtype=np.int32)
        self._table[codepoints] = np.arange(len(vocab), dtype=np.int32)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    def encode_ids(
        self, text: str | bytes, where: str = "text", fix: str = "remove them or train with --data.tokenizer byte"
    ) -> np.ndarray:
        """The token ids (int32) of text, one per character: the only char encoder (prompts and corpora alike).

        Args:
            text: the text, or ASCII bytes (looked up byte by byte, without decoding).
            where: what the text is, for the error message ("text", "corpus file x.txt").
            fix: what the message tells the user to do about characters outside the vocabulary.

        Raises:
            InvalidConfigError: `<where> contains characters outside the char vocabulary: '<them>'; <fix>`.
        """
        if isinstance(text, bytes):
            codepoints = np.frombuffer(text, dtype=np.uint8)  # ASCII: always inside the table
            ids = self._table[codepoints]
        else:
            codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            inside = codepoints < len(self._table)
            ids = self._table[np.where(inside, codepoints, 0)]
            ids[~inside] = -1
        if (ids < 0).any():
            unknown = "".join(sorted({chr(c) for c in codepoints[ids < 0][:10_000].tolist()}))
            raise InvalidConfigError(
                f"{where} contains characters outside the char vocabulary: {unknown[:20]!r}; {fix}"
            )
        return ids

    def encode(self, text: str) -> torch.Tensor:
        return torch.from_numpy(self.encode_ids(text).astype(np.int64))

    def decode(self, ids: torch.Tensor | np.ndarray | list[int]) -> str:
        return "".join(self.vocab[i] for i in _id_list(ids))

    def incremental_decoder(self) -> Callable[[int], str]:
        return self.vocab.__getitem__

    def state_dict(self) -> dict:
        return {"name": self.name, "vocab": self.vocab}


class BPETokenizer:
    """Byte-level BPE (GPT-2 style) from Hugging Face `tokenizers`: any text encodes, common byte sequences
    become single tokens. Trained on a corpus by lightning_trickster.prepared, or loaded from a tokenizer.json."""

    name = "bpe"
    separator = END_OF_TEXT

    def __init__(self, tokenizer_json: str, source: str = "the checkpoint") -> None:
        """Args:
        tokenizer_json: the tokenizer as Hugging Face's tokenizer.json holds it.
        source: where the JSON came from, for error messages.
        """
        from tokenizers import Tokenizer as HFTokenizer

        try:
            self._hf = HFTokenizer.from_str(tokenizer_json)
        except Exception as err:  # tokenizers raises a plain Exception for malformed JSON or models
            reason = " ".join(str(err).split())[:160]
            raise DataError(
                f"BPE tokenizer from {source} does not load ({reason}): pass a tokenizer.json written by Hugging "
                "Face tokenizers, or drop --data.tokenizer_path to train one on the corpus"
            ) from None
        self.json = tokenizer_json
        self.source = source
        self.vocab_size = self._hf.get_vocab_size()
        if self.vocab_size > 65_536:
            raise InvalidConfigError(
                f"BPE tokenizer from {source} has {self.vocab_size:,} tokens, more than the 65,536 a uint16 token "
                "file holds: use a tokenizer with a smaller vocabulary"
            )
        self._check_ids()

    def _check_ids(self) -> None:
        """A tokenizer.json from elsewhere: every id it can give must index the model's embedding (0 to
        vocab_size - 1) and fit the token file, and it must encode text it has no token for (no exception, no text
        silently dropped). Costs one small vocabulary scan and a few short encodings."""
        fix = "pass a tokenizer.json written by Hugging Face tokenizers, or drop --data.tokenizer_path to train one"
        ids = self._hf.get_vocab(with_added_tokens=True).values()
        if not ids:
            raise DataError(f"BPE tokenizer from {self.source} has no tokens: {fix}")
        largest = max(ids)
        if largest >= self.vocab_size:
            raise DataError(
                f"BPE tokenizer from {self.source} gives token id {largest:,} but has only {self.vocab_size:,} tokens, "
                f"so its ids are not 0 to {self.vocab_size - 1:,} (and may not fit a uint16 token file): {fix}"
            )
        try:
            probes = self._hf.encode_batch_fast(list(ENCODING_PROBES), add_special_tokens=False)
        except Exception as err:  # a plain Exception from tokenizers, e.g. a WordLevel model without its unknown token
            raise DataError(
                f"BPE tokenizer from {self.source} cannot encode text it has no token for "
                f"({' '.join(str(err).split())[:120]}): {fix}"
            ) from None
        dropped = [probe for probe, encoding in zip(ENCODING_PROBES, probes, strict=True) if not encoding.ids]
        if dropped:
            raise DataError(
                f"BPE tokenizer from {self.source} encodes {dropped[0]!r} as no token at all (it has no unknown token "
                f"and no byte fallback), so training would silently drop such text: {fix}"
            )

    @classmethod
    def from_file(cls, path: Path) -> BPETokenizer:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(
                f"BPE tokenizer file {path} cannot be read ({getattr(err, 'strerror', None) or err}): pass "
                "--data.tokenizer_path an existing tokenizer.json"
            ) from None
        return cls(text, source=str(path))

    @property
    def fingerprint(self) -> str:
        """Identifies the vocabulary and merges: equal fingerprints encode every text the same way."""
        return hashlib.sha256(self.json.encode("utf-8")).hexdigest()[:16]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of several texts at once (encoded in parallel by the Rust library)."""
        # encode_batch_fast skips the character offsets, which are not needed here.
        return [encoding.ids for encoding in self._hf.encode_batch_fast(texts, add_special_tokens=False)]

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor(self._hf.encode(text, add_special_tokens=False).ids, dtype=torch.long)

    def decode(self, ids: torch.Tensor | np.ndarray | list[int]) -> str:
        return self._hf.decode(_id_list(ids), skip_special_tokens=False)

    def incremental_decoder(self) -> Callable[[int], str]:
        """Decode a stream one id at a time. A token can end inside a multi-byte character, so text is released
        only once it decodes without a trailing replacement character."""
        ids: list[int] = []
        released = 0

        def decode_next(token_id: int) -> str:
            nonlocal released
            ids.append(token_id)
            text = self.decode(ids)
            if text.endswith("\ufffd"):
                return ""
            new, released = text[released:], len(text)
            return new

        return decode_next

    def state_dict(self) -> dict:
        return {"name": self.name, "json": self.json}


Tokenizer = ByteTokenizer | CharTokenizer | BPETokenizer


def tokenizer_from_state_dict(state: dict) -> Tokenizer:
    """Rebuild a tokenizer from its state_dict (as stored in checkpoints and exports); needs no corpus."""
    if state["name"] == "byte":
        return ByteTokenizer()
    if state["name"] == "char":
        return CharTokenizer(state["vocab"])
    if state["name"] == "bpe":
        return BPETokenizer(state["json"])
    raise InvalidConfigError(f"unknown tokenizer {state['name']!r} in the checkpoint: expected byte, char or bpe")
