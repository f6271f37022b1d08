"""Exported models: a checkpoint in one of three formats.

- ``trickster`` (the default): ``model.safetensors`` + ``config.json``, loadable with plain PyTorch for generation:

      from lightning_trickster.export import load_exported

      model, tokenizer, sampling = load_exported("exported/")
      ids = model.generate(tokenizer.encode("ROMEO:").unsqueeze(0), sampling)
      print(tokenizer.decode(ids[0]))

  Only torch, safetensors and the model/tokenizer classes are involved: no Trainer, no LightningModule.

- ``hf``: a Hugging Face Llama directory (``config.json``, ``model.safetensors``, ``tokenizer.json``,
  ``tokenizer_config.json``, ``generation_config.json``) that ``AutoModelForCausalLM``, ``AutoTokenizer`` and
  ``pipeline("text-generation")`` load. NanoTrickster is a Llama: RMSNorm, SwiGLU, no biases, tied embedding. Only the
  RoPE layout differs: we rotate adjacent channel pairs (2i, 2i+1), Hugging Face's Llama rotates halves (i, i + d/2),
  so the q and k rows of every head are permuted (as Meta's Llama -> Hugging Face conversion does).

- ``gguf``: one ``model.gguf`` file for llama.cpp and the tools built on it, written with the ``gguf`` package. The
  llama architecture in llama.cpp rotates adjacent pairs, as we do, so q and k keep our layout; q, k and v are split.

Writing ``hf`` needs nothing beyond this package's requirements; ``gguf`` needs the ``gguf`` package (the ``export``
extra: ``pip install -e ".[export]"``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_model, save_file, save_model

from lightning_trickster.checkpoint import TrainedModel, load_trained_model
from lightning_trickster.errors import (
    WRITE_FAILURES,
    StoppedBySignal,
    TricksterError,
    failed_write_errno,
    write_failure,
)
from lightning_trickster.model import (
    GREEDY_BELOW,
    NanoTrickster,
    NanoTricksterConfig,
    SamplingSettings,
)
from lightning_trickster.tokenizer import (
    END_OF_TEXT,
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    tokenizer_from_state_dict,
)

FORMAT = "nanotrickster-safetensors-v1"

ExportFormat = Literal["trickster", "hf", "gguf"]
EXPORT_FORMATS: tuple[str, ...] = ("trickster", "hf", "gguf")

GGUF_FILE = "model.gguf"
"""The file `--format gguf` writes inside --out."""


def export_checkpoint(ckpt_path: Path, out_dir: Path, format: ExportFormat = "trickster") -> list[Path]:
    """Write a checkpoint's model into out_dir in the given format; returns the files written."""
    if format not in EXPORT_FORMATS:
        raise TricksterError(f"unknown export format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    trained = load_trained_model(ckpt_path)
    writer = {"trickster": export_trickster, "hf": export_hf, "gguf": export_gguf}[format]
    return write_export(lambda directory: writer(trained, directory), out_dir)


STAGING_MARKER = "trickster-export-staging.json"
"""In each export's staging directory: the host and process that write it, so that a later export can tell a
leftover of a killed export (its process gone) from anything else."""


def write_export(write: Callable[[Path], list[Path]], out_dir: Path) -> list[Path]:
    """Run `write` into a new directory beside the export's files (out_dir/.export-*, on the same filesystem), then
    move each finished file into out_dir. A write that fails (a full disk; safetensors and numpy report it in their
    own words) leaves an earlier export in out_dir as it was, and nothing of its own behind: the partial directory,
    and out_dir itself if this export created it. An export killed outright (SIGKILL, a power cut) leaves its
    staging directory: the next export into out_dir removes it (remove_killed_exports_staging)."""
    created = not out_dir.exists()
    staging: Path | None = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_killed_exports_staging(out_dir)
        staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".export-"))
        owner = {"host": socket.gethostname(), "pid": os.getpid()}
        (staging / STAGING_MARKER).write_text(json.dumps(owner) + "\n", encoding="utf-8")
        written = write(staging)
        for path in written:
            with open(path, "rb") as file:
                os.fsync(file.fileno())
        files = [out_dir / path.name for path in written]
        for path, target in zip(written, files, strict=True):
            os.replace(path, target)  # a rename: it needs no space
        return files
    except (TricksterError, KeyboardInterrupt, StoppedBySignal):
        raise
    except Exception as err:
        if out_dir.exists() and not out_dir.is_dir():
            raise TricksterError(
                f"--out {out_dir} is not a directory: pass a directory to write the export into"
            ) from None
        if isinstance(err, OSError) and err.errno and err.errno not in WRITE_FAILURES:  # --out under a file, ...
            raise TricksterError(
                f"cannot write the export to {out_dir} ({err.strerror or err}): pass a writable --out"
            ) from None
        if failed_write_errno(err, out_dir) is None:
            raise  # not a failed write: a bug to report as it is
        existing = out_dir  # the folder to free or make writable: --out, or the one it could not be created in
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        raise write_failure(
            f"the export to {out_dir}",
            err,
            existing,
            f"run export again (or pass --out on a disk with room); any earlier export in {out_dir} is left as it was",
        ) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only if it is still empty: this export failed before it moved a file in


