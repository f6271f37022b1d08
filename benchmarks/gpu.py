"""The GPU acceptance check: one command, under 8 minutes on one NVIDIA GPU, a pass/fail JSON.

    python benchmarks/gpu.py --output gpu.json                # on a machine with a GPU: run it unchanged
    python benchmarks/gpu.py --smoke --output /tmp/smoke.json  # any CPU: tiny shapes, every part's code path

Every part runs the real command line (`python -m lightning_trickster fit ...`, `python -m benchmarks
bench-generation ...`) in its own process, as a user would, on nano.yaml (5.2M parameters, byte tokenizer) and tiny
Shakespeare as shipped with the tests:

- fixed_time_fit: nano.yaml with bf16-mixed precision, gradient clipping (nano.yaml's 1.0) and torch.compile, stopped
  by --trainer.max_time (--fit_seconds). Passes when the training loss is finite and falls, every gradient norm is
  finite, and the validation loss ends below the random baseline's. Reports tokens/s (the median logged rate after
  the first log, which holds the compilation) and MFU (nanoGPT's 6N + 12 L H Q T FLOPs per token against the GPU's
  dense bf16 peak; target >= 25% is reported, not judged: nano is small for a GPU).
- fsdp_one_device: the same model under lightning_trickster.sharding.ShardedStrategy (Lightning's FSDP: one unit per
  block, activation checkpointing) on one device, bf16-mixed and clipping. Passes when it trains with a finite, falling
  loss and its full checkpoint loads as a plain model.
- resume: a fit stopped at step 10, resumed with --ckpt_path last to step 20. Passes when the resumed run reaches step
  20, the token count continues, and the first resumed loss is within 0.5 of the last one before the stop.
- decode: bench-generation (batch 1, 500 tokens): ours by default, the compiled decode step, and the same weights in
  transformers' generate. Passes when our greedy tokens equal the recomputing decoder's and transformers'. Reports
  tokens/s, ms/token and best/transformers (target >= 1.5 reported, not judged).

`passed` is true when every part passed and the whole run took under --budget_minutes. `--smoke` runs the same parts on
a CPU with tiny shapes and no compilation (FSDP over gloo): it checks that the script works, and measures nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (python benchmarks/gpu.py): the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench import PEAK_BF16_FLOPS, nanogpt_flops_per_token
from benchmarks.cli_runs import CORPUS, run_cli
from lightning_trickster.checkpoint import load_trained_model, read_checkpoint
from lightning_trickster.runs import read_scalars, training_runs

GPU = ["--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", "bf16-mixed"]
SMOKE = [
    "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "bf16-mixed",
    "--model.hidden_dim", "32", "--model.num_layers", "2", "--model.num_heads", "2", "--model.mlp_dim", "64",
    "--model.max_seq_len", "32", "--model.dropout", "0.0", "--data.batch_size", "4",
    "--trainer.accumulate_grad_batches", "1",
]  # fmt: skip
SHORT_WARMUP = ["--model.optimization.warmup_steps", "5"]
"""For the short parts: nano.yaml warms up over 1,000 steps, in which a 40-step run would hardly move."""
QUIET = ["--trainer.enable_progress_bar", "false", "--samples.every_n_steps", "0", "--trainer.log_every_n_steps", "5"]
FSDP_STRATEGY = """\
trainer:
  strategy:
    class_path: lightning_trickster.sharding.ShardedStrategy
    init_args:
      sharding_strategy: FULL_SHARD
      auto_wrap_policy: [lightning_trickster.model.Block]
      activation_checkpointing_policy: [lightning_trickster.model.Block]
      state_dict_type: full
