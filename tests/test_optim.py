"""The optimizer switch: AdamW everywhere, or Muon for the blocks' matrices with AdamW for the rest."""

import copy

import pytest
import torch
from conftest import fit_args

from lightning_trickster.checkpoint import read_checkpoint
from lightning_trickster.cli import main
from lightning_trickster.module import NanoTricksterModule
from lightning_trickster.optim import MuonWithAdamW, Optimization, warmup_cosine_over_time
from lightning_trickster.runs import newest_last_checkpoint

SHAPE = dict(vocab_size=40, hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=64, max_seq_len=16)


def muon_module(**settings) -> NanoTricksterModule:
    optimization = Optimization(optimizer="muon", learning_rate=1e-3, muon_learning_rate=0.02, **settings)
    return NanoTricksterModule(**SHAPE, optimization=optimization)


def test_muon_takes_the_block_matrices_and_adamw_the_embedding_and_norms():
    module = muon_module()
    optimizer, _ = module.optimizer_and_schedule(total_steps=10)
    assert isinstance(optimizer, MuonWithAdamW)
    names = {id(p): name for name, p in module.named_parameters()}
    in_muon = {names[id(p)] for group in optimizer.muon.param_groups for p in group["params"]}
    in_adamw = {names[id(p)] for group in optimizer.adamw.param_groups for p in group["params"]}
    assert in_muon == {name for name in names.values() if name.startswith("model.blocks.") and name.endswith("weight")
                       and "norm" not in name}  # fmt: skip
    assert in_adamw == set(names.values()) - in_muon  # every parameter once: embedding (tied output) and norms
    assert "model.embedding.weight" in in_adamw


def test_the_schedule_moves_both_learning_rates_and_each_keeps_its_peak():
    module = muon_module(warmup_steps=0, min_lr_ratio=0.1)
    optimizer, schedule = module.optimizer_and_schedule(total_steps=10)
    for _ in range(10):
        optimizer.step()
        schedule.step()
    assert optimizer.muon.param_groups[0]["lr"] == pytest.approx(0.02 * 0.1)
    assert optimizer.adamw.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.1)
    assert optimizer.param_groups[0] is optimizer.muon.param_groups[0]  # what the scheduler changes is what steps


def test_muon_and_adamw_both_update_their_parameters():
    module = muon_module()
    optimizer, _ = module.optimizer_and_schedule(total_steps=10)
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    _, loss = module.model(torch.randint(0, 40, (2, 16)), torch.randint(0, 40, (2, 16)))
    loss.backward()
    optimizer.step()
    changed = {name for name, p in module.named_parameters() if not torch.equal(p, before[name])}
    assert "model.blocks.0.attn.qkv.weight" in changed and "model.embedding.weight" in changed


def test_a_muon_run_resumes_with_both_optimizer_states(small_corpus, tmp_path):
    main(fit_args(small_corpus, tmp_path, "--model.optimization.optimizer", "muon"))
    checkpoint = read_checkpoint(newest_last_checkpoint(tmp_path))
    state = checkpoint["optimizer_states"][0]
    assert state.keys() == {"muon", "adamw"}
    assert state["muon"]["state"] and state["adamw"]["state"]  # momentum buffers and Adam moments were saved
    main(fit_args(small_corpus, tmp_path, "--model.optimization.optimizer", "muon", "--ckpt_path", "last", max_steps=9))
    assert read_checkpoint(newest_last_checkpoint(tmp_path))["global_step"] == 9


def test_an_unknown_optimizer_or_a_bad_muon_learning_rate_is_one_line(small_corpus, tmp_path, capsys):
    for option, value, expected in (
        ("--model.optimization.optimizer", "sgd", "model.optimization.optimizer"),
        ("--model.optimization.muon_learning_rate", "0", "model.optimization.muon_learning_rate must be positive"),
    ):
        with pytest.raises(SystemExit) as stopped:
            main(fit_args(small_corpus, tmp_path, option, value))
        assert stopped.value.code != 0
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err


