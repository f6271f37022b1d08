"""The byte-level BPE tokenizer: trained on the training split, round-trips any text, travels inside checkpoints
so prediction needs no corpus, and accepts an existing tokenizer.json."""

import io
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import fit_args

from lightning_trickster.checkpoint import DATAMODULE_KEY, load_trained_model
from lightning_trickster.cli import main
from lightning_trickster.data import CorpusDataModule, data_args_from_tokenizer_state
from lightning_trickster.errors import DataError
from lightning_trickster.module import NanoTricksterModule
from lightning_trickster.tokenizer import BPETokenizer, ByteTokenizer, CharTokenizer, tokenizer_from_state_dict

CODE = "".join(f"def function_{i}(value):\n    return value * {i} + len('naïve 🎭')\n\n" for i in range(150))


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    root.mkdir()
    (root / "one.py").write_text(CODE, encoding="utf-8")
    (root / "two.py").write_text(CODE.replace("value", "item"), encoding="utf-8")
    return root


def prepared_bpe(path: Path, tmp_path: Path, **kwargs) -> CorpusDataModule:
    data = CorpusDataModule(path=str(path), cache_dir=str(tmp_path / "cache"), tokenizer="bpe", **kwargs)
    data.prepare_data()
    return data


def test_bpe_is_trained_on_the_training_split_and_round_trips_any_text(code_dir, tmp_path):
    data = prepared_bpe(code_dir, tmp_path, vocab_size=400)
    tokenizer = data.tokenizer
    assert isinstance(tokenizer, BPETokenizer) and tokenizer.vocab_size == data.vocab_size == 400
    for text in ("def function_3(value):\n", "ROMEO: ¿Qué? — naïve 日本 🎭\n", "   \t\n"):
        ids = tokenizer.encode(text)
        assert ids.dtype == torch.long and int(ids.max()) < 400
        assert tokenizer.decode(ids) == text
    ids = tokenizer.encode("return value * 7 + len('naïve 🎭')")
    stream = tokenizer.incremental_decoder()
    assert "".join(stream(i) for i in ids.tolist()) == tokenizer.decode(ids)
    assert len(ids) < len("return value * 7 + len('naïve 🎭')") / 2  # merges learnt from the corpus
    meta = data.prepared.meta
    assert meta["split"].startswith("bpe") and meta["separator"] == "<|endoftext|>"
    # The split is made in characters, before tokenizing: training text and validation text share no token.
    documents = [CODE, CODE.replace("value", "item")]
    split = int(sum(map(len, documents)) * 0.9)
    assert tokenizer.decode(data.prepared.train) == CODE + "<|endoftext|>" + documents[1][: split - len(CODE)]
    assert tokenizer.decode(data.prepared.val) == documents[1][split - len(CODE) :]
    assert "characters per token" in data.describe_prepared()
    assert data.prepared.characters_per_token > 2


def test_every_tokenizer_state_is_plain_data_that_rebuilds_it_without_a_corpus(code_dir, tmp_path):
    bpe = prepared_bpe(code_dir, tmp_path, vocab_size=300).tokenizer
    for tokenizer in (ByteTokenizer(), CharTokenizer.from_text(CODE), bpe):
        buffer = io.BytesIO()
        torch.save({"tokenizer": tokenizer.state_dict()}, buffer)
        state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)["tokenizer"]
        rebuilt = tokenizer_from_state_dict(state)
        assert torch.equal(rebuilt.encode(CODE[:300]), tokenizer.encode(CODE[:300]))
        args = data_args_from_tokenizer_state(state)
        assert args["tokenizer"] == tokenizer.name
        data = CorpusDataModule(path=str(tmp_path / "no-such-corpus"), cache_dir=str(tmp_path / "x"), **args)
        assert data.vocab_size == tokenizer.vocab_size and data.tokenizer.state_dict() == state
    assert not (tmp_path / "x").exists()  # nothing was read, downloaded or prepared


def test_checkpoint_carries_the_bpe_so_predict_and_complete_need_no_corpus(code_dir, tmp_path):
    root = tmp_path / "run"
    extra = ["--data.tokenizer", "bpe", "--data.vocab_size", "300", "--data.cache_dir", str(tmp_path / "cache")]
    main(fit_args(code_dir, root, *extra, "--samples.prompts", '["def "]', max_steps=3))
    checkpoint_path = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    assert checkpoint["hyper_parameters"]["vocab_size"] == 300
    state = checkpoint[DATAMODULE_KEY]["tokenizer"]

    for path in code_dir.iterdir():
        path.unlink()  # the corpus is gone
    data = CorpusDataModule(
        path=str(code_dir),
        prompts=["def function_"],
        cache_dir=str(tmp_path / "y"),
        **data_args_from_tokenizer_state(state),
    )
    module = NanoTricksterModule.load_from_checkpoint(checkpoint_path, sampling={"max_new_tokens": 8})
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (prediction,) = trainer.predict(module, datamodule=data)
    assert prediction["prompts"] == ["def function_"] and len(prediction["tokens"][0]) == 8

    trained = load_trained_model(checkpoint_path)  # what complete, stages and export use
    assert trained.tokenizer.state_dict() == state
    assert trained.tokenizer.decode(trained.tokenizer.encode("def f(x):")) == "def f(x):"


