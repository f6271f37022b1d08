"""`stages`: sample the same prompt from every checkpoint of a run, side by side, ordered by step."""

from __future__ import annotations

import math
import shutil
import textwrap
from pathlib import Path

import torch

from lightning_trickster.checkpoint import TrainedModel, load_trained_model
from lightning_trickster.errors import InvalidConfigError, TricksterError
from lightning_trickster.model import NanoTrickster, SamplingSettings


def find_checkpoints(ckpt_dir: Path) -> list[TrainedModel]:
    """One loaded checkpoint per training step (last.ckpt duplicates another checkpoint's step), by step."""
    if not ckpt_dir.is_dir():
        raise TricksterError(f"--ckpt_dir {ckpt_dir} is not a directory: pass a run directory written by fit")
    by_step: dict[int, TrainedModel] = {}
    for path in sorted(ckpt_dir.rglob("*.ckpt")):
        loaded = load_trained_model(path)
        if loaded.step not in by_step or loaded.val_loss is not None and by_step[loaded.step].val_loss is None:
            by_step[loaded.step] = loaded
    if not by_step:
        raise TricksterError(
            f"no *.ckpt files under {ckpt_dir}: train with fit first (cpu.yaml keeps every checkpoint)"
        )
    return [by_step[step] for step in sorted(by_step)]


def untrained_twin(trained: TrainedModel, seed: int) -> TrainedModel:
    torch.manual_seed(seed)
    model = NanoTrickster(trained.model.config).eval()
    return TrainedModel(model, trained.tokenizer, trained.sampling, step=0, val_loss=None, path=trained.path)


def sample(stage: TrainedModel, prompt: str, settings: SamplingSettings, seed: int) -> str:
    tokens = stage.tokenizer.encode(prompt).unsqueeze(0)
    generator = torch.Generator().manual_seed(seed)
    new_tokens = stage.model.generate(tokens, settings, generator=generator)[0, tokens.size(1) :]
    return prompt + stage.tokenizer.decode(new_tokens)


def columns(blocks: list[tuple[str, str]], width: int) -> str:
    """Lay out (heading, text) blocks in as many columns as fit the width, wrapping each text to its column."""
    column_width = 34
    per_row = max(1, (width + 3) // (column_width + 3))
    rows = []
    for start in range(0, len(blocks), per_row):
        group = blocks[start : start + per_row]
        wrapped = [
            [heading.ljust(column_width), "-" * column_width]
            + [
                piece.ljust(column_width)
                for line in text.split("\n")
                for piece in (textwrap.wrap(line, column_width, drop_whitespace=False) or [""])
            ]
            for heading, text in group
        ]
        height = max(len(lines) for lines in wrapped)
        for lines in wrapped:
            lines += [" " * column_width] * (height - len(lines))
        rows.append("\n".join(" | ".join(parts).rstrip() for parts in zip(*wrapped, strict=False)))
    return "\n\n".join(rows)


def heading(stage: TrainedModel, uniform_loss: float) -> str:
    if stage.step == 0 and stage.val_loss is None:
        return f"step 0 (random init, ln V = {uniform_loss:.2f})"
    loss = f"val {stage.val_loss:.3f}" if stage.val_loss is not None else "val n/a"
    return f"step {stage.step} ({loss})"


def stages(
    ckpt_dir: Path,
    prompt: str | list[str] = "ROMEO:",
    sampling: SamplingSettings = SamplingSettings(max_new_tokens=160),  # noqa: B008
    seed: int = 1337,
    width: int | None = None,
) -> None:
    """Sample the same prompt(s) from every checkpoint of a run, ordered by training step, next to the untrained
    model: watch random noise turn into structure, vocabulary and fluency.

    Args:
        ckpt_dir: run directory; every *.ckpt below it is used.
        prompt: a prompt, or several as a list ('["ROMEO:", "JULIET:"]').
        sampling: the sampling settings of every checkpoint's sample.
        seed: every checkpoint samples with this seed.
        width: output width in characters (default: the terminal's).
    """
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not prompts or not all(prompts):
        raise InvalidConfigError("--prompt is empty: give every prompt at least one character")
    if width is not None and width < 1:
        raise InvalidConfigError(f"--width must be at least 1 character, got {width}: or leave it out (the terminal's)")
    checkpoints = find_checkpoints(ckpt_dir)
    vocab_size = checkpoints[0].model.config.vocab_size
    sampling.check(vocab_size)
    runs = [untrained_twin(checkpoints[0], seed), *checkpoints]
    width = width or shutil.get_terminal_size((120, 40)).columns
    for text in prompts:
        print(f"=== prompt {text!r} · {len(checkpoints)} checkpoints from {ckpt_dir} ===\n", flush=True)
        blocks = [(heading(stage, math.log(vocab_size)), sample(stage, text, sampling, seed)) for stage in runs]
        print(columns(blocks, width))
        print()
