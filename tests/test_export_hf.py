"""`export --format hf`: Hugging Face transformers loads a checkpoint of each tokenizer and agrees with us on token
ids, logits and greedy continuations."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from export_checkpoints import TOKENIZERS, load, sharpened, tiny_checkpoint

from lightning_trickster.cli import main
from lightning_trickster.export import export_hf, halves_to_interleaved, interleaved_to_halves
from lightning_trickster.model import SamplingSettings

transformers = pytest.importorskip("transformers")

TEXTS = {
    "char": ["Line 7: the quick brown fox", "¿naïve? 12 birds sing.\nLine 8", " "],
    "byte": ["Line 7: the quick", "¿naïve? 🎭 日本", "\t\n\r\x00\x7f"],
    "bpe": ["Line 7: the quick brown fox", "¿naïve? 🎭 日本 <|endoftext|>Line", "  two  spaces\n\n"],
}
"""Per tokenizer: texts to encode; for char only the corpus's characters, for byte and bpe any text."""

PROMPTS = {"char": "Line 3: the", "byte": "Line 3: ", "bpe": "Line 3: the quick"}

VARIANTS = {
    "char": {"rope_theta": 500.0},  # a base other than Llama's default: config.json must carry it
    "byte": {"tie_embeddings": False},  # the output projection travels as lm_head
    "bpe": {},
}


@pytest.fixture(scope="module", params=TOKENIZERS)
def exported(request, tmp_path_factory):
    """(our model, its Hugging Face export directory) for a checkpoint of each tokenizer, with sharpened weights."""
    trained = sharpened(load(request.param, tmp_path_factory), **VARIANTS[request.param])
    out = tmp_path_factory.mktemp(f"hf-{request.param}")
    export_hf(trained, out)
    return request.param, trained, out


def test_export_command_writes_a_llama_directory_with_our_settings(tmp_path_factory, tmp_path, capsys):
    checkpoint = tiny_checkpoint("char", tmp_path_factory)
    main(["export", "--ckpt_path", str(checkpoint), "--out", str(tmp_path), "--format", "hf"])
    names = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}
    assert {path.name for path in tmp_path.iterdir()} == names
    assert "(hf)" in capsys.readouterr().out
    trained = load("char", tmp_path_factory)
    shape = trained.model.config

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    # Llama's defaults (bos 1, eos 2) are characters of a char vocabulary: greedy generation would stop at them.
    assert config["bos_token_id"] is None and config["eos_token_id"] is None
    assert config["tie_word_embeddings"] is True and config["max_position_embeddings"] == shape.max_seq_len
    assert config["rms_norm_eps"] == shape.norm_eps
    # transformers 4.x reads rope_theta at the top, 5.x reads rope_parameters.
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] == shape.rope_theta

    loaded = transformers.AutoConfig.from_pretrained(tmp_path)
    assert (loaded.hidden_size, loaded.num_hidden_layers, loaded.num_attention_heads) == (
        shape.hidden_dim, shape.num_layers, shape.num_heads,
    )  # fmt: skip
    assert (loaded.intermediate_size, loaded.vocab_size) == (shape.mlp_dim, shape.vocab_size)

    generation = transformers.GenerationConfig.from_pretrained(tmp_path)
    sampling = trained.sampling
    assert generation.do_sample is True and generation.temperature == pytest.approx(sampling.temperature)
    assert generation.max_new_tokens == sampling.max_new_tokens
    # Hugging Face's own default is top_k 50: "none" must be written as 0.
    assert generation.top_k == (sampling.top_k or 0) and generation.top_p == (sampling.top_p or 1.0)
    assert generation.eos_token_id is None


@pytest.mark.parametrize(
    "settings, expected",
    [
        (SamplingSettings(max_new_tokens=50, temperature=0.0), {"do_sample": False, "max_new_tokens": 50}),
        (
            SamplingSettings(max_new_tokens=7, temperature=1.3, top_k=5, top_p=0.9),
            {"do_sample": True, "temperature": 1.3, "top_k": 5, "top_p": 0.9, "max_new_tokens": 7},
        ),
    ],
)
def test_generation_config_carries_the_sampling_settings(settings, expected, tmp_path_factory, tmp_path):
    trained = dataclasses.replace(load("bpe", tmp_path_factory), sampling=settings)
    export_hf(trained, tmp_path)
    generation = transformers.GenerationConfig.from_pretrained(tmp_path)
    for key, value in expected.items():
        assert getattr(generation, key) == pytest.approx(value), key
    eot = trained.tokenizer.encode("<|endoftext|>").tolist()
    assert [generation.bos_token_id] == [generation.eos_token_id] == eot


