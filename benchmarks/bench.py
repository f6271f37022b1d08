"""Speed harnesses that print their figures: `python -m benchmarks bench` and `python -m benchmarks bench-generation`.

`bench`: training throughput of Lightning's fit against a plain PyTorch loop on the same model, data and
optimizer (interleaved in one process), plus MFU, memory, generation speed and the step time of each AdamW
implementation. `bench-generation`: our generation (default, compiled, bfloat16, int8, recomputing) against the same
weights in Hugging Face transformers' generate, at several batch sizes."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.metadata
import importlib.util
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from benchmarks.child import peak_rss_mb
from lightning_trickster.checkpoint import TrainedModel
from lightning_trickster.commands import FitConfig
from lightning_trickster.commands.memory import attention_flops_per_token
from lightning_trickster.errors import HardwareError, InvalidConfigError
from lightning_trickster.export import export_hf
from lightning_trickster.model import GENERATION_DTYPES, NanoTrickster, SamplingSettings, bfloat16_is_native
from lightning_trickster.module import tokens_per_optimizer_step
from lightning_trickster.optim import MuonWithAdamW
from lightning_trickster.reliability import working_cpp_compiler


def greedy_prompt(vocab_size: int, batch_size: int, prompt_len: int, device: torch.device) -> torch.Tensor:
    """The fixed random prompt every decoder is timed on."""
    seeded = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab_size, (batch_size, prompt_len), generator=seeded).to(device)


def measure_generation(
    model: NanoTrickster, batch_size: int, new_tokens: int, use_cache: bool, prompt_len: int = 16,
) -> tuple[float, torch.Tensor]:  # fmt: skip
    """Generated tokens per second (all rows together) of one greedy generation of new_tokens from a fixed random
    prompt, and the tokens generated (after an untimed warm-up generation that also triggers any compilation)."""
    device = model.embedding.weight.device
    prompt = greedy_prompt(model.config.vocab_size, batch_size, prompt_len, device)
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


Decoder = Callable[[torch.Tensor, int], torch.Tensor]
"""(prompt (B, T), new tokens) -> the prompt and its greedy continuation (B, T + new tokens)."""


def ours(model: NanoTrickster, **settings: Any) -> Decoder:
    return lambda prompt, new_tokens: model.generate(prompt, SamplingSettings(new_tokens, temperature=0, **settings))


def ours_uncached(model: NanoTrickster) -> Decoder:
    return lambda prompt, new_tokens: model.generate(prompt, SamplingSettings(new_tokens, temperature=0),
                                                     use_cache=False)  # fmt: skip


TRANSFORMERS_CONFIGURATIONS = ("dynamic_cache", "static_cache", "static_cache_compiled")
"""How transformers' generate is timed: its default (a dynamic cache), a static cache, and a static cache with
generate's own torch.compile of the decode step (where torch.compile works)."""


def transformers_peer(module: Any, tokenizer: Any, device: torch.device, directory: Path) -> Any:
    """The benchmark's model exported with `export --format hf`'s writer and loaded back with transformers'
    AutoModelForCausalLM, in float32 (our default generation's dtype), eval mode. It never stops early: no end of text
    token (ours has none either)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # its weight-loading bar
    trained = TrainedModel(module.model, tokenizer, SamplingSettings(temperature=0), step=0, val_loss=None,
                           path=directory)  # fmt: skip
    export_hf(trained, directory)
    peer = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).to(device).eval()
    peer.generation_config.eos_token_id = None
    peer.generation_config.pad_token_id = 0  # unused (no padding, no end of text): silences a warning
    return peer


def transformers_decoder(peer: Any, configuration: str, device: torch.device) -> Decoder:
    """transformers' own generate, greedy, in one of TRANSFORMERS_CONFIGURATIONS."""
    from transformers import CompileConfig

    settings: dict[str, Any] = {}
    if configuration != "dynamic_cache":
        settings["cache_implementation"] = "static"
    if configuration == "static_cache":
        settings["disable_compile"] = True
    if configuration == "static_cache_compiled":
        # CUDA graphs on a GPU (generate's default there); on a CPU generate compiles only when asked to.
        compile_config = CompileConfig(fullgraph=True, dynamic=False,
                                       mode="reduce-overhead" if device.type == "cuda" else "default")  # fmt: skip
        compile_config._compile_all_devices = True
        settings["compile_config"] = compile_config

    def decode(prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
        with torch.no_grad():
            return peer.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                 do_sample=False, **settings)  # fmt: skip

    return decode