def test_an_existing_tokenizer_json_is_used_instead_of_training_one(code_dir, tmp_path):
    trained = prepared_bpe(code_dir, tmp_path, vocab_size=300)
    tokenizer_json = tmp_path / "tokenizer.json"
    tokenizer_json.write_text(trained.tokenizer.json, encoding="utf-8")
    given = prepared_bpe(code_dir, tmp_path, tokenizer_path=str(tokenizer_json), prepared_dir=str(tmp_path / "p2"))
    assert given.vocab_size == 300 and not given.prepared.meta["tokenizer"]["built_from_corpus"]
    assert (given.prepared.tokens == trained.prepared.tokens).all()


def test_a_bpe_vocabulary_larger_than_the_corpus_supports_is_a_clear_error(tmp_path):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abab abab abab cd\n" * 20)
    with pytest.raises(DataError, match=r"supports only \d+ BPE tokens.*use --data.vocab_size \d+ or less"):
        prepared_bpe(tiny, tmp_path, vocab_size=5000)


def test_a_tokenizer_json_that_does_not_load_is_a_clear_error(tmp_path):
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"model": {"type": "NoSuchModel"}}')
    with pytest.raises(DataError, match=r"BPE tokenizer from .*tokenizer.json does not load .*: pass a tokenizer.json"):
        CorpusDataModule(path=str(tmp_path), tokenizer="bpe", tokenizer_path=str(broken))
    with pytest.raises(DataError, match=r"tokenizer file .*missing.json cannot be read"):
        CorpusDataModule(path=str(tmp_path), tokenizer="bpe", tokenizer_path=str(tmp_path / "missing.json"))


def foreign(tmp_path: Path, name: str, model, pre_tokenizer=None) -> Path:
    """A tokenizer.json written by Hugging Face tokenizers, not by this project."""
    from tokenizers import Tokenizer as HFTokenizer

    tokenizer = HFTokenizer(model)
    if pre_tokenizer is not None:
        tokenizer.pre_tokenizer = pre_tokenizer
    path = tmp_path / f"{name}.json"
    tokenizer.save(str(path))
    return path


def test_a_foreign_tokenizer_json_is_checked_when_read_and_dropping_it_trains_one(code_dir, tmp_path):
    from tokenizers import models, pre_tokenizers

    whitespace = pre_tokenizers.Whitespace()
    letters = {char: i for i, char in enumerate("abcdefghijklmnopqrstuvwxyzZ0123456789=;ïé")}
    cases = {
        "word_level_without_unknown": (
            models.WordLevel({"the": 0, "a": 1}, unk_token="[UNK]"),
            r"cannot encode text it has no token for \(WordLevel error: Missing \[UNK\] token",
        ),
        "ids_beyond_uint16": (
            models.WordLevel({"the": 0, "[UNK]": 1, "far": 70_000}, unk_token="[UNK]"),
            r"gives token id 70,000 but has only 3 tokens, so its ids are not 0 to 2",
        ),
        "no_tokens": (models.BPE(), r"has no tokens"),
        "bpe_that_drops_what_it_has_no_token_for": (
            models.BPE(vocab=letters, merges=[]),
            r"encodes '日本' as no token at all \(it has no unknown token and no byte fallback\)",
        ),
    }
    for name, (model, message) in cases.items():
        path = foreign(tmp_path, name, model, whitespace)
        with pytest.raises(DataError, match=f"BPE tokenizer from {path} {message}.*drop --data.tokenizer_path"):
            prepared_bpe(code_dir, tmp_path, tokenizer_path=str(path), prepared_dir=str(tmp_path / name))
    # The advice: drop --data.tokenizer_path (and give the size to train).
    assert prepared_bpe(code_dir, tmp_path, vocab_size=300, prepared_dir=str(tmp_path / "trained")).vocab_size == 300


def test_a_foreign_tokenizer_without_the_document_separator_is_named_and_adding_it_works(code_dir, tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    hf.train_from_iterator([CODE], trainer=trainer)
    path = tmp_path / "no_separator.json"
    hf.save(str(path))
    with pytest.raises(DataError) as raised:
        prepared_bpe(code_dir, tmp_path, tokenizer_path=str(path), prepared_dir=str(tmp_path / "many"))
    assert str(raised.value).startswith(f"the BPE tokenizer from {path} has no <|endoftext|> token (it encodes it as ")
    assert str(raised.value).endswith(
        "which joins the files of a corpus of several: add <|endoftext|> to it as a special token, or drop "
        "--data.tokenizer_path to train one on the corpus"
    )
    single = prepared_bpe(code_dir / "one.py", tmp_path, tokenizer_path=str(path), prepared_dir=str(tmp_path / "one"))
    assert single.tokenizer.decode(single.prepared.tokens) == CODE  # one file needs no separator
    hf.add_special_tokens(["<|endoftext|>"])  # the advice
    hf.save(str(path))
    joined = prepared_bpe(code_dir, tmp_path, tokenizer_path=str(path), prepared_dir=str(tmp_path / "many"))
    assert joined.tokenizer.decode(joined.prepared.tokens) == CODE + "<|endoftext|>" + CODE.replace("value", "item")
