"""KV-cache generation and sampling in the plain-torch model."""

import dataclasses

import pytest
import torch

from lightning_trickster.errors import InvalidConfigError
from lightning_trickster.model import (
    KVCache,
    NanoTrickster,
    NanoTricksterConfig,
    SamplingSettings,
    sample_next_token,
)
from lightning_trickster.reliability import working_cpp_compiler

CONFIG = NanoTricksterConfig(vocab_size=40, hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=64, max_seq_len=24)


@pytest.fixture
def model() -> NanoTrickster:
    torch.manual_seed(0)
    return NanoTrickster(CONFIG).eval()


def test_cached_decoding_gives_the_logits_of_a_full_forward(model):
    tokens = torch.randint(0, 40, (2, 20))
    full, _ = model(tokens)
    cache = KVCache(2, 2, 4, 24, 8, model.embedding.weight)
    prefill, _ = model(tokens[:, :8], cache=cache)
    steps = [model(tokens[:, t : t + 1], cache=cache)[0] for t in range(8, 20)]
    torch.testing.assert_close(torch.cat([prefill, *steps], dim=1), full, atol=1e-5, rtol=1e-5)


def test_greedy_cached_equals_greedy_recomputation(model):
    prompt = torch.randint(0, 40, (3, 5))
    cached = model.generate(prompt, SamplingSettings(19, temperature=0))  # fills the context exactly
    uncached = model.generate(prompt, SamplingSettings(19, temperature=0), use_cache=False)
    assert cached.shape == (3, 24)
    assert torch.equal(cached, uncached)


def test_seeded_sampling_draws_the_same_tokens_with_and_without_cache(model):
    prompt = torch.randint(0, 40, (2, 4))
    for settings in (dict(temperature=1.0), dict(temperature=0.8, top_k=10), dict(temperature=1.2, top_p=0.9)):
        cached = model.generate(prompt, SamplingSettings(20, **settings), generator=torch.Generator().manual_seed(7))
        uncached = model.generate(
            prompt, SamplingSettings(20, **settings), generator=torch.Generator().manual_seed(7), use_cache=False
        )
        assert torch.equal(cached, uncached), settings
    other_seed = model.generate(prompt, SamplingSettings(20), generator=torch.Generator().manual_seed(8))
    assert not torch.equal(
        other_seed, model.generate(prompt, SamplingSettings(20), generator=torch.Generator().manual_seed(7))
    )


def test_a_batch_of_prompts_matches_each_prompt_alone(model):
    prompts = torch.randint(0, 40, (3, 6))
    together = model.generate(prompts, SamplingSettings(10, temperature=0))
    for row in range(3):
        assert torch.equal(
            together[row : row + 1], model.generate(prompts[row : row + 1], SamplingSettings(10, temperature=0))
        )


