"""The GPU check: on one NVIDIA GPU, in about 10 minutes, `nanogpt.yaml`'s training throughput and MFU (the `bench`
harness), a fixed-time `fit` (best full-split val loss, wall time) and generation speed (`bench-generation`), all with
bf16-mixed precision, fused AdamW, torch.compile and PyTorch's flash attention, written to one JSON.

    python benchmarks/gpu.py --output gpu.json                # whoever has a GPU: run it unchanged
    python benchmarks/gpu.py --smoke --output /tmp/smoke.json  # any CPU: tiny shapes, checks that every part runs

Every part runs the real command line (python -m benchmarks bench ..., python -m lightning_trickster fit ...,
python -m benchmarks bench-generation ...) in a subprocess, as a user would. Targets
(issue "Performance"): MFU >= 25%, best val <= 1.47 (nanoGPT's shakespeare_char baseline reaches 1.4697).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cli_runs import CORPUS, fit_result, run_cli

GPU_SETTINGS = ["--trainer.accelerator", "gpu", "--trainer.precision", "bf16-mixed", "--model.compile", "true"]
SMOKE_SETTINGS = [
    "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--model.compile", "false",
    "--model.hidden_dim", "32", "--model.num_layers", "1", "--model.num_heads", "2", "--model.mlp_dim", "64",
    "--model.max_seq_len", "32", "--data.batch_size", "4",
]  # fmt: skip


def last_json(output: str) -> dict:
    return json.loads(next(line for line in reversed(output.splitlines()) if line.startswith("{")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("gpu.json"), help="the JSON file to write")
    parser.add_argument("--fit_minutes", type=float, default=6.0, help="wall-time budget of the fixed-time fit")
    parser.add_argument("--smoke", action="store_true", help="CPU and tiny shapes: check the script, measure nothing")
    args = parser.parse_args(argv)
    settings = ["--config", "nanogpt.yaml", "--data.path", str(CORPUS)]
    settings += SMOKE_SETTINGS if args.smoke else GPU_SETTINGS
    work = args.output.resolve().parent / f"{args.output.stem}-runs"
    report: dict = {"smoke": args.smoke, "settings": settings}

    bench_json = work / "bench.json"
    bench_steps = ["--bench.steps", "2", "--bench.warmup_steps", "1", "--bench.repeats", "1", "--bench.gen_tokens", "4"]
    if not args.smoke:
        bench_steps = ["--bench.steps", "50", "--bench.warmup_steps", "10", "--bench.repeats", "2"]
    work.mkdir(parents=True, exist_ok=True)
    bench_line = ["bench", *settings, *bench_steps, "--bench.output", str(bench_json)]
    _, seconds = run_cli(bench_line, timeout_s=180, program="benchmarks")
    bench = json.loads(bench_json.read_text())
    report["bench"] = {key: bench[key] for key in ("device", "train_tokens_per_sec", "mfu", "ms_per_step",
                                                   "lightning_vs_raw", "peak_memory_mb", "torch")}  # fmt: skip
    report["bench"]["seconds"] = round(seconds, 1)

    # Fixed time: nanogpt.yaml's own 5,000-step schedule, stopped by --trainer.max_time if it runs longer.
    budget = args.fit_minutes * 60
    fit_root = work / "fit"
    fit_steps = []
    if args.smoke:  # and a few validation batches instead of the full split
        fit_steps = [
            "--trainer.max_steps",
            "6",
            "--trainer.val_check_interval",
            "3",
            "--trainer.limit_val_batches",
            "4",
        ]
    hh_mm_ss = time.strftime("%H:%M:%S", time.gmtime(budget))
    output, seconds = run_cli(["fit", *settings, *fit_steps, "--trainer.max_time", f"00:{hh_mm_ss}",
                      "--trainer.default_root_dir", str(fit_root), "--trainer.enable_progress_bar", "false",
                      "--samples.every_n_steps", "0"], timeout_s=budget + 180)  # fmt: skip
    fit = fit_result(output, fit_root)
    report["fit"] = {
        "wall_seconds": round(seconds, 1),
        "budget_seconds": budget,
        "steps": fit["steps"],
        "best_val_loss": fit["best_val"],
        "final_val_loss": fit["final_val"],
    }

    tokens = (
        ["--new_tokens", "8", "--batch_sizes", "[1]", "--compiled", "false"] if args.smoke else ["--new_tokens", "500"]
    )
    output, seconds = run_cli(["bench-generation", *settings, *tokens], timeout_s=300, program="benchmarks")
    report["generation"] = last_json(output)
    report["generation"]["seconds"] = round(seconds, 1)

    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
