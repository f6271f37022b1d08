"""Byte and character tokenizers: text <-> token ids."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Literal

import torch

from lightning_trickster.errors import DataError, InvalidConfigError

TokenizerName = Literal["byte", "char"]


class ByteTokenizer:
    """Token ids are the UTF-8 bytes of the text: vocabulary 256, works for any text."""

    name = "byte"
    vocab_size = 256

    def encode(self, text: str | bytes) -> torch.Tensor:
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        # A sample may stop in the middle of a multi-byte character.
        return bytes(torch.as_tensor(ids, dtype=torch.uint8).tolist()).decode("utf-8", errors="replace")

    def incremental_decoder(self) -> Callable[[int], str]:
        """Decode a stream one id at a time; a multi-byte character appears once all its bytes arrived."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda token_id: decoder.decode(bytes([token_id]))

    def state_dict(self) -> dict:
        return {"name": self.name}


class CharTokenizer:
    """One token id per distinct character of the corpus, in sorted order (65 for tiny Shakespeare)."""

    name = "char"

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

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        return "".join(self.vocab[i] for i in torch.as_tensor(ids).tolist())

    def incremental_decoder(self) -> Callable[[int], str]:
        return self.vocab.__getitem__

    def state_dict(self) -> dict:
        return {"name": self.name, "vocab": self.vocab}


Tokenizer = ByteTokenizer | CharTokenizer


def tokenizer_from_state_dict(state: dict) -> Tokenizer:
    return ByteTokenizer() if state["name"] == "byte" else CharTokenizer(state["vocab"])
