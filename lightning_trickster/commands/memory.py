"""Training memory and compute estimates for a NanoTrickster run, per device.

Activation sizes are the bytes autograd saves for backward per token, read off the model code and counted with
``torch.autograd.graph.saved_tensors_hooks`` on torch 2.13 (CPU kernels; flash-style attention, no T x T matrix):

    per block, fp32 compute:       52 h + 16 m + 4 (heads + 2)
        13 h-wide tensors (each RMSNorm saves its input, normalised input and output; qkv output (3); rotated q and k;
        attention output and its re-layout) and 4 m-wide ones (gate, silu(gate), up, product), plus the attention
        log-sum-exp and the two norms' inverse RMS.
    per block, bf16 autocast:      36 h +  8 m + 4 (heads + 2)   (fp32 residual stream, bf16 matmul outputs)
    per block, bf16 parameters:    34 h +  8 m + 4 (heads + 2)   (FSDP mixed precision, *-true precisions)
    head (final norm, fp32 log-softmax over the vocabulary):  12 h (fp32) or 10 h (bf16) + 4 vocab + 20

Attention dropout on CPU runs the math kernel, which keeps the T x T scores: per block and token
12 heads T -/+ 4 h - 16 more bytes (fp32 / 16-bit compute). GPU attention kernels apply dropout without them.

With activation checkpointing each block keeps only its input (4 or 2 bytes x h per token) and one block's full set
is rebuilt during backward. Under autocast, the bf16 copies of the matmul weights live from forward to backward.
"""

from __future__ import annotations

from dataclasses import dataclass

from lightning_trickster.model import NanoTrickster

STRATEGIES = ("single", "ddp", "fsdp")


@dataclass(frozen=True)
class Precision:
    name: str
    param_bytes: int
    """Bytes per stored parameter, gradient and AdamW moment."""
    compute: str
    """'fp32', 'autocast' (fp32 weights, bf16/fp16 matmuls) or 'half' (16-bit weights)."""


def parse_precision(value: object) -> Precision:
    name = str(value)
    if name in ("32", "32-true"):
        return Precision("32-true", 4, "fp32")
    if name in ("16-mixed", "bf16-mixed", "16", "bf16"):
        return Precision(name if "-" in name else f"{name}-mixed", 4, "autocast")
    if name in ("16-true", "bf16-true"):
        return Precision(name, 2, "half")
    raise ValueError(f"precision {name!r} is not one info can estimate: use 32-true, bf16-mixed, 16-mixed or bf16-true")


@dataclass(frozen=True)
class RunLayout:
    batch_size: int
    """Windows per device per micro-batch."""
    accumulate: int
    devices: int
    """Processes per node."""
    num_nodes: int
    precision: Precision
    strategy: str
    """'single', 'ddp' or 'fsdp'."""
    shards: int = 1
    """Processes that one FSDP parameter is split over (world size for FULL_SHARD, devices per node for HYBRID)."""
    shard_grads_only: bool = False
    """FSDP SHARD_GRAD_OP: gradients and optimizer states sharded, parameters kept whole after forward."""

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes


def block_activation_bytes_per_token(model: NanoTrickster, compute: str, math_attention: bool = False) -> int:
    cfg = model.config
    h, m, heads = cfg.hidden_dim, cfg.mlp_dim, cfg.num_heads
    # Bytes autograd saves per token, counted with saved-tensor hooks (tests/test_info.py checks them).
    per_h, per_m = {"fp32": (48, 16), "autocast": (34, 8), "half": (32, 8)}[compute]
    saved = per_h * h + per_m * m + 4 * (heads + 2)
    if math_attention and cfg.dropout > 0:
        saved += 12 * heads * cfg.max_seq_len + (0 if compute == "fp32" else 6) * h - 16
    return saved


def head_activation_bytes_per_token(model: NanoTrickster, compute: str) -> int:
    cfg = model.config
    return (12 if compute == "fp32" else 10) * cfg.hidden_dim + 4 * cfg.vocab_size + 20


