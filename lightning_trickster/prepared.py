"""Prepare a corpus once: tokenize a file, directory or glob of UTF-8 files into one memory-mappable token file.

A prepared copy is a directory holding

    meta.json              what was prepared: corpus files (size, mtime, sha256), tokenizer, token counts, split
    build-<id>/tokens.bin  every token, training split first, in the smallest unsigned dtype that holds the vocabulary
    build-<id>/tokenizer.json   the trained or given BPE tokenizer (bpe only)

meta.json is written last, by an atomic rename, and names its build directory: an interrupted prepare leaves at most
an unreferenced build directory (removed by the next prepare), never a copy that a later fit trusts. Every build
directory is recorded in .builds.json before it is created, and clean-up removes only the directories recorded there
(or named by meta.json): a directory of the user's, whatever its name, is never touched.

A copy is checked where it is read, at a cost that does not grow with the corpus: meta.json's fields and types, the
token file's dtype and length, the ends of the token file and the tokenizer file's fingerprint when it is opened, and
every batch's ids against the vocabulary as they are read (lightning_trickster.data). A copy found damaged when opened
is rebuilt; one found damaged by a batch is named with the fix (DamagedCopy.fix).

Split: the byte and char tokenizers train on the first train_fraction of the token stream and validate on the rest,
exactly as when the corpus was tokenized on every run. BPE splits the documents' characters at train_fraction
instead and tokenizes the two parts separately, so the tokenizer is trained on training text only.
Documents (the files of a directory or glob, in sorted path order) are joined with the tokenizer's separator.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from lightning_trickster.errors import DataError, InvalidConfigError, TricksterError, not_a_readable_file
from lightning_trickster.runs import LockFile
from lightning_trickster.tokenizer import END_OF_TEXT, BPETokenizer, ByteTokenizer, CharTokenizer, Tokenizer

FORMAT_VERSION = 1
READ_CHUNK_BYTES = 4 << 20  # bounded memory: a corpus is read, decoded and tokenized in pieces of this size
# Text is handed to the BPE library in pieces cut after a newline where possible, a batch of pieces per call (encoded
# in parallel). The library keeps ~100 bytes per token while encoding, so a batch stays near 1 MB of text.
BPE_PIECE_CHARS = 1 << 16
BPE_BATCH_PIECES = 16
BINARY_SNIFF_BYTES = 8192  # like git: a NUL byte in the first 8 KiB marks a binary file, skipped in a directory

OnBadFile = Literal["fail", "skip"]

# Under Lightning's logger, so messages show like the run summary's (on every rank) and -q quiets them.
log = logging.getLogger("lightning.pytorch.trickster.prepare")


def is_glob(spec: str) -> bool:
    return glob.has_magic(spec)


def list_corpus_files(spec: str) -> list[Path]:
    """The files a corpus spec names: the file itself, every non-hidden file under a directory, or a glob's
    matches (with ** for any depth), sorted by path."""
    if is_glob(spec):
        matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True) if Path(p).is_file())
        if not matches:
            raise DataError(
                f"--data.path glob {spec!r} matches no files: check the pattern (quote it so the shell does not "
                "expand it; use ** to search subdirectories)"
            )
        return matches
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise DataError(f"directory {path} has no text files: pass --data.path a directory with UTF-8 files in it")
        return files
    problem = not_a_readable_file(path)
    if problem:
        raise DataError(
            f"data file {path} {problem}: pass --data.path pointing to a UTF-8 text file, a directory or a glob"
        )
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty: pass --data.path pointing to a UTF-8 text file")
    return [path]


@dataclass
class Document:
    """One corpus file as scanned: identity for staleness checks, and how many characters it holds."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    characters: int


@dataclass
class CorpusScan:
    """Every file of a corpus read once: the documents kept, the files skipped and why, and the characters used."""

    spec: str
    documents: list[Document]
    skipped: list[dict[str, Any]]
    characters: set[str] = field(default_factory=set)

    @property
    def total_bytes(self) -> int:
        return sum(d.size for d in self.documents)

    @property
    def total_characters(self) -> int:
        return sum(d.characters for d in self.documents)

    def char_vocab(self, separator: str) -> str:
        """The char tokenizer's vocabulary: the corpus' characters, plus the separator's when files are joined."""
        used = self.characters | (set(separator) if len(self.documents) > 1 else set())
        return "".join(sorted(used))


