"""torch.compile is the default for training wherever it works, and a machine without a C++ compiler trains eagerly
with one line saying so."""

import logging

import lightning.pytorch as pl
import pytest
from lightning.pytorch.trainer.states import TrainerFn

import lightning_trickster.module
from lightning_trickster.data import CorpusDataModule
from lightning_trickster.module import NanoTricksterModule
from lightning_trickster.optim import Optimization
from lightning_trickster.reliability import working_cpp_compiler


def two_step_fit(corpus, **module_args) -> NanoTricksterModule:
    data = CorpusDataModule(path=str(corpus), tokenizer="char", block_size=16, batch_size=2)
    model = NanoTricksterModule(vocab_size=data.vocab_size, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32,
                                max_seq_len=16, optimization=Optimization(warmup_steps=1), **module_args)  # fmt: skip
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, data)
    return model


def compiled(module: NanoTricksterModule) -> bool:
    return module.model._compiled_call_impl is not None  # what nn.Module.compile sets


def compiles_when(stage: TrainerFn, accelerator: str = "cpu", **module_args) -> bool:
    module = NanoTricksterModule(vocab_size=40, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32, **module_args)
    trainer = pl.Trainer(accelerator=accelerator, logger=False, enable_progress_bar=False)
    trainer.state.fn = stage
    module.trainer = trainer
    return module._compile_enabled()


@pytest.mark.skipif(working_cpp_compiler() is None, reason="torch.compile needs a working C++ compiler on the CPU")
def test_fitting_on_a_cpu_with_a_compiler_compiles_by_default_and_evaluating_does_not():
    # The compiled fit itself runs in test_python_api (the README example trains with the defaults).
    assert compiles_when(TrainerFn.FITTING)
    assert not compiles_when(TrainerFn.FITTING, compile=False)
    assert not compiles_when(TrainerFn.VALIDATING) and not compiles_when(TrainerFn.PREDICTING)
    assert compiles_when(TrainerFn.VALIDATING, compile=True)  # asked for: always


def test_without_a_compiler_fit_trains_eagerly_and_says_so_once(small_corpus, monkeypatch, caplog):
    monkeypatch.setattr(lightning_trickster.module, "working_cpp_compiler", lambda: None)
    with caplog.at_level(logging.INFO):
        model = two_step_fit(small_corpus)
    assert not compiled(model)
    said = [record.getMessage() for record in caplog.records if "C++ compiler" in record.getMessage()]
    assert len(said) == 1 and said[0].startswith("no working C++ compiler found: training without torch.compile")
