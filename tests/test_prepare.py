"""Preparing a corpus once: file, directory and glob corpora, the token file and its metadata, reuse and rebuilds,
memory-mapped windows, and every bad input as one clear error."""

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fit_args

import lightning_trickster.prepared as prepared_module
from lightning_trickster.cli import main
from lightning_trickster.data import ConsecutiveWindows, CorpusDataModule, RandomWindows, as_long_tensor
from lightning_trickster.errors import DataError, InvalidConfigError

POEMS = {
    "a.txt": "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n" * 30,
    "sub/b.txt": "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date.\n" * 30,
    "sub/c.md": "Sometime too hot the eye of heaven shines — naïve café.\n" * 30,
}


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """Three UTF-8 documents in two levels, plus a binary file and a hidden file that are not documents."""
    root = tmp_path / "poems"
    for name, text in POEMS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / "sub" / "cover.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / ".notes.txt").write_text("not part of the corpus")
    return root


def data_module(path: Path | str, tmp_path: Path, **kwargs) -> CorpusDataModule:
    return CorpusDataModule(path=str(path), cache_dir=str(tmp_path / "cache"), block_size=32, **kwargs)


def prepare(path, tmp_path, **kwargs) -> CorpusDataModule:
    data = data_module(path, tmp_path, **kwargs)
    data.prepare_data()  # as the prepare command does: no Trainer
    return data


def builds(data: CorpusDataModule) -> list[str]:
    return sorted(p.name for p in data.prepared_path.glob("build-*"))


def test_a_directory_becomes_one_token_file_of_its_text_documents_joined_by_the_separator(corpus_dir, tmp_path):
    data = prepare(corpus_dir, tmp_path, tokenizer="byte")
    meta = json.loads((data.prepared_path / "meta.json").read_text())
    assert [Path(d["path"]).relative_to(corpus_dir).as_posix() for d in meta["documents"]] == sorted(POEMS)
    assert [Path(s["path"]).name for s in meta["skipped"]] == ["cover.png"]
    joined = "\n\n".join(POEMS[name] for name in sorted(POEMS)).encode("utf-8")
    tokens = np.fromfile(data.prepared_path / meta["tokens_file"], dtype=np.uint8)
    assert tokens.tobytes() == joined
    assert meta["num_tokens"] == len(joined) and meta["train_tokens"] == int(len(joined) * 0.9)
    assert meta["documents"][0]["sha256"] and meta["documents"][0]["size"] == len(POEMS["a.txt"])
    assert "3 files, 1 skipped" in data.describe_prepared() and "1.00 characters per token" not in joined.decode()


def test_each_tokenizer_round_trips_the_corpus_in_the_smallest_dtype_that_holds_its_vocabulary(corpus_dir, tmp_path):
    dtypes = {}
    for tokenizer, extra in (("byte", {}), ("char", {}), ("bpe", {"vocab_size": 300})):
        data = prepare(corpus_dir, tmp_path, tokenizer=tokenizer, **extra)
        dtypes[tokenizer] = data.prepared.tokens.dtype
        text = data.tokenizer.decode(data.prepared.tokens)
        assert text == data.tokenizer.separator.join(POEMS[name] for name in sorted(POEMS))
    assert dtypes == {"byte": np.uint8, "char": np.uint8, "bpe": np.uint16}  # 256, 37 and 300 tokens
    assert prepared_module.token_dtype(65_536) == np.uint16


def test_characters_split_across_read_chunks_tokenize_the_same(corpus_dir, tmp_path, monkeypatch):
    """Files are read in chunks; a chunk may end inside a multi-byte character, or switch ASCII and non-ASCII."""
    monkeypatch.setattr(prepared_module, "READ_CHUNK_BYTES", 5)
    data = prepare(corpus_dir, tmp_path, tokenizer="char")
    joined = "\n\n".join(POEMS[name] for name in sorted(POEMS))
    assert data.tokenizer.decode(data.prepared.tokens) == joined
    assert data.vocab_size == len(set(joined)) and data.prepared.meta["characters"] == len(joined) - 4