def _file_identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def scan_corpus(spec: str, *, require_utf8: bool, on_bad_file: OnBadFile, collect_characters: bool) -> CorpusScan:
    """Read every file once (hash, UTF-8 check, character count) in READ_CHUNK_BYTES pieces.

    In a directory or glob, binary files (a NUL byte near the start) are skipped silently and non-UTF-8 text files
    fail or are skipped as on_bad_file says. A single file passed by name is always used: for the byte tokenizer it
    need not be UTF-8 (any bytes tokenize; its characters are then counted as bytes)."""
    files = list_corpus_files(spec)
    many = Path(os.path.expanduser(spec)).is_dir() or is_glob(spec)
    documents, skipped, characters = [], [], set()
    ascii_seen = np.zeros(128, dtype=bool)
    with progress_bar(sum(p.stat().st_size for p in files), "prepare: reading") as bar:
        for path in files:
            size, mtime_ns = _file_identity(path)
            digest = hashlib.sha256()
            decoder = codecs.getincrementaldecoder("utf-8")()
            num_characters = 0
            problem = None
            with path.open("rb") as stream:
                position = 0
                if many and b"\0" in stream.read(BINARY_SNIFF_BYTES):
                    problem = "binary"
                stream.seek(0)
                while problem != "binary" and (chunk := stream.read(READ_CHUNK_BYTES)):
                    position += len(chunk)
                    bar.update(len(chunk))
                    digest.update(chunk)
                    if problem is not None:
                        continue  # a single non-UTF-8 file for the byte tokenizer: hash it all the same
                    if chunk.isascii() and not decoder.getstate()[0]:
                        # Fast path for ASCII (most code and English): valid UTF-8, one character per byte.
                        num_characters += len(chunk)
                        if collect_characters:
                            ascii_seen |= np.bincount(np.frombuffer(chunk, dtype=np.uint8), minlength=128) > 0
                        continue
                    try:
                        text = decoder.decode(chunk)
                    except UnicodeDecodeError as err:
                        problem = f"not UTF-8 ({err.reason} at byte {position - len(chunk) + err.start})"
                        if require_utf8 or many:
                            break
                        continue
                    num_characters += len(text)
                    if collect_characters:
                        characters.update(text)
                if problem is None:
                    try:
                        decoder.decode(b"", final=True)
                    except UnicodeDecodeError as err:
                        problem = f"not UTF-8 ({err.reason} at the end)"
            if problem is not None and (problem == "binary" or require_utf8 or many):
                bar.update(size - position)
                if problem != "binary":
                    if not many:
                        raise DataError(
                            f"{path} is not UTF-8 text ({problem.removeprefix('not UTF-8 (')[:-1]}): convert it to "
                            "UTF-8 or use --data.tokenizer byte"
                        )
                    if on_bad_file == "fail":
                        raise DataError(
                            f"{path} is {problem}: convert it to UTF-8, remove it from the corpus, or pass "
                            "--data.on_bad_file skip to leave such files out"
                        )
                    log.warning(f"prepare: skipping {path}: {problem}")
                skipped.append({"path": str(path), "size": size, "mtime_ns": mtime_ns, "reason": problem})
                continue
            counted = num_characters if problem is None else size
            documents.append(Document(str(path), size, mtime_ns, digest.hexdigest(), counted))
    if not documents:
        raise DataError(
            f"{spec} has no text files (each one is binary or not UTF-8): pass --data.path a file, directory or glob "
            "of UTF-8 text"
        )
    return CorpusScan(spec, documents, skipped, characters | {chr(c) for c in np.flatnonzero(ascii_seen)})


def scan_is_current(scan: CorpusScan) -> bool:
    """Whether no corpus file was added, removed or modified since the scan (by path, size and mtime)."""
    try:
        now = [(str(p), *_file_identity(p)) for p in list_corpus_files(scan.spec)]
    except DataError:
        return False
    recorded = [(d.path, d.size, d.mtime_ns) for d in scan.documents]
    recorded += [(s["path"], s["size"], s["mtime_ns"]) for s in scan.skipped]
    return sorted(now) == sorted(recorded)


def progress_bar(total: int, description: str, unit: str = "B") -> tqdm:
    """A progress bar with its rate (MB/s for bytes); tqdm leaves it out when stderr is not a terminal."""
    return tqdm(total=total, desc=description, unit=unit, unit_scale=True, dynamic_ncols=True, disable=None)


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every token id."""
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 65_536:
        return np.dtype(np.uint16)
    raise InvalidConfigError(f"a vocabulary of {vocab_size:,} tokens does not fit in uint16: use at most 65,536")


def _read_text(path: str) -> Iterator[tuple[str, int]]:
    """A UTF-8 file's text in pieces, each with the number of bytes it was decoded from."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as stream:
        while chunk := stream.read(READ_CHUNK_BYTES):
            yield decoder.decode(chunk), len(chunk)
    yield decoder.decode(b"", final=True), 0


def _read_bytes(path: str) -> Iterator[bytes]:
    with open(path, "rb") as stream:
        while chunk := stream.read(READ_CHUNK_BYTES):
            yield chunk