"""


def scalars(root: Path) -> dict[str, list[tuple[int, float]]]:
    return read_scalars(training_runs(root)[-1])


def finite(values: list[float]) -> bool:
    return bool(values) and all(math.isfinite(value) for value in values)


def falls(values: list[float]) -> bool:
    """The mean of the last quarter below the mean of the first quarter."""
    quarter = max(1, len(values) // 4)
    return len(values) >= 2 and statistics.mean(values[-quarter:]) < statistics.mean(values[:quarter])


def training_checks(series: dict[str, list[tuple[int, float]]]) -> dict[str, Any]:
    loss = [value for _, value in series.get("train/loss", [])]
    grad = [value for _, value in series.get("train/grad_norm", [])]
    val = [value for step, value in series.get("val/loss", []) if step > 0]
    baseline = [value for _, value in series.get("baseline/val_loss_at_init", [])]
    return {
        "loss_finite": finite(loss), "loss_falls": falls(loss), "grad_norm_finite": finite(grad),
        "val_below_baseline": bool(val and baseline and val[-1] < baseline[0]),
        "first_loss": loss[0] if loss else None, "last_loss": loss[-1] if loss else None,
        "final_val_loss": val[-1] if val else None, "baseline_val_loss": baseline[0] if baseline else None,
    }  # fmt: skip


def fixed_time_fit(settings: list[str], seconds: float, work: Path, smoke: bool) -> dict[str, Any]:
    root = work / "fixed-time"
    hh_mm_ss = time.strftime("%H:%M:%S", time.gmtime(seconds))
    run = [*settings, *(["--trainer.max_steps", "12"] if smoke else []), "--model.compile", str(not smoke).lower(),
           "--trainer.max_time", f"00:{hh_mm_ss}", "--trainer.val_check_interval", "6" if smoke else "400",
           "--trainer.limit_val_batches", "4" if smoke else "40", "--trainer.default_root_dir", str(root)]  # fmt: skip
    output, wall = run_cli(["fit", *run, *QUIET], timeout_s=seconds + 300)
    series = scalars(root)
    result = training_checks(series) | {"wall_seconds": round(wall, 1), "budget_seconds": seconds}
    rates = [value for _, value in series.get("train/tokens_per_sec", [])][1:]  # the first log holds the compile
    tokens_per_sec = statistics.median(rates) if rates else None
    model = load_trained_model(next((root / "lightning_logs").glob("version_*/checkpoints/last.ckpt"))).model
    flops = nanogpt_flops_per_token(model, model.parameter_breakdown()["total"])
    device = output.split("device: ", 1)[1].split("\n", 1)[0] if "device: " in output else None
    peak = next((value for name, value in PEAK_BF16_FLOPS.items() if name in gpu_name()), None)
    result |= {
        "steps": series["train/loss"][-1][0] + 1 if series.get("train/loss") else 0,
        "tokens_per_sec": round(tokens_per_sec, 1) if tokens_per_sec else None,
        "mfu": round(tokens_per_sec * flops / peak, 4) if peak and tokens_per_sec else None,
        "mfu_target_met": (tokens_per_sec * flops / peak >= 0.25) if peak and tokens_per_sec else None,
        "device_line": device,
    }
    result["passed"] = all(result[key] for key in ("loss_finite", "loss_falls", "grad_norm_finite",
                                                   "val_below_baseline"))  # fmt: skip
    return result


def fsdp_one_device(settings: list[str], work: Path, smoke: bool) -> dict[str, Any]:
    root = work / "fsdp"
    strategy = work / "fsdp.yaml"
    strategy.write_text(FSDP_STRATEGY)
    run = [*settings, "--config", str(strategy), "--trainer.max_steps", "12" if smoke else "40", *SHORT_WARMUP,
           "--trainer.val_check_interval", "12" if smoke else "80", "--trainer.limit_val_batches", "4",
           "--model.compile", "false", "--trainer.default_root_dir", str(root)]  # fmt: skip
    output, wall = run_cli(["fit", *run, *QUIET], timeout_s=300)
    result = training_checks(scalars(root)) | {"wall_seconds": round(wall, 1)}
    last = next((root / "lightning_logs").glob("version_*/checkpoints/last.ckpt"))
    loaded = load_trained_model(last)  # a full (single-file) checkpoint: the plain model loads it
    result["sharded"] = "fsdp" in output.lower()
    result["checkpoint_loads"] = loaded.step > 0
    result["passed"] = all(result[key] for key in ("loss_finite", "loss_falls", "grad_norm_finite", "sharded",
                                                   "checkpoint_loads"))  # fmt: skip
    return result


def resume(settings: list[str], work: Path) -> dict[str, Any]:
    root = work / "resume"
    common = [*settings, *SHORT_WARMUP, "--model.compile", "false", "--trainer.val_check_interval", "20",
              "--trainer.limit_val_batches", "2", "--trainer.default_root_dir", str(root), *QUIET,
              "--trainer.log_every_n_steps", "1"]  # fmt: skip
    _, first_wall = run_cli(["fit", *common, "--trainer.max_steps", "10"], timeout_s=300)
    before = read_checkpoint(next((root / "lightning_logs").glob("version_*/checkpoints/last.ckpt")))
    _, second_wall = run_cli(["fit", *common, "--trainer.max_steps", "20", "--ckpt_path", "last"], timeout_s=300)
    checkpoints = sorted((root / "lightning_logs").glob("version_*/checkpoints/last.ckpt"),
                         key=lambda path: path.stat().st_mtime)  # fmt: skip
    after = read_checkpoint(checkpoints[-1])
    loss = scalars(root).get("train/loss", [])
    stopped = [value for step, value in loss if step < 10]
    resumed = [value for step, value in loss if step >= 10]
    result = {
        "wall_seconds": round(first_wall + second_wall, 1),
        "step_before": before["global_step"], "step_after": after["global_step"],
        "tokens_before": before.get("tokens_trained"), "tokens_after": after.get("tokens_trained"),
        "last_loss_before": stopped[-1] if stopped else None, "first_loss_after": resumed[0] if resumed else None,
    }  # fmt: skip
    tokens_continue = bool(result["tokens_before"]) and result["tokens_after"] == 2 * result["tokens_before"]
    continuous = bool(stopped and resumed) and abs(resumed[0] - stopped[-1]) < 0.5
    result |= {"tokens_continue": tokens_continue, "loss_continuous": continuous}
    result["passed"] = result["step_before"] == 10 and result["step_after"] == 20 and tokens_continue and continuous
    return result


def decode(settings: list[str], smoke: bool) -> dict[str, Any]:
    tokens = ["--new_tokens", "500"]
    if smoke:  # transformers' own run is checked by the harness's tests
        tokens = ["--new_tokens", "8", "--repeats", "1", "--compiled", "false", "--transformers", "false"]
    output, wall = run_cli(["bench-generation", *settings, *tokens, "--batch_sizes", "[1]"], timeout_s=420,
                           program="benchmarks")  # fmt: skip
    summary = json.loads(next(line for line in reversed(output.splitlines()) if line.startswith("{")))
    (row,) = summary["results"]
    result = {"wall_seconds": round(wall, 1), "device": summary["device"], **row}
    same = row["best_same_greedy_tokens"] and row.get("compiled_same_greedy_tokens", True)
    same = same and row.get("transformers_same_greedy_tokens_in_window", True)
    result["best_vs_transformers_target_met"] = (
        row["best_vs_transformers"] >= 1.5 if "best_vs_transformers" in row else None
    )
    result["passed"] = bool(same)
    return result


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("gpu.json"), help="the JSON file to write")
    parser.add_argument("--fit_seconds", type=float, default=120.0, help="wall-time budget of the fixed-time fit")
    parser.add_argument("--budget_minutes", type=float, default=8.0, help="the whole run must finish within this")
    parser.add_argument("--smoke", action="store_true", help="CPU and tiny shapes: check the script, measure nothing")
    args = parser.parse_args(argv)
    settings = ["--config", "nano.yaml", "--data.path", str(CORPUS), *(SMOKE if args.smoke else GPU)]
    start = time.perf_counter()
    report: dict[str, Any] = {"smoke": args.smoke, "device": gpu_name(), "settings": settings, "parts": {}}
    parts = {
        "fixed_time_fit": lambda work: fixed_time_fit(settings, args.fit_seconds, work, args.smoke),
        "fsdp_one_device": lambda work: fsdp_one_device(settings, work, args.smoke),
        "resume": lambda work: resume(settings, work),
        "decode": lambda work: decode(settings, args.smoke),
    }
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        for name, part in parts.items():
            work = Path(scratch) / name
            work.mkdir()
            try:
                report["parts"][name] = part(work)
            except (Exception, SystemExit) as err:  # a part that crashes fails; the others still run
                report["parts"][name] = {"passed": False, "error": f"{type(err).__name__}: {str(err)[-2000:]}"}
            print(f"{name}: {'passed' if report['parts'][name]['passed'] else 'FAILED'}", flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["within_budget"] = report["seconds"] < 60 * args.budget_minutes
    report["passed"] = report["within_budget"] and all(part["passed"] for part in report["parts"].values())
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if not report["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
