"""Prepare a corpus once: tokenize a file, directory or glob of UTF-8 files into one memory-mappable token file.

A prepared copy is a directory holding

    meta.json              what was prepared: corpus files (size, mtime, sha256), tokenizer, token counts, split
    build-<id>/tokens.bin  every token, training split first, in the smallest unsigned dtype that holds the vocabulary
    build-<id>/tokenizer.json   the trained or given BPE tokenizer (bpe only)

meta.json is written last, by an atomic rename, and names its build directory: an interrupted prepare leaves at most
an unreferenced build directory (removed by the next prepare), never a copy that a later fit trusts.

Split: the byte and char tokenizers train on the first train_fraction of the token stream and validate on the rest,
exactly as when the corpus was tokenized on every run. BPE splits the documents' characters at train_fraction
instead and tokenizes the two parts separately, so the tokenizer is trained on training text only.
Documents (the files of a directory or glob, in sorted path order) are joined with the tokenizer's separator.
"""

from __future__ import annotations

import codecs
import fcntl
import glob
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from lightning_trickster.errors import DataError, InvalidConfigError
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
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise DataError(f"directory {path} has no text files: pass --data.path a directory with UTF-8 files in it")
        return files
    if not path.is_file():
        raise DataError(
            f"data file {path} not found: pass --data.path pointing to a UTF-8 text file, a directory or a glob"
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
    many = Path(spec).expanduser().is_dir() or is_glob(spec)
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


def _encode_chars(text: str, table: np.ndarray, vocab: str) -> np.ndarray:
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ids = table[codepoints]
    if (ids < 0).any():
        unknown = "".join(sorted({chr(c) for c in codepoints[ids < 0][:1000]}))
        raise DataError(
            f"the corpus has characters outside the char vocabulary ({unknown[:20]!r}): train with the vocabulary "
            "built from this corpus (no --data.vocab, no --ckpt_path from another corpus) or use --data.tokenizer byte"
        )
    return ids


def _char_table(vocab: str) -> np.ndarray:
    """Code point -> token id (-1 for characters outside the vocabulary): one lookup per character."""
    table = np.full(0x110000, -1, dtype=np.int32)
    table[[ord(c) for c in vocab]] = np.arange(len(vocab), dtype=np.int32)
    return table


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


class TokenWriter:
    """Appends token ids to a file as the given dtype, counting them."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.stream = path.open("wb")
        self.dtype = dtype
        self.count = 0

    def write(self, ids: np.ndarray | list[int]) -> None:
        array = np.ascontiguousarray(ids, dtype=self.dtype)
        self.stream.write(array.data)  # no copy when the ids already have the file's dtype (byte)
        self.count += len(array)

    def close(self) -> None:
        self.stream.close()


def write_tokens(scan: CorpusScan, tokenizer: Tokenizer, out: Path, train_fraction: float) -> tuple[int, int]:
    """Tokenize every document into out; returns (total tokens, training tokens)."""
    writer = TokenWriter(out, token_dtype(tokenizer.vocab_size))
    try:
        if isinstance(tokenizer, BPETokenizer):
            train_characters = int(scan.total_characters * train_fraction)
            separator = tokenizer.encode_batch([END_OF_TEXT])[0]
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
            separator_bytes = tokenizer.separator.encode("utf-8")
            table = _char_table(tokenizer.vocab) if isinstance(tokenizer, CharTokenizer) else None
            with progress_bar(scan.total_bytes, f"prepare: encoding {tokenizer.name}") as bar:
                for i, document in enumerate(scan.documents):
                    if i:
                        separator = tokenizer.separator
                        writer.write(
                            _encode_chars(separator, table, tokenizer.vocab)
                            if table is not None
                            else np.frombuffer(separator_bytes, dtype=np.uint8)
                        )
                    if table is None:
                        for chunk in _read_bytes(document.path):
                            writer.write(np.frombuffer(chunk, dtype=np.uint8))
                            bar.update(len(chunk))
                    else:
                        _write_chars(document.path, table, tokenizer.vocab, writer, bar)
            train_tokens = int(writer.count * train_fraction)
    finally:
        writer.close()
    return writer.count, train_tokens


def _write_chars(path: str, table: np.ndarray, vocab: str, writer: TokenWriter, bar: tqdm) -> None:
    """A UTF-8 file as char token ids; ASCII chunks are looked up byte by byte without decoding."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for chunk in _read_bytes(path):
        if chunk.isascii() and not decoder.getstate()[0]:
            ids = table[np.frombuffer(chunk, dtype=np.uint8)]
            if (ids < 0).any():
                ids = _encode_chars(chunk.decode("ascii"), table, vocab)  # raises, naming the characters
        else:
            ids = _encode_chars(decoder.decode(chunk), table, vocab)
        writer.write(ids)
        bar.update(len(chunk))
    writer.write(_encode_chars(decoder.decode(b"", final=True), table, vocab))


def _write_bpe_batch(tokenizer, batch, ends, separator, writer, bar) -> None:
    if not batch:
        return
    for text, ids, document_ends in zip(batch, tokenizer.encode_batch(batch), ends, strict=True):
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


def read_meta(directory: Path) -> dict[str, Any] | None:
    path = directory / "meta.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(
            f"prepared metadata {path} is corrupt ({err}): delete {directory} and run prepare (or fit) again"
        ) from None


