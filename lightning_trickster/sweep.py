"""`python -m lightning_trickster sweep`: train several model sizes for the same number of tokens and compare.

Each run is an ordinary `fit` (same LightningModule, DataModule and config files), started as its own process so
multi-device runs work too. The number of optimizer steps is the token budget divided by the tokens per step of
that run's config. Validation runs `--evals` times, the last at the final step. Written to --out:
one <name>.json per run, sweep.json with all of them, and sweep.png (validation loss against parameters); each run's
checkpoints, TensorBoard logs and console output (fit.log) go to --runs_dir/<name>.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_trickster.errors import InvalidConfigError, TricksterError
from lightning_trickster.info import load_config, model_config, run_layout
from lightning_trickster.model import NanoTrickster


def parse_args(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_trickster sweep",
        description="Train each run for the same token budget; write one JSON per run and a val-loss plot.",
    )
    parser.add_argument("-c", "--config", action="append", default=[], help="base YAML preset or file (repeatable)")
    parser.add_argument(
        "--run",
        nargs=2,
        action="append",
        metavar=("NAME", "OVERRIDES"),
        required=True,
        help='a run: its name and its fit arguments, e.g. --run small "--model.hidden_dim 64 --model.num_layers 2"',
    )
    parser.add_argument("--tokens", type=float, required=True, help="training tokens per run (e.g. 5e5)")
    parser.add_argument("--evals", type=int, default=4, help="validations per run, the last at the final step")
    parser.add_argument("--out", default="sweep", help="folder for the JSON files and the plot")
    parser.add_argument("--runs_dir", help="root for the runs' checkpoints and TensorBoard logs (default: OUT/runs)")
    options, common = parser.parse_known_args(args)
    if options.tokens <= 0 or options.evals <= 0:
        raise InvalidConfigError("--tokens and --evals must be positive")
    names = [name for name, _ in options.run]
    if len(set(names)) != len(names):
        raise InvalidConfigError(f"run names must differ, got {names}")
    options.common = common
    return options


def plan_run(configs: list[str], overrides: list[str], tokens: float, evals: int) -> dict[str, Any]:
    """Parameters, tokens per step and the step count that spends the budget for one run."""
    config = load_config(configs, overrides, strict=False)
    cfg, _ = model_config(config)
    layout, _, _ = run_layout(config)
    with torch.device("meta"):
        counts = NanoTrickster(cfg).parameter_breakdown()
    tokens_per_step = layout.batch_size * cfg.max_seq_len * layout.accumulate * layout.world_size
    # A multiple of evals, so validation falls on the last step.
    steps = math.ceil(tokens / tokens_per_step / evals) * evals
    return {
        "parameters": counts["total"],
        "non_embedding_parameters": counts["total"] - counts["embedding"] - counts["output"],
        "tokens_per_step": tokens_per_step,
        "steps": steps,
        "tokens": steps * tokens_per_step,
        "val_check_interval": steps * layout.accumulate // evals,
    }


def logged_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def train(name: str, fit_args: list[str], plan: dict[str, Any], runs_dir: Path) -> dict[str, Any]:
    root = runs_dir / name
    command = [
        sys.executable, "-m", "lightning_trickster", "fit", *fit_args,
        "--trainer.max_steps", str(plan["steps"]),
        "--trainer.val_check_interval", str(plan["val_check_interval"]),
        "--trainer.check_val_every_n_epoch", "null",
        "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    print(f"sweep: {name}: {plan['parameters']:,} parameters, {plan['steps']} steps x {plan['tokens_per_step']:,} "
          f"tokens = {plan['tokens']:,} tokens", flush=True)  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall_time = time.perf_counter() - started
    output = root / "fit.log"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise TricksterError(f"sweep run {name!r} failed: {last_line} (full output in {output})")
    run_dirs = sorted((root / "lightning_logs").glob("version_*"), key=lambda path: path.stat().st_mtime)
    val_loss = logged_scalars(run_dirs[-1], "val/loss")
    val_loss = [(step, loss) for step, loss in val_loss if step > 0]  # step 0: the untrained baseline, if logged
    perplexity = logged_scalars(run_dirs[-1], "val/perplexity")
    if not val_loss or not perplexity:
        raise TricksterError(f"sweep run {name!r} logged no val/loss: see {output}")
    best_step, best_loss = min(val_loss, key=lambda point: point[1])
    return {
        "name": name,
        "fit_args": fit_args,
        **{key: plan[key] for key in ("parameters", "non_embedding_parameters", "tokens", "tokens_per_step", "steps")},
        "wall_time_s": round(wall_time, 1),
        "final_val_loss": val_loss[-1][1],
        "best_val_loss": best_loss,
        "best_val_step": best_step,
        "final_val_perplexity": perplexity[-1][1],
        "val_loss_curve": val_loss,
        "log_dir": str(run_dirs[-1]),
    }


def plot(results: list[dict[str, Any]], path: Path, tokens: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(results, key=lambda run: run["parameters"])
    params = [run["parameters"] for run in ordered]
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    axes.plot(params, [run["final_val_loss"] for run in ordered], "o-", label="final val loss")
    axes.plot(params, [run["best_val_loss"] for run in ordered], "s--", alpha=0.7, label="best val loss")
    for run in ordered:
        axes.annotate(run["name"], (run["parameters"], run["final_val_loss"]), textcoords="offset points",
                      xytext=(4, 6), fontsize=8)  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("parameters")
    axes.set_ylabel("validation loss (nats per token)")
    axes.set_title(f"NanoTrickster, {tokens:,} training tokens per run")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(args: list[str]) -> None:
    options = parse_args(args)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = [arg for path in options.config for arg in ("--config", path)]
    runs = []
    for name, overrides in options.run:
        # A run's own overrides come last, so they win over the arguments shared by all runs.
        fit_args = [*configs, *options.common, *shlex.split(overrides)]
        plan = plan_run(options.config, [*options.common, *shlex.split(overrides)], options.tokens, options.evals)
        runs.append((name, fit_args, plan))  # every run is planned (and its config checked) before any trains
    results = []
    for name, fit_args, plan in runs:
        result = train(name, fit_args, plan, Path(options.runs_dir) if options.runs_dir else out / "runs")
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        results.append(result)
        print(f"sweep: {name}: final val loss {result['final_val_loss']:.4f} (best {result['best_val_loss']:.4f}), "
              f"perplexity {result['final_val_perplexity']:.2f}, {result['wall_time_s']} s", flush=True)  # fmt: skip
    (out / "sweep.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot(results, out / "sweep.png", int(options.tokens))
    print(f"sweep: wrote {len(results)} run JSON files, {out / 'sweep.json'} and {out / 'sweep.png'}", flush=True)
