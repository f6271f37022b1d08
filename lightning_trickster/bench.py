"""Benchmarks that print their figures: `bench-generation` measures KV-cache vs recomputing generation."""

from __future__ import annotations

import argparse
import json
import time

import torch

from lightning_trickster.model import NanoTrickster


def measure_generation(model: NanoTrickster, batch_size: int, new_tokens: int, use_cache: bool, prompt_len: int = 16):
    """Generated tokens per second (all rows together) for one greedy generation of new_tokens."""
    prompt = torch.randint(0, model.config.vocab_size, (batch_size, prompt_len))
    model.generate(prompt, 8, temperature=0, use_cache=use_cache)  # warm-up
    start = time.perf_counter()
    model.generate(prompt, new_tokens, temperature=0, use_cache=use_cache)
    return batch_size * new_tokens / (time.perf_counter() - start)


def parse_args(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_trickster bench-generation",
        description="Generation speed of a preset's model with and without the KV cache (random weights: speed "
        "does not depend on them). Prints one line per setting and the results as JSON on the last line.",
    )
    parser.add_argument("--config", default="nano.yaml", help="preset name or YAML path (its model: section is used)")
    parser.add_argument("--new_tokens", type=int, default=500)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--vocab_size", type=int, default=256, help="vocabulary of the benchmarked model")
    return parser.parse_args(args)


def generation_main(args: list[str]) -> None:
    from lightning_trickster.cli import preset_model_config

    options = parse_args(args)
    torch.manual_seed(0)
    model = NanoTrickster(preset_model_config(options.config, options.vocab_size)).eval()
    device = "cpu"
    results = []
    for batch_size in options.batch_sizes:
        cached = measure_generation(model, batch_size, options.new_tokens, use_cache=True)
        uncached = measure_generation(model, batch_size, options.new_tokens, use_cache=False)
        results.append(
            {
                "batch_size": batch_size,
                "new_tokens": options.new_tokens,
                "gen_tokens_per_sec_cached": round(cached, 1),
                "gen_tokens_per_sec_uncached": round(uncached, 1),
                "cache_speedup": round(cached / uncached, 2),
            }
        )
        print(
            f"batch {batch_size}: {cached:,.0f} tokens/s with KV cache, {uncached:,.0f} tokens/s recomputing "
            f"-> {cached / uncached:.2f}x",
            flush=True,
        )
    summary = {
        "config": options.config,
        "device": device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "results": results,
    }
    print(json.dumps(summary))