def stale_reason(
    meta: dict[str, Any], spec: str, request: TokenizerRequest, train_fraction: float, on_bad_file: OnBadFile
) -> str | None:
    """Why a prepared copy does not match the config and corpus now, or None if it can be reused.

    Files are compared by path, size and modification time; a file whose time changed but not its size is
    re-hashed, so touching a file does not rebuild the copy."""
    if meta.get("format") != FORMAT_VERSION:
        return f"it has format {meta.get('format')}, this version writes {FORMAT_VERSION}"
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
    """Map the token file after checking it is complete; load the tokenizer the copy was made with."""
    record = meta["tokenizer"]
    if record["name"] == "byte":
        tokenizer: Tokenizer = ByteTokenizer()
    elif record["name"] == "char":
        tokenizer = CharTokenizer(record["vocab"])
    else:
        tokenizer = BPETokenizer.from_file(directory / record["file"])
    path = directory / meta["tokens_file"]
    dtype = np.dtype(meta["dtype"])
    expected = meta["num_tokens"] * dtype.itemsize
    actual = path.stat().st_size if path.is_file() else None
    fix = f"delete {directory} and run prepare (or fit) again"
    if actual != expected:
        found = "missing" if actual is None else f"{actual:,} bytes"
        raise DataError(
            f"prepared token file {path} is {found}, but its metadata says {meta['num_tokens']:,} {dtype} tokens "
            f"({expected:,} bytes): the copy is truncated or corrupt; {fix}"
        )
    tokens = np.memmap(path, dtype=dtype, mode="r")
    # A cheap content check (the ends of the file), since hashing a large token file would slow every start.
    ends = np.concatenate([tokens[:65_536], tokens[-65_536:]])
    if int(ends.max()) >= tokenizer.vocab_size:
        raise DataError(
            f"prepared token file {path} holds token id {int(ends.max())}, outside the {tokenizer.vocab_size:,}-token "
            f"vocabulary: the copy is corrupt; {fix}"
        )
    return PreparedCorpus(directory, meta, tokenizer, tokens, reused)


def find_prepared(
    spec: str, directory: Path, request: TokenizerRequest, train_fraction: float, on_bad_file: OnBadFile
) -> PreparedCorpus | None:
    """The prepared copy in directory if it matches the config and the corpus as it is now, else None."""
    meta = read_meta(directory)
    if meta is None or stale_reason(meta, spec, request, train_fraction, on_bad_file) is not None:
        return None
    return open_prepared(directory, meta, reused=True)


class _DirectoryLock:
    """An exclusive lock on a prepared directory, so concurrent runs prepare it once (the rest then reuse it)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / ".lock"

    def __enter__(self) -> None:
        self.stream = self.path.open("a")
        fcntl.flock(self.stream, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.stream, fcntl.LOCK_UN)
        self.stream.close()


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
    """Reuse the prepared copy of spec in directory, or build it (replacing a stale one).

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
    with _DirectoryLock(directory):
        meta = read_meta(directory)
        if meta is not None:
            if must_match_tokenizer and not request.matches(meta["tokenizer"]):
                raise DataError(
                    f"{directory} was prepared with the {describe_record(meta['tokenizer'])} tokenizer, but the config "
                    f"asks for {request.describe()}: use the tokenizer it was prepared with, or another "
                    f"--data.prepared_dir (or delete {directory} to rebuild it)"
                )
            reason = stale_reason(meta, spec, request, train_fraction, on_bad_file)
            if reason is None:
                return open_prepared(directory, meta, reused=True)
            log.info(f"prepare: rebuilding {directory}: {reason}")
        _remove_builds(directory, keep=meta["tokens_file"].split("/")[0] if meta else None)  # interrupted ones
        log.info(f"prepare: tokenizing {spec} with {request.describe()} into {directory}")
        meta = _build(spec, directory, request, train_fraction, on_bad_file, scan)
        _remove_builds(directory, keep=meta["tokens_file"].split("/")[0])  # the copy it replaced
        return open_prepared(directory, meta, reused=False)


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


def _remove_builds(directory: Path, keep: str | None) -> None:
    for build in directory.glob("build-*"):
        if build.name != keep:
            shutil.rmtree(build, ignore_errors=True)


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
    build.mkdir()
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
        (build / "tokenizer.json").write_text(tokenizer.json, encoding="utf-8")
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
    # Metadata last, by atomic rename: until this line a later run sees no copy (or the old, stale one).
    temporary = directory / f".meta.json.{uuid.uuid4().hex[:8]}"
    with temporary.open("w", encoding="utf-8") as out:
        json.dump(meta, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, directory / "meta.json")
    return meta