CHAR_CORPUS_FIX = (
    "train with the vocabulary built from this corpus (drop --data.vocab, or the --ckpt_path of a run on another "
    "corpus) or use --data.tokenizer byte"
)


def _text_pieces(documents: list[Document], start_char: int, end_char: int) -> Iterator[tuple[str, bool]]:
    """The text between two character offsets of the joined documents (separators not counted), in pieces of
    about BPE_PIECE_CHARS cut after a newline; the flag says a document separator follows the piece."""
    offset = 0
    for index, document in enumerate(documents):
        doc_start, doc_end = offset, offset + document.characters
        offset = doc_end
        if doc_end <= start_char or doc_start >= end_char:
            continue
        position, buffer = doc_start, ""
        for text, _ in _read_text(document.path):
            lo, hi = max(start_char - position, 0), min(end_char - position, len(text))
            position += len(text)
            if lo < hi:
                buffer += text[lo:hi]
            while len(buffer) >= BPE_PIECE_CHARS:
                cut = buffer.rfind("\n", 0, BPE_PIECE_CHARS) + 1 or BPE_PIECE_CHARS
                yield buffer[:cut], False
                buffer = buffer[cut:]
            if position >= end_char:
                break
        yield buffer, doc_end <= end_char and index < len(documents) - 1


def train_bpe(scan: CorpusScan, vocab_size: int, train_characters: int) -> BPETokenizer:
    """A byte-level BPE with vocab_size tokens (END_OF_TEXT included) trained on the training characters."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    with progress_bar(train_characters, "prepare: training BPE", unit="char") as bar:

        def pieces() -> Iterator[str]:
            for text, _ in _text_pieces(scan.documents, 0, train_characters):
                bar.update(len(text))
                yield text

        hf.train_from_iterator(pieces(), trainer=trainer)
    trained = BPETokenizer(hf.to_str(), source="training")
    if trained.vocab_size < vocab_size:
        raise DataError(
            f"the training split supports only {trained.vocab_size:,} BPE tokens (every pair of tokens in it is "
            f"already merged), fewer than --data.vocab_size {vocab_size:,}: use --data.vocab_size "
            f"{trained.vocab_size} or less, or a larger corpus"
        )
    return trained


def write_error(path: Path, err: OSError) -> DataError:
    """The one line for a prepared copy's file that could not be written (a full disk, a read-only directory)."""
    return DataError(
        f"could not write {path} ({err.strerror or err}): free space on that filesystem (or make it writable) and run "
        "again, or pass --data.prepared_dir a directory on a filesystem with room; any earlier prepared copy is kept"
    )


class TokenWriter:
    """Appends token ids to a file as the given dtype, counting them."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path = path
        try:
            self.stream = path.open("wb")
        except OSError as err:
            raise write_error(path, err) from None
        self.dtype = dtype
        self.count = 0

    def write(self, ids: np.ndarray | list[int]) -> None:
        array = np.ascontiguousarray(ids, dtype=self.dtype)
        try:
            self.stream.write(array.data)  # no copy when the ids already have the file's dtype (byte)
        except OSError as err:
            raise write_error(self.path, err) from None
        self.count += len(array)

    def close(self) -> None:
        try:
            self.stream.close()  # writes what is still buffered
        except OSError as err:
            raise write_error(self.path, err) from None


def write_tokens(scan: CorpusScan, tokenizer: Tokenizer, out: Path, train_fraction: float) -> tuple[int, int]:
    """Tokenize every document into out; returns (total tokens, training tokens)."""
    writer = TokenWriter(out, token_dtype(tokenizer.vocab_size))
    try:
        if isinstance(tokenizer, BPETokenizer):
            train_characters = int(scan.total_characters * train_fraction)
            separator = bpe_separator(tokenizer) if len(scan.documents) > 1 else []
            with progress_bar(scan.total_characters, "prepare: encoding bpe", unit="char") as bar:
                for start, end in ((0, train_characters), (train_characters, scan.total_characters)):
                    batch: list[str] = []
                    ends: list[bool] = []
                    for text, document_ends in _text_pieces(scan.documents, start, end):
                        batch.append(text)
                        ends.append(document_ends)
                        if len(batch) == BPE_BATCH_PIECES:
                            _write_bpe_batch(tokenizer, batch, ends, separator, writer, bar)
                            batch, ends = [], []
                    _write_bpe_batch(tokenizer, batch, ends, separator, writer, bar)
                    if start == 0:
                        train_tokens = writer.count
        else:
            with progress_bar(scan.total_bytes, f"prepare: encoding {tokenizer.name}") as bar:
                for i, document in enumerate(scan.documents):
                    if isinstance(tokenizer, CharTokenizer):
                        if i:
                            writer.write(tokenizer.encode_ids(tokenizer.separator))
                        _write_chars(document.path, tokenizer, writer, bar)
                    else:
                        if i:
                            writer.write(np.frombuffer(tokenizer.separator.encode("utf-8"), dtype=np.uint8))
                        for chunk in _read_bytes(document.path):
                            writer.write(np.frombuffer(chunk, dtype=np.uint8))
                            bar.update(len(chunk))
            train_tokens = int(writer.count * train_fraction)
    finally:
        writer.close()
    return writer.count, train_tokens


def _write_chars(path: str, tokenizer: CharTokenizer, writer: TokenWriter, bar: tqdm) -> None:
    """A UTF-8 file as char token ids; ASCII chunks are looked up byte by byte without decoding."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    where = f"corpus file {path}"
    for chunk in _read_bytes(path):
        ascii_chunk = chunk.isascii() and not decoder.getstate()[0]
        writer.write(tokenizer.encode_ids(chunk if ascii_chunk else decoder.decode(chunk), where, CHAR_CORPUS_FIX))
        bar.update(len(chunk))
    writer.write(tokenizer.encode_ids(decoder.decode(b"", final=True), where, CHAR_CORPUS_FIX))