def matmul_weights(model: NanoTrickster) -> tuple[int, int]:
    """(weights of one block's matmuls, weights of the output projection): the parameters autocast copies."""
    block = model.blocks[0]
    per_block = sum(p.numel() for p in block.parameters() if p.dim() == 2)
    return per_block, model.output.weight.numel()


def estimate_memory(
    model: NanoTrickster, layout: RunLayout, checkpointing: bool, math_attention: bool = False
) -> dict[str, int]:
    """Bytes per device at the training peak (the start of backward), by component. math_attention: the
    attention kernel that keeps T x T scores when dropout is on (CPU)."""
    cfg = model.config
    counts = model.parameter_breakdown()
    params = counts["total"]
    precision = layout.precision
    tokens = layout.batch_size * cfg.max_seq_len
    sharded = layout.strategy == "fsdp"
    shards = layout.shards if sharded else 1
    state_bytes = precision.param_bytes

    memory = {
        "weights": params * state_bytes // (1 if layout.shard_grads_only else shards),
        "gradients": params * state_bytes // shards,
        "adamw_states": 2 * params * state_bytes // shards,
    }
    if layout.strategy == "ddp" and layout.world_size > 1:
        memory["ddp_gradient_buckets"] = params * state_bytes  # the reducer's flat copy of all gradients
    if sharded and shards > 1 and not layout.shard_grads_only:
        # The root unit (embedding, final norm) stays gathered; a block is gathered for compute while the next
        # one is prefetched, and one block's full gradient exists before it is reduce-scattered.
        gathered_bytes = 2 if precision.compute != "fp32" else 4
        root = counts["embedding"] + counts["output"] + counts["final_norm"]
        memory["fsdp_gathered_params_and_grads"] = (root + 3 * counts["per_block"]) * gathered_bytes

    per_block = block_activation_bytes_per_token(model, layout_compute(layout), math_attention)
    head = head_activation_bytes_per_token(model, layout_compute(layout))
    if checkpointing:
        block_input = (2 if layout_compute(layout) == "half" else 4) * cfg.hidden_dim
        activations = tokens * (cfg.num_layers * block_input + per_block + head)
    else:
        activations = tokens * (cfg.num_layers * per_block + head)
    memory["activations"] = activations
    if layout_compute(layout) == "autocast":
        block_weights, output_weight = matmul_weights(model)
        copied_blocks = 1 if checkpointing else cfg.num_layers
        memory["autocast_weight_copies"] = 2 * (copied_blocks * block_weights + output_weight)
    memory["total"] = sum(memory.values())
    return memory


def layout_compute(layout: RunLayout) -> str:
    """FSDP's mixed precision casts the weights themselves to bf16 (Lightning's FSDPPrecision), so no copies."""
    if layout.strategy == "fsdp" and layout.precision.compute == "autocast":
        return "half"
    return layout.precision.compute


def matmul_flops_per_token(model: NanoTrickster) -> int:
    """Training FLOPs per token in the weight matmuls: 2 forward + 4 backward per weight (the embedding lookup and
    the norms are not matmuls)."""
    block_weights, output_weight = matmul_weights(model)
    return 6 * (model.config.num_layers * block_weights + output_weight)


def attention_flops_per_token(model: NanoTrickster) -> int:
    """Training FLOPs per token of the attention scores and the weighted sum of values over the full context:
    6 * 2 * layers * hidden * context (PaLM, appendix B; causal masking could skip about half)."""
    cfg = model.config
    return 12 * cfg.num_layers * cfg.hidden_dim * cfg.max_seq_len


def flops_per_token(model: NanoTrickster, checkpointing: bool = False) -> int:
    """Training FLOPs per token; activation checkpointing adds one more forward (a third) of the blocks."""
    flops = matmul_flops_per_token(model) + attention_flops_per_token(model)
    if checkpointing:
        block_weights, _ = matmul_weights(model)
        flops += 2 * model.config.num_layers * block_weights + attention_flops_per_token(model) // 3
    return flops
