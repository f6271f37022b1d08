"""Every bad input of the reliability list ends in one `error: ...` line, a non-zero exit and no traceback, driven
through the real CLI entry point. The case list is the fault suite's (tests/faults.py)."""

import pickle
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import fit_args, write_small_corpus
from faults import bad_input_cases, run_in_process

import lightning_trickster.data as data_module
from lightning_trickster import CorpusDataModule, NanoTricksterModule
from lightning_trickster.cli import main
from lightning_trickster.errors import InvalidConfigError
from lightning_trickster.optim import Optimization

# Driven through the CLI by other test files already.
COVERED_ELSEWHERE = {
    "hidden_dim not divisible by num_heads",  # test_cli.py
    "unknown config name",  # test_cli.py
    "prompt outside the char vocabulary",  # test_cli.py
    "accelerator tt without ttnn/ttml/chip",  # test_tt_plugin.py
    "--model.compile true without a C++ compiler",  # below: a fallback to eager passes too
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bad_input")
    corpus = write_small_corpus(root / "corpus.txt")  # the cases train on the same text, so the vocabulary matches
    main(fit_args(corpus, root / "trained", max_steps=3))
    return root, next((root / "trained").glob("lightning_logs/version_0/checkpoints/last.ckpt"))


def case_names() -> list[str]:
    # The names do not depend on the workspace; building the list needs files, so do it in a scratch directory.
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "fake.ckpt"
        shape = {"hidden_dim": 4, "num_layers": 1, "num_heads": 1, "mlp_dim": 4, "max_seq_len": 4, "vocab_size": 4}
        torch.save({"state_dict": {}, "hyper_parameters": shape}, checkpoint)  # the cases derive files from it
        return [case.name for case in bad_input_cases(Path(scratch), checkpoint) if case.name not in COVERED_ELSEWHERE]


@pytest.mark.parametrize("name", case_names())
def test_bad_input_is_one_clear_line_and_a_non_zero_exit(name, workspace, monkeypatch):
    monkeypatch.setattr(data_module.time, "sleep", lambda seconds: None)  # the offline case retries with back-off
    root, checkpoint = workspace
    case = {case.name: case for case in bad_input_cases(root / "cases", checkpoint)}[name]
    outcome = run_in_process(case)
    assert not outcome.traceback, outcome.stderr
    assert outcome.exit_code == 2
    assert outcome.is_clean_error(case.expect), outcome.stderr


def test_compile_without_a_cpp_compiler_falls_back_or_is_one_line_never_a_traceback(workspace):
    root, checkpoint = workspace
    case = {case.name: case for case in bad_input_cases(root / "cases", checkpoint)}[
        "--model.compile true without a C++ compiler"
    ]
    outcome = run_in_process(case)
    assert not outcome.traceback and "Traceback" not in outcome.stderr, outcome.stderr
    if outcome.exit_code == 0:  # a fallback to eager: one warning line names the missing compiler
        assert len([line for line in outcome.stderr.splitlines() if "compiler" in line]) == 1, outcome.stderr
    else:
        assert outcome.exit_code == 2
        assert outcome.is_clean_error("C++ compiler"), outcome.stderr


def test_working_cpp_compiler_finds_the_compiler_inductor_uses_or_none():
    from faults import no_cpp_compiler

    from lightning_trickster.reliability import inductor_cpp_compilers, working_cpp_compiler

    with no_cpp_compiler():
        assert working_cpp_compiler() is None
        assert inductor_cpp_compilers() == ["/nonexistent/g++"]
    found = working_cpp_compiler()
    assert found is None or Path(found).name in [Path(name).name for name in inductor_cpp_compilers()]
    assert working_cpp_compiler() is found  # detected once


def test_debug_switch_shows_the_traceback(small_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("TRICKSTER_DEBUG", "1")
    with pytest.raises(InvalidConfigError, match="learning_rate must be positive"):
        main(fit_args(small_corpus, tmp_path, "--model.optimization.learning_rate", "-1"))
    monkeypatch.delenv("TRICKSTER_DEBUG")
    with pytest.raises(InvalidConfigError):
        main([*fit_args(small_corpus, tmp_path, "--model.optimization.learning_rate", "-1"), "--debug"])


def test_block_size_longer_than_the_models_context_is_a_clear_error_at_fit_start(small_corpus):
    # The CLI links data.block_size to model.max_seq_len; in Python the two can disagree.
    data = CorpusDataModule(path=str(small_corpus), tokenizer="char", block_size=64, batch_size=2)
    model = NanoTricksterModule(vocab_size=data.vocab_size, hidden_dim=32, num_layers=1, num_heads=2, mlp_dim=32,
                                max_seq_len=32, optimization=Optimization(warmup_steps=1), compile=False)  # fmt: skip
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with pytest.raises(InvalidConfigError, match="data.block_size=64 is longer than the model's max_seq_len=32"):
        trainer.fit(model, data)


class Payload:
    """Unpickling this would create a file: the proof that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_carrying_pickled_code_is_refused_without_running_it(workspace, tmp_path, capsys):
    root, checkpoint = workspace
    marker = tmp_path / "pickled-code-ran"
    evil = torch.load(checkpoint, weights_only=True)
    evil["hyper_parameters"]["payload"] = Payload(marker)
    torch.save(evil, tmp_path / "evil.ckpt", pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(root / "corpus.txt", tmp_path / "run", "--ckpt_path", str(tmp_path / "evil.ckpt")))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: checkpoint {tmp_path / 'evil.ckpt'} could not be read") and "Weights only" in err
    assert not marker.exists()
