"""Benchmark harnesses (`python -m benchmarks NAME`) in CI-sized mode: they run end to end and print their figures
(no timing asserted); the runner lists them, and the product neither lists nor imports them."""

import ast
import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, TINY_MODEL_ARGS

from benchmarks.__main__ import HARNESSES, main
from benchmarks.child import in_fresh_process
from lightning_trickster import cli
from lightning_trickster.commands import COMMANDS
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
    # cpu.yaml trains with Muon: the whole optimizer step with torch's per-matrix Muon and with the batched one
    assert printed["muon_step_ms"].keys() == {"per_matrix", "batched"} and min(printed["muon_step_ms"].values()) > 0


def test_bench_generation_reports_each_decoder_beside_the_recomputing_one(small_corpus, capsys):
    main(["bench-generation", "--config", "cpu.yaml", "--data.path", str(small_corpus), *TINY_MODEL_ARGS,
          "--new_tokens", "6", "--batch_sizes", "[1, 2]", "--repeats", "2", "--compiled", "false",
          "--transformers", "false", "--dtypes", "[]"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["repeats"] == 2 and summary["threads"] == torch.get_num_threads()
    assert [r["batch_size"] for r in summary["results"]] == [1, 2]
    for result in summary["results"]:
        expected = result["gen_tokens_per_sec_best"] / result["gen_tokens_per_sec_uncached"]
        assert abs(result["best_vs_uncached"] - expected) < 0.02 * expected + 0.01
        # tokens/s and ms/token are two views of one median time
        for name in ("best", "uncached"):
            seconds = result["new_tokens"] * result[f"ms_per_token_{name}"] / 1000
            assert abs(result["batch_size"] * result["new_tokens"] / seconds / result[f"gen_tokens_per_sec_{name}"]
                       - 1) < 0.01  # fmt: skip
        assert result["best_same_greedy_tokens"] is True  # the default path is lossless
        assert not {"gen_tokens_per_sec_compiled", "gen_tokens_per_sec_transformers"} & result.keys()


@pytest.mark.skipif(working_cpp_compiler() is None, reason="torch.compile needs a working C++ compiler on the CPU")
def test_bench_generation_times_transformers_and_the_opt_in_decoders_in_the_same_run(small_corpus, capsys):
    pytest.importorskip("transformers")
    main(["bench-generation", "--config", "cpu.yaml", "--data.path", str(small_corpus), *TINY_MODEL_ARGS,
          "--new_tokens", "20", "--batch_sizes", "1", "--repeats", "2", "--threads", "1"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (result,) = summary["results"]
    assert summary["threads"] == 1 and summary["transformers"]
    assert result["compiled_same_greedy_tokens"] is True
    # The peer: the same weights through export --format hf, in each of its configurations, the fastest kept.
    by_configuration = result["gen_tokens_per_sec_transformers_by_configuration"]
    assert set(by_configuration) == {"dynamic_cache", "static_cache", "static_cache_compiled"}
    assert result["gen_tokens_per_sec_transformers"] == max(by_configuration.values())
    assert by_configuration[result["transformers_configuration"]] == result["gen_tokens_per_sec_transformers"]
    assert result["transformers_same_greedy_tokens_in_window"] is True  # it computes our model
    expected = result["gen_tokens_per_sec_best"] / result["gen_tokens_per_sec_transformers"]
    assert abs(result["best_vs_transformers"] - expected) < 0.02 * expected + 0.01
    assert len(result["best_vs_transformers_per_repeat"]) == 2
    for name in ("bfloat16", "int8"):  # the lossy opt-ins this CPU runs natively
        if f"gen_tokens_per_sec_{name}" in result:
            assert 0 <= result[f"{name}_greedy_tokens_equal_to_float32"] <= 20


def test_generation_quality_scores_the_full_split_as_generation_computes_it(small_corpus, tmp_path, capsys):
    from conftest import fit_args

    from lightning_trickster.cli import main as cli_main
    from lightning_trickster.runs import newest_last_checkpoint

    cli_main(fit_args(small_corpus, tmp_path))
    checkpoint = newest_last_checkpoint(tmp_path)
    capsys.readouterr()
    main(["generation-quality", "--config", "cpu.yaml", "--data.path", str(small_corpus), *TINY_MODEL_ARGS,
          "--data.cache_dir", str(tmp_path / "data"), "--ckpt_path", str(checkpoint),
          "--dtypes", "[float32, bfloat16]"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = summary["results"]
    assert summary["val_tokens"] > 0 and results["reference"]["val_loss"] > 0
    # The default (float32) generation path is lossless: the training forward's loss and its every top-1 token.
    assert abs(results["float32"]["val_loss_minus_reference"]) < 1e-4
    assert results["float32"]["top1_agreement"] >= 0.999  # equal but for float rounding at an exact tie
    if "skipped" not in results["bfloat16"]:
        assert abs(results["bfloat16"]["val_loss_minus_reference"]) < 0.05


def test_the_gpu_script_runs_every_part_in_its_cpu_smoke_mode(tmp_path):
    # Untimed: on a CPU with tiny shapes it only checks that the script a GPU owner runs unchanged works end to end.
    output = tmp_path / "smoke.json"
    script = REPO_ROOT / "benchmarks" / "gpu.py"
    done = subprocess.run([sys.executable, str(script), "--smoke", "--output", str(output)],
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    report = json.loads(output.read_text())
    assert done.returncode == 0, (report, done.stderr[-3000:])
    assert report["passed"] is True and report["smoke"] is True
    parts = report["parts"]
    assert set(parts) == {"fixed_time_fit", "fsdp_one_device", "resume", "decode"}
    assert all(part["passed"] for part in parts.values())
    assert parts["fixed_time_fit"]["tokens_per_sec"] > 0 and parts["fixed_time_fit"]["mfu"] is None  # no CPU peak
    assert parts["fsdp_one_device"]["sharded"] and parts["fsdp_one_device"]["checkpoint_loads"]
    assert (parts["resume"]["step_before"], parts["resume"]["step_after"]) == (10, 20)
    assert parts["resume"]["tokens_after"] == 2 * parts["resume"]["tokens_before"]
    assert parts["decode"]["gen_tokens_per_sec_best"] > 0 and parts["decode"]["best_same_greedy_tokens"]


def test_a_failing_part_fails_the_gpu_check_and_the_others_still_run(tmp_path, monkeypatch):
    import benchmarks.gpu as gpu

    monkeypatch.setattr(gpu, "resume", lambda settings, work: 1 / 0)
    for name in ("fixed_time_fit", "fsdp_one_device", "decode"):  # stand-ins: only the bookkeeping is under test
        monkeypatch.setattr(gpu, name, lambda *args, **kwargs: {"passed": True})
    with pytest.raises(SystemExit) as failed:
        gpu.main(["--smoke", "--output", str(tmp_path / "gpu.json")])
    assert failed.value.code == 1
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["passed"] is False and report["parts"]["resume"] == {
        "passed": False,
        "error": "ZeroDivisionError: division by zero",
    }
    assert report["parts"]["decode"]["passed"] is True


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


def test_bench_data_measures_the_corpus_given_as_data_path(small_corpus, tmp_path, capsys):
    main(["bench-data", "--config", "cpu.yaml", "--data.path", str(small_corpus), *TINY_MODEL_ARGS,
          "--size_mb", "0.1", "--baseline_mb", "0.05", "--tokenizers", "[byte]", "--work_dir", str(tmp_path / "work"),
          "--train_steps", "3", "--train_warmup", "1", "--train_rounds", "2"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    corpus_bytes = small_corpus.stat().st_size
    assert summary["small_corpus_mb"] == round(corpus_bytes / 1e6, 2)  # one copy of --data.path, not another corpus
    assert summary["large_corpus_mb"] == round(-(-100_000 // corpus_bytes) * corpus_bytes / 1e6, 1)
    ((name, row),) = summary["tokenizers"].items()
    assert name == "byte" and row["dtype"] == "uint8" and row["characters_per_token"] == 1.0
    for key in ("per_run_peak_rss_mb", "prepare_peak_rss_mb", "prepare_mb_per_s", "speedup_per_mb", "fit_setup_s"):
        assert row[key] > 0, key  # peak RSS comes back from each measurement's own process
    training = summary["training"]
    assert len(training["runs_tokens_per_sec"]["memmap"]) == len(training["runs_tokens_per_sec"]["in_memory"]) == 2
    assert training["memmap_tokens_per_sec"] > 0 and training["window_fetch_us_memmap"] > 0


def test_a_child_process_returns_its_result_and_its_own_peak_memory():
    held = torch.ones(50_000_000)  # this process now holds 200 MB more than the child ever will
    result = in_fresh_process(dict, steps=3)  # any importable function returning a dict
    assert result["steps"] == 3
    # The child (Python and json) peaks near 10 MiB; ru_maxrss would report this (vfork) parent's peak instead.
    assert 0 < result["peak_rss_mb"] < 100 < held.numel() * 4 / 2**20


def test_a_failing_child_process_raises_with_its_error():
    with pytest.raises(RuntimeError, match=r"(?s)json:loads failed in its own process \(exit 1\).*JSONDecodeError"):
        in_fresh_process(json.loads, s="not json")


def test_the_runner_lists_every_harness():
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    usage = " ".join(done.stdout.split())  # argparse wraps the usage line at the terminal's width
    assert usage.startswith("usage: python -m benchmarks {bench,bench-generation,bench-data,memory,generation-quality}")
    for name in ("bench", "bench-generation", "bench-data", "memory", "generation-quality"):
        assert f"\n    {name} " in done.stdout, name


@pytest.mark.parametrize("name", ["bench", "bench-generation", "bench-data", "memory", "generation-quality"])
def test_every_harness_has_help_with_its_own_and_every_fit_option(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert " ".join(out.split("\n\n")[0].split()).startswith(f"usage: python -m benchmarks {name} [-c CONFIG]")
    assert all(f"--{group}." in out for group in ("trainer", "model", "data", "checkpoint", "sampling", "samples"))
    own = {
        "bench": "--bench.steps",
        "bench-generation": "--batch_sizes",
        "bench-data": "--size_mb",
        "memory": "--steps",
        "generation-quality": "--ckpt_path",
    }
    assert f"  {own[name]} " in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope"], "invalid choice: 'nope'"),
        (["memory", "--config", "cpu.yaml", "--steps", "0"], "--steps must be positive"),
        (["bench", "--config", "cpu.yaml", "--bench.steps", "0"], "--bench.steps, --bench.repeats and"),
        (["bench-data", "--config", "cpu.yaml", "--corpus", "no-such-file.txt"], "--corpus no-such-file.txt is not"),
    ],
)
def test_harness_bad_input_is_a_one_line_error(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_harnesses_are_not_product_commands(capsys):
    assert not set(HARNESSES) & set(COMMANDS)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--config", "cpu.yaml"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err


def test_the_product_imports_nothing_of_the_benchmarks():
    for path in sorted((REPO_ROOT / "lightning_trickster").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not [name for name in imported if name.split(".")[0] == "benchmarks"], path
