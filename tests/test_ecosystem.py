"""TensorBoard checked through its own server, the `plot` PNG and the safetensors `export`."""

import json
import math
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import fit_args

from lightning_trickster import NanoTricksterModule
from lightning_trickster.cli import main
from lightning_trickster.export import load_exported
from lightning_trickster.model import SamplingSettings

SCALAR_TAGS = {"train/loss", "val/loss", "val/perplexity", "train/lr"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A short char-level fit that samples at steps 0, 3 and 6; returns its root directory."""
    root = tmp_path_factory.mktemp("tb")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(300)))
    main(fit_args(corpus, root, "--samples.every_n_steps", "3"))
    return root


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(base: str, path: str, **query: str):
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def tensorboard(run):
    """A real TensorBoard server on loopback over the run's logs; stopped after the test."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                # The server answers before it has read the logs; wait until the run's tags are loaded.
                if "train/loss" in get_json(base, "/data/plugin/scalars/tags").get("lightning_logs/version_0", {}):
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"TensorBoard did not serve the run: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tensorboard_serves_the_logged_scalars_text_and_hparams(run, tensorboard):
    run_name = "lightning_logs/version_0"
    tags = get_json(tensorboard, "/data/plugin/scalars/tags")[run_name]
    assert tags.keys() >= SCALAR_TAGS

    val_loss = get_json(tensorboard, "/data/plugin/scalars/scalars", run=run_name, tag="val/loss")
    steps = [step for _, step, _ in val_loss]
    assert steps == [0, 2, 5]  # the random baseline at step 0, then every 3 steps
    checkpoint = torch.load(run / run_name / "checkpoints" / "last.ckpt", weights_only=True)
    (callback_state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert val_loss[-1][2] == pytest.approx(float(callback_state["current_score"]), rel=1e-6)
    perplexity = get_json(tensorboard, "/data/plugin/scalars/scalars", run=run_name, tag="val/perplexity")
    assert perplexity[-1][2] == pytest.approx(math.exp(val_loss[-1][2]), rel=1e-4)
    vocab = checkpoint["hyper_parameters"]["vocab_size"]
    uniform = get_json(tensorboard, "/data/plugin/scalars/scalars", run=run_name, tag="baseline/uniform_loss")
    assert uniform[0][2] == pytest.approx(math.log(vocab), rel=1e-6)

    text_tags = get_json(tensorboard, "/data/plugin/text/tags")[run_name]
    assert "samples/Line" in text_tags
    samples = get_json(tensorboard, "/data/plugin/text/text", run=run_name, tag="samples/Line")
    assert [sample["step"] for sample in samples] == [0, 3, 6]
    assert "Line" in samples[-1]["text"]

    request = urllib.request.Request(
        f"{tensorboard}/data/plugin/hparams/experiment",
        data=json.dumps({"experimentName": ""}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        experiment = json.loads(response.read())
    hparam_names = {info["name"] for info in experiment["hparamInfos"]}
    assert {
        "model/hidden_dim",
        "model/optimization/learning_rate",
        "data/batch_size",
        "parameters",
        "trainer/max_steps",
    } <= hparam_names
    assert "val/loss" in {info["name"]["tag"] for info in experiment["metricInfos"]}


def test_plot_draws_a_png_of_the_curves(run, tmp_path, capsys):
    output = tmp_path / "curves.png"
    main(["plot", str(run), "--output", str(output)])
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert output.stat().st_size > 10_000
    assert f"wrote {output} (1 run)" in capsys.readouterr().out


def test_plot_of_a_directory_without_logs_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: no TensorBoard event files under {tmp_path}")


def test_export_round_trips_to_identical_logits(run, tmp_path):
    ckpt = run / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    main(["export", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "exported")])
    assert {p.name for p in (tmp_path / "exported").iterdir()} == {"model.safetensors", "config.json"}

    model, tokenizer, sampling = load_exported(tmp_path / "exported")
    lightning_model = NanoTricksterModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    tokens = tokenizer.encode("Line 7: the quick").unsqueeze(0)
    with torch.no_grad():
        assert torch.equal(model(tokens)[0], lightning_model(tokens)[0])
    assert model.output.weight is model.embedding.weight  # still tied after loading
    assert sampling == SamplingSettings(max_new_tokens=16, temperature=0.8, top_k=None, top_p=None)  # the fit's
