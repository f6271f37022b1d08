"""`plot`: loss curves of one or more runs as a PNG, against steps and against training tokens."""

from __future__ import annotations

import argparse
from pathlib import Path

from lightning_trickster.errors import TricksterError


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Every directory holding TensorBoard event files at or below the given paths, in order."""
    runs: list[Path] = []
    for path in paths:
        if not path.exists():
            raise TricksterError(f"{path} does not exist: pass run directories written by fit (e.g. runs/cpu)")
        found = sorted({event.parent for event in path.rglob("events.out.tfevents.*")})
        if not found:
            raise TricksterError(f"no TensorBoard event files under {path}: pass a run directory written by fit")
        runs += [run for run in found if run not in runs]
    return runs


def read_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    series = {}
    for tag in events.Tags()["scalars"]:
        # A resumed run rewrites steps after its checkpoint: keep the newest value of each step.
        by_step = {event.step: event.value for event in events.Scalars(tag)}
        series[tag] = sorted(by_step.items())
    return series


def plot_runs(runs: list[Path], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_step, by_tokens) = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    uniform_losses = set()
    for index, run in enumerate(runs):
        scalars = read_scalars(run)
        if "train/loss" not in scalars:
            raise TricksterError(f"{run} has no train/loss scalars: pass a run directory written by fit")
        label = run.name if len(runs) == 1 else str(run)
        color = f"C{index}"
        tokens_at = dict(scalars.get("train/tokens", []))
        tokens_per_step = next((tokens / (step + 1) for step, tokens in tokens_at.items()), None)
        for tag, style in (("train/loss", "-"), ("val/loss", "o--")):
            points = scalars.get(tag, [])
            if not points:
                continue
            steps, values = zip(*points, strict=False)
            name = f"{label} {tag.split('/')[0]}"
            by_step.plot(steps, values, style, color=color, alpha=0.55 if tag == "train/loss" else 1, label=name)
            if tokens_per_step:
                # Step s has seen (s + 1) steps' tokens when logged; val/loss at step 0 is the untrained model.
                tokens = [(step + 1 if step else 0) * tokens_per_step for step in steps]
                by_tokens.plot(tokens, values, style, color=color, alpha=0.55 if tag == "train/loss" else 1, label=name)
        uniform_losses.update(value for _, value in scalars.get("baseline/uniform_loss", []))
    for uniform_loss in sorted(uniform_losses):
        for axis in (by_step, by_tokens):
            axis.axhline(
                uniform_loss, color="grey", linestyle=":", label=f"random baseline ln(vocab) = {uniform_loss:.2f}"
            )
    by_step.set_xlabel("optimizer step")
    by_tokens.set_xlabel("training tokens")
    by_step.set_ylabel("cross-entropy (nats per token)")
    for axis in (by_step, by_tokens):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.suptitle("NanoTrickster loss curves")
    figure.tight_layout()
    try:
        figure.savefig(output, dpi=110)
    except OSError as err:
        raise TricksterError(f"cannot write {output} ({err.strerror}): pass a writable -o path") from None
    finally:
        plt.close(figure)


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_trickster plot",
        description="Draw train and val loss against optimizer steps and training tokens for one or more runs "
        "(any directory containing TensorBoard event files), with the random baseline ln(vocab).",
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories, e.g. runs/cpu")
    parser.add_argument("-o", "--output", type=Path, default=Path("curves.png"), help="PNG to write")
    options = parser.parse_args(args)
    runs = find_run_dirs(options.run_dirs)
    plot_runs(runs, options.output)
    print(f"wrote {options.output} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
