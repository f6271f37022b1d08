"""Benchmark harnesses in CI-sized mode: they run end to end and print their figures (no timing asserted)."""

import json

from conftest import TINY_MODEL_ARGS

from lightning_trickster.cli import main

BENCH_KEYS = {
    "train_tokens_per_sec", "raw_tokens_per_sec", "lightning_vs_raw", "ms_per_step", "mfu", "peak_memory_mb",
    "gen_tokens_per_sec_cached", "gen_tokens_per_sec_uncached", "device", "torch", "lightning", "config",
}  # fmt: skip


def test_bench_prints_and_writes_its_json(small_corpus, tmp_path, capsys):
    output = tmp_path / "bench.json"
    main(["bench", "--config", "cpu.yaml", "--data.path", str(small_corpus), *TINY_MODEL_ARGS,
          "--bench.steps", "2", "--bench.warmup_steps", "1", "--bench.repeats", "2", "--bench.gen_tokens", "4",
          "--bench.output", str(output)])  # fmt: skip
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    printed = json.loads(last_line)
    assert printed.keys() >= BENCH_KEYS
    assert printed == json.loads(output.read_text())
    assert printed["train_tokens_per_sec"] > 0 and printed["raw_tokens_per_sec"] > 0
    assert printed["lightning_vs_raw"] == round(printed["train_tokens_per_sec"] / printed["raw_tokens_per_sec"], 4)
    assert len(printed["lightning_vs_raw_per_repeat"]) == 2  # one paired ratio per repeat shows the noise
    assert printed["adamw_step_ms"].keys() == {"per_tensor", "foreach", "fused"}  # what the fused default rests on
    assert min(printed["adamw_step_ms"].values()) > 0
    assert printed["mfu"] is None  # no published peak for a CPU


def test_bench_generation_reports_cache_speedup(small_corpus, capsys):
    main(["bench-generation", "--config", "cpu.yaml", "--data.path", str(small_corpus), "--new_tokens", "6",
          "--batch_sizes", "[1, 2]"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["batch_size"] for r in summary["results"]] == [1, 2]
    for result in summary["results"]:
        expected = result["gen_tokens_per_sec_cached"] / result["gen_tokens_per_sec_uncached"]
        assert abs(result["cache_speedup"] - expected) < 0.02 * expected + 0.01