def time_decoders(decoders: dict[str, Decoder], prompt: torch.Tensor, new_tokens: int, repeats: int,
                  device: torch.device) -> tuple[dict[str, list[float]], dict[str, torch.Tensor]]:  # fmt: skip
    """Seconds of each decoder's greedy generation, `repeats` times each, interleaved (the order reversed every
    repeat, so drifts in machine load hit every decoder alike), after one untimed warm-up generation each (which
    also compiles); and each decoder's tokens."""
    tokens = {}
    for name, decode in decoders.items():
        tokens[name] = decode(prompt, new_tokens)
    seconds: dict[str, list[float]] = {name: [] for name in decoders}
    for repeat in range(repeats):
        for name in list(decoders)[:: 1 if repeat % 2 == 0 else -1]:
            synchronize(device)
            start = time.perf_counter()
            decoders[name](prompt, new_tokens)
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds, tokens


def leading_equal(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading positions (columns) two token tensors of the same rows agree on."""
    width = min(a.size(1), b.size(1))
    differs = (a[:, :width] != b[:, :width]).any(dim=0).nonzero()
    return int(differs[0]) if len(differs) else width


def bench_generation(
    fit_config: FitConfig, new_tokens: int = 500, batch_sizes: int | list[int] = [1, 8],  # noqa: B006
    repeats: int = 3, compiled: bool | None = None, dtypes: list[str] | None = None, transformers: bool | None = None,
    threads: int | None = None,
) -> None:  # fmt: skip
    """Generation speed of a configuration's model, every decoder side by side in one process: ours by default
    (the KV cache, float32), recomputing every step, and the opt-in paths (a compiled decode step, bfloat16, int8),
    against the same weights exported to Hugging Face transformers and run by its own generate.

    Random weights (speed does not depend on them) of the configured shape and vocabulary, greedy, a fixed
    16-token prompt. Each decoder is timed `repeats` times, interleaved, after an untimed warm-up; medians are
    reported (recomputing, 5 to 30 times slower, is timed once). Prints one line per batch size and the results as
    JSON on the last line.

    Args:
        fit_config: the configuration, read as fit reads it (its model shape, tokenizer and accelerator are used).
        new_tokens: tokens generated per row.
        batch_sizes: rows generated together, one measurement each (e.g. '[1, 8]').
        repeats: timed generations per decoder and batch size, interleaved.
        compiled: also time the compiled decode step (NanoTrickster.compile_decoding; None: where torch.compile
            works, i.e. on CUDA, or on a CPU with a working C++ compiler).
        dtypes: the lossy --sampling.dtype values to time beside the float32 default, e.g. '[bfloat16, int8]' (None:
            those the device runs: bfloat16 where it is native, int8 on such a CPU).
        transformers: also time the model exported with `export --format hf` in transformers' generate, in each of
            its configurations (dynamic cache, static cache, and static cache compiled where torch.compile works);
            the fastest is the peer (None: when transformers is installed).
        threads: CPU threads torch computes with (None: torch's default, one per core). On a CPU shared with other
            jobs, 1 keeps the timings steady: with one thread per core, a parallel product waits for every core.
    """
    batch_sizes = [batch_sizes] if isinstance(batch_sizes, int) else batch_sizes
    if new_tokens <= 0 or repeats <= 0 or any(size <= 0 for size in batch_sizes):
        raise InvalidConfigError(
            f"--new_tokens, --repeats and --batch_sizes must be positive, got {new_tokens}, {repeats}, {batch_sizes}"
        )
    if threads is not None:
        if threads <= 0:
            raise InvalidConfigError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)
    device = preset_device(fit_config)
    can_compile = device.type == "cuda" or working_cpp_compiler() is not None
    if compiled is None:
        compiled = can_compile
    elif compiled and not can_compile:
        raise HardwareError(
            "--compiled true needs a working C++ compiler on the CPU (torch.compile builds C++ kernels): install one "
            "(e.g. g++), or pass --compiled false"
        )
    if dtypes is None:  # what generation_dtype would not replace on this device
        native = bfloat16_is_native(device)
        dtypes = [name for name, runs in (("bfloat16", native), ("int8", native and device.type == "cpu")) if runs]
    unknown = set(dtypes) - set(GENERATION_DTYPES) | ({"float32"} & set(dtypes))
    if unknown:
        raise InvalidConfigError(f"--dtypes takes bfloat16 and int8 (float32 is always timed), got {sorted(unknown)}")
    if transformers is None:
        transformers = importlib.util.find_spec("transformers") is not None
    elif transformers and importlib.util.find_spec("transformers") is None:
        raise HardwareError('--transformers true needs transformers: pip install -e ".[export]"')
    torch.manual_seed(0)
    module, datamodule = fit_config.instantiate()
    model = module.model.to(device).eval()
    decoders: dict[str, Decoder] = {"best": ours(model)}
    if compiled:  # a copy: the other decoders keep running the eager step
        compiled_model = copy.deepcopy(model)
        compiled_model.compile_decoding()
        decoders["compiled"] = ours(compiled_model)
    for name in dtypes:
        decoders[name] = ours(model, dtype=name)
    peers = []
    with tempfile.TemporaryDirectory(prefix="bench-generation-hf-") as export_dir:
        if transformers:
            peer = transformers_peer(module, datamodule.tokenizer, device, Path(export_dir))
            peers = [c for c in TRANSFORMERS_CONFIGURATIONS if can_compile or not c.endswith("_compiled")]
            decoders |= {f"transformers_{c}": transformers_decoder(peer, c, device) for c in peers}
        results = [
            generation_row(model, decoders, peers, batch_size, new_tokens, repeats, device)
            for batch_size in batch_sizes
        ]
    summary = {
        "config": config_files(fit_config),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers") if transformers else None,
        "repeats": repeats,
        "results": results,
    }
    print(json.dumps(summary))


def generation_row(model: NanoTrickster, decoders: dict[str, Decoder], peers: list[str], batch_size: int,
                   new_tokens: int, repeats: int, device: torch.device) -> dict[str, Any]:  # fmt: skip
    """One batch size's figures (see bench_generation); prints its line."""
    cfg = model.config
    prompt_len = 16
    prompt = greedy_prompt(cfg.vocab_size, batch_size, prompt_len, device)
    seconds, tokens = time_decoders(decoders, prompt, new_tokens, repeats, device)
    reference = ours_uncached(model)(prompt, new_tokens)  # timed once: a warm start, and 5 to 30 times slower
    synchronize(device)
    start = time.perf_counter()
    ours_uncached(model)(prompt, new_tokens)
    synchronize(device)
    seconds["uncached"] = [time.perf_counter() - start]
    median = {name: statistics.median(values) for name, values in seconds.items()}
    row: dict[str, Any] = {"batch_size": batch_size, "new_tokens": new_tokens}
    for name, value in median.items():
        if name.startswith("transformers_"):
            continue
        row[f"gen_tokens_per_sec_{name}"] = round(batch_size * new_tokens / value, 1)
        row[f"ms_per_token_{name}"] = round(1000 * value / new_tokens, 3)
    row["best_vs_uncached"] = round(median["uncached"] / median["best"], 2)
    # The greedy tokens of recomputing every step from scratch: the cached paths must give them exactly (the window
    # slides the same way in both); bfloat16 and int8 are lossy, so how far they agree is reported.
    row["best_same_greedy_tokens"] = bool(torch.equal(tokens["best"], reference))
    line = f"batch {batch_size}: recomputing {row['gen_tokens_per_sec_uncached']:,.0f} tokens/s, ours (default) "
    line += f"{row['gen_tokens_per_sec_best']:,.0f} ({row['ms_per_token_best']:.2f} ms/token)"
    if "compiled" in median:
        row["compiled_vs_best"] = round(median["best"] / median["compiled"], 2)
        row["compiled_same_greedy_tokens"] = bool(torch.equal(tokens["compiled"], reference))
        line += f", compiled decode step {row['gen_tokens_per_sec_compiled']:,.0f} ({row['compiled_vs_best']:.2f}x)"
    for name in ("bfloat16", "int8"):
        if name in median:
            row[f"{name}_vs_best"] = round(median["best"] / median[name], 2)
            row[f"{name}_greedy_tokens_equal_to_float32"] = leading_equal(tokens[name], reference) - prompt_len
            line += f", {name} {row[f'gen_tokens_per_sec_{name}']:,.0f} ({row[f'{name}_vs_best']:.2f}x)"
    if peers:
        by_configuration = {c: round(batch_size * new_tokens / median[f"transformers_{c}"], 1) for c in peers}
        fastest = max(by_configuration, key=by_configuration.get)
        peer_seconds = seconds[f"transformers_{fastest}"]
        row |= {
            "gen_tokens_per_sec_transformers": by_configuration[fastest],
            "ms_per_token_transformers": round(1000 * median[f"transformers_{fastest}"] / new_tokens, 3),
            "transformers_configuration": fastest,
            "gen_tokens_per_sec_transformers_by_configuration": by_configuration,
            "best_vs_transformers": round(median[f"transformers_{fastest}"] / median["best"], 2),
            # Paired within each interleaved repeat: the spread shows the machine's noise.
            "best_vs_transformers_per_repeat": [
                round(theirs / mine, 2) for theirs, mine in zip(peer_seconds, seconds["best"], strict=True)
            ],
            # transformers does not slide the window at max_seq_len: compare the tokens before ours slides.
            "transformers_same_greedy_tokens_in_window": leading_equal(tokens[f"transformers_{fastest}"], reference)
            >= min(prompt_len + new_tokens, cfg.max_seq_len),
        }
        for name in ("compiled", "bfloat16", "int8"):  # the opt-in paths against the same (float32) peer
            if name in median:
                row[f"{name}_vs_transformers"] = round(median[f"transformers_{fastest}"] / median[name], 2)
        line += f"; transformers ({fastest}) {row['gen_tokens_per_sec_transformers']:,.0f} "
        line += f"({row['ms_per_token_transformers']:.2f} ms/token): ours {row['best_vs_transformers']:.2f}x"
    print(line, flush=True)
    return row


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
    return median_step_ms(optimizers, device, steps)


def muon_step_ms(module: Any, device: torch.device, steps: int = 20) -> dict[str, float]:
    """Median milliseconds per step of the whole Muon optimizer (Muon on the block matrices, AdamW on the rest) with
    torch.optim.Muon stepping one matrix at a time and with BatchedMuon, interleaved, on copies of the module."""
    optimizers = {}
    for name in ("per_matrix", "batched"):
        copied = copy.deepcopy(module).to(device)
        for param in copied.parameters():
            param.grad = torch.randn_like(param)
        optimizer, _ = copied.optimizer_and_schedule(total_steps=steps + 1)
        if name == "per_matrix":
            optimizer = MuonWithAdamW(list(optimizer.muon.param_groups[0]["params"]), optimizer.adamw.param_groups,
                                      copied.optimization.muon_learning_rate, copied.optimization.weight_decay,
                                      copied.optimization.learning_rate, copied.optimization.betas,
                                      optimizer.adamw.defaults["fused"], batched=False)  # fmt: skip
        optimizer.step()  # the first step allocates the momentum buffers and moments
        optimizers[name] = optimizer
    return median_step_ms(optimizers, device, steps)


def median_step_ms(optimizers: dict[str, torch.optim.Optimizer], device: torch.device, steps: int) -> dict[str, float]:
    """Median milliseconds per step of each optimizer, stepped in turn (interleaved, so a drift in the machine's
    speed hits each alike)."""
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
    if initial.optimization.optimizer == "muon":
        result["muon_step_ms"] = muon_step_ms(initial, device)
        result["muon_batched_vs_per_matrix"] = round(
            result["muon_step_ms"]["per_matrix"] / result["muon_step_ms"]["batched"], 2
        )
    for key, value in result.items():
        print(f"{key:>28}: {value}")
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
