"""Does torch.compile pay for a CPU fit, and what happens before a newcomer's first step? Both as a user runs them:
`python -m lightning_trickster fit ...` in a fresh process each time.

    python benchmarks/compile_default.py                       # both parts (~15 min on 2 CPU cores)
    python benchmarks/compile_default.py --parts first-step    # time to step 1 only (~3 min)

first-step: a newcomer's first `fit --config cpu.yaml` (fresh inductor cache and fresh prepared-data folder: cold
caches), as typed (the default) and compiled, with the time since the command started at each line that ends a
phase: imports ("Seed set"), the data and the model ("device:"), Lightning's sanity check and the random baseline
("random baseline:"), the first sample ("--- sample at step 0"), the first optimizer step ("step 1/").

whole-command: cpu.yaml on a shortened schedule (--steps, validated and sampled twice) eager, compiled with a cold
inductor cache, and compiled with a warm one (the first cold run's), in interleaved rounds (the order reversed every
other round, so a drift in machine load hits each alike); wall seconds, the process's peak resident memory and the
final val loss of each.

The last line printed is all of it as JSON (also written to --output).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cli_runs import CORPUS, REPO

PEAK = "PEAK_RSS_MB "
# The fit, with the process's peak resident memory (VmHWM) printed as it exits.
LAUNCH = (
    "import atexit, runpy\n"
    "def peak():\n"
    "    with open('/proc/self/status') as status:\n"
    "        kib = next(line.split()[1] for line in status if line.startswith('VmHWM:'))\n"
    f"    print('{PEAK}' + str(int(kib) / 1024), flush=True)\n"
    "atexit.register(peak)\n"
    "runpy.run_module('lightning_trickster', run_name='__main__', alter_sys=True)\n"
)
PHASES = {
    "imports": "Seed set",
    "data_and_model": "device:",
    "sanity_check_and_baseline": "random baseline:",
    "first_sample": "--- sample at step 0",
    "first_step": "step 1/",
}
"""Each phase and the start of the output line that ends it."""


def timed_fit(args: list[str], work: Path, inductor_cache: Path) -> dict:
    """One `fit` in a fresh process, its output lines timestamped as they arrive; wall seconds, peak RSS, and the
    seconds at which each PHASES line first appeared."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(inductor_cache), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", LAUNCH, "fit", "--config", "cpu.yaml", "--data.path", str(CORPUS),
               "--data.cache_dir", str(work / "data"), "--trainer.default_root_dir", str(work / "runs"),
               "--trainer.enable_progress_bar", "false", *args]  # fmt: skip
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict[str, float] = {}
    lines = []
    for line in process.stdout:
        now = time.perf_counter() - start
        lines.append(line)
        for phase, marker in PHASES.items():
            if phase not in seen and line.startswith(marker):
                seen[phase] = round(now, 2)
    process.wait()
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"error: fit {' '.join(args)} exited {process.returncode}:\n{''.join(lines[-40:])}")
    peak = next(float(line.removeprefix(PEAK)) for line in reversed(lines) if line.startswith(PEAK))
    final = [line for line in lines if line.startswith("fit done:")]
    vals = [line.split("val loss ")[1].split()[0] for line in lines if " val loss " in line and line.startswith("step")]
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak), "phases": seen,
            "final_val": float(vals[-1]) if vals else None, "done": final[-1].strip() if final else None}  # fmt: skip


def first_step(scratch: Path) -> dict:
    """Cold caches, the command as a newcomer types it (today's default), then compiled: when each phase before
    step 1 ended."""
    results = {}
    for name, flags in (("default", []), ("compiled", ["--model.compile", "true"])):
        work = scratch / f"first-step-{name}"
        run = timed_fit([*flags, "--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1"], work,
                        work / "inductor")  # fmt: skip
        results[name] = run
        print(f"first step, {name}, cold caches: {run['phases']}", flush=True)
    return results


def whole_command(scratch: Path, steps: int, rounds: int) -> dict:
    # Bounded by steps alone: cpu.yaml's time budget would cut a slow (cold-cache) run short.
    schedule = ["--trainer.max_steps", str(steps), "--trainer.max_time", "null", "--trainer.val_check_interval",
                str(steps // 2), "--samples.every_n_steps", str(steps // 2)]  # fmt: skip
    runs: dict[str, list[dict]] = {"eager": [], "compiled_cold": [], "compiled_warm": []}
    warm_cache = scratch / "inductor-0"  # what the first round's cold run leaves
    for round_ in range(rounds):
        # The order reversed every other round, so a drift in machine load hits each variant alike; the warm runs
        # read the first cold run's cache, so a round may start with one.
        order = list(runs) if round_ % 2 == 0 else ["compiled_warm", "eager", "compiled_cold"]
        if round_ == 0:
            order = ["compiled_cold", "eager", "compiled_warm"]
        for name in order:
            flag = "false" if name == "eager" else "true"
            cache = scratch / f"inductor-{round_}" if name == "compiled_cold" else warm_cache
            run = timed_fit([*schedule, "--model.compile", flag], scratch / f"{name}-{round_}", cache)
            runs[name].append(run)
            print(f"round {round_ + 1}, {name}: {run['seconds']} s, peak RSS {run['peak_rss_mb']} MB, final val "
                  f"{run['final_val']}", flush=True)  # fmt: skip
    summary = {name: {"median_seconds": statistics.median(r["seconds"] for r in results),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
                      "final_val": [r["final_val"] for r in results]}
               for name, results in runs.items()}  # fmt: skip
    eager = summary["eager"]["median_seconds"]
    for name in ("compiled_cold", "compiled_warm"):
        summary[name]["vs_eager"] = round(summary[name]["median_seconds"] / eager, 3)
    # Per round: each compiled run against the eager run beside it.
    summary["per_round_vs_eager"] = {
        name: [round(c["seconds"] / e["seconds"], 3) for c, e in zip(runs[name], runs["eager"], strict=True)]
        for name in ("compiled_cold", "compiled_warm")
    }
    return {"steps": steps, "rounds": rounds, "summary": summary, "runs": runs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=["first-step", "whole-command"],
                        default=["first-step", "whole-command"])  # fmt: skip
    parser.add_argument("--steps", type=int, default=600, help="the shortened cpu.yaml schedule of whole-command")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("compile_default.json"))
    args = parser.parse_args(argv)
    if args.steps < 2 or args.rounds < 1:
        sys.exit("error: --steps must be >= 2 and --rounds >= 1")
    report: dict = {"load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="compile-default-") as scratch:
        if "first-step" in args.parts:
            report["first_step"] = first_step(Path(scratch))
        if "whole-command" in args.parts:
            report["whole_command"] = whole_command(Path(scratch), args.steps, args.rounds)
    report["load_average_after"] = os.getloadavg()
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
