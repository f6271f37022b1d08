"""generation-quality: what the lossy generation dtypes cost in quality, measured on a trained checkpoint:
`python -m benchmarks generation-quality --config cpu.yaml --data.path CORPUS --ckpt_path CHECKPOINT`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from lightning_trickster.checkpoint import load_trained_model
from lightning_trickster.commands import FitConfig
from lightning_trickster.errors import InvalidConfigError
from lightning_trickster.model import GENERATION_DTYPES, KVCache, NanoTrickster, SamplingSettings, generation_dtype


@torch.inference_mode()
def split_loss(model: NanoTrickster, batches, dtype: str | None) -> tuple[float, float]:
    """Token-weighted mean loss over every window of the split and how often its most likely token is the training
    forward's: dtype None is the training forward (the reference); a dtype runs each window through generation's
    cached path with that dtype's weights and KV cache (what `--sampling.dtype` decodes with), teacher-forced."""
    cfg = model.config
    weights = None if dtype is None else model.inference_weights(GENERATION_DTYPES[dtype])
    total, scored, agree = 0.0, 0, 0
    for inputs, targets in batches:
        reference, _ = model(inputs)
        if weights is None:
            logits = reference
        else:
            cache = KVCache(cfg.num_layers, inputs.size(0), cfg.num_heads, cfg.max_seq_len, cfg.head_dim,
                            weights.cos.to(weights.dtype), weights)  # fmt: skip
            logits, _ = model(inputs, cache=cache)
        mask = targets != -100
        losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
        total += float(losses[mask.flatten()].sum())
        scored += int(mask.sum())
        agree += int((logits.argmax(-1) == reference.argmax(-1))[mask].sum())
    return total / scored, agree / scored


def generation_quality(
    fit_config: FitConfig, ckpt_path: Path, dtypes: list[str] = ["float32", "bfloat16", "int8"],  # noqa: B006
    greedy_tokens: int = 200,
) -> None:  # fmt: skip
    """Full-split validation loss of a trained checkpoint computed as generation computes it, with each
    --sampling.dtype, teacher-forced on every validation window, beside the training forward's (the reference, which
    validation reports); how often each picks the reference's most likely token; and for how many tokens its greedy
    continuation of the split's first 32 tokens equals that of the default (float32) generation. Prints one line
    per dtype and the results as JSON on the last line.

    Args:
        fit_config: the configuration the checkpoint was trained with (its data split is used).
        ckpt_path: the checkpoint.
        dtypes: the --sampling.dtype values to measure against the reference.
        greedy_tokens: length of the greedy continuations compared.
    """
    unknown = set(dtypes) - set(GENERATION_DTYPES)
    if unknown:
        raise InvalidConfigError(f"--dtypes takes {', '.join(GENERATION_DTYPES)}, got {sorted(unknown)}")
    trained = load_trained_model(ckpt_path)
    _, datamodule = fit_config.instantiate()
    datamodule.prepare_data()
    datamodule.setup("fit")
    batches = list(datamodule.val_dataloader())
    model = trained.model.eval()
    prompt = batches[0][0][:1, :32]
    greedy = SamplingSettings(greedy_tokens, temperature=0)
    default_text = model.generate(prompt, greedy)
    start = time.perf_counter()
    loss, _ = split_loss(model, batches, None)
    results = {"reference": {"val_loss": round(loss, 5), "seconds": round(time.perf_counter() - start, 1)}}
    print(f"reference (the training forward, float32): {json.dumps(results['reference'])}", flush=True)
    for name in dtypes:
        actual = generation_dtype(name, torch.device("cpu"))
        if actual != GENERATION_DTYPES[name]:
            results[name] = {"skipped": f"not native on this CPU (would run as {actual})"}
            continue
        start = time.perf_counter()
        loss, agreement = split_loss(model, batches, name)
        results[name] = {"val_loss": round(loss, 5), "val_loss_minus_reference": round(loss - results["reference"]
                         ["val_loss"], 5), "top1_agreement": round(agreement, 5),
                         "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        text = model.generate(prompt, SamplingSettings(greedy_tokens, temperature=0, dtype=name))
        differs = (text[0] != default_text[0]).nonzero()
        results[name]["greedy_tokens_equal_to_float32"] = (
            int(differs[0]) - prompt.size(1) if len(differs) else greedy_tokens
        )
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    tokens = sum(int((targets != -100).sum()) for _, targets in batches)
    print(json.dumps({"checkpoint": str(ckpt_path), "step": trained.step, "val_loss_in_checkpoint": trained.val_loss,
                      "val_tokens": tokens, "results": results}))  # fmt: skip
