"""`info`: exact parameter counts, and estimates checked against what torch actually saves and computes, and against
a measured run (the memory harness, `python -m benchmarks memory`)."""

import json
import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.__main__ import main as benchmarks_main
from lightning_trickster.cli import main
from lightning_trickster.commands.memory import (
    RunLayout,
    attention_flops_per_token,
    block_activation_bytes_per_token,
    estimate_memory,
    head_activation_bytes_per_token,
    matmul_flops_per_token,
    parse_precision,
)
from lightning_trickster.model import NanoTrickster, NanoTricksterConfig


def info(capsys, *args: str) -> str:
    main(["info", *args])
    return capsys.readouterr().out


def gib_row(output: str, component: str) -> list[float]:
    row = re.search(rf"^  {component} +([\d.,]+) GiB +([\d.,]+) GiB$", output, re.MULTILINE)
    return [float(value.replace(",", "")) for value in row.groups()]


def test_info_mega_prints_the_exact_breakdown_and_the_sharded_memory_table(capsys):
    out = info(capsys, "--config", "mega.yaml", "--trainer.devices", "8")
    assert "total                 1,130,981,376" in out
    assert "per block                51,384,320  = attention 16,777,216 + MLP 34,603,008 + norms 4,096" in out
    assert "run: fsdp on 8 device(s) x 1 node(s), bf16-mixed precision, parameters sharded over 8 processes" in out
    assert "4 windows x 512 tokens x 8 accumulation x 8 devices = 131,072" in out
    assert "activation checkpointing (configured)" in out
    sharded_total = gib_row(out, "total")
    ddp_total = gib_row(
        info(capsys, "--config", "mega.yaml", "--trainer.devices", "8", "--trainer.strategy", "ddp"), "total"
    )
    assert sharded_total[1] < 8 < ddp_total[0]  # FSDP fits a small GPU where plain DDP does not


def test_info_counts_match_the_real_model_and_read_the_corpus_vocabulary(capsys, small_corpus):
    out = info(capsys, "--config", "cpu.yaml", "--data.path", str(small_corpus), "--model.num_layers", "3")
    vocab = len(set(small_corpus.read_text()))
    counts = NanoTrickster(
        NanoTricksterConfig(vocab_size=vocab, hidden_dim=96, num_layers=3, num_heads=4, mlp_dim=256, max_seq_len=128)
    ).parameter_breakdown()
    assert f"vocab {vocab} (char tokenizer)" in out  # the tokenizer's vocabulary: the corpus's distinct characters
    assert re.search(rf"total +{counts['total']:,}$", out, re.MULTILINE)
    assert re.search(rf"3 blocks +{counts['blocks']:,}$", out, re.MULTILINE)


def test_info_takes_the_vocabulary_from_the_configured_tokenizer(capsys):
    assert "vocab 256 (byte tokenizer)" in info(capsys, "--config", "nano.yaml")


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--config", "mega.yaml", "--trainer.precision", "64-true"],
            "precision '64-true' is not one info can estimate",
        ),
        (["--config", "mega.yaml", "--optimizer.lr", "1"], "nrecognized arguments: --optimizer.lr"),
        # Measuring moved to `python -m benchmarks memory`.
        (["--config", "mega.yaml", "--measure", "3"], "nrecognized arguments: --measure"),
        (["--config", "mega.yaml", "--trainer.devices", "0"], "trainer.devices must be a positive integer"),
        (["--config", "nope.yaml"], "config 'nope.yaml' not found"),
    ],
)
def test_info_bad_input_is_a_one_line_error(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["info", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_the_memory_harness_compares_a_measured_run_with_infos_estimate(capsys, small_corpus):
    # cpu.yaml's 4 layers: checkpointing then saves about 30 MB, well above the noise of a process's peak RSS.
    benchmarks_main(["memory", "--config", "cpu.yaml", "--data.path", str(small_corpus), "--model.compile", "false",
                     "--steps", "2"])  # fmt: skip
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["batch_size"], summary["max_seq_len"], summary["precision"]) == (16, 128, "32-true")  # cpu.yaml
    plain, checkpointed = summary["results"]
    assert (plain["activation_checkpointing"], checkpointed["activation_checkpointing"]) == (False, True)
    cfg = NanoTricksterConfig(vocab_size=len(set(small_corpus.read_text())), hidden_dim=96, num_layers=4, num_heads=4,
                              mlp_dim=256, max_seq_len=128)  # fmt: skip
    layout = RunLayout(
        batch_size=16, accumulate=1, devices=1, num_nodes=1, precision=parse_precision("32-true"), strategy="single"
    )
    for row in (plain, checkpointed):
        estimate = estimate_memory(NanoTrickster(cfg), layout, row["activation_checkpointing"], math_attention=True)
        assert row["estimated_bytes"] == estimate["total"]  # info's estimate for this shape, batch and precision
        assert row["error"] == round((row["estimated_bytes"] - row["measured_bytes"]) / row["measured_bytes"], 4)
        # On a CPU the measured process adds memory the estimate leaves out (allocator and library buffers): about
        # 20 MiB in a developer's venv, 51 MiB in a fresh CI venv; the bound keeps it small beside the estimate.
        assert row["device"] == "cpu" and 0 < row["measured_bytes"] - row["estimated_bytes"] < 64 * 2**20
    assert checkpointed["measured_bytes"] < plain["measured_bytes"]  # the child really checkpointed activations
    assert "activation checkpointing   measured peak" in out


def saved_activation_bytes(model: NanoTrickster, tokens: torch.Tensor, precision: str) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves for backward in one forward."""
    parameters = {p.untyped_storage()._cdata for p in [*model.parameters(), *model.buffers()]}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage._cdata not in parameters:
            saved[storage._cdata] = storage.nbytes()
        return tensor

    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
        model(tokens, tokens)
    return sum(saved.values())


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "bf16-true"])
def test_activation_estimate_matches_the_tensors_autograd_saves(precision, dropout):
    cfg = NanoTricksterConfig(
        vocab_size=65, hidden_dim=96, num_layers=3, num_heads=4, mlp_dim=160, max_seq_len=48, dropout=dropout
    )
    model = NanoTrickster(cfg)
    if precision == "bf16-true":
        model = model.to(torch.bfloat16)
    tokens = torch.randint(65, (2, 48))
    layout = RunLayout(
        batch_size=2, accumulate=1, devices=1, num_nodes=1, precision=parse_precision(precision), strategy="single"
    )
    estimate = estimate_memory(model, layout, checkpointing=False, math_attention=True)  # CPU kernels
    expected = estimate["activations"] + estimate.get("autocast_weight_copies", 0)
    assert saved_activation_bytes(model, tokens, precision) == pytest.approx(expected, rel=0.01)
    compute = {"32-true": "fp32", "bf16-mixed": "autocast", "bf16-true": "half"}[precision]
    assert block_activation_bytes_per_token(model, compute) > head_activation_bytes_per_token(model, compute) / 4


def test_matmul_flops_match_torch_flop_counter():
    cfg = NanoTricksterConfig(vocab_size=65, hidden_dim=64, num_layers=2, num_heads=4, mlp_dim=128, max_seq_len=32)
    model = NanoTrickster(cfg)
    tokens = torch.randint(65, (2, 32))
    with FlopCounterMode(display=False) as counter:
        model(tokens, tokens)[1].backward()
    # The CPU attention kernel is not counted by FlopCounterMode; its term is the PaLM formula.
    assert counter.get_total_flops() == matmul_flops_per_token(model) * tokens.numel()
    assert attention_flops_per_token(model) == 12 * 2 * 64 * 32
