"""memory: measure the training memory of one process and compare it with `info`'s estimate
(`python -m benchmarks memory --config CONFIG --steps STEPS`).

GPU: torch.cuda.max_memory_allocated above what was allocated before the model was built.
CPU: the process's peak resident memory (VmHWM) above its resident memory before the model was built, in a
fresh process whose allocator returns every block of 64 KiB or more to the OS when freed
(MALLOC_MMAP_THRESHOLD_=65536), so resident memory follows live tensors. It includes allocator and kernel scratch
space the estimate does not model.
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from dataclasses import asdict
from functools import partial

import torch

from benchmarks.child import in_fresh_process, peak_resident_bytes
from lightning_trickster.commands import FitConfig
from lightning_trickster.commands.info import run_layout, trainer_settings
from lightning_trickster.commands.memory import RunLayout, estimate_memory
from lightning_trickster.errors import InvalidConfigError
from lightning_trickster.model import Block, NanoTrickster, NanoTricksterConfig


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def train_and_measure(config: dict, batch_size: int, precision: str, checkpointing: bool, steps: int) -> dict:
    """Train `steps` AdamW steps of a fresh model on random tokens; returns the peak bytes above the baseline."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = NanoTricksterConfig(**config)
    inputs = torch.randint(cfg.vocab_size, (batch_size, cfg.max_seq_len), device=device)
    targets = torch.randint(cfg.vocab_size, (batch_size, cfg.max_seq_len), device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        baseline = _resident_bytes()
    model = NanoTrickster(cfg).to(device)
    if precision.endswith("-true") and precision != "32-true":
        model = model.to(torch.bfloat16 if precision.startswith("bf16") else torch.float16)
    if checkpointing:  # what Lightning's activation_checkpointing_policy applies to each Block
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
            CheckpointImpl,
            apply_activation_checkpointing,
            checkpoint_wrapper,
        )

        wrapper = partial(checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT)
        apply_activation_checkpointing(model, wrapper, check_fn=lambda module: isinstance(module, Block))
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16 if precision.startswith("bf16") else torch.float16)
        if precision.endswith("-mixed")
        else nullcontext()
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for _ in range(steps):
        with autocast:
            _, loss = model(inputs, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = peak_resident_bytes() - baseline
    return {"device": str(device), "peak_bytes": peak}


def memory(fit_config: FitConfig, steps: int = 3) -> None:
    """Train a few steps of the configured shape in a fresh process and compare its measured peak memory with the
    estimate `info` prints.

    One process, the configured micro-batch and precision, plain AdamW on random tokens; once without and once with
    activation checkpointing. Prints one line each, then the figures as JSON on the last line.

    Args:
        fit_config: the configuration, read as fit reads it (its model shape, data.batch_size and
            trainer.precision are used).
        steps: AdamW steps trained in each measuring process.
    """
    if steps <= 0:
        raise InvalidConfigError(f"--steps must be positive, got {steps}")
    with torch.device("meta"):
        module, data = fit_config.instantiate()
    model = module.model
    layout, _, _ = run_layout(trainer_settings(fit_config), data.hparams.batch_size)
    one_process = RunLayout(
        batch_size=layout.batch_size,
        accumulate=1,
        devices=1,
        num_nodes=1,
        precision=layout.precision,
        strategy="single",
    )
    print(
        f"measured on this machine: one process, {layout.batch_size} windows x {model.config.max_seq_len} tokens, "
        f"{layout.precision.name}, {steps} AdamW steps",
        flush=True,
    )
    rows = []
    for checkpointing in (False, True):
        measured = in_fresh_process(
            train_and_measure, env={"MALLOC_MMAP_THRESHOLD_": "65536"}, config=asdict(model.config),
            batch_size=layout.batch_size, precision=layout.precision.name, checkpointing=checkpointing, steps=steps,
        )  # fmt: skip
        estimated = estimate_memory(model, one_process, checkpointing, math_attention=measured["device"] == "cpu")
        error = (estimated["total"] - measured["peak_bytes"]) / measured["peak_bytes"]
        rows.append({"activation_checkpointing": checkpointing, "device": measured["device"],
                     "measured_bytes": measured["peak_bytes"], "estimated_bytes": estimated["total"],
                     "error": round(error, 4)})  # fmt: skip
        print(
            f"  {'activation checkpointing' if checkpointing else 'no checkpointing':<26} "
            f"measured peak {measured['peak_bytes'] / 2**20:>10,.1f} MiB ({measured['device']}), "
            f"estimated {estimated['total'] / 2**20:>10,.1f} MiB, error {error:+.1%}",
            flush=True,
        )
    print(json.dumps({"config": [str(path) for path in fit_config.config.get("config") or []],
                      "batch_size": layout.batch_size, "max_seq_len": model.config.max_seq_len,
                      "precision": layout.precision.name, "steps": steps, "results": rows}))  # fmt: skip