def remove_killed_exports_staging(out_dir: Path) -> None:
    """Remove the staging directories (out_dir/.export-*) of exports that were killed: only those whose marker names
    this host and a process that no longer runs. Anything else of that name (a running export's, another host's on
    a shared disk, a user's own folder) is left alone."""
    for staging in out_dir.glob(".export-*"):
        try:
            owner = json.loads((staging / STAGING_MARKER).read_text(encoding="utf-8"))
            pid = int(owner["pid"])
            if staging.is_symlink() or owner["host"] != socket.gethostname() or pid == os.getpid():
                continue
        except (OSError, ValueError, TypeError, KeyError):
            continue  # no marker of this program's: not an export's staging directory
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(staging, ignore_errors=True)
        except PermissionError:
            pass  # the process runs, as another user


# ---------------------------------------------------------------------------------------------------- trickster
def export_trickster(trained: TrainedModel, out_dir: Path) -> list[Path]:
    """model.safetensors + config.json in this project's own layout (load_exported reads it back)."""
    # save_model stores a tied weight once and load_model re-ties it.
    save_model(trained.model, str(out_dir / "model.safetensors"))
    config = {
        "format": FORMAT,
        "model": asdict(trained.model.config),
        "tokenizer": trained.tokenizer.state_dict(),
        "sampling": asdict(trained.sampling),
        "source": {"checkpoint": str(trained.path), "step": trained.step, "val_loss": trained.val_loss},
    }
    write_json(out_dir / "config.json", config)
    return [out_dir / "model.safetensors", out_dir / "config.json"]


