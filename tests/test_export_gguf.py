"""`export --format gguf`: the file read back with gguf's own GGUFReader holds our weights in llama.cpp's llama layout
and every tokenizer field llama.cpp needs to tokenize as we do. (benchmarks/llama_cpp_check.py runs it in llama.cpp.)"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
from export_checkpoints import TOKENIZERS, load, tiny_checkpoint

from lightning_trickster.cli import main
from lightning_trickster.errors import TricksterError
from lightning_trickster.export import GGUF_FILE, export_gguf, gguf_vocabulary
from lightning_trickster.model import SamplingSettings
from lightning_trickster.tokenizer import END_OF_TEXT, BPETokenizer

gguf = pytest.importorskip("gguf")

TEXTS = ["Line 7: the quick brown fox", "¿naïve? 12 birds sing.\nLine 8; done"]
"""Texts every tokenizer of the test corpus encodes (char: only its characters)."""


@pytest.fixture(scope="module", params=TOKENIZERS)
def exported(request, tmp_path_factory):
    """(tokenizer name, our checkpoint's model and tokenizer, the GGUF file read back) via the export command."""
    out = tmp_path_factory.mktemp(f"gguf-{request.param}")
    main(["export", "--ckpt_path", str(tiny_checkpoint(request.param, tmp_path_factory)), "--out", str(out),
          "--format", "gguf"])  # fmt: skip
    assert [path.name for path in out.iterdir()] == [GGUF_FILE]
    return request.param, load(request.param, tmp_path_factory), gguf.GGUFReader(out / GGUF_FILE)


def value(reader, key: str):
    field = reader.fields.get(key)
    assert field is not None, f"{key} missing"
    return field.contents()


def test_model_metadata_describes_a_llama_of_our_shape(exported):
    _, trained, reader = exported
    cfg = trained.model.config
    expected = {
        "general.architecture": "llama",
        "llama.context_length": cfg.max_seq_len,
        "llama.embedding_length": cfg.hidden_dim,
        "llama.block_count": cfg.num_layers,
        "llama.feed_forward_length": cfg.mlp_dim,
        "llama.attention.head_count": cfg.num_heads,
        "llama.attention.head_count_kv": cfg.num_heads,
        "llama.rope.dimension_count": cfg.head_dim,
        "llama.vocab_size": cfg.vocab_size,
    }
    for key, expected_value in expected.items():
        assert value(reader, key) == expected_value, key
    assert value(reader, "llama.rope.freq_base") == pytest.approx(cfg.rope_theta)
    assert value(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(cfg.norm_eps)


def test_tensors_are_ours_split_and_in_our_rope_layout(exported):
    _, trained, reader = exported
    model, cfg = trained.model, trained.model.config
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    expected = {"token_embd.weight": model.embedding.weight, "output_norm.weight": model.final_norm.weight}
    for i, block in enumerate(model.blocks):
        q, k, v = block.attn.qkv.weight.split(cfg.hidden_dim)
        expected |= {
            f"blk.{i}.attn_norm.weight": block.attn_norm.weight,
            f"blk.{i}.attn_q.weight": q,  # llama.cpp's llama rotates adjacent pairs, as we do: no permutation
            f"blk.{i}.attn_k.weight": k,
            f"blk.{i}.attn_v.weight": v,
            f"blk.{i}.attn_output.weight": block.attn.proj.weight,
            f"blk.{i}.ffn_norm.weight": block.mlp_norm.weight,
            f"blk.{i}.ffn_gate.weight": block.mlp.gate.weight,
            f"blk.{i}.ffn_up.weight": block.mlp.up.weight,
            f"blk.{i}.ffn_down.weight": block.mlp.down.weight,
        }
    # Tied: no output.weight, llama.cpp then uses token_embd.
    assert tensors.keys() == expected.keys()
    for name, weight in expected.items():
        tensor = tensors[name]
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32, name
        # GGUF lists dimensions innermost first: a (out, in) matrix is stored as [in, out].
        assert list(tensor.shape) == list(reversed(weight.shape)), name
        data = np.asarray(tensor.data).reshape(weight.shape)
        assert np.array_equal(data, weight.detach().numpy()), name


def unescape_rwkv(text: str) -> bytes:
    """llama.cpp's llama_unescape_rwkv_token, in Python."""
    out, chars = bytearray(), iter(text)
    for char in chars:
        if char != "\\":
            out += char.encode("utf-8")
            continue
        escaped = next(chars)
        if escaped == "x":
            out.append(int(next(chars) + next(chars), 16))
        else:
            out += {"t": b"\t", "n": b"\n", "r": b"\r"}.get(escaped, escaped.encode("utf-8"))
    return bytes(out)


def longest_match(pieces: list[bytes], text: str) -> list[int]:
    """llama.cpp's rwkv tokenizer: at each position the longest token whose bytes come next."""
    ids = {piece: i for i, piece in enumerate(pieces)}
    data, position, out = text.encode("utf-8"), 0, []
    longest = max(map(len, pieces))
    while position < len(data):
        length = next(n for n in range(longest, 0, -1) if data[position : position + n] in ids)
        out.append(ids[data[position : position + length]])
        position += length
    return out


def test_tokenizer_fields_let_llama_cpp_tokenize_as_we_do(exported):
    name, trained, reader = exported
    tokenizer = trained.tokenizer
    tokens = value(reader, "tokenizer.ggml.tokens")
    types = value(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == len(types) == trained.model.config.vocab_size
    assert value(reader, "tokenizer.ggml.add_bos_token") is False  # we never prepend a token
    assert value(reader, "tokenizer.ggml.add_eos_token") is False
    if name in ("char", "byte"):
        # rwkv: an exact byte matcher with no special tokens (gpt2's would end generation at id 11, a character).
        assert value(reader, "tokenizer.ggml.model") == "rwkv"
        pieces = [unescape_rwkv(token) for token in tokens]
        if name == "char":
            assert pieces == [char.encode("utf-8") for char in tokenizer.vocab]
        else:
            assert pieces == [bytes([b]) for b in range(256)]
        assert all(token and "\x00" not in token for token in tokens)  # llama.cpp reads them as C strings
        assert set(types) == {gguf.TokenType.NORMAL}
        for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.merges"):
            assert key not in reader.fields
        for text in TEXTS:
            assert longest_match(pieces, text) == tokenizer.encode(text).tolist(), text
    else:
        data = json.loads(tokenizer.json)
        assert value(reader, "tokenizer.ggml.model") == "gpt2"
        assert value(reader, "tokenizer.ggml.pre") == "gpt-2"  # GPT-2's split regex, as ByteLevel's
        vocab = tokenizer._hf.get_vocab(with_added_tokens=True)
        assert tokens == sorted(vocab, key=vocab.get)
        eot = vocab[END_OF_TEXT]
        assert types[eot] == gguf.TokenType.CONTROL and set(types) - {types[eot]} == {gguf.TokenType.NORMAL}
        merges = value(reader, "tokenizer.ggml.merges")
        assert merges == [" ".join(pair) for pair in data["model"]["merges"]] and merges
        assert value(reader, "tokenizer.ggml.bos_token_id") == value(reader, "tokenizer.ggml.eos_token_id") == eot


def test_sampling_settings_travel_as_llama_cpp_defaults(tmp_path_factory, tmp_path):
    settings = SamplingSettings(max_new_tokens=50, temperature=1.3, top_k=5, top_p=0.9)
    export_gguf(dataclasses.replace(load("char", tmp_path_factory), sampling=settings), tmp_path)
    reader = gguf.GGUFReader(tmp_path / GGUF_FILE)
    assert value(reader, "general.sampling.temp") == pytest.approx(1.3)
    assert value(reader, "general.sampling.top_k") == 5
    assert value(reader, "general.sampling.top_p") == pytest.approx(0.9)
    assert value(reader, "general.sampling.min_p") == 0.0  # llama.cpp's default 0.05 would cut tokens we sample
    assert value(reader, "general.sampling.sequence") == "temperature;top_k;top_p"  # our order

    greedy = SamplingSettings(temperature=0.0)
    export_gguf(dataclasses.replace(load("char", tmp_path_factory), sampling=greedy), tmp_path)
    reader = gguf.GGUFReader(tmp_path / GGUF_FILE)
    assert value(reader, "general.sampling.temp") == 0.0 and value(reader, "general.sampling.top_k") == 0


def test_an_untied_output_projection_is_written(tmp_path_factory, tmp_path):
    trained = load("char", tmp_path_factory)
    config = dataclasses.replace(trained.model.config, tie_embeddings=False)
    model = type(trained.model)(config)
    export_gguf(dataclasses.replace(trained, model=model), tmp_path)
    tensors = {tensor.name: tensor for tensor in gguf.GGUFReader(tmp_path / GGUF_FILE).tensors}
    assert np.array_equal(
        np.asarray(tensors["output.weight"].data).reshape(config.vocab_size, -1), model.output.weight.detach().numpy()
    )


def test_a_bpe_without_merges_still_has_the_merges_llama_cpp_requires(tmp_path_factory):
    """gguf drops an empty array, and llama.cpp refuses a gpt2 vocabulary without merges."""
    trained = load("bpe", tmp_path_factory)
    data = json.loads(trained.tokenizer.json)
    data["model"]["merges"] = []
    vocabulary = gguf_vocabulary(BPETokenizer(json.dumps(data)))
    (merge,) = vocabulary["merges"]
    first, second = merge.split(" ")
    # Two-character symbols: with no other merges every symbol stays one character, so it never applies.
    assert len(first) == len(second) == 2


def test_a_bpe_that_is_not_byte_level_is_a_clear_error(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers

    hf = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2, "[UNK]": 3}, [("a", "b")], unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(TricksterError, match="byte-level BPE.*--format hf"):
        gguf_vocabulary(BPETokenizer(hf.to_str()))


def test_without_the_gguf_package_export_says_what_to_install(tmp_path_factory, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(tiny_checkpoint("char", tmp_path_factory)), "--out", str(tmp_path),
              "--format", "gguf"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "pip install gguf" in capsys.readouterr().err


def test_rwkv_tokens_escape_what_llama_cpp_would_misread():
    from lightning_trickster.export import rwkv_escape

    assert rwkv_escape(b"a\\b\n\t\r\x00\xc3\xa9~") == "a\\\\b\\n\\t\\r\\x00\\xc3\\xa9~"
    assert unescape_rwkv(rwkv_escape(bytes(range(256)))) == bytes(range(256))
