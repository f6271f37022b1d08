"""The house: one front door listing every command, one direction of dependency, and quick runs that just run."""

import ast
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, TINY_MODEL_ARGS, fit_args

from lightning_trickster.cli import bundled_configs, main
from lightning_trickster.commands import COMMANDS

LIGHTNING_COMMANDS = ["fit", "validate", "test", "predict"]


def python_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` statement of the file names (at any depth)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_help_lists_every_command_with_a_description(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in [*LIGHTNING_COMMANDS, *COMMANDS]:
        assert f"\n    {name} " in out, name


@pytest.mark.parametrize("command", [*LIGHTNING_COMMANDS, *COMMANDS])
def test_every_command_has_help_from_the_same_parser(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    usage = " ".join(capsys.readouterr().out.split("\n\n")[0].split())
    assert usage.startswith(f"usage: python -m lightning_trickster {command} [-c CONFIG]")


@pytest.mark.parametrize("command", [name for name, command in COMMANDS.items() if command.reads_fit_config])
def test_commands_that_read_a_fit_config_take_every_fit_option(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert all(f"--{group}." in out for group in ("trainer", "model", "data", "checkpoint", "sampling", "samples"))


def test_the_plugin_imports_nothing_of_the_application():
    for path in python_files(REPO_ROOT / "plugins" / "lightning_tt"):
        offending = [name for name in imported_modules(path) if name.split(".")[0] == "lightning_trickster"]
        assert not offending, f"{path} imports {offending}"


def test_no_module_imports_the_front_door():
    for path in python_files(REPO_ROOT / "lightning_trickster"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        assert "lightning_trickster.cli" not in imported_modules(path), path


@pytest.mark.parametrize("module", ["lightning_trickster.model", "lightning_trickster.export"])
def test_the_model_and_export_modules_do_not_import_lightning(module):
    probe = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning'))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_run_shorter_than_its_warmup_starts_with_one_warning(small_corpus, tmp_path, recwarn):
    main(fit_args(small_corpus, tmp_path, "--model.optimization.warmup_steps", "10", max_steps=2))
    warnings = [str(w.message) for w in recwarn if "warmup_steps=10 is longer than this run" in str(w.message)]
    assert len(warnings) == 1 and "will not reach its peak" in warnings[0] and "\n" not in warnings[0]
    assert (tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_a_negative_warmup_stays_an_error(small_corpus, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(small_corpus, tmp_path, "--model.optimization.warmup_steps", "-1"))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: model.optimization.warmup_steps must be >= 0, got -1"


# Every preset keeps its trainer, schedule, data and sampling settings; all but cpu.yaml take the tiny model's shape
# (and one CPU process in float32) so the suite stays fast: the shape is not what fast_dev_run exercises. The full
# nano preset's own run is in the README (fit --config nano.yaml --trainer.fast_dev_run 1).
FULL_SIZE_ON_CPU = {"cpu"}


@pytest.mark.parametrize("preset", sorted(bundled_configs()))
def test_fast_dev_run_works_with_every_preset(preset, small_corpus, tmp_path, caplog, capsys):
    args = ["fit", "--config", preset, "--data.path", str(small_corpus), "--trainer.fast_dev_run", "1"]
    args += ["--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]
    args += ["--samples.prompts", '["Line"]']  # the presets' ROMEO: is not in the small corpus's vocabulary
    if preset == "stdlib":  # its 4,096-token BPE needs more text than the small corpus has
        args += ["--data.vocab_size", "300"]
    if preset not in FULL_SIZE_ON_CPU:
        args += [*TINY_MODEL_ARGS, "--trainer.strategy", "auto", "--trainer.devices", "1"]
        args += ["--trainer.precision", "32-true"]
    with caplog.at_level(logging.INFO):
        main(args)
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("fit done: 1/1 steps")
    assert "--- sample at step 1 ---" in caplog.text  # the end-of-run sample, after the one step
