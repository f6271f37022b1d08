"""`export`: a checkpoint as this project's safetensors export, a Hugging Face Llama directory or a GGUF file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning_trickster.errors import TricksterError
from lightning_trickster.export import FORMAT, GGUF_FILE, ExportFormat, export_checkpoint

FILES: dict[str, tuple[str, ...]] = {
    "trickster": ("model.safetensors", "config.json"),
    "hf": ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"),
    "gguf": (GGUF_FILE,),
}
"""The files each format writes into --out."""


def export(ckpt_path: Path, out: Path, format: ExportFormat = "trickster") -> None:
    """Write a checkpoint's model for use outside this project's training code.

    trickster (default): OUT/model.safetensors plus OUT/config.json (model shape, tokenizer, sampling settings),
    loadable without Lightning through lightning_trickster.export.load_exported. hf: a Hugging Face Llama directory
    (config.json, model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json) for
    AutoModelForCausalLM, AutoTokenizer and pipeline. gguf: OUT/model.gguf for llama.cpp (needs the gguf package).
    An export replaces the files of an earlier export of the same format in OUT, and no other file.

    Args:
        ckpt_path: a .ckpt written by fit.
        out: directory to write.
        format: trickster, hf or gguf.
    """
    check_nothing_else_is_replaced(out, format)
    files = export_checkpoint(ckpt_path, out, format)
    print(f"exported {ckpt_path} ({format}) to {', '.join(str(path) for path in files)}")


def export_format_in(out: Path) -> str | None:
    """The format of the export a directory holds, as its files tell: this project's config.json names its format, a
    Hugging Face Llama's says model_type llama, a GGUF export is its model.gguf alone."""
    try:
        config: Any = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    if isinstance(config, dict) and config.get("format") == FORMAT:
        return "trickster"
    if isinstance(config, dict) and config.get("model_type") == "llama":
        return "hf"
    if config is None and (out / GGUF_FILE).is_file():
        return "gguf"
    return None


def check_nothing_else_is_replaced(out: Path, format: str) -> None:
    """The files this export writes may replace those of an earlier export of the same format, nothing else: not an
    export of another format (the directory would then hold half of each: this project's config.json beside a
    Hugging Face tokenizer), nor a file of the user's."""
    if not out.is_dir():
        return
    clashing = [name for name in FILES[format] if (out / name).exists()]
    earlier = export_format_in(out)
    if not clashing or earlier == format or (format == "gguf" and clashing == [GGUF_FILE]):
        return
    owner = f"an earlier --format {earlier} export" if earlier else f"something other than a {format} export"
    raise TricksterError(
        f"--out {out} already holds {', '.join(clashing)}, written by {owner}, which this export would replace: pass "
        "another --out (or move those files away first)"
    )