def test_auto_tokenizer_gives_our_ids_and_text(exported):
    name, trained, out = exported
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    for text in TEXTS[name]:
        ours = trained.tokenizer.encode(text).tolist()
        assert tokenizer(text)["input_ids"] == ours, text
        assert tokenizer.decode(ours) == trained.tokenizer.decode(ours), text


def test_a_character_outside_the_char_vocabulary_is_an_error_not_dropped(tmp_path_factory, tmp_path):
    trained = load("char", tmp_path_factory)
    export_hf(trained, tmp_path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert "Z" not in trained.tokenizer.vocab
    with pytest.raises(Exception, match="Missing \\[UNK\\] token"):
        tokenizer("Line Z")


def test_auto_model_gives_our_logits(exported):
    name, trained, out = exported
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(model).__name__ == "LlamaForCausalLM"
    length = trained.model.config.max_seq_len
    tokens = torch.randint(0, trained.model.config.vocab_size, (2, length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, _ = trained.model(tokens)
        theirs = model(tokens).logits
    assert ours.std() > 1.0  # the weights make logits that a layout error would move by far more than 1e-4
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)


def test_greedy_pipeline_continues_as_we_do(exported):
    name, trained, out = exported
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    generate = transformers.pipeline("text-generation", model=model, tokenizer=tokenizer)
    prompt = PROMPTS[name]
    prompt_ids = trained.tokenizer.encode(prompt).unsqueeze(0)
    new_tokens = trained.model.config.max_seq_len - prompt_ids.size(1)  # all within the context we trained
    ours = trained.model.generate(prompt_ids, SamplingSettings(new_tokens, temperature=0.0))[0].tolist()
    eos = model.generation_config.eos_token_id
    if eos is not None and eos in ours[prompt_ids.size(1) :]:  # Hugging Face stops at end of text, we go on
        ours = ours[: ours.index(eos, prompt_ids.size(1)) + 1]

    (result,) = generate(prompt, max_new_tokens=new_tokens, do_sample=False, return_tensors=True)
    assert result["generated_token_ids"] == ours
    (result,) = generate(prompt, max_new_tokens=new_tokens, do_sample=False)
    assert result["generated_text"] == trained.tokenizer.decode([i for i in ours if i != eos])


def test_logits_differ_without_the_rope_permutation(tmp_path_factory, tmp_path, monkeypatch):
    """The check above can fail: exporting q and k in our own layout gives other logits."""
    trained = sharpened(load("char", tmp_path_factory))
    monkeypatch.setattr("lightning_trickster.export.interleaved_to_halves", lambda weight, heads: weight)
    export_hf(trained, tmp_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokens = trained.tokenizer.encode("Line 7: the quick brown").unsqueeze(0)
    with torch.no_grad():
        difference = (model(tokens).logits - trained.model(tokens)[0]).abs().max()
    assert difference > 1e-2


def test_the_rope_permutation_is_undone_by_its_inverse():
    weight = torch.arange(8 * 3, dtype=torch.float32).view(8, 3)  # 2 heads of 4 channels
    halves = interleaved_to_halves(weight, num_heads=2)
    # Per head, our pairs (0, 1), (2, 3) become Hugging Face's (0, 2), (1, 3): rows 0, 2, 1, 3.
    assert halves[:4, 0].tolist() == [0.0, 6.0, 3.0, 9.0]
    assert torch.equal(halves_to_interleaved(halves, num_heads=2), weight)


def test_a_tokenizer_json_with_a_post_processor_adds_nothing_on_export(tmp_path_factory, tmp_path):
    """We never apply a tokenizer.json's post-processor (e.g. one that prepends a bos token); neither may the export."""
    from tokenizers import processors

    from lightning_trickster.tokenizer import BPETokenizer

    trained = load("bpe", tmp_path_factory)
    hf = trained.tokenizer._hf
    hf.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", hf.token_to_id("<|endoftext|>"))]
    )
    with_processor = BPETokenizer(hf.to_str())
    export_hf(dataclasses.replace(trained, tokenizer=with_processor), tmp_path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer("Line 7")["input_ids"] == with_processor.encode("Line 7").tolist()


def test_export_writes_into_a_new_directory(tmp_path_factory, tmp_path: Path):
    out = tmp_path / "a" / "b"
    main(["export", "--ckpt_path", str(tiny_checkpoint("byte", tmp_path_factory)), "--out", str(out), "--format", "hf"])
    assert (out / "model.safetensors").is_file()