def test_a_glob_selects_the_matching_files(corpus_dir, tmp_path):
    data = prepare(f"{corpus_dir}/**/*.txt", tmp_path, tokenizer="char")
    assert [Path(d["path"]).name for d in data.prepared.meta["documents"]] == ["a.txt", "b.txt"]
    assert data.vocab_size == len(set(POEMS["a.txt"] + POEMS["sub/b.txt"] + "\n"))


def test_directory_corpus_trains_through_the_command_line(corpus_dir, tmp_path):
    cache = ["--data.cache_dir", str(tmp_path / "cache"), "--samples.prompts", '["Shall"]']
    main(fit_args(corpus_dir, tmp_path / "run", *cache, max_steps=3))
    assert (tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert len(list((tmp_path / "cache" / "prepared").glob("poems-*/char/meta.json"))) == 1


def test_the_same_inputs_reuse_the_copy_and_changes_rebuild_it(corpus_dir, tmp_path):
    first = prepare(corpus_dir, tmp_path, tokenizer="byte")
    assert not first.prepared.reused
    first_build = builds(first)
    again = prepare(corpus_dir, tmp_path, tokenizer="byte")
    assert again.prepared.reused and builds(again) == first_build

    os.utime(corpus_dir / "a.txt", ns=(1, 1))  # touched, same content: re-hashed, still reused
    assert prepare(corpus_dir, tmp_path, tokenizer="byte").prepared.reused

    (corpus_dir / "a.txt").write_text("A new first poem.\n" * 40)
    changed = prepare(corpus_dir, tmp_path, tokenizer="byte")
    assert not changed.prepared.reused and builds(changed) != first_build and len(builds(changed)) == 1
    assert bytes(changed.prepared.tokens[:17]) == b"A new first poem."

    (corpus_dir / "d.txt").write_text("An added poem.\n" * 20)
    assert not prepare(corpus_dir, tmp_path, tokenizer="byte").prepared.reused

    resplit = prepare(corpus_dir, tmp_path, tokenizer="byte", train_fraction=0.8)
    assert not resplit.prepared.reused
    assert resplit.prepared.meta["train_tokens"] == int(resplit.prepared.meta["num_tokens"] * 0.8)

    bpe = prepare(corpus_dir, tmp_path, tokenizer="bpe", vocab_size=300)
    assert prepare(corpus_dir, tmp_path, tokenizer="bpe", vocab_size=300).prepared.reused
    assert not prepare(corpus_dir, tmp_path, tokenizer="bpe", vocab_size=320).prepared.reused
    assert bpe.prepared_path != resplit.prepared_path  # each tokenizer has its own copy by default


def test_memory_mapped_windows_equal_in_memory_windows_for_the_same_seed(corpus_dir, tmp_path):
    data = prepare(corpus_dir, tmp_path, tokenizer="char")
    data.setup("fit")
    assert isinstance(data.train_tokens, np.memmap)
    in_memory = as_long_tensor(data.train_tokens)
    mapped = iter(RandomWindows(data.train_tokens, block_size=32, batch_size=4, seed=7, rank=1, first_batch=5))
    loaded = iter(RandomWindows(in_memory, block_size=32, batch_size=4, seed=7, rank=1, first_batch=5))
    for _ in range(3):
        (mapped_inputs, mapped_targets), (inputs, targets) = next(mapped), next(loaded)
        assert mapped_inputs.dtype == torch.long
        assert torch.equal(mapped_inputs, inputs) and torch.equal(mapped_targets, targets)
    # A DataLoader worker started by spawn gets the windows pickled: the memory map, not a copy of the tokens.
    unpickled = pickle.loads(pickle.dumps(RandomWindows(data.train_tokens, 32, 4, seed=7, rank=1, first_batch=5)))
    assert isinstance(unpickled.tokens, np.memmap) and len(pickle.dumps(unpickled)) < 1000
    assert torch.equal(next(iter(unpickled))[0], next(iter(RandomWindows(in_memory, 32, 4, 7, 1, 5)))[0])
    val_mapped = ConsecutiveWindows(data.val_tokens, block_size=32)
    val_loaded = ConsecutiveWindows(as_long_tensor(data.val_tokens), block_size=32)
    assert len(val_mapped) == len(val_loaded)
    for i in range(len(val_mapped)):
        assert all(torch.equal(a, b) for a, b in zip(val_mapped[i], val_loaded[i], strict=True))


def test_an_interrupted_prepare_leaves_no_copy_that_a_later_run_trusts(corpus_dir, tmp_path, monkeypatch):
    def killed(scan, tokenizer, out, train_fraction):
        out.write_bytes(b"\x01\x02")  # a partial token file
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(prepared_module, "write_tokens", killed)
        with pytest.raises(KeyboardInterrupt):
            prepare(corpus_dir, tmp_path, tokenizer="byte")
    data = data_module(corpus_dir, tmp_path, tokenizer="byte")
    assert not (data.prepared_path / "meta.json").exists()
    data.prepare_data()
    assert not data.prepared.reused and len(builds(data)) == 1  # the partial build was removed
    assert data.prepared.meta["num_tokens"] == len(data.prepared.tokens) > 2


def test_a_directory_without_text_files_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="directory .*empty has no text files: pass --data.path"):
        prepare(tmp_path / "empty", tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"\x89PNG\x00\x00")
    with pytest.raises(DataError, match="has no text files .*pass --data.path"):
        prepare(tmp_path / "images", tmp_path)


