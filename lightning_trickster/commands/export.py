"""`export`: a checkpoint as model.safetensors + config.json, loadable with plain PyTorch."""

from __future__ import annotations

from pathlib import Path

from lightning_trickster.export import export_checkpoint


def export(ckpt_path: Path, out: Path) -> None:
    """Write a checkpoint's model as OUT/model.safetensors plus OUT/config.json (model shape, tokenizer, sampling
    settings), loadable without Lightning through lightning_trickster.export.load_exported.

    Args:
        ckpt_path: a .ckpt written by fit.
        out: directory to write.
    """
    export_checkpoint(ckpt_path, out)
    print(f"exported {ckpt_path} to {out}/model.safetensors and {out}/config.json")
