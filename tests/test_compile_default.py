"""torch.compile only where it pays (docs/performance.md, "Compile only where it pays"): fitting on CUDA for long
enough to repay the compilation; on a CPU, eager unless asked; evaluations, fast_dev_run and short fits eager."""

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.trainer.states import TrainerFn

from lightning_trickster.data import CorpusDataModule
from lightning_trickster.module import COMPILE_PAYS_FROM_STEPS, NanoTricksterModule
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


def compiles_when(stage: TrainerFn, device: str = "cpu", max_steps: int = 10_000, fast_dev_run: bool = False,
                  **module_args) -> bool:  # fmt: skip
    module = NanoTricksterModule(vocab_size=40, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32, **module_args)
    trainer = pl.Trainer(accelerator="cpu", max_steps=max_steps, fast_dev_run=fast_dev_run, logger=False,
                         enable_progress_bar=False)  # fmt: skip
    if device == "cuda":  # the decision reads the accelerator's type and the module's device: no GPU needed
        trainer.strategy.accelerator = CUDAAccelerator()
        module._device = torch.device("cuda", 0)
    trainer.state.fn = stage
    module.trainer = trainer
    return module._compile_enabled()


def test_a_long_fit_on_cuda_compiles_and_a_short_one_or_fast_dev_run_does_not():
    assert compiles_when(TrainerFn.FITTING, "cuda")
    assert compiles_when(TrainerFn.FITTING, "cuda", max_steps=-1)  # an epoch-based fit is not short
    assert not compiles_when(TrainerFn.FITTING, "cuda", max_steps=COMPILE_PAYS_FROM_STEPS - 1)
    assert compiles_when(TrainerFn.FITTING, "cuda", max_steps=COMPILE_PAYS_FROM_STEPS)
    assert not compiles_when(TrainerFn.FITTING, "cuda", fast_dev_run=True)
    assert not compiles_when(TrainerFn.VALIDATING, "cuda") and not compiles_when(TrainerFn.PREDICTING, "cuda")
    assert not compiles_when(TrainerFn.FITTING, "cuda", compile=False)


def test_a_cpu_fit_is_eager_unless_asked_and_asking_always_compiles():
    assert not compiles_when(TrainerFn.FITTING)  # whatever the machine's C++ compiler
    assert compiles_when(TrainerFn.FITTING, compile=True)
    assert compiles_when(TrainerFn.FITTING, max_steps=2, compile=True)  # asked for: also a short run
    assert compiles_when(TrainerFn.VALIDATING, compile=True)


def test_a_default_cpu_fit_trains_eagerly_and_says_nothing_about_compilers(small_corpus, caplog):
    model = two_step_fit(small_corpus)
    assert not compiled(model)
    assert not [record for record in caplog.records if "compiler" in record.getMessage()]


@pytest.mark.skipif(working_cpp_compiler() is None, reason="torch.compile needs a working C++ compiler on the CPU")
def test_asking_for_compilation_on_a_cpu_compiles_the_fit(small_corpus):
    assert compiled(two_step_fit(small_corpus, compile=True))
