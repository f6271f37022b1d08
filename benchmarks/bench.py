"""Speed harnesses that print their figures: `python -m benchmarks bench` and `python -m benchmarks bench-generation`.

`bench`: training throughput of Lightning's fit against a plain PyTorch loop on the same model, data and
optimizer (interleaved in one process), plus MFU, memory, generation speed and the step time of each AdamW
implementation. `bench-generation`: KV-cache vs recomputing generation at several batch sizes."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from benchmarks.child import peak_rss_mb
from lightning_trickster.commands import FitConfig
from lightning_trickster.commands.memory import attention_flops_per_token
from lightning_trickster.errors import HardwareError, InvalidConfigError
from lightning_trickster.model import NanoTrickster, SamplingSettings
from lightning_trickster.module import tokens_per_optimizer_step
from lightning_trickster.reliability import working_cpp_compiler


def measure_generation(
    model: NanoTrickster, batch_size: int, new_tokens: int, use_cache: bool, prompt_len: int = 16,
) -> tuple[float, torch.Tensor]:  # fmt: skip
    """Generated tokens per second (all rows together) of one greedy generation of new_tokens from a fixed random
    prompt, and the tokens generated (after an untimed warm-up generation that also triggers any compilation)."""
    device = model.embedding.weight.device
    seeded = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.config.vocab_size, (batch_size, prompt_len), generator=seeded).to(device)
    model.generate(prompt, SamplingSettings(8, temperature=0), use_cache=use_cache)
    synchronize(device)
    start = time.perf_counter()
    tokens = model.generate(prompt, SamplingSettings(new_tokens, temperature=0), use_cache=use_cache)
    synchronize(device)
    return batch_size * new_tokens / (time.perf_counter() - start), tokens


def preset_device(fit_config: FitConfig) -> torch.device:
    """Where the configuration's accelerator computes: CUDA for gpu/cuda (and auto with a GPU), else the CPU."""
    accelerator = fit_config.config.trainer.accelerator
    wants_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if wants_gpu else "cpu")


def bench_generation(
    fit_config: FitConfig, new_tokens: int = 500, batch_sizes: int | list[int] = [1, 8],  # noqa: B006
    compiled: bool | None = None,
) -> None:  # fmt: skip
    """Generation speed of a configuration's model: recomputing every step, with the KV cache, and with the KV
    cache and a compiled static-shape decode step, side by side.

    Random weights (speed does not depend on them) of the configured shape and vocabulary. Prints one line per batch
    size and the results as JSON on the last line.

    Args:
        fit_config: the configuration, read as fit reads it (its model shape, tokenizer and accelerator are used).
        new_tokens: tokens generated per row.
        batch_sizes: rows generated together, one measurement each (e.g. '[1, 8]').
        compiled: also time the compiled decode step (None: where torch.compile works, i.e. on CUDA, or on a
            CPU with a working C++ compiler).
    """
    batch_sizes = [batch_sizes] if isinstance(batch_sizes, int) else batch_sizes
    if new_tokens <= 0 or any(size <= 0 for size in batch_sizes):
        raise InvalidConfigError(f"--new_tokens and --batch_sizes must be positive, got {new_tokens}, {batch_sizes}")
    device = preset_device(fit_config)
    if compiled is None:
        compiled = device.type == "cuda" or working_cpp_compiler() is not None
    elif compiled and device.type == "cpu" and working_cpp_compiler() is None:
        raise HardwareError(
            "--compiled true needs a working C++ compiler on the CPU (torch.compile builds C++ kernels): install one "
            "(e.g. g++), or pass --compiled false"
        )
    torch.manual_seed(0)
    module, _ = fit_config.instantiate()
    model = module.model.to(device).eval()
    if compiled:  # a copy: the eager decoders keep running through the uncompiled step
        compiled_model = copy.deepcopy(model)
        compiled_model.compile_decoding()
    results = []
    for batch_size in batch_sizes:
        recompute, recomputed_tokens = measure_generation(model, batch_size, new_tokens, use_cache=False)
        cached, _ = measure_generation(model, batch_size, new_tokens, use_cache=True)
        result = {
            "batch_size": batch_size,
            "new_tokens": new_tokens,
            "gen_tokens_per_sec_uncached": round(recompute, 1),
            "gen_tokens_per_sec_cached": round(cached, 1),
            "cache_speedup": round(cached / recompute, 2),
        }
        line = f"batch {batch_size}: recomputing {recompute:,.0f} tokens/s, KV cache {cached:,.0f} "
        line += f"({cached / recompute:.2f}x)"
        if compiled:
            fast, fast_tokens = measure_generation(compiled_model, batch_size, new_tokens, use_cache=True)
            result |= {
                "gen_tokens_per_sec_compiled": round(fast, 1),
                "compiled_vs_uncached": round(fast / recompute, 2),
                "compiled_vs_cached": round(fast / cached, 2),
                "compiled_same_greedy_tokens": bool(torch.equal(fast_tokens, recomputed_tokens)),
            }
            line += f", compiled static decode {fast:,.0f} ({fast / recompute:.2f}x; {fast / cached:.2f}x the cache)"
        results.append(result)
        print(line, flush=True)
    summary = {
        "config": config_files(fit_config),
        "device": device_name(device),
        "torch": torch.__version__,
        "results": results,
    }
    print(json.dumps(summary))


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


