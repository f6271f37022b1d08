"""NanoTrickster, the plain-torch model: shapes, counts, causality, RoPE, init and config validation."""

import math

import pytest
import torch

from lightning_trickster.model import NanoTrickster, NanoTricksterConfig, RotaryEmbedding

TINY = dict(vocab_size=50, hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=48, max_seq_len=16)


def test_seed_spec_has_exactly_5_180_672_parameters():
    model = NanoTrickster(NanoTricksterConfig())  # vocab 256, hidden 256, 6 layers, 8 heads, mlp 768, context 512
    counts = model.parameter_breakdown()
    assert counts["total"] == 5_180_672 == sum(p.numel() for p in model.parameters())
    assert counts["embedding"] == 256 * 256
    assert counts["output"] == 0  # tied to the embedding
    assert counts["attention_per_block"] == 4 * 256 * 256
    assert counts["mlp_per_block"] == 3 * 256 * 768
    assert counts["norms_per_block"] == 2 * 256
    assert counts["per_block"] == 852_480
    assert counts["final_norm"] == 256


def test_untied_output_is_counted_separately():
    model = NanoTrickster(NanoTricksterConfig(**TINY, tie_embeddings=False))
    counts = model.parameter_breakdown()
    assert counts["output"] == 50 * 32
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert model.output.weight is not model.embedding.weight


def test_output_projection_is_tied_and_there_are_no_biases():
    model = NanoTrickster(NanoTricksterConfig(**TINY))
    assert model.output.weight is model.embedding.weight
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]


def test_residual_projections_use_scaled_init():
    torch.manual_seed(0)
    model = NanoTrickster(NanoTricksterConfig(vocab_size=256, hidden_dim=256, num_layers=8, num_heads=4, mlp_dim=512))
    block = model.blocks[0]
    assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.attn.proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert block.mlp.down.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)


def test_changing_a_token_never_changes_earlier_logits():
    torch.manual_seed(0)
    model = NanoTrickster(NanoTricksterConfig(**TINY)).eval()
    idx = torch.randint(0, 50, (2, 16))
    changed = idx.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 50
    before, _ = model(idx)
    after, _ = model(changed)
    torch.testing.assert_close(before[:, :9], after[:, :9])
    assert not torch.allclose(before[:, 9:], after[:, 9:])


def test_rope_matches_a_naive_rotation_of_each_channel_pair():
    head_dim, seq_len, theta = 8, 12, 10000.0
    rope = RotaryEmbedding(head_dim, max_seq_len=32, theta=theta)
    x = torch.randn(2, 3, seq_len, head_dim)
    expected = torch.empty_like(x)
    for pos in range(seq_len):
        for i in range(head_dim // 2):
            angle = pos * theta ** (-2 * i / head_dim)
            a, b = x[..., pos, 2 * i], x[..., pos, 2 * i + 1]
            expected[..., pos, 2 * i] = a * math.cos(angle) - b * math.sin(angle)
            expected[..., pos, 2 * i + 1] = a * math.sin(angle) + b * math.cos(angle)
    torch.testing.assert_close(rope(x), expected, atol=1e-5, rtol=1e-5)
    # An offset start position rotates as if the earlier positions were there.
    torch.testing.assert_close(rope(x[..., 5:, :], start_pos=5), expected[..., 5:, :], atol=1e-5, rtol=1e-5)


def test_loss_at_init_is_close_to_uniform_guessing(shakespeare_path):
    """A fresh model predicts nearly uniformly: mean loss within 0.1 of ln(vocab) (mean over 4 inits)."""
    text = torch.frombuffer(bytearray(shakespeare_path.read_bytes()[:200_000]), dtype=torch.uint8).long()
    windows = text[: 8 * 513].view(8, 513)
    losses = []
    for seed in range(4):
        torch.manual_seed(seed)
        model = NanoTrickster(NanoTricksterConfig()).eval()
        with torch.no_grad():
            _, loss = model(windows[:, :-1], windows[:, 1:])
        losses.append(loss.item())
    assert abs(sum(losses) / len(losses) - math.log(256)) < 0.1


def test_forward_returns_logits_and_mean_cross_entropy_ignoring_minus_100():
    torch.manual_seed(0)
    model = NanoTrickster(NanoTricksterConfig(**TINY)).eval()
    idx = torch.randint(0, 50, (2, 10))
    targets = torch.randint(0, 50, (2, 10))
    logits, loss = model(idx, targets)
    assert logits.shape == (2, 10, 50)
    expected = torch.nn.functional.cross_entropy(logits[:, :6].reshape(-1, 50), targets[:, :6].reshape(-1))
    targets[:, 6:] = -100
    _, masked_loss = model(idx, targets)
    torch.testing.assert_close(masked_loss, expected)
    assert model(idx)[1] is None


def test_sequence_longer_than_max_seq_len_is_rejected():
    model = NanoTrickster(NanoTricksterConfig(**TINY))
    with pytest.raises(ValueError, match="max_seq_len=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (dict(hidden_dim=30, num_heads=4), "hidden_dim=30 is not divisible by num_heads=4"),
        (dict(hidden_dim=36, num_heads=4), "head_dim = hidden_dim/num_heads = 9 is odd"),
        (dict(num_layers=0), "num_layers must be a positive integer"),
        (dict(vocab_size=-1), "vocab_size must be a positive integer"),
        (dict(mlp_dim=0), "mlp_dim must be a positive integer"),
        (dict(max_seq_len=0), "max_seq_len must be a positive integer"),
        (dict(dropout=1.0), "dropout must be in"),
    ],
)
def test_invalid_config_names_the_field_and_the_fix(override, message):
    with pytest.raises(ValueError, match=message):
        NanoTricksterConfig(**{**TINY, **override})
