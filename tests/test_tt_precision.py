"""Precision as the chip does it, and optimizer state across a resume, on the ttml double.

bf16-mixed: bfloat16 compute with float32 master weights and moments (ttml's AdamWFullPrecision); its checkpoints
carry the masters. bf16-true: ttml's AdamW on bfloat16 weights with bfloat16 moments, stochastic rounding optional.
The double models each (tests/ttml_double/ttml/optimizers.py cites the kernels), so the difference the chip would
show shows here: an update smaller than half a bfloat16 step of a weight is lost under bf16-true with nearest
rounding, and kept under bf16-mixed.

The module here is the plugin's contract and nothing of the app's: `.model` (a NanoTrickster-shaped torch module),
*_step methods calling `model(idx, targets)`, and one torch AdamW from configure_optimizers whose param_groups
(lr, betas, eps, weight_decay) the plugin reads.
"""

import warnings

import lightning.pytorch as pl
import lightning_tt.register  # noqa: F401 - accelerator "tt"
import numpy as np
import pytest
import torch
from lightning_tt.bridge import round_to_bfloat16
from lightning_tt.errors import TTConfigError
from lightning_tt.strategy import TTStrategy
from ttml_double import harness

from lightning_trickster.model import NanoTrickster, NanoTricksterConfig

tt_double = harness.tt_double
STEPS_PER_EPOCH = 3


class ContractModule(pl.LightningModule):
    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.1, betas=(0.9, 0.95), decay: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = NanoTrickster(
            NanoTricksterConfig(vocab_size=64, hidden_dim=64, num_layers=1, num_heads=2, mlp_dim=64, max_seq_len=32)
        )
        self.lr, self.weight_decay, self.betas, self.decay = lr, weight_decay, betas, decay

    def training_step(self, batch, batch_idx):
        _, loss = self.model(*batch)
        return loss

    def configure_optimizers(self):
        norms = [p for n, p in self.model.named_parameters() if "norm" in n]
        rest = [p for n, p in self.model.named_parameters() if "norm" not in n]
        groups = [{"params": rest, "weight_decay": self.weight_decay}, {"params": norms, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=self.lr, betas=self.betas, eps=1e-8)
        if self.decay == 1.0:
            return optimizer
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: self.decay**step)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def batches() -> torch.utils.data.DataLoader:
    tokens = torch.randint(0, 64, (STEPS_PER_EPOCH * 4, 33), generator=torch.Generator().manual_seed(1))
    data = torch.utils.data.TensorDataset(tokens[:, :-1], tokens[:, 1:])
    return torch.utils.data.DataLoader(data, batch_size=4, shuffle=False)


def fit(module, precision, epochs=1, strategy=None, ckpt_path=None, root=None, **trainer):
    trainer = pl.Trainer(
        accelerator="tt", strategy=strategy or TTStrategy(), precision=precision, max_epochs=epochs, logger=False,
        enable_checkpointing=root is not None, default_root_dir=root, enable_progress_bar=False,
        enable_model_summary=False, log_every_n_steps=1, **trainer,
    )  # fmt: skip
    trainer.fit(module, batches(), ckpt_path=ckpt_path)
    return trainer


def gains(module) -> np.ndarray:
    return np.concatenate([p.detach().numpy() for n, p in module.model.named_parameters() if "norm" in n])


def test_bf16_true_loses_updates_below_half_a_bfloat16_step_and_bf16_mixed_keeps_them(tt_double):
    """RMSNorm gains start at 1.0, where bfloat16's step is 2^-8 below and 2^-7 above; AdamW moves a weight by about
    lr = 1e-4 per step. In 12 steps (about 1.2e-3, under half a step) nearest rounding keeps every gain at 1.0;
    float32 masters accumulate the 12 updates; stochastic rounding moves some gains a whole step."""
    results = {}
    for name, precision, strategy in (
        ("true", "bf16-true", TTStrategy()),
        ("mixed", "bf16-mixed", TTStrategy()),
        ("stochastic", "bf16-true", TTStrategy(stochastic_rounding=True)),
    ):
        module = ContractModule(lr=1e-4)
        trainer = fit(module, precision, epochs=4, strategy=strategy)
        results[name] = gains(module)
        assert trainer.global_step == 12
    assert np.all(results["true"] == 1.0)
    mixed = results["mixed"]
    assert np.abs(mixed - 1.0).mean() > 5e-4 and not np.array_equal(mixed, round_to_bfloat16(mixed))  # fp32 masters
    stochastic = results["stochastic"]
    assert np.any(stochastic != 1.0) and np.array_equal(stochastic, round_to_bfloat16(stochastic))


class DeviceOptimizers(pl.Callback):
    """What the strategy built on the chip (read before teardown closes it)."""

    def on_train_end(self, trainer, module):
        self.optimizers = [d.optimizer for d in trainer.strategy._device_optimizers]