def bpe_separator(tokenizer: BPETokenizer) -> list[int]:
    """The id of END_OF_TEXT, which joins the documents of a corpus of several files: a tokenizer.json from elsewhere
    must have it as one token of its own."""
    ids = tokenizer.encode_batch([END_OF_TEXT])[0]
    if len(ids) != 1:
        raise DataError(
            f"the BPE tokenizer from {tokenizer.source} has no {END_OF_TEXT} token (it encodes it as {len(ids)} "
            f"tokens), which joins the files of a corpus of several: add {END_OF_TEXT} to it as a special token, or "
            "drop --data.tokenizer_path to train one on the corpus"
        )
    return ids


def _write_bpe_batch(tokenizer, batch, ends, separator, writer, bar) -> None:
    if not batch:
        return
    try:
        encoded = tokenizer.encode_batch(batch)
    except Exception as err:  # tokenizers raises plain Exceptions for text a foreign tokenizer.json cannot encode
        raise DataError(
            f"the BPE tokenizer from {tokenizer.source} cannot encode the corpus "
            f"({' '.join(str(err).split())[:120]}): pass a tokenizer.json that encodes any text (a byte-level BPE), or "
            "drop --data.tokenizer_path to train one on the corpus"
        ) from None
    for text, ids, document_ends in zip(batch, encoded, ends, strict=True):
        writer.write(ids)
        if document_ends:
            writer.write(separator)
        bar.update(len(text))


@dataclass(frozen=True)
class TokenizerRequest:
    """The tokenizer a config asks for: one given in full (byte; char or bpe from a checkpoint or a tokenizer.json),
    or one to build from the corpus (char's vocabulary; a BPE of vocab_size tokens trained on the training split)."""

    name: str
    given: Tokenizer | None = None
    vocab_size: int | None = None

    def describe(self) -> str:
        if self.given is not None:
            return f"{self.name} (vocabulary {self.given.vocab_size:,}, given)"
        return f"{self.name} (vocabulary {self.vocab_size:,}, trained on the corpus)" if self.vocab_size else self.name

    def matches(self, record: dict[str, Any]) -> bool:
        """Whether a prepared copy's tokenizer record is the tokenizer this request produces."""
        if record["name"] != self.name:
            return False
        if self.given is None:
            return record["built_from_corpus"] and (self.name != "bpe" or record["vocab_size"] == self.vocab_size)
        if isinstance(self.given, CharTokenizer):
            return record["vocab"] == self.given.vocab
        if isinstance(self.given, BPETokenizer):
            return record["fingerprint"] == self.given.fingerprint
        return True


def describe_record(record: dict[str, Any]) -> str:
    origin = "trained on the corpus" if record["built_from_corpus"] and record["name"] != "char" else "given"
    if record["name"] == "byte":
        return "byte"
    if record["name"] == "char":
        return f"char (vocabulary {record['vocab_size']:,})"
    return f"bpe (vocabulary {record['vocab_size']:,}, {origin})"


