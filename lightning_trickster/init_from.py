"""`fit --init_from PATH`: a new run that starts from another model's weights, with a fresh optimizer, schedule and
step count. The source is a checkpoint written by fit, a directory written by export, or a Hugging Face Llama
directory (config.json, model.safetensors, tokenizer.json; what `export --format hf` writes, read back); its model
shape and tokenizer are the new run's."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lightning_trickster.checkpoint import DATAMODULE_KEY, SHAPE_FIELDS, read_checkpoint
from lightning_trickster.errors import InvalidConfigError, TricksterError, not_a_readable_file
from lightning_trickster.tokenizer import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    tokenizer_from_state_dict,
)

WEIGHT_SHAPE_FIELDS = ("hidden_dim", "num_layers", "num_heads", "mlp_dim", "tie_embeddings")
"""The shape fields the weights themselves fix (the vocabulary follows from the tokenizer). The others (context
length, dropout, RoPE base, norm epsilon) may differ in the new run."""


@dataclass
class InitialWeights:
    weights: dict[str, torch.Tensor]
    """NanoTrickster's state_dict (no "model." prefix)."""
    shape: dict[str, Any]
    tokenizer: Tokenizer
    description: str


def read_initial_weights(path: str) -> InitialWeights:
    source = Path(path)
    if source.is_dir() and is_hf_llama(source):
        return read_hf_llama(source)
    if source.is_dir():
        from lightning_trickster.export import load_exported  # the export module imports checkpoint, not this one

        model, tokenizer, _ = load_exported(source)
        return InitialWeights(model.state_dict(), asdict(model.config), tokenizer, f"the export {source}")
    problem = not_a_readable_file(source)
    if problem:
        raise TricksterError(
            f"--init_from {path} {problem}: pass a .ckpt written by fit or a directory written by export"
        )
    checkpoint = read_checkpoint(source)
    hparams = checkpoint["hyper_parameters"]
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    tokenizer = tokenizer_from_state_dict(checkpoint.get(DATAMODULE_KEY, {}).get("tokenizer", {"name": "byte"}))
    shape = {name: hparams[name] for name in SHAPE_FIELDS if name in hparams}
    return InitialWeights(weights, shape, tokenizer, f"{source} (step {checkpoint.get('global_step', 0)})")


def check_typed_shape(source: InitialWeights, path: str, configured: dict[str, Any], typed: set[str]) -> None:
    """A shape option typed on the command line that the source's weights cannot take."""
    conflicts = [
        f"--model.{name} {configured[f'model.{name}']} (the source has {source.shape[name]})"
        for name in WEIGHT_SHAPE_FIELDS
        if f"model.{name}" in typed and name in source.shape and configured[f"model.{name}"] != source.shape[name]
    ]
    if conflicts:
        raise InvalidConfigError(
            f"--init_from {path} fixes the model's shape, which {'; '.join(conflicts)} contradicts: drop those "
            "options (the source's shape is used), or train from scratch without --init_from"
        )


def is_hf_llama(directory: Path) -> bool:
    try:
        return json.loads((directory / "config.json").read_text()).get("model_type") == "llama"
    except (OSError, ValueError, AttributeError):
        return False