def test_each_precision_runs_its_ttml_optimizer_configured_from_the_param_groups(tt_double):
    module = ContractModule(lr=2e-3, weight_decay=0.05, betas=(0.8, 0.9))
    for precision, kind in (("bf16-true", "AdamW"), ("bf16-mixed", "AdamWFullPrecision")):
        probe = DeviceOptimizers()
        fit(module, precision, max_steps=1, callbacks=[probe])
        assert [type(o).__name__ for o in probe.optimizers] == [kind, kind]
        configs = [o._config for o in probe.optimizers]
        assert [(c.beta1, c.beta2, c.epsilon) for c in configs] == [(0.8, 0.9, 1e-8)] * 2
        assert [c.weight_decay for c in configs] == [0.05, 0.0]
        assert all(c.lr == pytest.approx(2e-3) for c in configs)


def test_stochastic_rounding_is_refused_with_float32_masters(tt_double):
    with pytest.raises(TTConfigError, match="stochastic_rounding is an option of ttml's AdamW on bfloat16 weights"):
        fit(ContractModule(), "bf16-mixed", strategy=TTStrategy(stochastic_rounding=True))


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_a_checkpoint_carries_the_moments_and_a_resume_continues_exactly(precision, tt_double, tmp_path):
    """3 steps, checkpoint, resume for 3 more = 6 uninterrupted steps, weight for weight: the checkpoint holds the
    weights (bf16-mixed: the float32 masters) and ttml's moments and step count, in torch's AdamW format, and the
    resumed chip follows the restored LR schedule (halving every step here)."""
    straight = ContractModule(decay=0.5)
    fit(straight, precision, epochs=2)

    first = ContractModule(decay=0.5)
    fit(first, precision, epochs=1, root=tmp_path)
    [path] = (tmp_path / "checkpoints").glob("*.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["optimizer_states"][0]["state"]
    names = [n for n, _ in first.model.named_parameters()]
    assert sorted(state) == list(range(len(names)))
    assert {float(entry["step"]) for entry in state.values()} == {3.0}
    assert all(entry["exp_avg"].shape == entry["exp_avg_sq"].shape for entry in state.values())
    weights = torch.cat([w.flatten() for w in checkpoint["state_dict"].values()])
    moments = torch.cat([entry["exp_avg"].flatten() for entry in state.values()])
    bfloat16 = {"weights": torch.equal(weights, weights.bfloat16().float()),
                "moments": torch.equal(moments, moments.bfloat16().float())}  # fmt: skip
    if precision == "bf16-mixed":  # float32 masters and moments
        assert bfloat16 == {"weights": False, "moments": False}
    else:
        assert bfloat16 == {"weights": True, "moments": True}

    resumed = ContractModule(decay=0.5)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="resuming on Tenstorrent")
        fit(resumed, precision, epochs=2, ckpt_path=str(path))
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_a_checkpoint_without_moments_resumes_with_fresh_ones_and_says_so_in_one_line(tt_double, tmp_path):
    fit(ContractModule(), "bf16-true", epochs=1, root=tmp_path)
    [path] = (tmp_path / "checkpoints").glob("*.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["optimizer_states"][0]["state"] = {}  # as a checkpoint of the plugin before it saved them
    torch.save(checkpoint, path)
    with pytest.warns(
        UserWarning,
        match=r"^resuming on Tenstorrent: the checkpoint holds no AdamW moments for 9 of "
        r"9 parameters \(embedding.weight, ...\), so ttml's AdamW starts",
    ) as caught:
        trainer = fit(ContractModule(), "bf16-true", epochs=2, ckpt_path=str(path))
    assert all("\n" not in str(w.message) for w in caught) and trainer.global_step == 6


def test_a_tt_checkpoints_moments_load_into_torchs_adamw(tt_double, tmp_path):
    """The format is torch's: a TT checkpoint resumes on CPU/GPU with its moments."""
    fit(ContractModule(), "bf16-mixed", epochs=1, root=tmp_path)
    [path] = (tmp_path / "checkpoints").glob("*.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    module = ContractModule()
    optimizer = module.configure_optimizers()
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    embedding = module.model.embedding.weight
    torch.testing.assert_close(optimizer.state[embedding]["exp_avg"], checkpoint["optimizer_states"][0]["state"][0]
                               ["exp_avg"])  # fmt: skip
    assert float(optimizer.state[embedding]["step"]) == 3.0


class ChipState(pl.Callback):
    """The ttml optimizers' state right after the resume (read at the start of training)."""

    def on_train_start(self, trainer, module):
        state = trainer.strategy._device_optimizers[0].optimizer.get_state_dict()
        self.steps = state["steps"]
        self.embedding_exp_avg = state["exp_avg"]["NanoTricksterTT/embedding.weight"].to_numpy()[0, 0, :64]


def test_a_cpu_checkpoint_resumes_on_tt_with_its_adamw_moments(tt_double, tmp_path):
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, default_root_dir=tmp_path,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(ContractModule(), batches())
    [path] = (tmp_path / "checkpoints").glob("*.ckpt")
    cpu_state = torch.load(path, weights_only=True)["optimizer_states"][0]["state"]
    probe = ChipState()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="resuming on Tenstorrent")
        fit(ContractModule(), "bf16-mixed", epochs=2, ckpt_path=str(path), callbacks=[probe])
    assert probe.steps == 3
    np.testing.assert_array_equal(probe.embedding_exp_avg, cpu_state[0]["exp_avg"].numpy())  # float32, exactly
