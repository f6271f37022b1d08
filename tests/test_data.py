"""CorpusDataModule: corpus, tokenizers, the 90/10 split, training windows and validation coverage."""

import hashlib
import io
import os
import signal
from pathlib import Path

import pytest
import torch

import lightning_trickster.data as data_module
from lightning_trickster.data import TINY_SHAKESPEARE_MD5, CorpusDataModule, RandomWindows, as_long_tensor
from lightning_trickster.errors import DataError, InvalidConfigError
from lightning_trickster.tokenizer import ByteTokenizer, CharTokenizer


def test_tiny_shakespeare_splits_90_10_by_position(shakespeare_path, tmp_path):
    data = CorpusDataModule(path=str(shakespeare_path), tokenizer="char", cache_dir=str(tmp_path))
    data.setup("fit")
    assert data.vocab_size == 65
    assert (len(data.train_tokens), len(data.val_tokens)) == (1_003_854, 111_540)
    text = shakespeare_path.read_text()
    assert data.tokenizer.decode(data.val_tokens[:50]) == text[1_003_854 : 1_003_854 + 50]


def test_byte_tokenizer_round_trips_any_text():
    tokenizer = ByteTokenizer()
    text = "ROMEO: ¿Qué? — naïve 日本 🎭\n"
    ids = tokenizer.encode(text)
    assert ids.max() < 256 and len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text


def test_char_tokenizer_round_trips_and_rejects_unknown_characters():
    tokenizer = CharTokenizer.from_text("hello world")
    assert tokenizer.vocab == " dehlorw"
    assert tokenizer.decode(tokenizer.encode("hello")) == "hello"
    with pytest.raises(InvalidConfigError, match="'!z'"):
        tokenizer.encode("hello z!")


def test_vocab_size_is_known_right_after_init(small_corpus):
    assert CorpusDataModule(path=str(small_corpus), tokenizer="byte").vocab_size == 256
    chars = len(set(small_corpus.read_text()))
    assert CorpusDataModule(path=str(small_corpus), tokenizer="char").vocab_size == chars


def test_training_windows_are_shifted_by_one_and_reproducible_from_the_seed():
    tokens = torch.arange(1000)
    first = next(iter(RandomWindows(tokens, block_size=8, batch_size=4, seed=1, rank=0, first_batch=0)))
    again = next(iter(RandomWindows(tokens, block_size=8, batch_size=4, seed=1, rank=0, first_batch=0)))
    other_seed = next(iter(RandomWindows(tokens, block_size=8, batch_size=4, seed=2, rank=0, first_batch=0)))
    inputs, targets = first
    assert inputs.shape == targets.shape == (4, 8)
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    assert torch.equal(targets, inputs + 1)  # tokens are positions here
    assert torch.equal(first[0], again[0])
    assert not torch.equal(first[0], other_seed[0])


def test_ranks_draw_different_windows_and_a_resumed_stream_continues_the_sequence():
    tokens = torch.arange(100_000)
    stream = iter(RandomWindows(tokens, block_size=8, batch_size=4, seed=1, rank=0, first_batch=0))
    batches = [next(stream)[0] for _ in range(5)]
    rank1 = next(iter(RandomWindows(tokens, block_size=8, batch_size=4, seed=1, rank=1, first_batch=0)))[0]
    resumed = next(iter(RandomWindows(tokens, block_size=8, batch_size=4, seed=1, rank=0, first_batch=3)))[0]
    assert not torch.equal(batches[0], rank1)
    assert torch.equal(resumed, batches[3])


def test_workers_together_yield_the_same_batches_in_the_same_order():
    tokens = torch.arange(100_000)
    windows = RandomWindows(tokens, block_size=8, batch_size=4, seed=1, rank=0, first_batch=0)
    single = iter(torch.utils.data.DataLoader(windows, batch_size=None))
    pooled = iter(torch.utils.data.DataLoader(windows, batch_size=None, num_workers=2))
    for _ in range(4):
        assert torch.equal(next(single)[0], next(pooled)[0])


def test_validation_scores_every_val_token_exactly_once(small_corpus, tmp_path):
    data = CorpusDataModule(
        path=str(small_corpus), tokenizer="byte", block_size=32, batch_size=5, cache_dir=str(tmp_path)
    )
    data.setup("validate")
    batches = list(data.val_dataloader())
    inputs = torch.cat([b[0] for b in batches])
    targets = torch.cat([b[1] for b in batches])
    scored = targets[targets != -100]
    # Every position after the first is predicted once, in order, from the position before it.
    assert torch.equal(scored, as_long_tensor(data.val_tokens[1:]))
    assert torch.equal(inputs[targets != -100], as_long_tensor(data.val_tokens[:-1]))