def test_generation_continues_past_the_context_window(model):
    prompt = torch.randint(0, 40, (2, 30))  # already longer than max_seq_len=24
    out = model.generate(
        prompt, SamplingSettings(3 * CONFIG.max_seq_len, temperature=0.9), generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (2, 30 + 72)
    assert torch.equal(out[:, :30], prompt)
    assert out.max() < 40


def test_after_the_window_slides_the_cache_matches_a_full_forward_of_the_kept_tokens(model):
    prompt = torch.randint(0, 40, (1, 24))
    out = model.generate(prompt, SamplingSettings(5, temperature=0))
    # The cache was full after the prompt, so it was re-filled from the newest 12 tokens for the first new token.
    kept = out[:, 12:24]
    assert out[0, 24] == model(kept)[0][0, -1].argmax()


def test_sampling_settings_restrict_the_candidates():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(2000, 1)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next_token(logits, temperature=0), torch.zeros(2000, 1, dtype=torch.long))
    top2 = sample_next_token(logits, 1.0, top_k=2, generator=generator)
    assert set(top2.unique().tolist()) == {0, 1}
    # softmax([4, 3, 2, 1, 0]) = [0.64, 0.24, 0.09, 0.03, 0.01]: top_p 0.8 keeps the first two tokens.
    nucleus = sample_next_token(logits, 1.0, top_p=0.8, generator=generator)
    assert set(nucleus.unique().tolist()) == {0, 1}
    everything = sample_next_token(logits, 1.0, generator=generator)
    assert set(everything.unique().tolist()) == {0, 1, 2, 3, 4}
    frequency_of_best = (everything == 0).float().mean().item()
    assert frequency_of_best == pytest.approx(0.636, abs=0.04)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(max_new_tokens=-1), "max_new_tokens must be >= 0"),
        (dict(temperature=-0.1), "temperature must be a finite number >= 0"),
        (dict(temperature=float("nan")), "temperature must be a finite number >= 0"),
        (dict(temperature=float("inf")), "temperature must be a finite number >= 0"),
        (dict(top_k=0), "top_k must be between 1 and the vocabulary size"),
        (dict(top_k=41), "top_k must be between 1 and the vocabulary size 40"),
        (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    ],
)
def test_out_of_range_sampling_settings_are_rejected(settings, message):
    values = {"max_new_tokens": 10, "temperature": 1.0, "top_k": None, "top_p": None, **settings}
    with pytest.raises(InvalidConfigError, match=message):
        SamplingSettings(**values).check(vocab_size=40)


def test_generation_stays_eager_when_the_model_is_compiled_for_training(model):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    model.compile(backend="eager", dynamic=False)  # what configure_model does, minus the code generation
    tokens = torch.randint(0, 40, (1, 5))
    model(tokens)  # the compiled call, as training_step makes it
    compiled_frames = counters["frames"]["ok"]
    assert compiled_frames > 0
    generated = model.generate(tokens, SamplingSettings(30, temperature=0))  # 30 context lengths and a window slide
    assert counters["frames"]["ok"] == compiled_frames  # no recompile per new length
    eager = NanoTrickster(CONFIG).eval()
    eager.load_state_dict(model.state_dict())
    assert torch.equal(generated, eager.generate(tokens, SamplingSettings(30, temperature=0)))
    torch._dynamo.reset()


def test_a_tiny_temperature_is_greedy_instead_of_overflowing():
    logits = torch.tensor([[30.0, 29.0, -5.0]])
    for temperature in (1e-30, 1e-6):
        assert sample_next_token(logits, temperature).item() == 0


def test_the_window_slides_for_every_context_length():
    for max_seq_len in (1, 2, 3):
        torch.manual_seed(0)
        cfg = NanoTricksterConfig(vocab_size=11, hidden_dim=8, num_layers=1, num_heads=2, mlp_dim=8,
                                  max_seq_len=max_seq_len)  # fmt: skip
        model = NanoTrickster(cfg).eval()
        prompt = torch.tensor([[1]])
        cached = model.generate(prompt, SamplingSettings(7, temperature=0))
        assert cached.shape == (1, 8)
        # Recomputing the newest window from scratch gives the same tokens while the cache is within its window.
        assert torch.equal(
            cached[:, : max_seq_len + 1],
            model.generate(prompt, SamplingSettings(7, temperature=0), use_cache=False)[:, : max_seq_len + 1],
        )


@pytest.mark.skipif(working_cpp_compiler() is None, reason="torch.compile needs a working C++ compiler on the CPU")
def test_the_compiled_static_decode_step_gives_the_eager_tokens_and_compiles_once(model):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = NanoTrickster(CONFIG).eval()
    compiled.load_state_dict(model.state_dict())
    compiled.compile_decoding()
    prompt = torch.randint(0, 40, (2, 5))
    fast = compiled.generate(prompt, SamplingSettings(60, temperature=0))  # the window slides twice (max_seq_len 24)
    assert torch.equal(fast, model.generate(prompt, SamplingSettings(60, temperature=0)))
    # Up to a full window, the tokens of recomputing every step from scratch.
    assert torch.equal(fast[:, :24], model.generate(prompt, SamplingSettings(19, temperature=0), use_cache=False))
    assert counters["stats"]["unique_graphs"] == 1  # one trace for every position and every cache object
    torch._dynamo.reset()