@dataclass
class PreparedCorpus:
    """A prepared copy opened for training: its metadata, the tokenizer and every token, memory-mapped."""

    directory: Path
    meta: dict[str, Any]
    tokenizer: Tokenizer
    tokens: np.ndarray
    reused: bool

    @property
    def train(self) -> np.ndarray:
        return map_tokens(self.directory / self.meta["tokens_file"], self.tokens.dtype, 0, self.meta["train_tokens"])

    @property
    def val(self) -> np.ndarray:
        train, val = self.meta["train_tokens"], self.meta["val_tokens"]
        return map_tokens(self.directory / self.meta["tokens_file"], self.tokens.dtype, train, val)

    @property
    def characters_per_token(self) -> float:
        return self.meta["characters"] / self.meta["num_tokens"]

    def describe(self) -> str:
        """One line: what was prepared, its compression and split, and where the copy is."""
        meta = self.meta
        files = len(meta["documents"])
        skipped = f", {len(meta['skipped'])} skipped" if meta["skipped"] else ""
        how = "reused" if self.reused else f"built in {meta['seconds']:.1f} s"
        return (
            f"{meta['corpus']}: {files:,} file{'s' if files != 1 else ''}{skipped}, {meta['bytes'] / 1e6:,.1f} MB "
            f"-> {meta['num_tokens']:,} {meta['tokenizer']['name']} tokens (vocab {self.tokenizer.vocab_size:,}, "
            f"{self.characters_per_token:.2f} characters per token, {meta['dtype']}), train {meta['train_tokens']:,} "
            f"/ val {meta['val_tokens']:,}; prepared copy {self.directory} ({how})"
        )


def map_tokens(path: Path, dtype: np.dtype, start: int, count: int) -> np.ndarray:
    """count tokens from token start of a token file, memory-mapped read-only (its own memmap, so that its
    filename and offset describe exactly this range: see RandomWindows' pickling)."""
    if count == 0:
        return np.empty(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=start * dtype.itemsize, shape=(count,))


class DamagedCopy(Exception):
    """A prepared copy whose files contradict its metadata or are not what this program writes. prepare_corpus
    rebuilds it; where it cannot (a batch read during training), raise DataError(DamagedCopy.fix(...))."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem

    @staticmethod
    def fix(directory: Path, problem: str) -> str:
        """The one-line message for a copy found damaged where it cannot be rebuilt."""
        return (
            f"the prepared copy in {directory} is damaged ({problem}): delete {directory / 'meta.json'} and run the "
            "command again, which rebuilds it"
        )


BUILD_NAME = re.compile(r"build-[0-9a-f]{12}")
_INT = (int,)
_NUMBER = (int, float)
META_FIELDS: dict[str, tuple[type, ...]] = {
    "format": _INT, "corpus": (str,), "documents": (list,), "skipped": (list,), "skipped_bad": (bool,),
    "on_bad_file": (str,), "bytes": _INT, "characters": _INT, "tokenizer": (dict,), "dtype": (str,),
    "tokens_file": (str,), "num_tokens": _INT, "train_fraction": _NUMBER, "train_tokens": _INT, "val_tokens": _INT,
    "seconds": _NUMBER,
}  # fmt: skip
DOCUMENT_FIELDS = {"path": (str,), "size": _INT, "mtime_ns": _INT}
TOKENIZER_FIELDS = {"name": (str,), "vocab_size": _INT, "built_from_corpus": (bool,)}


def _field_problem(record: Any, fields: dict[str, tuple[type, ...]], what: str) -> str | None:
    if not isinstance(record, dict):
        return f"{what} is a {type(record).__name__}, not an object"
    for key, types in fields.items():
        value = record.get(key)
        # bool is an int to Python; a true/false where a number belongs is damage all the same
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"{what} has {key}={value!r}" if key in record else f"{what} has no {key}"
    return None


def meta_problem(meta: Any) -> str | None:
    """What is wrong with a prepared copy's meta.json of this program's format, or None: every field it reads,
    with the type and the relations this program writes them with (no file is read)."""
    problem = _field_problem(meta, META_FIELDS, "meta.json")
    if problem:
        return problem
    for key in ("documents", "skipped"):
        for entry in meta[key]:
            problem = _field_problem(entry, DOCUMENT_FIELDS, f"a {key} entry")
            if problem:
                return problem
    if meta["on_bad_file"] not in ("fail", "skip"):
        return f"meta.json has on_bad_file={meta['on_bad_file']!r}"
    record = meta["tokenizer"]
    problem = _field_problem(record, TOKENIZER_FIELDS, "its tokenizer")
    if problem:
        return problem
    name, vocab_size = record["name"], record["vocab_size"]
    if name not in ("byte", "char", "bpe") or not 0 < vocab_size <= 65_536:
        return f"its tokenizer is {name!r} with {vocab_size} tokens"
    if name == "char" and (not isinstance(record.get("vocab"), str) or len(record["vocab"]) != vocab_size):
        return f"its char tokenizer's vocabulary is not {vocab_size} characters"
    build = meta["tokens_file"].split("/")[0]
    if not BUILD_NAME.fullmatch(build) or meta["tokens_file"] != f"{build}/tokens.bin":
        return f"meta.json names the token file {meta['tokens_file']!r}"
    bpe_file, fingerprint = record.get("file"), record.get("fingerprint")
    if name == "bpe" and (bpe_file != f"{build}/tokenizer.json" or not isinstance(fingerprint, str)):
        return f"its BPE tokenizer is {bpe_file!r}, fingerprint {fingerprint!r}"
    if meta["dtype"] != token_dtype(vocab_size).name:
        return f"its dtype is {meta['dtype']!r}, but {vocab_size:,} tokens are stored as {token_dtype(vocab_size).name}"
    counts = meta["num_tokens"], meta["train_tokens"], meta["val_tokens"]
    if min(counts) < 0 or counts[0] != counts[1] + counts[2]:
        return f"its token counts do not add up ({counts[1]:,} train + {counts[2]:,} val != {counts[0]:,})"
    return None


def read_meta(directory: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(meta, None) for a prepared copy's metadata of this program's format, (None, problem) for damaged or foreign
    metadata (another format counts as stale, not damaged: see stale_reason), (None, None) when there is none."""
    path = directory / "meta.json"
    if not path.is_file():
        return None, None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"meta.json does not read as JSON: {getattr(err, 'strerror', None) or err}"
    if isinstance(meta, dict) and meta.get("format") != FORMAT_VERSION:
        return meta, None
    problem = meta_problem(meta)
    return (None, problem) if problem else (meta, None)


