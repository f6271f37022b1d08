"""`export`: a checkpoint as this project's safetensors export, a Hugging Face Llama directory or a GGUF file."""

from __future__ import annotations

from pathlib import Path

from lightning_trickster.export import ExportFormat, export_checkpoint


def export(ckpt_path: Path, out: Path, format: ExportFormat = "trickster") -> None:
    """Write a checkpoint's model for use outside this project's training code.

    trickster (default): OUT/model.safetensors plus OUT/config.json (model shape, tokenizer, sampling settings),
    loadable without Lightning through lightning_trickster.export.load_exported. hf: a Hugging Face Llama directory
    (config.json, model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json) for
    AutoModelForCausalLM, AutoTokenizer and pipeline. gguf: OUT/model.gguf for llama.cpp (needs the gguf package).

    Args:
        ckpt_path: a .ckpt written by fit.
        out: directory to write.
        format: trickster, hf or gguf.
    """
    files = export_checkpoint(ckpt_path, out, format)
    print(f"exported {ckpt_path} ({format}) to {', '.join(str(path) for path in files)}")