def read_hf_llama(directory: Path) -> InitialWeights:
    """A Hugging Face LlamaForCausalLM directory as NanoTrickster weights: the reverse of `export --format hf` (q and
    k rows back from Hugging Face's half layout to our interleaved RoPE pairs). Llama features NanoTrickster lacks
    (grouped-query attention, biases, RoPE scaling, another activation) are one line each."""
    from safetensors.torch import load_file

    from lightning_trickster.export import halves_to_interleaved

    def refuse(what: str) -> TricksterError:
        return TricksterError(
            f"--init_from {directory}: {what}, which NanoTrickster does not have: pass a Llama directory without it "
            "(such as one written by export --format hf)"
        )

    config = json.loads((directory / "config.json").read_text())
    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    if config.get("num_key_value_heads", heads) != heads:
        raise refuse(f"grouped-query attention ({config['num_key_value_heads']} key/value heads for {heads})")
    if config.get("head_dim", hidden // heads) != hidden // heads:
        raise refuse(f"a head size of {config['head_dim']} that is not hidden_size / num_attention_heads")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise refuse("biases")
    if config.get("hidden_act", "silu") != "silu":
        raise refuse(f"the {config['hidden_act']} activation")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise refuse(f"RoPE scaling ({rope.get('rope_type', rope.get('type'))})")
    shape = {
        "vocab_size": config["vocab_size"], "hidden_dim": hidden, "num_layers": config["num_hidden_layers"],
        "num_heads": heads, "mlp_dim": config["intermediate_size"],
        "max_seq_len": config.get("max_position_embeddings", 2048),
        "tie_embeddings": config.get("tie_word_embeddings", False),
        "rope_theta": config.get("rope_theta", rope.get("rope_theta", 10000.0)),
        "norm_eps": config.get("rms_norm_eps", 1e-6),
    }  # fmt: skip
    try:
        hf = load_file(str(directory / "model.safetensors"))
    except OSError as err:
        raise TricksterError(
            f"--init_from {directory}: model.safetensors could not be read ({err}): pass a directory with one "
            "model.safetensors (a sharded checkpoint is not read)"
        ) from None
    weights = {"embedding.weight": hf["model.embed_tokens.weight"], "final_norm.weight": hf["model.norm.weight"]}
    for i in range(shape["num_layers"]):
        layer = f"model.layers.{i}"
        q, k = (halves_to_interleaved(hf[f"{layer}.self_attn.{name}_proj.weight"], heads) for name in ("q", "k"))
        weights |= {
            f"blocks.{i}.attn_norm.weight": hf[f"{layer}.input_layernorm.weight"],
            f"blocks.{i}.attn.qkv.weight": torch.cat([q, k, hf[f"{layer}.self_attn.v_proj.weight"]]),
            f"blocks.{i}.attn.proj.weight": hf[f"{layer}.self_attn.o_proj.weight"],
            f"blocks.{i}.mlp_norm.weight": hf[f"{layer}.post_attention_layernorm.weight"],
            f"blocks.{i}.mlp.gate.weight": hf[f"{layer}.mlp.gate_proj.weight"],
            f"blocks.{i}.mlp.up.weight": hf[f"{layer}.mlp.up_proj.weight"],
            f"blocks.{i}.mlp.down.weight": hf[f"{layer}.mlp.down_proj.weight"],
        }
    weights["output.weight"] = weights["embedding.weight"] if shape["tie_embeddings"] else hf["lm_head.weight"]
    tokenizer = hf_tokenizer(directory)
    if tokenizer.vocab_size != shape["vocab_size"]:
        raise TricksterError(
            f"--init_from {directory}: tokenizer.json has {tokenizer.vocab_size} tokens but config.json's vocab_size "
            f"is {shape['vocab_size']}: pass a directory whose tokenizer matches its model"
        )
    return InitialWeights(weights, shape, tokenizer, f"the Hugging Face Llama model {directory}")


def hf_tokenizer(directory: Path) -> Tokenizer:
    """tokenizer.json as one of ours: export --format hf's char (a WordLevel over single characters) and byte (the 256
    byte-level symbols, no merges) layouts come back as those tokenizers; any other is used as a BPE."""
    text = (directory / "tokenizer.json").read_text(encoding="utf-8")
    model = json.loads(text)["model"]
    tokens = sorted(model.get("vocab", {}).items(), key=lambda item: item[1])
    if model["type"] == "WordLevel" and all(len(token) == 1 for token, _ in tokens):
        return CharTokenizer("".join(token for token, _ in tokens))
    if model["type"] == "BPE" and len(tokens) == 256 and not model.get("merges"):
        return ByteTokenizer()
    return BPETokenizer(text, source=str(directory / "tokenizer.json"))
