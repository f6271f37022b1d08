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
        self._ids = {char: i for i, char in enumerate(vocab)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    def encode(self, text: str) -> torch.Tensor:
        unknown = sorted(set(text) - self._ids.keys())
        if unknown:
            raise InvalidConfigError(
                f"text contains characters outside the char vocabulary: {''.join(unknown)!r}; "
                "remove them or train with --data.tokenizer byte"
            )
        return torch.tensor([self._ids[char] for char in text], dtype=torch.long)

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
        self.vocab_size = self._hf.get_vocab_size()
        if self.vocab_size > 65_536:
            raise InvalidConfigError(
                f"BPE tokenizer from {source} has {self.vocab_size:,} tokens, more than the 65,536 a uint16 token "
                "file holds: use a tokenizer with a smaller vocabulary"
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
