"""`sweep`: train several model sizes for the same number of tokens and compare.

Each run is an ordinary `fit` of the configuration with the run's options on top, started as its own process so
multi-device runs work too. The number of optimizer steps is the token budget divided by the tokens per step of
that run's config. Validation runs `--evals` times, the last at the final step. Written to --out:
one <name>.json per run, sweep.json with all of them, and sweep.png (validation loss against parameters); each run's
checkpoints, TensorBoard logs and console output (fit.log) go to --runs_dir/<name>.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentError

from lightning_trickster.commands.fit_config import FitConfig
from lightning_trickster.commands.info import run_layout, trainer_settings
from lightning_trickster.errors import InvalidConfigError, TricksterError
from lightning_trickster.module import tokens_per_optimizer_step
from lightning_trickster.runs import read_scalars, training_runs


def planned_run(fit_config: FitConfig, name: str, overrides: str) -> FitConfig:
    """The configuration with one run's options on top; a mistake in them names the run."""
    try:
        args = shlex.split(overrides)
    except ValueError as err:  # an unclosed quote
        raise InvalidConfigError(f"sweep run {name!r} ({overrides}): {err}: close the quote in --runs.{name}") from None
    exit_on_error, fit_config.parser.exit_on_error = fit_config.parser.exit_on_error, False
    try:
        return fit_config.updated(args)
    except ArgumentError as err:
        message = " ".join(str(err).split())
        raise InvalidConfigError(
            f"sweep run {name!r} ({overrides}): {message} (options: python -m lightning_trickster fit --help)"
        ) from None
    finally:
        fit_config.parser.exit_on_error = exit_on_error


def plan_run(fit_config: FitConfig, tokens: float, evals: int) -> dict[str, Any]:
    """Parameters, tokens per step and the step count that spends the budget for one run."""
    with torch.device("meta"):
        module, data = fit_config.instantiate()
    counts = module.model.parameter_breakdown()
    layout, _, _ = run_layout(trainer_settings(fit_config), data.hparams.batch_size)
    tokens_per_step = tokens_per_optimizer_step(
        layout.batch_size, module.model.config.max_seq_len, layout.accumulate, layout.world_size
    )
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


def train(name: str, fit_config: FitConfig, overrides: str, plan: dict[str, Any], runs_dir: Path) -> dict[str, Any]:
    root = runs_dir / name
    run = fit_config.updated(
        [
            "--trainer.max_steps",
            str(plan["steps"]),
            "--trainer.max_time",  # every run trains its planned tokens, however long they take (cpu.yaml has a budget)
            "null",
            "--trainer.val_check_interval",
            str(plan["val_check_interval"]),
            "--trainer.check_val_every_n_epoch",
            "null",
            "--trainer.default_root_dir",
            str(root),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep_run.yaml").write_text(run.dump(), encoding="utf-8")
    command = [sys.executable, "-m", "lightning_trickster", "fit", "--config", str(root / "sweep_run.yaml")]
    print(f"sweep: {name}: {plan['parameters']:,} parameters, {plan['steps']} steps x {plan['tokens_per_step']:,} "
          f"tokens = {plan['tokens']:,} tokens", flush=True)  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall_time = time.perf_counter() - started
    output = root / "fit.log"
    output.write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["(no output)"])[-1].removeprefix("error: ")
        raise TricksterError(f"sweep run {name!r} failed: {last_line} (full output in {output})")
    log_dir = training_runs(root)[-1]
    scalars = read_scalars(log_dir)
    val_loss = [(step, loss) for step, loss in scalars.get("val/loss", []) if step > 0]  # step 0: untrained baseline
    perplexity = scalars.get("val/perplexity", [])
    if not val_loss or not perplexity:
        raise TricksterError(f"sweep run {name!r} logged no val/loss: see {output}")
    best_step, best_loss = min(val_loss, key=lambda point: point[1])
    return {
        "name": name,
        "overrides": overrides,
        **{key: plan[key] for key in ("parameters", "non_embedding_parameters", "tokens", "tokens_per_step", "steps")},
        "wall_time_s": round(wall_time, 1),
        "final_val_loss": val_loss[-1][1],
        "best_val_loss": best_loss,
        "best_val_step": best_step,
        "final_val_perplexity": perplexity[-1][1],
        "val_loss_curve": val_loss,
        "log_dir": str(log_dir),
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


def sweep(
    fit_config: FitConfig, runs: dict[str, str], tokens: float, evals: int = 4, out: Path = Path("sweep"),
    runs_dir: Path | None = None,
) -> None:  # fmt: skip
    """Train each run for the same token budget; write one JSON per run and a val-loss plot.

    Args:
        fit_config: the configuration every run starts from, read as fit reads it.
        runs: each run's name and its fit options on top of the configuration, e.g.
            --runs.small "--model.hidden_dim 64 --model.num_layers 2" --runs.large "--model.hidden_dim 192".
        tokens: training tokens per run (e.g. 5e5).
        evals: validations per run, the last at the final step.
        out: folder for the JSON files and the plot.
        runs_dir: root of the runs' checkpoints and TensorBoard logs (default: OUT/runs).
    """
    if tokens <= 0 or evals <= 0:
        raise InvalidConfigError(f"--tokens and --evals must be positive, got {tokens} and {evals}")
    if not runs:
        raise InvalidConfigError('no runs to train: pass --runs.NAME "FIT OPTIONS" once per run')
    out.mkdir(parents=True, exist_ok=True)
    planned = []
    for name, overrides in runs.items():  # every run is planned (and its options checked) before any trains
        run = planned_run(fit_config, name, overrides)
        try:
            planned.append((name, run, overrides, plan_run(run, tokens, evals)))
        except TricksterError as err:
            raise type(err)(f"sweep run {name!r} ({overrides}): {err}") from None
    results = []
    for name, run, overrides, plan in planned:
        result = train(name, run, overrides, plan, runs_dir or out / "runs")
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        results.append(result)
        print(f"sweep: {name}: final val loss {result['final_val_loss']:.4f} (best {result['best_val_loss']:.4f}), "
              f"perplexity {result['final_val_perplexity']:.2f}, {result['wall_time_s']} s", flush=True)  # fmt: skip
    (out / "sweep.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot(results, out / "sweep.png", int(tokens))
    print(f"sweep: wrote {len(results)} run JSON files, {out / 'sweep.json'} and {out / 'sweep.png'}", flush=True)