def stale_reason(
    meta: dict[str, Any], spec: str, request: TokenizerRequest, train_fraction: float, on_bad_file: OnBadFile
) -> str | None:
    """Why a prepared copy does not match the config and corpus now, or None if it can be reused.

    Files are compared by path, size and modification time; a file whose time changed but not its size is
    re-hashed, so touching a file does not rebuild the copy."""
    if meta.get("format") != FORMAT_VERSION:
        return f"it has format {meta.get('format')!r}, this version writes {FORMAT_VERSION}"
    if meta["corpus"] != spec:
        return f"it was prepared from {meta['corpus']}"
    if meta["train_fraction"] != train_fraction:
        return f"the split changed (train_fraction {meta['train_fraction']} -> {train_fraction})"
    if meta["on_bad_file"] != on_bad_file and meta["skipped_bad"]:
        return f"on_bad_file changed ({meta['on_bad_file']} -> {on_bad_file})"
    if not request.matches(meta["tokenizer"]):
        return f"the tokenizer changed ({describe_record(meta['tokenizer'])} -> {request.describe()})"
    recorded = {d["path"]: d for d in meta["documents"] + meta["skipped"]}
    now = list_corpus_files(spec)
    if sorted(recorded) != sorted(str(p) for p in now):
        return "files were added to or removed from the corpus"
    for path in now:
        size, mtime_ns = _file_identity(path)
        entry = recorded[str(path)]
        if size != entry["size"]:
            return f"{path} changed"
        if mtime_ns != entry["mtime_ns"] and entry.get("sha256") is not None:
            digest = hashlib.sha256()
            for chunk in _read_bytes(str(path)):
                digest.update(chunk)
            if digest.hexdigest() != entry["sha256"]:
                return f"{path} changed"
    return None


def open_prepared(directory: Path, meta: dict[str, Any], reused: bool) -> PreparedCorpus:
    """Map the token file after checking it is complete; load the tokenizer the copy was made with. Raises
    DamagedCopy when the files contradict the metadata (meta_problem has checked the metadata itself)."""
    record = meta["tokenizer"]
    if record["name"] == "byte":
        tokenizer: Tokenizer = ByteTokenizer()
    elif record["name"] == "char":
        tokenizer = CharTokenizer(record["vocab"])
    else:
        try:
            tokenizer = BPETokenizer.from_file(directory / record["file"])
        except TricksterError as err:
            raise DamagedCopy(f"its tokenizer: {err}") from None
        if tokenizer.fingerprint != record["fingerprint"] or tokenizer.vocab_size != record["vocab_size"]:
            raise DamagedCopy(f"{record['file']} is not the tokenizer the copy was made with")
    path = directory / meta["tokens_file"]
    dtype = np.dtype(meta["dtype"])
    expected = meta["num_tokens"] * dtype.itemsize
    actual = path.stat().st_size if path.is_file() else None
    if actual != expected:
        found = "missing" if actual is None else f"{actual:,} bytes"
        raise DamagedCopy(
            f"{meta['tokens_file']} is {found}, but meta.json says {meta['num_tokens']:,} {dtype} tokens "
            f"({expected:,} bytes)"
        )
    tokens = np.memmap(path, dtype=dtype, mode="r") if expected else np.empty(0, dtype=dtype)
    # The ends of the file at once; every other id is checked as a batch reads it (lightning_trickster.data).
    ends = np.concatenate([tokens[:65_536], tokens[-65_536:]])
    if len(ends) and int(ends.max()) >= tokenizer.vocab_size:
        raise DamagedCopy(
            f"{meta['tokens_file']} holds token id {int(ends.max())}, outside the {tokenizer.vocab_size:,}-token "
            "vocabulary"
        )
    return PreparedCorpus(directory, meta, tokenizer, tokens, reused)