# --- bench: Lightning fit vs a plain PyTorch loop on the same model, data and optimizer --------------------------

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}
"""Dense bf16 tensor-core peaks (vendor datasheets) for MFU; CPUs have no entry, so their MFU is reported as null."""


def config_files(fit_config: FitConfig) -> list[str]:
    return [str(path) for path in fit_config.config.get("config") or []]


def nanogpt_flops_per_token(model: NanoTrickster, parameters: int) -> float:
    """nanoGPT's MFU estimate (PaLM appendix B): 6 N over all N parameters, plus the attention term 12 L H Q T
    that `info` uses too."""
    return 6 * parameters + attention_flops_per_token(model)


class StepTimer(pl.Callback):
    """Wall time of the optimizer steps after the warm-up ones."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup_steps and not self.start:
            synchronize(trainer.strategy.root_device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, *args: Any) -> None:
        synchronize(trainer.strategy.root_device)
        self.end = time.perf_counter()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_fit(module, datamodule, steps: int, warmup: int, **trainer_settings: Any) -> float:
    """Seconds of the steps after `warmup` of a fit that only trains (no validation, logger, checkpoints, progress
    bar or summary): what the benchmarks time."""
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        **trainer_settings,
        max_steps=warmup + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule)
    return timer.end - timer.start


def lightning_seconds(module, datamodule, trainer_settings: dict[str, Any], steps: int, warmup: int) -> float:
    return timed_fit(module, datamodule, steps, warmup, devices=1, **trainer_settings)


def raw_seconds(module, datamodule, trainer_settings: dict[str, Any], steps: int, warmup: int) -> float:
    """The same step as Lightning's, written out: forward, backward with accumulation, clip, AdamW, schedule."""
    device = torch.device("cuda" if trainer_settings["accelerator"] in ("cuda", "gpu") else "cpu")
    module.to(device).train()
    module.configure_model()  # compiles the model when the module's compile setting says so, as fit does
    optimizer, schedule = module.optimizer_and_schedule(warmup + steps)
    accumulate = trainer_settings["accumulate_grad_batches"]
    clip = trainer_settings["gradient_clip_val"]
    log_every = trainer_settings["log_every_n_steps"]
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if str(trainer_settings["precision"]).startswith("bf16-mixed")
        else contextlib.nullcontext()
    )
    batches = iter(datamodule.train_dataloader())
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
        for _ in range(accumulate):
            inputs, targets = (t.to(device, non_blocking=True) for t in next(batches))
            with autocast:
                _, loss = module.model(inputs, targets)
            (loss / accumulate).backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % log_every == 0:
            loss.item()  # a host sync, as logging does
    synchronize(device)
    return time.perf_counter() - start


def adamw_step_ms(model: torch.nn.Module, device: torch.device, steps: int = 20) -> dict[str, float]:
    """Median milliseconds per AdamW step of each implementation, interleaved, on a copy of the model."""
    params = list(copy.deepcopy(model).parameters())
    for param in params:
        param.grad = torch.randn_like(param)
    implementations = {"per_tensor": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    optimizers = {name: torch.optim.AdamW(params, lr=1e-6, **flags) for name, flags in implementations.items()}
    for optimizer in optimizers.values():
        optimizer.step()  # the first step allocates the moment buffers
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(steps):
        for name, optimizer in optimizers.items():
            synchronize(device)
            start = time.perf_counter()
            optimizer.step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: round(1000 * statistics.median(seconds), 3) for name, seconds in times.items()}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()  # the process's peak resident memory


