"""`info`: exact parameters, memory per device, tokens and FLOPs of a training configuration."""

from __future__ import annotations

from typing import Any

import torch

from lightning_trickster.commands.fit_config import FitConfig
from lightning_trickster.commands.memory import RunLayout, estimate_memory, flops_per_token, parse_precision
from lightning_trickster.errors import InvalidConfigError
from lightning_trickster.model import NanoTrickster
from lightning_trickster.module import tokens_per_optimizer_step

FSDP_CLASSES = ("FSDPStrategy", "ShardedStrategy")


def _positive_int(value: Any, name: str, auto: int = 1) -> int:
    if value in (None, "auto", -1, "-1"):
        return auto
    if isinstance(value, list):
        return len(value)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidConfigError(f"{name} must be a positive integer for info, got {value!r}") from None
    if number <= 0:
        raise InvalidConfigError(f"{name} must be a positive integer for info, got {value!r}")
    return number


def run_layout(trainer: dict[str, Any], batch_size: int) -> tuple[RunLayout, bool, list[str]]:
    """The batch, devices, precision and strategy of a config's trainer section; whether it checkpoints activations;
    notes."""
    notes = []
    if trainer.get("devices") in (None, "auto", -1, "-1"):
        notes.append("devices: auto -> estimated for 1 device per node (pass --trainer.devices N)")
    devices = _positive_int(trainer.get("devices"), "trainer.devices")
    num_nodes = _positive_int(trainer.get("num_nodes"), "trainer.num_nodes")
    try:
        precision = parse_precision(trainer.get("precision") or "32-true")
    except ValueError as err:
        raise InvalidConfigError(str(err)) from None
    world_size = devices * num_nodes
    strategy_value = trainer.get("strategy") or "auto"
    init_args: dict[str, Any] = {}
    if isinstance(strategy_value, dict):
        class_name = str(strategy_value.get("class_path", "")).rsplit(".", 1)[-1]
        init_args = strategy_value.get("init_args") or {}
        strategy = "fsdp" if class_name in FSDP_CLASSES else "ddp" if class_name == "DDPStrategy" else class_name
    else:
        name = str(strategy_value)
        if name.startswith("fsdp") or name.rsplit(".", 1)[-1] in FSDP_CLASSES:
            strategy = "fsdp"
        elif name.startswith("ddp") or (name == "auto" and world_size > 1):
            strategy = "ddp"
        else:
            strategy = "single" if name in ("auto", "single_device") else name
    if strategy not in ("single", "ddp", "fsdp"):
        raise InvalidConfigError(
            f"info cannot estimate strategy {strategy!r}: use ddp, fsdp, lightning_trickster.sharding.ShardedStrategy "
            "or a single device"
        )
    if strategy == "single" and world_size > 1:
        raise InvalidConfigError(f"strategy single_device with {world_size} devices: use ddp or fsdp")
    sharding = init_args.get("sharding_strategy", "FULL_SHARD")
    sharding = str(getattr(sharding, "name", sharding)).upper()  # a name, or torch's ShardingStrategy enum
    shards = {"FULL_SHARD": world_size, "SHARD_GRAD_OP": world_size, "HYBRID_SHARD": devices, "NO_SHARD": 1}
    if strategy == "fsdp" and sharding not in shards:
        raise InvalidConfigError(f"unknown FSDP sharding_strategy {sharding!r}: use one of {', '.join(shards)}")
    checkpointing = bool(init_args.get("activation_checkpointing_policy") or init_args.get("activation_checkpointing"))
    layout = RunLayout(
        batch_size=batch_size,
        accumulate=_positive_int(trainer.get("accumulate_grad_batches") or 1, "trainer.accumulate_grad_batches"),
        devices=devices,
        num_nodes=num_nodes,
        precision=precision,
        strategy=strategy,
        shards=shards.get(sharding, 1) if strategy == "fsdp" else 1,
        shard_grads_only=strategy == "fsdp" and sharding == "SHARD_GRAD_OP",
    )
    return layout, checkpointing, notes


def gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:,.2f} GiB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:,.1f} MiB"


def describe(model: NanoTrickster, layout: RunLayout, checkpointing: bool, vocab_note: str, notes: list[str]) -> str:
    cfg = model.config
    counts = model.parameter_breakdown()
    tokens_per_step = tokens_per_optimizer_step(
        layout.batch_size, cfg.max_seq_len, layout.accumulate, layout.world_size
    )
    lines = [
        f"model: {cfg.num_layers} layers, hidden {cfg.hidden_dim}, {cfg.num_heads} heads, mlp {cfg.mlp_dim}, "
        f"context {cfg.max_seq_len}, vocab {cfg.vocab_size} ({vocab_note})",
        "parameters (exact):",
        f"  embedding           {counts['embedding']:>15,}",
        f"  output projection   {counts['output']:>15,}" + ("  (tied to the embedding)" if cfg.tie_embeddings else ""),
        f"  per block           {counts['per_block']:>15,}  = attention {counts['attention_per_block']:,} "
        f"+ MLP {counts['mlp_per_block']:,} + norms {counts['norms_per_block']:,}",
        f"  {cfg.num_layers} blocks{'':<{12 - len(str(cfg.num_layers))}}{counts['blocks']:>15,}",
        f"  final norm          {counts['final_norm']:>15,}",
        f"  total               {counts['total']:>15,}",
        f"run: {layout.strategy} on {layout.devices} device(s) x {layout.num_nodes} node(s), "
        f"{layout.precision.name} precision"
        + (f", parameters sharded over {layout.shards} processes" if layout.strategy == "fsdp" else ""),
        f"tokens per optimizer step: {layout.batch_size} windows x {cfg.max_seq_len} tokens x {layout.accumulate} "
        f"accumulation x {layout.world_size} devices = {tokens_per_step:,}",
        f"training FLOPs per token: {flops_per_token(model):,} ({flops_per_token(model, True):,} with activation "
        f"checkpointing); per optimizer step: {flops_per_token(model, checkpointing) * tokens_per_step:.3e}",
    ]
    plain = estimate_memory(model, layout, checkpointing=False)
    checkpointed = estimate_memory(model, layout, checkpointing=True)
    configured = " (configured)"
    lines.append(
        f"estimated training memory per device, {layout.batch_size} windows per micro-batch "
        f"(peak at the start of backward):"
    )
    lines.append(
        f"  {'':<32}{'no checkpointing' + ('' if checkpointing else configured):>30}  "
        f"{'activation checkpointing' + (configured if checkpointing else ''):>38}"
    )
    for component in plain:
        lines.append(
            f"  {component.replace('_', ' '):<32}{gib(plain[component]):>30}  {gib(checkpointed.get(component, 0)):>38}"
        )
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def trainer_settings(fit_config: FitConfig) -> dict[str, Any]:
    """The trainer section as plain values (a strategy given as class_path/init_args stays a dict)."""
    return fit_config.config.trainer.as_dict()


def info(fit_config: FitConfig) -> None:
    """Exact parameter counts and per-device memory/FLOP estimates for a training configuration.

    The model is built on the meta device (no memory); the vocabulary comes from the configured tokenizer (the char
    tokenizer reads --data.path, or tiny Shakespeare). `python -m benchmarks memory` checks the estimate against a
    measured run.

    Args:
        fit_config: the configuration, read as fit reads it.
    """
    with torch.device("meta"):
        module, data = fit_config.instantiate()
    model = module.model
    vocab_note = f"{data.hparams.tokenizer} tokenizer"  # a BPE still to be trained has its size, not yet its merges
    layout, checkpointing, notes = run_layout(trainer_settings(fit_config), data.hparams.batch_size)
    print(describe(model, layout, checkpointing, vocab_note, notes), flush=True)