SHAPES = [(48, 16), (16, 16), (40, 16), (40, 16), (16, 40), (48, 16), (16, 16), (40, 16), (16, 40), (7, 11)]
"""Tall, wide and square matrices; a tall and a wide one of the same two sides share a batch (40x16 and 16x40)."""


@pytest.mark.parametrize("nesterov", [True, False])
def test_the_batched_muon_update_is_torchs_per_matrix_update_bit_for_bit(nesterov):
    from lightning_trickster.optim import BatchedMuon

    draw = torch.Generator().manual_seed(0)
    theirs = [torch.nn.Parameter(torch.randn(shape, generator=draw)) for shape in SHAPES]
    ours = [torch.nn.Parameter(p.detach().clone()) for p in theirs]
    settings = dict(lr=0.03, weight_decay=0.1, nesterov=nesterov)
    reference, batched = torch.optim.Muon(theirs, **settings), BatchedMuon(ours, **settings)
    for step in range(4):
        for mine, their in zip(ours, theirs, strict=True):
            their.grad = torch.randn(their.shape, generator=draw)
            mine.grad = their.grad.clone()
        if step == 2:  # a matrix without a gradient is left alone by both
            theirs[3].grad = ours[3].grad = None
        reference.step()
        batched.step()
        for mine, their in zip(ours, theirs, strict=True):
            assert torch.equal(mine, their), step
    # The same state in the same format: a checkpoint of either loads into the other.
    state, reference_state = batched.state_dict(), reference.state_dict()
    assert state["state"].keys() == reference_state["state"].keys()
    for index, entry in state["state"].items():
        assert torch.equal(entry["momentum_buffer"], reference_state["state"][index]["momentum_buffer"])
    assert state["param_groups"] == reference_state["param_groups"]


def test_the_muon_optimizer_batches_by_default_and_resumes_from_torchs_state():
    from lightning_trickster.optim import BatchedMuon

    module = muon_module()
    optimizer, _ = module.optimizer_and_schedule(total_steps=10)
    assert isinstance(optimizer.muon, BatchedMuon)
    _, loss = module.model(torch.randint(0, 40, (2, 16)), torch.randint(0, 40, (2, 16)))
    loss.backward()
    # A checkpoint written while torch.optim.Muon stepped (before batching) loads and steps on as torch's would.
    matrices = optimizer.muon.param_groups[0]["params"]
    per_matrix = torch.optim.Muon(matrices, lr=0.02, weight_decay=0.1)
    per_matrix.step()
    optimizer.muon.load_state_dict(copy.deepcopy(per_matrix.state_dict()))  # its own buffers, as from a file
    before = [p.detach().clone() for p in matrices]
    per_matrix.step()
    expected = [p.detach().clone() for p in matrices]
    with torch.no_grad():
        for p, value in zip(matrices, before, strict=True):
            p.copy_(value)
    optimizer.muon.step()
    assert all(torch.equal(p, e) for p, e in zip(matrices, expected, strict=True))


def test_a_time_budgeted_schedule_warms_up_by_steps_then_decays_with_the_budget_spent():
    assert warmup_cosine_over_time(0, 4, elapsed_fraction=0.0, min_lr_ratio=0.1) == pytest.approx(1 / 5)
    assert warmup_cosine_over_time(4, 4, elapsed_fraction=0.0, min_lr_ratio=0.1) == pytest.approx(1.0)
    assert warmup_cosine_over_time(50, 4, elapsed_fraction=0.5, min_lr_ratio=0.1) == pytest.approx(0.55)
    # The floor at the budget, and after it (the last validation and checkpoint come after the budget).
    assert warmup_cosine_over_time(90, 4, elapsed_fraction=1.0, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine_over_time(91, 4, elapsed_fraction=1.2, min_lr_ratio=0.1) == pytest.approx(0.1)