def find_prepared(
    spec: str, directory: Path, request: TokenizerRequest, train_fraction: float, on_bad_file: OnBadFile
) -> PreparedCorpus | None:
    """The prepared copy in directory if it matches the config and the corpus as it is now, else None (also when it
    is damaged: prepare_corpus then rebuilds it)."""
    meta, _ = read_meta(directory)
    if meta is None or stale_reason(meta, spec, request, train_fraction, on_bad_file) is not None:
        return None
    try:
        return open_prepared(directory, meta, reused=True)
    except DamagedCopy:
        return None


def prepared_lock(directory: Path) -> LockFile:
    """The exclusive lock on a prepared directory, so concurrent runs prepare it once (the rest then reuse it)."""
    return LockFile(directory / ".lock", "preparing or checking this prepared copy")


def prepare_corpus(
    spec: str,
    directory: Path,
    request: TokenizerRequest,
    *,
    train_fraction: float,
    on_bad_file: OnBadFile = "fail",
    must_match_tokenizer: bool = False,
    scan: CorpusScan | None = None,
) -> PreparedCorpus:
    """Reuse the prepared copy of spec in directory, or build it (replacing a stale or damaged one).

    Args:
        spec: the corpus: a file, a directory or a glob.
        directory: where the prepared copy lives.
        request: the tokenizer to tokenize with.
        train_fraction: the training split's share (see the module docstring for how the split is made).
        on_bad_file: what to do with a non-UTF-8 file in a directory or glob: "fail" or "skip" it.
        must_match_tokenizer: refuse to replace a copy made with another tokenizer (a directory the user named)
            instead of rebuilding it.
        scan: a scan of the corpus made earlier in this process, reused if no file changed since.
    """
    make_data_directory(directory)
    lock = prepared_lock(directory)
    try:
        lock.acquire_waiting(lambda line: log.warning(f"prepare: {line}"), f"the prepared copy in {directory}")
    except OSError as err:
        raise write_error(lock.path, err) from None
    try:
        meta, damage = read_meta(directory)
        if meta is not None:
            current_format = meta["format"] == FORMAT_VERSION  # else only format and tokens_file are known to exist
            if must_match_tokenizer and current_format and not request.matches(meta["tokenizer"]):
                raise DataError(
                    f"{directory} was prepared with the {describe_record(meta['tokenizer'])} tokenizer, but the config "
                    f"asks for {request.describe()}: use the tokenizer it was prepared with, or another "
                    f"--data.prepared_dir (or delete {directory / 'meta.json'} to rebuild it)"
                )
            reason = stale_reason(meta, spec, request, train_fraction, on_bad_file)
            if reason is None:
                try:
                    return open_prepared(directory, meta, reused=True)
                except DamagedCopy as err:
                    damage = err.problem
            else:
                log.info(f"prepare: rebuilding {directory}: {reason}")
        if damage is not None:
            log.warning(f"prepare: rebuilding {directory}: the copy there is damaged ({damage})")
        named = _build_of(meta)
        _remove_builds(directory, keep=named)  # interrupted ones
        log.info(f"prepare: tokenizing {spec} with {request.describe()} into {directory}")
        meta = _build(spec, directory, request, train_fraction, on_bad_file, scan)
        _remove_builds(directory, keep=_build_of(meta), also=named)  # the copy it replaced
        return open_prepared(directory, meta, reused=False)
    finally:
        lock.release()