def bench(
    fit_config: FitConfig, steps: int = 30, warmup_steps: int = 5, repeats: int = 2, gen_tokens: int = 200,
    output: Path = Path("bench.json"),
) -> None:  # fmt: skip
    """Training throughput of Lightning's fit against a plain PyTorch loop on the same model, data and optimizer.

    Both loops run in this process, interleaved; also prints MFU, peak memory, generation speed and the step time
    of each AdamW implementation, and writes the figures as JSON.

    Args:
        fit_config: the configuration, read as fit reads it.
        steps: timed optimizer steps per loop and repeat.
        warmup_steps: untimed optimizer steps before them.
        repeats: how often each loop runs (alternating which goes first).
        gen_tokens: tokens generated at batch 1 for the generation figures.
        output: JSON file to write.
    """
    if min(steps, repeats, gen_tokens) <= 0 or warmup_steps < 0:
        raise InvalidConfigError("--bench.steps, --bench.repeats and --bench.gen_tokens must be positive, "
                                 "--bench.warmup_steps >= 0")  # fmt: skip
    module, datamodule = fit_config.instantiate()
    config = fit_config.config.trainer
    accelerator = config.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    trainer_settings = {
        "accelerator": accelerator,
        "precision": config.precision if config.precision is not None else "32-true",
        "accumulate_grad_batches": config.accumulate_grad_batches,
        "gradient_clip_val": config.gradient_clip_val,
        "log_every_n_steps": config.log_every_n_steps or 50,
    }
    datamodule.setup("fit")
    warmup = warmup_steps
    initial = copy.deepcopy(module)
    # Both loops run warmup + steps optimizer steps: fit the LR warm-up into them (throughput does not depend on it).
    warmup_fits = min(initial.optimization.warmup_steps, warmup + steps)
    initial.optimization = dataclasses.replace(initial.optimization, warmup_steps=warmup_fits)
    hparams = datamodule.hparams
    accumulate = trainer_settings["accumulate_grad_batches"]
    tokens = steps * tokens_per_optimizer_step(hparams.batch_size, hparams.block_size, accumulate, processes=1)
    timed = {"raw": (raw_seconds, []), "lightning": (lightning_seconds, [])}
    for repeat in range(repeats):
        # Interleaved, with the order swapped every repeat, so drifts in machine load hit both loops alike.
        for loop in ("raw", "lightning") if repeat % 2 == 0 else ("lightning", "raw"):
            run, seconds = timed[loop]
            pl.seed_everything(0, verbose=False)
            seconds.append(run(copy.deepcopy(initial), datamodule, trainer_settings, steps, warmup))
    raw_runs, lightning_runs = timed["raw"][1], timed["lightning"][1]
    # Rounded once, here: the printed ratio is then exactly the ratio of the printed throughputs.
    raw_tps = round(tokens / statistics.median(raw_runs), 1)
    lightning_tps = round(tokens / statistics.median(lightning_runs), 1)
    device = preset_device(fit_config)
    model = initial.model.to(device).eval()
    parameters = model.parameter_breakdown()["total"]
    name = device_name(device)
    peak = next((flops for gpu, flops in PEAK_BF16_FLOPS.items() if gpu in name), None)
    result = {
        "config": config_files(fit_config),
        "device": name,
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "parameters": parameters,
        "precision": trainer_settings["precision"],
        "steps_timed": steps,
        "repeats": repeats,
        "train_tokens_per_sec": lightning_tps,
        "raw_tokens_per_sec": raw_tps,
        "lightning_vs_raw": round(lightning_tps / raw_tps, 4),
        "lightning_vs_raw_per_repeat": [
            round(raw / light, 4) for raw, light in zip(raw_runs, lightning_runs, strict=False)
        ],
        "ms_per_step": round(1000 * statistics.median(lightning_runs) / steps, 2),
        "mfu": round(lightning_tps * nanogpt_flops_per_token(model, parameters) / peak, 4) if peak else None,
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "gen_tokens_per_sec_cached": round(measure_generation(model, 1, gen_tokens, use_cache=True)[0], 1),
        "gen_tokens_per_sec_uncached": round(measure_generation(model, 1, gen_tokens, use_cache=False)[0], 1),
        "adamw_step_ms": adamw_step_ms(model, device),
    }
    for key, value in result.items():
        print(f"{key:>28}: {value}")
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