def test_parameters_keep_their_names_and_generation_adds_no_state(model):
    # Checkpoints, the Tenstorrent plugin's parameter map and the HF/GGUF exports read these names: the fused gate/up
    # matrix of decoding is derived per generation, never a parameter or a buffer.
    names = set(model.state_dict())
    model.generate(torch.randint(0, 40, (1, 4)), SamplingSettings(5, temperature=0))
    assert set(model.state_dict()) == names
    assert {"blocks.0.mlp.gate.weight", "blocks.0.mlp.up.weight", "blocks.0.mlp.down.weight"} <= names
    assert not any("gate_up" in name for name, _ in model.named_parameters())


def test_generation_uses_the_weights_as_they_are_when_it_starts(model):
    # The samples during training generate between optimizer steps: each generation reads the current weights.
    prompt = torch.randint(0, 40, (1, 6))
    model.generate(prompt, SamplingSettings(10, temperature=0))
    with torch.no_grad():
        for block in model.blocks:
            block.mlp.up.weight.mul_(-3.0)  # in place, as an optimizer step changes them
    fresh = NanoTrickster(CONFIG).eval()
    fresh.load_state_dict(model.state_dict())
    expected = fresh.generate(prompt, SamplingSettings(10, temperature=0), use_cache=False)
    assert torch.equal(model.generate(prompt, SamplingSettings(10, temperature=0)), expected)


