"""Names from before the settings were grouped (2026-12), still read: option names on the command line and in config
files (a run's saved config.yaml among them), flat checkpoint hyper-parameters, and the data module's old class name
as a checkpoint key. Each old option name is read with one deprecation line."""

from __future__ import annotations

import sys
from typing import Any

OPTIMIZATION_KEYS = {
    "learning_rate": "learning_rate",
    "muon_learning_rate": "muon_learning_rate",
    "optimizer": "optimizer",
    "weight_decay": "weight_decay",
    "betas": "betas",
    "warmup_steps": "warmup_steps",
    "min_lr_ratio": "min_lr_ratio",
    "fused_optimizer": "fused",
}
"""Flat model hyper-parameter -> field of the optimization group."""

SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_k", "top_p")
"""Flat model hyper-parameters that are now the sampling group's fields."""

RENAMED_OPTIONS = {
    **{f"model.{old}": f"model.optimization.{new}" for old, new in OPTIMIZATION_KEYS.items()},
    **{f"model.{name}": f"sampling.{name}" for name in SAMPLING_KEYS},
    "sampling.prompts": "samples.prompts",
    "sampling.every_n_steps": "samples.every_n_steps",
}
"""Old option name -> new one. (fit's --sampling.max_new_tokens keeps its name: it is the sampling group's now.)"""

DROPPED_OPTIONS = ("weights_only",)
"""Keys an old run's config.yaml holds that no command takes any more (Lightning's fit argument, always null)."""

LEGACY_DATAMODULE_KEY = "ShakespeareDataModule"
"""Where checkpoints written before the rename keep the data module's state (the tokenizer)."""

_warned: set[str] = set()


def warn_renamed(renamed: list[tuple[str, str]], where: str) -> None:
    """One deprecation line for everything one command line or one config file names the old way (once per process:
    a command with a checkpoint reads its config files twice)."""
    if not renamed or where in _warned:
        return
    _warned.add(where)
    moves = ", ".join(f"{old} -> {new}" for old, new in renamed[:3])
    more = f" and {len(renamed) - 3} more" if len(renamed) > 3 else ""
    sys.stderr.write(
        f"warning: {where} uses deprecated option names ({moves}{more}), read as the new ones; --print_config "
        "shows the configuration with today's names\n"
    )


def translate_arguments(args: list[str]) -> list[str]:
    """Command-line arguments with old option names replaced by the new ones (--model.temperature 0.5 and
    --model.temperature=0.5 alike)."""
    translated, renamed = [], []
    for arg in args:
        option, equals, value = arg.partition("=")
        name = option.removeprefix("--")
        if option.startswith("--") and name in RENAMED_OPTIONS:
            renamed.append((option, f"--{RENAMED_OPTIONS[name]}"))
            arg = f"--{RENAMED_OPTIONS[name]}{equals}{value}"
        translated.append(arg)
    warn_renamed(renamed, "the command line")
    return translated


def translate_config(config: dict[str, Any], source: str) -> bool:
    """Move old keys of a parsed YAML config (a mapping of groups) to their new places, in place. True if any moved.
    Sampling's old fit-only keys move first, so that `sampling` can then receive the model's sampling values; where
    both an old run's model.max_new_tokens and sampling.max_new_tokens are set, the sample length wins."""
    changed, renamed = False, []
    for key in DROPPED_OPTIONS:
        if key in config and config[key] is None:
            del config[key]
            changed = True
    for old, new in sorted(RENAMED_OPTIONS.items(), key=lambda item: not item[0].startswith("sampling.")):
        old_group, old_name = old.split(".", 1)
        group = config.get(old_group)
        if not isinstance(group, dict) or old_name not in group:
            continue
        value = group.pop(old_name)
        renamed.append((old, new))
        *parents, leaf = new.split(".")
        target = config
        for parent in parents:
            target = target.setdefault(parent, {})
        target.setdefault(leaf, value)
        changed = True
    warn_renamed(renamed, f"config {source}")
    return changed


def upgrade_hyperparameters(hparams: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's model hyper-parameters in the grouped layout (optimization and sampling as dicts)."""
    if not any(key in hparams for key in (*OPTIMIZATION_KEYS, *SAMPLING_KEYS)):
        return hparams
    upgraded = {k: v for k, v in hparams.items() if k not in OPTIMIZATION_KEYS and k not in SAMPLING_KEYS}
    upgraded["optimization"] = {new: hparams[old] for old, new in OPTIMIZATION_KEYS.items() if old in hparams}
    upgraded["sampling"] = {name: hparams[name] for name in SAMPLING_KEYS if name in hparams}
    return upgraded


def upgrade_checkpoint(checkpoint: dict[str, Any], datamodule_key: str) -> bool:
    """Bring a loaded checkpoint written before the rename to today's layout, in place. True if anything changed."""
    changed = False
    if LEGACY_DATAMODULE_KEY in checkpoint and datamodule_key not in checkpoint:
        checkpoint[datamodule_key] = checkpoint.pop(LEGACY_DATAMODULE_KEY)
        changed = True
    hparams = checkpoint.get("hyper_parameters")
    if isinstance(hparams, dict):
        upgraded = upgrade_hyperparameters(hparams)
        if upgraded is not hparams:
            checkpoint["hyper_parameters"] = upgraded
            changed = True
    return changed
