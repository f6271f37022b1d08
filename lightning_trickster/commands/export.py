"""`export`: a checkpoint as this project's safetensors export, a Hugging Face Llama directory or a GGUF file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning_trickster.errors import TricksterError
from lightning_trickster.export import FORMAT, GGUF_FILE, ExportFormat, export_checkpoint
from lightning_trickster.reliability import write_failure, write_file_atomically

FILES: dict[str, tuple[str, ...]] = {
    "trickster": ("model.safetensors", "config.json"),
    "hf": ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"),
    "gguf": (GGUF_FILE,),
}
"""The files each format writes into --out."""

MANIFEST = ".export.json"
"""What earlier exports wrote into a directory, by format: {"exports": {"hf": [file names]}}."""


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
    earlier = earlier_exports(out)
    check_nothing_else_is_replaced(out, format, earlier)
    files = export_checkpoint(ckpt_path, out, format)
    record = {"exports": {**earlier, format: [path.name for path in files]}}
    try:
        write_file_atomically(out / MANIFEST, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    except OSError as err:
        raise write_failure(out / MANIFEST, err, out, "run export again (the exported files are in place)") from None
    print(f"exported {ckpt_path} ({format}) to {', '.join(str(path) for path in files)}")


def earlier_exports(out: Path) -> dict[str, list[str]]:
    """The files earlier exports wrote into out, by format (from its manifest; a trickster export from before the
    manifest is recognised by its config.json)."""
    exports: dict[str, list[str]] = {}
    try:
        recorded = json.loads((out / MANIFEST).read_text(encoding="utf-8"))["exports"]
        exports = {str(name): [str(file) for file in files] for name, files in recorded.items() if name in FILES}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    if "trickster" not in exports and _is_trickster_config(out / "config.json"):
        exports["trickster"] = list(FILES["trickster"])
    return exports


def _is_trickster_config(path: Path) -> bool:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def check_nothing_else_is_replaced(out: Path, format: str, earlier: dict[str, list[str]]) -> None:
    """The files this export writes may replace those of an earlier export of the same format, nothing else: not an
    export of another format (the directory would then hold half of each: a Hugging Face config.json beside this
    project's weights), nor a file of the user's."""
    if not out.is_dir():
        return
    ours = set(earlier.get(format, ()))
    clashing = [name for name in FILES[format] if (out / name).exists() and name not in ours]
    if not clashing:
        return
    others = [name for name, files in earlier.items() if name != format and set(files) & set(clashing)]
    owner = f"an earlier --format {others[0]} export" if others else f"something other than an earlier {format} export"
    raise TricksterError(
        f"--out {out} already holds {', '.join(clashing)}, written by {owner}, which this export would replace: pass "
        "another --out (or move those files away first)"
    )