def make_data_directory(directory: Path) -> None:
    """Create a directory the data module writes to (a download or a prepared copy), or raise one line: a path
    under a file, or one without write permission, would otherwise fail with a traceback."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"data directory {directory} cannot be created ({err.strerror or err}): pass --data.cache_dir (or "
            "--data.prepared_dir) a directory you can write to"
        ) from None


BUILDS_FILE = ".builds.json"
"""Every build directory prepare created in a prepared directory and has not removed yet, recorded before it is made:
the only directories (with the one meta.json names) that clean-up may remove."""


def _build_of(meta: dict[str, Any] | None) -> str | None:
    """The build directory a checked meta.json names (meta_problem has checked its name)."""
    if meta is None or not isinstance(meta.get("tokens_file"), str):
        return None
    build = meta["tokens_file"].split("/")[0]
    return build if BUILD_NAME.fullmatch(build) else None


def recorded_builds(directory: Path) -> list[str]:
    """The build directories .builds.json records; none when it is missing or unreadable (then nothing is removed)."""
    try:
        names = json.loads((directory / BUILDS_FILE).read_text(encoding="utf-8")).get("builds", [])
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return []
    return [name for name in names if isinstance(name, str) and BUILD_NAME.fullmatch(name)]


def _record_builds(directory: Path, names: list[str]) -> None:
    path = directory / BUILDS_FILE
    temporary = directory / f"{BUILDS_FILE}.tmp"  # one writer at a time: the directory's lock is held
    try:
        temporary.write_text(json.dumps({"builds": sorted(set(names))}), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise write_error(path, err) from None


def _remove_builds(directory: Path, keep: str | None, also: str | None = None) -> None:
    """Remove the build directories prepare recorded (and `also`, the one a replaced meta.json named), except keep;
    nothing else in the directory is touched."""
    recorded = recorded_builds(directory)
    for name in {*recorded, *([also] if also else [])} - {keep}:
        shutil.rmtree(directory / name, ignore_errors=True)
    remaining = [name for name in recorded if name == keep or (directory / name).exists()]
    if remaining != recorded:
        _record_builds(directory, remaining)


def _build(
    spec: str,
    directory: Path,
    request: TokenizerRequest,
    train_fraction: float,
    on_bad_file: OnBadFile,
    scan: CorpusScan | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    if scan is None or not scan_is_current(scan):
        scan = scan_corpus(
            spec,
            require_utf8=request.name != "byte",
            on_bad_file=on_bad_file,
            collect_characters=request.name == "char" and request.given is None,
        )
    build = directory / f"build-{uuid.uuid4().hex[:12]}"
    _record_builds(directory, [*recorded_builds(directory), build.name])  # before it exists: see BUILDS_FILE
    try:
        build.mkdir()
        return _build_into(build, spec, scan, request, train_fraction, on_bad_file, started)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)  # this run's own, partial build (a later prepare would remove it too)
        raise


def _build_into(
    build: Path,
    spec: str,
    scan: CorpusScan,
    request: TokenizerRequest,
    train_fraction: float,
    on_bad_file: OnBadFile,
    started: float,
) -> dict[str, Any]:
    directory = build.parent
    tokenizer = request.given
    if tokenizer is None and request.name == "char":
        tokenizer = CharTokenizer(scan.char_vocab(CharTokenizer.separator))
    elif tokenizer is None:
        tokenizer = train_bpe(scan, request.vocab_size, int(scan.total_characters * train_fraction))
    record: dict[str, Any] = {
        "name": tokenizer.name,
        "vocab_size": tokenizer.vocab_size,
        "built_from_corpus": request.given is None,
    }
    if isinstance(tokenizer, CharTokenizer):
        record["vocab"] = tokenizer.vocab
    if isinstance(tokenizer, BPETokenizer):
        record["file"] = f"{build.name}/tokenizer.json"
        record["fingerprint"] = tokenizer.fingerprint
        try:
            (build / "tokenizer.json").write_text(tokenizer.json, encoding="utf-8")
        except OSError as err:
            raise write_error(build / "tokenizer.json", err) from None
    tokens_file = build / "tokens.bin"
    num_tokens, train_tokens = write_tokens(scan, tokenizer, tokens_file, train_fraction)
    meta = {
        "format": FORMAT_VERSION,
        "corpus": spec,
        "documents": [vars(d) for d in scan.documents],
        "skipped": scan.skipped,
        "skipped_bad": any(s["reason"] != "binary" for s in scan.skipped),
        "on_bad_file": on_bad_file,
        "separator": tokenizer.separator if len(scan.documents) > 1 else None,
        "bytes": scan.total_bytes,
        "characters": scan.total_characters,
        "tokenizer": record,
        "dtype": token_dtype(tokenizer.vocab_size).name,
        "tokens_file": f"{build.name}/tokens.bin",
        "num_tokens": num_tokens,
        "train_fraction": train_fraction,
        "train_tokens": train_tokens,
        "val_tokens": num_tokens - train_tokens,
        "split": "bpe: by document characters" if tokenizer.name == "bpe" else "by tokens",
        "seconds": round(time.perf_counter() - started, 3),
    }
    # Metadata last, by atomic rename: until this line a later run sees no copy (or the old, stale one). Written in
    # the build directory, so that an interrupted write leaves nothing outside it.
    temporary = build / ".meta.json.tmp"
    try:
        with temporary.open("w", encoding="utf-8") as out:
            json.dump(meta, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, directory / "meta.json")
    except OSError as err:
        raise write_error(directory / "meta.json", err) from None
    return meta
