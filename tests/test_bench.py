"""Benchmark harnesses in CI-sized mode: they run end to end and print their figures (no timing asserted)."""

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, TINY_MODEL_ARGS

from lightning_trickster.cli import main
from lightning_trickster.reliability import working_cpp_compiler

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
          "--batch_sizes", "[1, 2]", "--compiled", "false"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["batch_size"] for r in summary["results"]] == [1, 2]
    for result in summary["results"]:
        expected = result["gen_tokens_per_sec_cached"] / result["gen_tokens_per_sec_uncached"]
        assert abs(result["cache_speedup"] - expected) < 0.02 * expected + 0.01
        assert "gen_tokens_per_sec_compiled" not in result  # --compiled false


@pytest.mark.skipif(working_cpp_compiler() is None, reason="torch.compile needs a working C++ compiler on the CPU")
def test_bench_generation_times_the_compiled_decode_step_against_both_eager_paths(small_corpus, capsys):
    main(["bench-generation", "--config", "cpu.yaml", "--data.path", str(small_corpus), *TINY_MODEL_ARGS,
          "--new_tokens", "20", "--batch_sizes", "1"])  # fmt: skip
    (result,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
    assert result["compiled_same_greedy_tokens"] is True
    expected = result["gen_tokens_per_sec_compiled"] / result["gen_tokens_per_sec_uncached"]
    assert abs(result["compiled_vs_uncached"] - expected) < 0.02 * expected + 0.01


def test_the_gpu_script_runs_every_part_in_its_cpu_smoke_mode(tmp_path):
    # Untimed: on a CPU with tiny shapes it only checks that the script a GPU owner runs unchanged works end to end.
    output = tmp_path / "smoke.json"
    script = REPO_ROOT / "benchmarks" / "gpu.py"
    done = subprocess.run([sys.executable, str(script), "--smoke", "--output", str(output)],
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["bench"]["train_tokens_per_sec"] > 0 and report["bench"]["mfu"] is None  # no GPU peak on a CPU
    assert report["fit"]["steps"] == 6 and report["fit"]["best_val_loss"] < report["fit"]["budget_seconds"]
    assert report["generation"]["results"][0]["gen_tokens_per_sec_cached"] > 0


def test_the_time_to_quality_benchmark_compares_variants_with_the_reference(tmp_path):
    output = tmp_path / "ttq.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "time_to_quality.py"), "--smoke",
                           "--variants", "cpu", "--seeds", "1", "--output", str(output)],
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert set(report["variants"]) == {"reference", "cpu"}  # the reference always runs: the ratios need it
    assert report["variants"]["reference"]["time_vs_reference"] == 1.0
    assert report["target_val"] == report["runs"]["reference"][0]["final_val"]
    assert report["runs"]["cpu"][0]["steps"] == 4
