import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `import benchmarks` (the harnesses) however pytest was started
    sys.path.append(str(REPO_ROOT))
# Tiny Shakespeare ships with the tests (public domain, 1.1 MB), so a fresh clone runs every test offline.
TINY_SHAKESPEARE = REPO_ROOT / "tests" / "data" / "tinyshakespeare.txt"

# A model small enough that a few Lightning steps take well under a second on a CPU.
TINY_MODEL_ARGS = [
    "--model.hidden_dim", "32",
    "--model.num_layers", "2",
    "--model.num_heads", "2",
    "--model.mlp_dim", "64",
    "--model.max_seq_len", "32",
    "--model.dropout", "0.0",
    "--model.compile", "false",  # tests check behaviour; the compiled default has tests of its own
    "--model.optimization.warmup_steps", "1",
    "--data.batch_size", "4",
    "--trainer.accelerator", "cpu",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--samples.prompts", '["Line"]',
    "--sampling.max_new_tokens", "16",
]  # fmt: skip


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """The CLI (or the benchmarks' runner, for a harness) in this process: (exit status, stdout, stderr); a traceback
    would escape as an exception."""
    from benchmarks.__main__ import HARNESSES
    from benchmarks.__main__ import main as benchmarks_main
    from lightning_trickster.cli import main

    try:
        (benchmarks_main if args and args[0] in HARNESSES else main)(args)
    except SystemExit as exit_info:
        status = exit_info.code
    else:
        status = 0
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_error_line(err: str) -> str:
    """The one `error:` line of a command's stderr, which must also be its last non-blank line."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err[-3000:]
    return errors[0]


@pytest.fixture
def shakespeare_path() -> Path:
    return TINY_SHAKESPEARE


def write_small_corpus(path: Path) -> Path:
    """About 20 KB of varied English text: enough for 32-token windows in both splits."""
    lines = [
        f"Line {i}: the quick brown fox jumps over the lazy dog, and {i * 7 % 13} birds sing.\n" for i in range(250)
    ]
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    return write_small_corpus(tmp_path / "corpus.txt")


def fit_args(corpus: Path, root: Path, *extra: str, max_steps: int = 6) -> list[str]:
    """Arguments for a short `fit` of the tiny model that validates and checkpoints every 3 steps."""
    return [
        "fit",
        "--config", "cpu.yaml",
        "--data.path", str(corpus),
        "--trainer.default_root_dir", str(root),
        "--data.cache_dir", str(root / "data"),  # prepared copies of the corpus stay in the test's folder
        "--trainer.max_steps", str(max_steps),
        "--trainer.val_check_interval", "3",
        "--trainer.log_every_n_steps", "1",
        *TINY_MODEL_ARGS,
        *extra,
    ]  # fmt: skip