def test_a_glob_matching_nothing_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"glob '.*\*\*/\*\.py' matches no files: check the pattern"):
        data_module(f"{tmp_path}/**/*.py", tmp_path, tokenizer="char").vocab_size  # noqa: B018


def test_a_non_utf8_file_in_a_directory_is_named_and_can_be_skipped(corpus_dir, tmp_path):
    (corpus_dir / "sub" / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    for tokenizer in ("byte", "char"):
        with pytest.raises(DataError, match=r"latin1.txt is not UTF-8 .*--data.on_bad_file skip"):
            prepare(corpus_dir, tmp_path, tokenizer=tokenizer)
    data = prepare(corpus_dir, tmp_path, tokenizer="char", on_bad_file="skip")
    assert sorted(Path(s["path"]).name for s in data.prepared.meta["skipped"]) == ["cover.png", "latin1.txt"]
    assert len(data.prepared.meta["documents"]) == 3


def test_a_prepared_directory_from_another_tokenizer_is_refused(corpus_dir, tmp_path):
    shared = tmp_path / "prepared"
    prepare(corpus_dir, tmp_path, tokenizer="byte", prepared_dir=str(shared))
    with pytest.raises(DataError) as raised:
        prepare(corpus_dir, tmp_path, tokenizer="char", prepared_dir=str(shared))
    assert str(raised.value) == (
        f"{shared} was prepared with the byte tokenizer, but the config asks for char: use the tokenizer it was "
        f"prepared with, or another --data.prepared_dir (or delete {shared / 'meta.json'} to rebuild it)"
    )
    # Each way out works: the same tokenizer, another directory, or deleting meta.json.
    assert prepare(corpus_dir, tmp_path, tokenizer="byte", prepared_dir=str(shared)).prepared.reused
    assert prepare(corpus_dir, tmp_path, tokenizer="char", prepared_dir=str(tmp_path / "other")).vocab_size == 37
    (shared / "meta.json").unlink()
    rebuilt = prepare(corpus_dir, tmp_path, tokenizer="char", prepared_dir=str(shared))
    assert rebuilt.prepared.meta["tokenizer"]["name"] == "char" and len(builds(rebuilt)) == 1


def test_a_copy_of_another_format_is_rebuilt_even_in_a_named_directory(corpus_dir, tmp_path):
    shared = tmp_path / "prepared"
    first = prepare(corpus_dir, tmp_path, tokenizer="byte", prepared_dir=str(shared))
    old_build = first.prepared.meta["tokens_file"].split("/")[0]
    (shared / "meta.json").write_text(json.dumps({"format": 0, "tokens_file": first.prepared.meta["tokens_file"]}))
    rebuilt = prepare(corpus_dir, tmp_path, tokenizer="char", prepared_dir=str(shared))
    assert not rebuilt.prepared.reused and not (shared / old_build).exists() and len(builds(rebuilt)) == 1


def test_a_truncated_or_corrupt_token_file_found_at_start_is_rebuilt(corpus_dir, tmp_path, caplog):
    data = prepare(corpus_dir, tmp_path, tokenizer="char")
    tokens_file = data.prepared_path / data.prepared.meta["tokens_file"]
    original = tokens_file.read_bytes()
    for damage, problem in (
        (original[:-10], r"tokens.bin is [\d,]+ bytes, but meta.json says [\d,]+ uint8 tokens"),
        (b"\xff" * len(original), r"tokens.bin holds token id 255, outside the 37-token vocabulary"),
    ):
        tokens_file = data.prepared_path / data.prepared.meta["tokens_file"]
        tokens_file.write_bytes(damage)
        caplog.clear()
        data = prepare(corpus_dir, tmp_path, tokenizer="char")
        assert re.search(
            f"rebuilding {data.prepared_path}: the copy there is damaged \\(build-[0-9a-f]+/{problem}", caplog.text
        )
        assert not data.prepared.reused and data.prepared.tokens.tobytes() == original
        assert builds(data) == [data.prepared.meta["tokens_file"].split("/")[0]]  # the damaged build is gone


DAMAGED_META = {
    "not JSON": lambda meta: "{ truncated",
    "a list": lambda meta: [meta],
    "no tokenizer": lambda meta: {k: v for k, v in meta.items() if k != "tokenizer"},
    "another dtype": lambda meta: {**meta, "dtype": "uint16"},
    "a dtype numpy does not know": lambda meta: {**meta, "dtype": "float128x"},
    "a token file outside the copy": lambda meta: {**meta, "tokens_file": "../../corpus.txt"},
    "counts that do not add up": lambda meta: {**meta, "train_tokens": meta["num_tokens"] + 5},
    "a true where a number belongs": lambda meta: {**meta, "num_tokens": True},
    "a char vocabulary of another size": lambda meta: {**meta, "tokenizer": {**meta["tokenizer"], "vocab": "ab"}},
    "a bpe without its file": lambda meta: {**meta, "tokenizer": {**meta["tokenizer"], "name": "bpe"}},
    "a document entry without its size": lambda meta: {**meta, "documents": [{"path": "x"}]},
}


@pytest.mark.parametrize("damage", DAMAGED_META)
def test_a_meta_json_of_another_shape_is_rebuilt_not_a_traceback(damage, corpus_dir, tmp_path, caplog):
    data = prepare(corpus_dir, tmp_path, tokenizer="char")
    meta = data.prepared.meta
    meta_file = data.prepared_path / "meta.json"
    damaged = DAMAGED_META[damage](meta)
    meta_file.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    assert data_module(corpus_dir, tmp_path, tokenizer="char").vocab_size == meta["tokenizer"]["vocab_size"]
    caplog.clear()
    rebuilt = prepare(corpus_dir, tmp_path, tokenizer="char")
    assert f"rebuilding {data.prepared_path}: the copy there is damaged (" in caplog.text
    assert not rebuilt.prepared.reused and rebuilt.prepared.meta["num_tokens"] == meta["num_tokens"]
    assert prepare(corpus_dir, tmp_path, tokenizer="char").prepared.reused


def test_a_copy_damaged_in_the_middle_stops_the_batch_that_reads_it_and_the_advice_rebuilds_it(tmp_path):
    corpus = tmp_path / "long.txt"  # longer than the 2 x 64 Ki ids checked at start
    corpus.write_text("".join(f"Line {i}: a fox and {i % 17} dogs.\n" for i in range(8000)))
    data = prepare(corpus, tmp_path, tokenizer="char")
    tokens_file = data.prepared_path / data.prepared.meta["tokens_file"]
    with tokens_file.open("r+b") as out:
        out.seek(70_000)
        out.write(b"\xfe" * 80_000)  # ids 70,000 to 150,000 of 234,180
    data = prepare(corpus, tmp_path, tokenizer="char")  # the ends look right: reused
    assert data.prepared.reused
    data.setup("fit")
    fix = f"delete {data.prepared_path / 'meta.json'} and run the command again, which rebuilds it"
    expected = (
        f"the prepared copy in {data.prepared_path} is damaged ({data.prepared.meta['tokens_file']} holds token id "
        f"254, outside the {data.vocab_size}-token vocabulary): {fix}"
    )
    windows = iter(RandomWindows(data.train_tokens, 32, 64, seed=0, rank=0, first_batch=0, vocab_size=data.vocab_size))
    with pytest.raises(DataError) as raised:
        for _ in range(10):
            next(windows)
    assert str(raised.value) == expected
    validation = ConsecutiveWindows(data.prepared.tokens, 32, vocab_size=data.vocab_size)  # every id, as windows
    with pytest.raises(DataError, match=re.escape(fix)):
        for i in range(len(validation)):
            validation[i]
    (data.prepared_path / "meta.json").unlink()  # the advice
    rebuilt = prepare(corpus, tmp_path, tokenizer="char")
    assert not rebuilt.prepared.reused and int(rebuilt.prepared.tokens.max()) < rebuilt.vocab_size
    assert builds(rebuilt) == [rebuilt.prepared.meta["tokens_file"].split("/")[0]]


def test_clean_up_removes_only_the_builds_prepare_made(corpus_dir, tmp_path):
    shared = tmp_path / "mine"
    own = {"build-release": "my release notes", "build-0123456789ab": "named like a build, but mine", "notes.txt": "x"}
    for name, text in own.items():
        path = shared / name / "file.txt" if name.startswith("build-") else shared / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    first = prepare(corpus_dir, tmp_path, tokenizer="byte", prepared_dir=str(shared))
    first_build = first.prepared.meta["tokens_file"].split("/")[0]
    (corpus_dir / "a.txt").write_text("A new first poem.\n" * 40)
    second = prepare(corpus_dir, tmp_path, tokenizer="byte", prepared_dir=str(shared))  # replaces the first copy
    assert not second.prepared.reused and not (shared / first_build).exists()
    for name, text in own.items():  # the user's own files, whatever their names, are untouched
        path = shared / name / "file.txt" if name.startswith("build-") else shared / name
        assert path.read_text() == text
    assert prepared_module.recorded_builds(shared) == [second.prepared.meta["tokens_file"].split("/")[0]]


def test_a_corpus_character_outside_a_given_char_vocabulary_names_the_file_and_both_fixes_work(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abc abc cab\n" * 200 + "Zebra!\n")
    with pytest.raises(InvalidConfigError) as raised:
        prepare(corpus, tmp_path, tokenizer="char", vocab="abc \n")
    assert str(raised.value) == (
        f"corpus file {corpus} contains characters outside the char vocabulary: '!Zer'; train with the vocabulary "
        "built from this corpus (drop --data.vocab, or the --ckpt_path of a run on another corpus) or use "
        "--data.tokenizer byte"
    )
    assert prepare(corpus, tmp_path, tokenizer="char").vocab_size == len(set(corpus.read_text()))  # no --data.vocab
    assert prepare(corpus, tmp_path, tokenizer="byte").prepared.meta["num_tokens"] == corpus.stat().st_size


def test_bad_tokenizer_options_are_clear_errors(corpus_dir, tmp_path):
    with pytest.raises(InvalidConfigError, match="needs --data.vocab_size N"):
        data_module(corpus_dir, tmp_path, tokenizer="bpe")
    with pytest.raises(InvalidConfigError, match="between 257 .* and 65,536"):
        data_module(corpus_dir, tmp_path, tokenizer="bpe", vocab_size=70_000)
    with pytest.raises(InvalidConfigError, match="--data.vocab_size only applies to --data.tokenizer bpe"):
        data_module(corpus_dir, tmp_path, tokenizer="char", vocab_size=300)
