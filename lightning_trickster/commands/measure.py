"""Measure the training memory of one process and compare it with lightning_trickster.memory's estimate.

GPU: torch.cuda.max_memory_allocated above what was allocated before the model was built.
CPU: the process's peak resident memory (ru_maxrss) above its resident memory before the model was built, in a
fresh process whose allocator returns every block of 64 KiB or more to the OS when freed
(MALLOC_MMAP_THRESHOLD_=65536), so resident memory follows live tensors. It includes allocator and kernel scratch
space the estimate does not model.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import asdict
from functools import partial

import torch

from lightning_trickster.commands.memory import RunLayout, estimate_memory
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
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"device": str(device), "peak_bytes": peak}


def measure_in_fresh_process(config: dict, batch_size: int, precision: str, checkpointing: bool, steps: int) -> dict:
    spec = json.dumps([config, batch_size, precision, checkpointing, steps])
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    result = subprocess.run(
        [sys.executable, "-m", "lightning_trickster.commands.measure", spec], capture_output=True, text=True, env=env
    )
    if result.returncode != 0:
        raise RuntimeError(f"the measuring process failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare_with_measurement(model: NanoTrickster, layout: RunLayout, steps: int) -> str:
    """Measure one process with this model, batch and precision, with and without activation checkpointing."""
    one_process = RunLayout(
        batch_size=layout.batch_size,
        accumulate=1,
        devices=1,
        num_nodes=1,
        precision=layout.precision,
        strategy="single",
    )
    config = asdict(model.config)
    lines = [
        f"measured on this machine: one process, {layout.batch_size} windows x {model.config.max_seq_len} tokens, "
        f"{layout.precision.name}, {steps} AdamW steps"
    ]
    for checkpointing in (False, True):
        measured = measure_in_fresh_process(config, layout.batch_size, layout.precision.name, checkpointing, steps)
        on_cpu = measured["device"] == "cpu"
        estimated = estimate_memory(model, one_process, checkpointing, math_attention=on_cpu)["total"]
        error = (estimated - measured["peak_bytes"]) / measured["peak_bytes"]
        lines.append(
            f"  {'activation checkpointing' if checkpointing else 'no checkpointing':<26} "
            f"measured peak {measured['peak_bytes'] / 2**20:>10,.1f} MiB ({measured['device']}), "
            f"estimated {estimated / 2**20:>10,.1f} MiB, error {error:+.1%}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(train_and_measure(*json.loads(sys.argv[1]))))