def load_exported(directory: str | Path) -> tuple[NanoTrickster, Tokenizer, SamplingSettings]:
    """The exported model in eval mode, its tokenizer and its default sampling settings."""
    directory = Path(directory)
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise TricksterError(
            f"{directory}/config.json could not be read ({err}): pass a directory written by export"
        ) from None
    if config.get("format") != FORMAT:
        raise TricksterError(f"{directory}/config.json is not a {FORMAT} export: pass a directory written by export")
    model = NanoTrickster(NanoTricksterConfig(**config["model"]))
    load_model(model, str(directory / "model.safetensors"))
    return model.eval(), tokenizer_from_state_dict(config["tokenizer"]), SamplingSettings(**config["sampling"])


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------- shared
def special_token_ids(tokenizer: Tokenizer) -> tuple[int | None, int | None]:
    """(bos, eos) of the tokenizer: the BPE's END_OF_TEXT, which separates (so begins and ends) the documents it was
    trained on; none for byte and char, whose every id is a character (Llama's defaults 1 and 2 would make greedy
    generation stop at a character)."""
    if isinstance(tokenizer, BPETokenizer):
        eot = tokenizer._hf.token_to_id(END_OF_TEXT)
        return eot, eot
    return None, None


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: every byte as a printable character (what Hugging Face's ByteLevel and
    llama.cpp's gpt2 tokenizer use): printable Latin-1 bytes stand for themselves, the others for 256 + n."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


# ---------------------------------------------------------------------------------------------------- hf
def interleaved_to_halves(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """q or k projection rows from our RoPE layout (each head's pairs 2i, 2i+1) to Hugging Face Llama's (i, i + d/2):
    within a head, output channel j < d/2 is our 2j and channel d/2 + j is our 2j + 1."""
    out_features, in_features = weight.shape
    head_dim = out_features // num_heads
    return weight.view(num_heads, head_dim // 2, 2, in_features).transpose(1, 2).reshape(out_features, in_features)


def halves_to_interleaved(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The inverse of interleaved_to_halves."""
    out_features, in_features = weight.shape
    head_dim = out_features // num_heads
    return weight.view(num_heads, 2, head_dim // 2, in_features).transpose(1, 2).reshape(out_features, in_features)


def hf_state_dict(model: NanoTrickster) -> dict[str, torch.Tensor]:
    """The weights under LlamaForCausalLM's names, q and k permuted to its RoPE layout; a tied output projection is
    left out (the config's tie_word_embeddings ties it on load)."""
    cfg = model.config
    weights = {"model.embed_tokens.weight": model.embedding.weight}
    for i, block in enumerate(model.blocks):
        q, k, v = block.attn.qkv.weight.split(cfg.hidden_dim, dim=0)
        prefix = f"model.layers.{i}"
        weights |= {
            f"{prefix}.input_layernorm.weight": block.attn_norm.weight,
            f"{prefix}.self_attn.q_proj.weight": interleaved_to_halves(q, cfg.num_heads),
            f"{prefix}.self_attn.k_proj.weight": interleaved_to_halves(k, cfg.num_heads),
            f"{prefix}.self_attn.v_proj.weight": v,
            f"{prefix}.self_attn.o_proj.weight": block.attn.proj.weight,
            f"{prefix}.post_attention_layernorm.weight": block.mlp_norm.weight,
            f"{prefix}.mlp.gate_proj.weight": block.mlp.gate.weight,
            f"{prefix}.mlp.up_proj.weight": block.mlp.up.weight,
            f"{prefix}.mlp.down_proj.weight": block.mlp.down.weight,
        }
    weights["model.norm.weight"] = model.final_norm.weight
    if not cfg.tie_embeddings:
        weights["lm_head.weight"] = model.output.weight
    return {name: tensor.detach().float().contiguous().clone() for name, tensor in weights.items()}


def hf_config(config: NanoTricksterConfig, tokenizer: Tokenizer) -> dict[str, Any]:
    """A LlamaConfig as config.json holds it. Every default of LlamaConfig that differs from our model is written
    out: bos/eos (1 and 2 there), tie_word_embeddings (False there), max_position_embeddings (2048 there). The RoPE
    base is written twice: transformers 5 reads rope_parameters, 4.x reads rope_theta (and would silently use 10000
    without it)."""
    bos, eos = special_token_ids(tokenizer)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_dim,
        "intermediate_size": config.mlp_dim,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": None,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "torch_dtype": "float32",
        "dtype": "float32",
    }


def hf_generation_config(sampling: SamplingSettings, tokenizer: Tokenizer) -> dict[str, Any]:
    """generation_config.json from the checkpoint's sampling settings. Hugging Face's own defaults would differ:
    top_k 50 (ours: none, which is top_k 0 there) and 20 tokens in all."""
    bos, eos = special_token_ids(tokenizer)
    config: dict[str, Any] = {"bos_token_id": bos, "eos_token_id": eos}
    if sampling.max_new_tokens > 0:  # transformers refuses 0
        config["max_new_tokens"] = sampling.max_new_tokens
    if sampling.temperature < GREEDY_BELOW:
        config["do_sample"] = False
    else:
        config |= {
            "do_sample": True,
            "temperature": sampling.temperature,
            "top_k": sampling.top_k or 0,
            "top_p": 1.0 if sampling.top_p is None else sampling.top_p,
        }
    return config


def hf_tokenizer_json(tokenizer: Tokenizer) -> str:
    """A Hugging Face tokenizers JSON that encodes every text to our ids and decodes them as we do.

    char: a WordLevel model over the vocabulary's characters, each character its own word. It has no unknown token, so
    a character outside the vocabulary raises (`WordLevel error: Missing [UNK] token from the vocabulary`), as our
    CharTokenizer.encode does; it is never dropped. byte: byte-level (GPT-2's byte alphabet) with the 256 bytes as
    the vocabulary and no merges: id = byte value, any text encodes. bpe: our own tokenizer.json, without a
    post-processor (we never add special tokens when encoding)."""
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    if isinstance(tokenizer, CharTokenizer):
        hf = HFTokenizer(models.WordLevel({char: i for i, char in enumerate(tokenizer.vocab)}, unk_token="<unk>"))
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        hf.decoder = decoders.Fuse()
        return hf.to_str()
    if isinstance(tokenizer, ByteTokenizer):
        alphabet = bytes_to_unicode()
        hf = HFTokenizer(models.BPE({alphabet[b]: b for b in range(256)}, []))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False)
        hf.decoder = decoders.ByteLevel()
        return hf.to_str()
    data = json.loads(tokenizer.json)
    data["post_processor"] = None
    return json.dumps(data, ensure_ascii=False)


def hf_tokenizer_config(tokenizer: Tokenizer, max_seq_len: int) -> dict[str, Any]:
    """tokenizer_config.json: the generic fast tokenizer over tokenizer.json (not LlamaTokenizer, which transformers
    5 rebuilds with Llama's own normalizer and a prefix space), no added bos/eos, and no clean-up of spaces before
    punctuation on decoding (it would change text)."""
    bos, eos = special_token_ids(tokenizer)
    token = (lambda i: tokenizer._hf.id_to_token(i)) if isinstance(tokenizer, BPETokenizer) else (lambda i: None)
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_seq_len,
        "bos_token": None if bos is None else token(bos),
        "eos_token": None if eos is None else token(eos),
        "unk_token": None,
        "pad_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
    }


def export_hf(trained: TrainedModel, out_dir: Path) -> list[Path]:
    """A Hugging Face Llama directory: config.json, model.safetensors, tokenizer.json, tokenizer_config.json and
    generation_config.json."""
    model, tokenizer = trained.model, trained.tokenizer
    files = {
        name: out_dir / name
        for name in (
            "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
        )
    }  # fmt: skip
    write_json(files["config.json"], hf_config(model.config, tokenizer))
    save_file(hf_state_dict(model), str(files["model.safetensors"]), metadata={"format": "pt"})
    files["tokenizer.json"].write_text(hf_tokenizer_json(tokenizer), encoding="utf-8")
    write_json(files["tokenizer_config.json"], hf_tokenizer_config(tokenizer, model.config.max_seq_len))
    write_json(files["generation_config.json"], hf_generation_config(trained.sampling, tokenizer))
    return list(files.values())


# ---------------------------------------------------------------------------------------------------- gguf
GGUF_TOKEN_NORMAL, GGUF_TOKEN_CONTROL, GGUF_TOKEN_USER_DEFINED = 1, 3, 4
"""llama.cpp's token types (gguf.TokenType) used here."""


def rwkv_escape(data: bytes) -> str:
    """A token's bytes as llama.cpp's rwkv tokenizer reads them (llama_unescape_rwkv_token): backslash escapes for
    the backslash, tab, line feed and carriage return, \\xNN (lower-case hex, as it parses) for every other byte that
    is not printable ASCII, printable ASCII as itself. (GGUF strings are read as C strings: a NUL byte must not
    appear literally.)"""
    text = []
    for byte in data:
        if byte == 0x5C:
            text.append("\\\\")
        elif byte in (0x09, 0x0A, 0x0D):
            text.append({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}[byte])
        elif 0x20 <= byte < 0x7F:
            text.append(chr(byte))
        else:
            text.append(f"\\x{byte:02x}")
    return "".join(text)


def gguf_vocabulary(tokenizer: Tokenizer) -> dict[str, Any]:
    """The tokenizer as llama.cpp reads it: tokenizer.ggml.* keys without the prefix.

    byte and char: llama.cpp's "rwkv" tokenizer, which matches the longest token by its bytes. Each of our tokens is
    one byte or one whole character, so that reproduces our ids exactly, and unlike llama.cpp's "gpt2" and "llama"
    tokenizers it invents no special tokens (with "gpt2", token 11 would be taken as end of text, a character in a
    char vocabulary). bpe: llama.cpp's "gpt2" byte-level BPE with GPT-2's pre-tokenizer regex, the tokens and merges
    of our tokenizer.json, END_OF_TEXT as bos and eos."""
    if isinstance(tokenizer, CharTokenizer | ByteTokenizer):
        pieces = (
            [char.encode("utf-8") for char in tokenizer.vocab]
            if isinstance(tokenizer, CharTokenizer)
            else [bytes([b]) for b in range(256)]
        )
        return {
            "model": "rwkv",
            "tokens": [rwkv_escape(piece) for piece in pieces],
            "token_type": [GGUF_TOKEN_NORMAL] * len(pieces),
            "add_bos_token": False,
            "add_eos_token": False,
        }
    data = json.loads(tokenizer.json)
    model, pre = data.get("model") or {}, data.get("pre_tokenizer") or {}
    byte_level = pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space")
    if model.get("type") != "BPE" or not byte_level or data.get("normalizer"):
        raise TricksterError(
            "GGUF export writes byte-level BPE tokenizers (GPT-2 style, as prepare trains them); this checkpoint's "
            f"tokenizer.json has model {model.get('type')!r}, pre-tokenizer {pre.get('type')!r} and normalizer "
            f"{(data.get('normalizer') or {}).get('type')!r}: export it with --format hf instead"
        )
    vocab = tokenizer._hf.get_vocab(with_added_tokens=True)
    tokens = [""] * tokenizer.vocab_size
    for text, i in vocab.items():
        tokens[i] = text
    types = [GGUF_TOKEN_NORMAL] * tokenizer.vocab_size
    for added in data.get("added_tokens") or []:
        types[added["id"]] = GGUF_TOKEN_CONTROL if added.get("special") else GGUF_TOKEN_USER_DEFINED
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in model.get("merges") or []]
    if not merges:
        # llama.cpp refuses a gpt2 vocabulary without merges, and gguf cannot write an empty array (it drops the key):
        # one merge of two-character symbols, which never occur when there are no other merges.
        merges = ["\u0120\u0120 \u0120\u0120"]
    bos, eos = special_token_ids(tokenizer)
    vocabulary = {
        "model": "gpt2",
        "pre": "gpt-2",
        "tokens": tokens,
        "token_type": types,
        "merges": merges,
        "add_bos_token": False,
        "add_eos_token": False,
    }
    if eos is not None:
        vocabulary |= {"bos_token_id": bos, "eos_token_id": eos}
    return vocabulary


def gguf_tensors(model: NanoTrickster) -> dict[str, torch.Tensor]:
    """The weights under llama.cpp's llama tensor names, q/k/v split, in our RoPE layout (llama.cpp's llama rotates
    adjacent pairs too). A tied output projection is left out: llama.cpp then uses token_embd."""
    cfg = model.config
    weights = {"token_embd.weight": model.embedding.weight}
    for i, block in enumerate(model.blocks):
        q, k, v = block.attn.qkv.weight.split(cfg.hidden_dim, dim=0)
        weights |= {
            f"blk.{i}.attn_norm.weight": block.attn_norm.weight,
            f"blk.{i}.attn_q.weight": q,
            f"blk.{i}.attn_k.weight": k,
            f"blk.{i}.attn_v.weight": v,
            f"blk.{i}.attn_output.weight": block.attn.proj.weight,
            f"blk.{i}.ffn_norm.weight": block.mlp_norm.weight,
            f"blk.{i}.ffn_gate.weight": block.mlp.gate.weight,
            f"blk.{i}.ffn_up.weight": block.mlp.up.weight,
            f"blk.{i}.ffn_down.weight": block.mlp.down.weight,
        }
    weights["output_norm.weight"] = model.final_norm.weight
    if not cfg.tie_embeddings:
        weights["output.weight"] = model.output.weight
    return {name: tensor.detach().float().contiguous() for name, tensor in weights.items()}


GGUF_SAMPLER_SEQUENCE = "temperature;top_k;top_p"
"""Our order (model.sample_next_token): divide by the temperature, then keep the top k, then the top p."""


def export_gguf(trained: TrainedModel, out_dir: Path) -> list[Path]:
    """OUT/model.gguf: llama architecture, float32 weights, the tokenizer and the sampling settings llama.cpp reads
    (general.sampling.*; max_new_tokens has no key there)."""
    try:
        import gguf
    except ImportError:
        raise TricksterError(
            'export --format gguf needs the gguf package: pip install gguf (or pip install -e ".[export]")'
        ) from None
    model, cfg, sampling = trained.model, trained.model.config, trained.sampling
    path = out_dir / GGUF_FILE
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"NanoTrickster {cfg.num_layers}x{cfg.hidden_dim}")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.hidden_dim)
    writer.add_block_count(cfg.num_layers)
    writer.add_feed_forward_length(cfg.mlp_dim)
    writer.add_head_count(cfg.num_heads)
    writer.add_head_count_kv(cfg.num_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_vocab_size(cfg.vocab_size)

    vocabulary = gguf_vocabulary(trained.tokenizer)
    writer.add_tokenizer_model(vocabulary["model"])
    if "pre" in vocabulary:
        writer.add_tokenizer_pre(vocabulary["pre"])
    writer.add_token_list(vocabulary["tokens"])
    writer.add_token_types(vocabulary["token_type"])
    if "merges" in vocabulary:
        writer.add_token_merges(vocabulary["merges"])
    if "bos_token_id" in vocabulary:
        writer.add_bos_token_id(vocabulary["bos_token_id"])
        writer.add_eos_token_id(vocabulary["eos_token_id"])
    writer.add_add_bos_token(vocabulary["add_bos_token"])
    writer.add_add_eos_token(vocabulary["add_eos_token"])

    writer.add_sampling_sequence(GGUF_SAMPLER_SEQUENCE)
    writer.add_sampling_temp(sampling.temperature if sampling.temperature >= GREEDY_BELOW else 0.0)
    writer.add_sampling_top_k(sampling.top_k or 0)  # 0: every token
    writer.add_sampling_top_p(1.0 if sampling.top_p is None else sampling.top_p)
    writer.add_sampling_min_p(0.0)  # llama.cpp's default 0.05 would cut tokens we sample

    for name, tensor in gguf_tensors(model).items():
        writer.add_tensor(name, tensor.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return [path]