def test_missing_data_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found: pass --data.path"):
        CorpusDataModule(path=str(tmp_path / "nope.txt"), tokenizer="char").vocab_size  # noqa: B018
    with pytest.raises(DataError, match="not found: pass --data.path"):
        CorpusDataModule(path=str(tmp_path / "nope.txt"), tokenizer="byte", cache_dir=str(tmp_path)).prepare_data()


def test_corpus_shorter_than_one_window_is_a_clear_error(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("To be, or not to be.")
    data = CorpusDataModule(path=str(path), block_size=32, cache_dir=str(tmp_path))
    with pytest.raises(DataError, match="shorter than one window"):
        data.setup("fit")


def test_char_tokenizer_on_non_utf8_file_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café crème".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text.*--data.tokenizer byte"):
        CorpusDataModule(path=str(path), tokenizer="char").vocab_size  # noqa: B018  (the CLI reads it first)


def test_download_is_verified_and_then_reused(tmp_path, monkeypatch, shakespeare_path):
    payload = shakespeare_path.read_bytes()
    assert hashlib.md5(payload).hexdigest() == TINY_SHAKESPEARE_MD5
    calls = []

    def fake_urlopen(url, timeout):
        calls.append((url, timeout))
        return io.BytesIO(payload)

    monkeypatch.setattr(data_module.urllib.request, "urlopen", fake_urlopen)
    data = CorpusDataModule(cache_dir=str(tmp_path))
    assert calls == []  # nothing is downloaded before the data is needed
    data.prepare_data()
    assert data.corpus_path == tmp_path / "input.txt"
    assert calls[0][0] == data_module.TINY_SHAKESPEARE_URL and calls[0][1] > 0
    CorpusDataModule(cache_dir=str(tmp_path)).prepare_data()
    assert len(calls) == 1  # the cached, verified copy is reused


def test_corrupt_download_never_becomes_the_cached_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"truncated"))
    monkeypatch.setattr(data_module.time, "sleep", lambda seconds: None)
    with pytest.raises(DataError, match="md5 mismatch.*--data.path"):
        CorpusDataModule(cache_dir=str(tmp_path)).prepare_data()
    assert list(Path(tmp_path).iterdir()) == []


def test_offline_without_a_local_copy_says_where_to_put_the_file(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(data_module.urllib.request, "urlopen", offline)
    monkeypatch.setattr(data_module.time, "sleep", lambda seconds: None)
    with pytest.raises(DataError, match=f"save that file as {tmp_path / 'input.txt'} or pass --data.path"):
        CorpusDataModule(cache_dir=str(tmp_path)).prepare_data()


def test_a_char_data_module_reads_its_corpus_only_when_its_vocabulary_is_needed(tmp_path):
    data = CorpusDataModule(path=str(tmp_path / "nope.txt"), tokenizer="char", prompts=["ROMEO:"])  # no I/O
    with pytest.raises(DataError, match="not found"):
        data.vocab_size  # noqa: B018
    given = CorpusDataModule(tokenizer="char", vocab="EMOR:", prompts=["ROMEO:"], cache_dir=str(tmp_path))
    assert given.vocab_size == 5 and not list(tmp_path.iterdir())  # a given vocabulary: nothing downloaded


def test_dataloader_workers_live_through_the_signals_a_terminal_sends_the_whole_group(small_corpus, tmp_path):
    from realfaults import children

    data = CorpusDataModule(
        path=str(small_corpus), tokenizer="char", block_size=8, batch_size=4, num_workers=2, cache_dir=str(tmp_path)
    )
    data.prepare_data()
    data.setup("fit")
    before = set(children(os.getpid()))
    batches = iter(data.train_dataloader())
    next(batches), next(batches)  # workers take turns: both have started (and run their init) once each has served
    workers = sorted(set(children(os.getpid())) - before)
    assert len(workers) == 2
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C, a scheduler, a closed terminal
        for pid in workers:
            os.kill(pid, signum)
    for _ in range(8):  # a worker killed by them would make this raise "DataLoader worker exited unexpectedly"
        inputs, _ = next(batches)
        assert inputs.shape == (4, 8)
    assert sorted(set(children(os.getpid())) - before) == workers
    del batches  # shuts the workers down


def test_an_error_raised_in_a_worker_reaches_the_main_process_as_its_own_one_line_message():
    tokens = torch.tensor([1, 2, 300, 4] * 50)
    windows = RandomWindows(tokens, block_size=8, batch_size=4, seed=1, rank=0, first_batch=0, vocab_size=256)
    with pytest.raises(DataError) as raised:
        next(iter(torch.utils.data.DataLoader(windows, batch_size=None, num_workers=1)))
    # PyTorch re-raises it as DataError("Caught DataError in DataLoader worker process 0. Original Traceback ...")
    assert (
        str(raised.value)
        == "the token stream holds token id 300, outside the 256-token vocabulary: every id must be below 256"
    )
