"""The Tenstorrent presets: one per system, each nano.yaml's model and learning dynamics (32 windows per optimizer
step) in bf16-mixed (float32 master weights), each mesh preset naming its machine's installed mesh graph descriptor
and taking the mesh shape from it, each failing in one line where it cannot run, and the mesh presets training a
step on the double's meshes."""

import math
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from lightning_tt.fabric import SYSTEMS
from test_tt_mesh import set_runtime_root
from test_tt_plugin import last_checkpoint, one_line_error
from ttml_double import harness

from lightning_trickster.cli import bundled_configs, main

tt_double = harness.tt_double
NANO_WINDOWS_PER_STEP = 32


def preset(name: str) -> dict:
    return yaml.safe_load(bundled_configs()[name.removesuffix(".yaml")].read_text())


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_each_system_has_a_preset_with_nanos_model_and_32_windows_per_step(system):
    shape, _, name = SYSTEMS[system]
    config, nano = preset(name), preset("nano.yaml")
    trainer = config["trainer"]
    assert config["model"] == nano["model"] and config["data"]["tokenizer"] == nano["data"]["tokenizer"]
    assert trainer["accelerator"] == "tt" and trainer["precision"] == "bf16-mixed"
    assert trainer["devices"] == math.prod(shape)
    windows = config["data"]["batch_size"] * trainer["accumulate_grad_batches"]  # global batch under tt_ddp
    assert windows == NANO_WINDOWS_PER_STEP
    if math.prod(shape) > 1:  # the shape comes from the descriptor (tests/ttnn_host: the wheel's file is `shape`)
        assert trainer["strategy"]["init_args"] == {"mesh_graph_descriptor": SYSTEMS[system][1]}
        assert config["data"]["batch_size"] % math.prod(shape) == 0
    else:
        assert trainer["strategy"] == "tt"


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_each_preset_parses_and_without_ttnn_stops_with_the_n150_line(system, shakespeare_path, monkeypatch, capsys):
    name = SYSTEMS[system][2]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", name, "--print_config"])
    printed = capsys.readouterr().out
    assert exit_info.value.code == 0 and ("mesh_graph_descriptor" in printed) == (math.prod(SYSTEMS[system][0]) > 1)
    monkeypatch.setitem(sys.modules, "ttnn", None)
    monkeypatch.setitem(sys.modules, "ttml", None)
    err = one_line_error(capsys, ["fit", "--config", name, "--data.path", str(shakespeare_path)])
    assert err.startswith("error: accelerator 'tt' cannot run here: ttnn is not installed: pip install ttnn==0.81.1")


TINY = ["--model.num_layers", "1", "--model.hidden_dim", "64", "--model.num_heads", "2", "--model.mlp_dim", "64",
        "--model.max_seq_len", "32", "--model.optimization.warmup_steps", "0", "--data.tokenizer", "char",
        "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--sampling.max_new_tokens", "0", "--samples.prompts", '["Line"]']  # fmt: skip


@pytest.mark.parametrize(("system", "per_chip"), [("n300", 16), ("t3k", 4)])  # [8, 4] trains in test_tt_mesh
def test_a_mesh_preset_trains_a_step_on_its_mesh(system, per_chip, tt_double, small_corpus, tmp_path, capsys, caplog,
                                                 monkeypatch):  # fmt: skip
    import ttnn

    shape, _, name = SYSTEMS[system]
    set_runtime_root(monkeypatch, tmp_path / "runtime")  # the installed descriptors
    ttnn.DOUBLE_CHIPS = 0
    err = one_line_error(capsys, ["fit", "--config", name, "--data.path", str(small_corpus)])
    assert f"mesh {shape} needs {math.prod(shape)} Tenstorrent chip(s) but ttnn sees 0 (ttnn: TT_FATAL" in err
    ttnn.DOUBLE_CHIPS = math.prod(shape)
    ttnn.new_process()
    main(["fit", "--config", name, "--data.path", str(small_corpus), "--trainer.default_root_dir", str(tmp_path),
          *TINY])  # fmt: skip
    summary = f"tt_ddp: mesh {shape}, one process drives {math.prod(shape)} chip(s); data.batch_size 32 is the global"
    assert summary in caplog.text + capsys.readouterr().err
    assert f"micro-batch: {per_chip} windows per chip" in caplog.text
    assert last_checkpoint(tmp_path)["global_step"] == 1


DOCS = Path(__file__).resolve().parents[1] / "docs" / "tenstorrent.md"


def documented_commands() -> list[list[str]]:
    """Every `python -m lightning_trickster ...` command docs/tenstorrent.md shows (inline or in a code block)."""
    text = DOCS.read_text(encoding="utf-8").replace("\\\n", " ")
    found = re.findall(r"`(python -m lightning_trickster [^`\n]+)`", text)
    found += re.findall(r"^(python -m lightning_trickster [^\n#]+)", text, re.M)
    commands = []
    for command in dict.fromkeys(c.strip() for c in found):
        if "[--" not in command:  # the synopsis line with [optional] parts
            commands.append(shlex.split(command)[3:])
    return commands


def test_every_command_the_tenstorrent_page_shows_parses(capsys):
    commands = documented_commands()
    assert len(commands) >= 10 and {c[0] for c in commands} == {"fit", "tt-check"}
    for args in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--print_config"])
        assert exit_info.value.code == 0, args
    capsys.readouterr()


def test_every_citation_of_the_tenstorrent_page_names_one_of_its_sections():
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    headings = {line.lstrip("#").strip() for line in lines if line.startswith("#")}
    repo = DOCS.parents[1]
    cited = 0
    for path in [*repo.glob("configs/tt_*.yaml"), *repo.glob("plugins/lightning_tt/*.py")]:
        for section in re.findall(r"docs/tenstorrent\.md, (\w+)", path.read_text(encoding="utf-8")):
            assert section in headings, (path.name, section)
            cited += 1
    assert cited >= 5


def test_the_tenstorrent_page_shows_the_bindings_table_as_the_plugin_has_it():
    from lightning_tt.bindings import markdown_table

    assert markdown_table() in DOCS.read_text(encoding="utf-8")
