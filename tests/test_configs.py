"""Every bundled preset parses through the CLI and documents its true parameter count."""

import re

import pytest
import torch
import yaml

from lightning_trickster.cli import bundled_configs, main
from lightning_trickster.model import NanoTrickster, NanoTricksterConfig

PRESETS = ["cpu", "nano", "mini", "midi", "mega", "nanogpt", "stdlib"]
TINY_SHAKESPEARE_CHARS = 65


def test_all_presets_are_bundled():
    assert set(PRESETS) <= bundled_configs().keys()


@pytest.mark.parametrize("name", PRESETS)
def test_preset_header_states_the_exact_parameter_count(name):
    path = bundled_configs()[name]
    preset = yaml.safe_load(path.read_text())
    stated = int(re.search(r"([\d,]+) parameters", path.read_text()).group(1).replace(",", ""))
    shape = {k: v for k, v in preset["model"].items() if k in NanoTricksterConfig.__dataclass_fields__}
    data = preset["data"]
    vocab = {"byte": 256, "char": TINY_SHAKESPEARE_CHARS}.get(data["tokenizer"]) or data.get("vocab_size")
    with torch.device("meta"):
        model = NanoTrickster(NanoTricksterConfig(vocab_size=vocab, **shape))
    assert model.parameter_breakdown()["total"] == stated


@pytest.mark.parametrize("name", PRESETS)
def test_preset_parses_through_the_cli(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", f"{name}.yaml", "--print_config"])
    assert exit_info.value.code == 0
    assert "max_seq_len" in capsys.readouterr().out
