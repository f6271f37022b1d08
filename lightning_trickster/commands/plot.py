"""`plot`: loss curves of one or more runs as a PNG, against steps and against training tokens."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from lightning_trickster.errors import WRITE_FAILURES, TricksterError, not_a_readable_file, write_failure
from lightning_trickster.reliability import write_file_atomically
from lightning_trickster.runs import read_scalars


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Every directory holding TensorBoard event files at or below the given paths, in order."""
    runs: list[Path] = []
    for path in paths:
        if not path.exists():
            problem = not_a_readable_file(path)  # not found, a symlink loop, a symlink to nothing
            raise TricksterError(
                f"{path} {'does not exist' if problem == 'not found' else problem}: pass run directories written by "
                "fit (e.g. runs/cpu)"
            )
        found = sorted({event.parent for event in path.rglob("events.out.tfevents.*")})
        if not found:
            raise TricksterError(f"no TensorBoard event files under {path}: pass a run directory written by fit")
        runs += [run for run in found if run not in runs]
    return runs


def plot_runs(runs: list[Path], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_step, by_tokens) = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    uniform_losses = set()
    for index, run in enumerate(runs):
        # A resumed run without purged events can hold a step twice: keep the newest value, as TensorBoard shows.
        scalars = {tag: sorted(dict(points).items()) for tag, points in read_scalars(run).items()}
        if "train/loss" not in scalars and "val/loss" not in scalars:
            raise TricksterError(
                f"{run} has no train/loss or val/loss scalars yet (a fit logs train/loss every "
                "--trainer.log_every_n_steps steps and val/loss at each validation): pass a run directory written by "
                "fit that has trained that far"
            )
        label = run.name if len(runs) == 1 else str(run)
        color = f"C{index}"
        # train/tokens logged at step s counts the tokens of steps 0..s, across resumes even when the batch changed;
        # in between its logs the count grows linearly.
        logged_tokens = scalars.get("train/tokens", [])
        steps_done = [0] + [step + 1 for step, _ in logged_tokens]
        tokens_seen = [0.0] + [tokens for _, tokens in logged_tokens]
        for tag, style in (("train/loss", "-"), ("val/loss", "o--")):
            points = scalars.get(tag, [])
            if not points:
                continue
            steps, values = zip(*points, strict=False)
            name = f"{label} {tag.split('/')[0]}"
            by_step.plot(steps, values, style, color=color, alpha=0.55 if tag == "train/loss" else 1, label=name)
            if logged_tokens:
                # A value logged at step s comes after s + 1 steps; val/loss at step 0 is the untrained model's.
                tokens = np.interp([step + 1 if step else 0 for step in steps], steps_done, tokens_seen)
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
    image = io.BytesIO()
    image_format = output.suffix[1:].lower() or "png"
    try:
        figure.savefig(image, format=image_format, dpi=110)
    except ValueError as err:  # a format matplotlib does not write
        supported = ", ".join(sorted(figure.canvas.get_supported_filetypes()))
        raise TricksterError(
            f"--output {output}: {' '.join(str(err).split())}; pass a file ending in one of: {supported}"
        ) from None
    finally:
        plt.close(figure)
    # Rendered in memory, then written beside the target and renamed over it: a full disk leaves an earlier image
    # whole instead of a truncated one.
    try:
        write_file_atomically(output, image.getvalue())
    except OSError as err:
        special = output.exists() and not output.is_file()  # a device (/dev/full) or a FIFO, written into as it is
        if special or err.errno not in WRITE_FAILURES:  # --output under a file, or a name the filesystem refuses
            raise TricksterError(f"cannot write {output} ({err.strerror}): pass a writable --output path") from None
        raise write_failure(
            output, err, output.parent, f"run plot again; any earlier {output.name} is left as it was"
        ) from None


def plot(run_dirs: Path | list[Path], output: Path = Path("curves.png")) -> None:
    """Draw train and val loss against optimizer steps and training tokens for one or more runs (any directory
    holding TensorBoard event files), with the random baseline ln(vocab).

    Args:
        run_dirs: a run directory (e.g. runs/cpu), or several as a list ('[runs/cpu, runs/nano]').
        output: PNG to write.
    """
    runs = find_run_dirs([run_dirs] if isinstance(run_dirs, Path) else run_dirs)
    if output.is_dir():  # matplotlib would write OUTPUT.png beside it instead
        raise TricksterError(f"--output {output} is a directory: pass the PNG file to write (e.g. {output}/curves.png)")
    plot_runs(runs, output)
    print(f"wrote {output} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