def test_a_later_chunk_attends_causally_within_itself(model):
    tokens = torch.randint(0, 40, (2, 20))
    full, _ = model(tokens)
    cache = KVCache(2, 2, 4, 24, 8, model.embedding.weight)
    first, _ = model(tokens[:, :7], cache=cache)
    second, _ = model(tokens[:, 7:], cache=cache)  # 13 positions at once after 7 cached ones
    torch.testing.assert_close(torch.cat([first, second], dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(working_cpp_compiler() is None, reason="torch.compile needs a working C++ compiler on the CPU")
def test_the_compiled_decode_step_attends_over_buckets_with_one_graph_per_bucket(model):
    from torch._dynamo.utils import counters

    from lightning_trickster.model import decode_bucket

    assert [decode_bucket(n, 4, 24) for n in (1, 4, 5, 8, 9, 16, 17, 24)] == [4, 4, 8, 8, 16, 16, 24, 24]
    torch._dynamo.reset()
    counters.clear()
    compiled = NanoTrickster(CONFIG).eval()
    compiled.load_state_dict(model.state_dict())
    compiled.compile_decoding(smallest_bucket=4)
    prompt = torch.randint(0, 40, (2, 2))
    fast = compiled.generate(prompt, SamplingSettings(40, temperature=0))  # positions 2..23, then the window slides
    assert torch.equal(fast, model.generate(prompt, SamplingSettings(40, temperature=0)))
    assert counters["stats"]["unique_graphs"] == 4  # spans 4, 8, 16 and 24, whatever the position
    torch._dynamo.reset()


def test_an_unknown_generation_dtype_is_one_line():
    with pytest.raises(InvalidConfigError, match="sampling.dtype must be one of float32, bfloat16, int8, got 'fp8'"):
        SamplingSettings(dtype="fp8")


def test_a_dtype_the_device_lacks_falls_back_and_says_so(model, monkeypatch):
    import lightning_trickster.model as model_module

    monkeypatch.setattr(model_module, "bfloat16_is_native", lambda device: False)
    monkeypatch.setattr(model_module, "_said", set())
    prompt = torch.randint(0, 40, (1, 4))
    with pytest.warns(UserWarning, match="sampling.dtype int8 needs a CPU with native bfloat16.*generates in float32"):
        fallback = model.generate(prompt, SamplingSettings(8, temperature=0, dtype="int8"))
    assert torch.equal(fallback, model.generate(prompt, SamplingSettings(8, temperature=0)))  # float32: exact


@pytest.fixture(scope="module")
def trained() -> tuple[NanoTrickster, torch.Tensor]:
    """A small char model trained for a few seconds on tiny Shakespeare (peaked, text-like predictions, unlike random
    weights' near-uniform ones), and held-out windows of that text."""
    from conftest import TINY_SHAKESPEARE

    text = TINY_SHAKESPEARE.read_text()[:300_000]
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(char) for char in text])
    torch.manual_seed(0)
    cfg = NanoTricksterConfig(vocab_size=len(vocab), hidden_dim=64, num_layers=2, num_heads=4, mlp_dim=128,
                              max_seq_len=64)  # fmt: skip
    model = NanoTrickster(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    draw = torch.Generator().manual_seed(0)
    train, held_out = ids[:250_000], ids[250_000:]
    for _ in range(250):
        starts = torch.randint(0, len(train) - 65, (16,), generator=draw)
        windows = torch.stack([train[s : s + 65] for s in starts])
        _, loss = model(windows[:, :-1], windows[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), held_out[: 8 * 64].view(8, 64)


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_the_lossy_dtypes_give_float32s_greedy_text_within_the_stated_tolerance(trained, dtype):
    """The tolerance (docs/performance.md): on held-out text, every logit within 0.15 of float32's (logits span about
    15 here), and the most likely token the same wherever float32's top two are more than 0.2 apart; greedy text
    equal to float32's for 200 tokens on this model."""
    from lightning_trickster.model import GENERATION_DTYPES, generation_dtype

    model, windows = trained
    if generation_dtype(dtype, torch.device("cpu")) != GENERATION_DTYPES[dtype]:
        pytest.skip(f"this CPU has no native bfloat16: {dtype} falls back to another dtype")
    exact, _ = model(windows)
    weights = model.inference_weights(GENERATION_DTYPES[dtype])
    cache = KVCache(2, 8, 4, 64, 16, weights.cos.to(weights.dtype), weights)
    lossy, _ = model(windows, cache=cache)
    assert (lossy - exact).abs().max() <= 0.15
    top_two = exact.topk(2, dim=-1).values
    clear = top_two[..., 0] - top_two[..., 1] > 0.2
    assert torch.equal(lossy.argmax(-1)[clear], exact.argmax(-1)[clear])
    prompt = windows[:1, :20]
    greedy = SamplingSettings(200, temperature=0)
    assert torch.equal(model.generate(prompt, dataclasses.replace(greedy, dtype=dtype)), model.generate(prompt, greedy))


def test_generated_tokens_are_ordinary_tensors_that_training_can_use(model):
    # Generation computes under inference_mode; what it returns must still be usable where autograd saves it.
    generated = model.generate(torch.randint(0, 40, (1, 4)), SamplingSettings(6, temperature=0))
    streamed = next(model.stream(torch.randint(0, 40, (1, 4)), SamplingSettings(1, temperature=0)))
    assert not generated.is_inference() and not streamed.is_inference()
    model.train()
    _, loss = model(generated[:, :-1], generated[:, 1:])  # the embedding saves the ids for its backward
    loss.backward()
    assert model.embedding.weight.grad is not None
    assert torch.is_grad_enabled()  # the caller's mode, between and after the steps


def test_a_model_held_in_bfloat16_generates_in_float32_from_its_weights(model):
    # bf16-true training keeps the parameters in bfloat16; its samples still generate (sampling.dtype float32).
    held = NanoTrickster(CONFIG).eval().to(torch.bfloat16)
    held.load_state_dict(model.state_dict())
    widened = NanoTrickster(CONFIG).eval()
    widened.load_state_dict({name: value.float() for name, value in held.state_dict().items()})
    prompt = torch.randint(0, 40, (2, 4))
    greedy = SamplingSettings(12, temperature=0)
    assert torch.equal(held.generate(prompt, greedy), widened.generate(prompt, greedy))
