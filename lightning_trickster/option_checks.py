"""Checks of option values that Lightning would only reject with a traceback, or not at all: run after parsing,
before anything is built (a corpus download can come first)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning.pytorch.accelerators import AcceleratorRegistry

from lightning_trickster.errors import HardwareError, InvalidConfigError
from lightning_trickster.reliability import inductor_cpp_compilers, working_cpp_compiler


def check_accelerator(name: Any) -> None:
    """Before the data module is built (a corpus download can come first): the requested accelerator must be usable
    here. A registered accelerator that cannot start raises its own error naming the missing piece."""
    if not isinstance(name, str) or name == "auto":
        return
    candidates = ["cuda", "mps"] if name == "gpu" else [name]
    registered = [candidate for candidate in candidates if candidate in AcceleratorRegistry]
    if registered and not any(AcceleratorRegistry.get(candidate).is_available() for candidate in registered):
        raise HardwareError(f"accelerator {name!r} is not available on this machine: use --trainer.accelerator cpu")


def check_compiler(compile_model: Any, accelerator: Any) -> None:
    """--model.compile true on the CPU: inductor builds C++ kernels there, and without a working compiler it would
    fail with a traceback at the first step. (With compile left to its default the module decides, and falls back.)"""
    on_cpu = accelerator == "cpu" or (
        accelerator in (None, "auto") and not torch.cuda.is_available() and not torch.backends.mps.is_available()
    )
    if compile_model is True and on_cpu and working_cpp_compiler() is None:
        raise HardwareError(
            f"--model.compile true needs a working C++ compiler on the CPU (torch.compile builds C++ kernels), and "
            f"none works here (tried {', '.join(inductor_cpp_compilers()) or 'none'}): install one (e.g. g++) or "
            "point CXX at it, or pass --model.compile false"
        )


def is_zero_duration(value: Any) -> bool:
    """max_time "00:00:00:00" (or a mapping of zeros): a fit that would stop before its first step. Anything else,
    an unparsable duration included, is left to Lightning's own check."""
    parts = value.split(":") if isinstance(value, str) else list(value.values()) if isinstance(value, dict) else None
    try:
        return parts is not None and all(float(part) == 0 for part in parts)
    except (TypeError, ValueError):
        return False


TRAINER_RULES = {
    "accumulate_grad_batches": (lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
    "gradient_clip_val": (lambda v: v is None or v >= 0, "a number >= 0 (0 or null: no clipping)"),
    "max_steps": (lambda v: v == -1 or v >= 1, "a whole number >= 1"),
    "log_every_n_steps": (lambda v: v is None or v >= 1, "a whole number >= 1"),
    "val_check_interval": (lambda v: v is None or v > 0, "a number > 0 (batches, or a fraction of an epoch)"),
    # 0 would train nothing and still report the run as done.
    "limit_train_batches": (lambda v: v is None or v > 0, "a number > 0 (batches, or a fraction of an epoch)"),
    "max_time": (lambda v: not is_zero_duration(v), "a duration above zero, DD:HH:MM:SS (e.g. 00:01:00:00)"),
    "num_sanity_val_steps": (lambda v: v is None or v >= -1, "a whole number >= 0, or -1 for the whole split"),
    "num_nodes": (lambda v: v >= 1, "a whole number >= 1"),
    # The model keeps its rotary tables in float32, which attention cannot mix with float64 queries.
    "precision": (lambda v: str(v) not in ("64", "64-true", "double"), "32-true (the default), bf16-mixed or 16-mixed"),
    # The checkpoint settings (--checkpoint.*) always add one: Lightning would refuse the pair.
    "enable_checkpointing": (lambda v: v is not False, "true: a fit always writes last.ckpt, to resume from"),
    "devices": (
        lambda v: v in ("auto", -1, "-1") or (isinstance(v, list) and v != []) or int(str(v)) >= 1,
        "a number of devices >= 1, a list of device ids, or auto",
    ),
}
"""Trainer options whose impossible values Lightning would only reject with a traceback (or not at all)."""


def check_trainer_options(trainer: Any) -> None:
    for name, (valid, requirement) in TRAINER_RULES.items():
        value = trainer.get(name)
        try:
            ok = valid(value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidConfigError(f"--trainer.{name} {value!r} is not possible: use {requirement}")
    check_whole_steps_between_validations(trainer.get("val_check_interval"), trainer.get("accumulate_grad_batches"))


def check_whole_steps_between_validations(interval: Any, accumulate: Any) -> None:
    """Lightning counts an integer val_check_interval in micro-batches: one that is not a multiple of the accumulation
    would validate, and checkpoint, half way through an optimizer step, and a resume from there would not continue the
    run exactly (its accumulated gradient is not saved)."""
    if (
        isinstance(interval, bool)
        or not isinstance(interval, int)
        or not isinstance(accumulate, int)
        or accumulate <= 1
    ):
        return
    if interval % accumulate:
        below = interval - interval % accumulate
        choices = f"{below} or {below + accumulate}" if below else f"{accumulate}"
        raise InvalidConfigError(
            f"--trainer.val_check_interval {interval} is not a multiple of --trainer.accumulate_grad_batches "
            f"{accumulate}: it counts micro-batches, so its checkpoints would fall inside an optimizer step; use "
            f"{choices}"
        )


def check_context_length(max_seq_len: Any) -> None:
    """--model.max_seq_len also sets the training windows' length (data.block_size, linked to it): the data module,
    built first, would otherwise name an option nobody typed."""
    if isinstance(max_seq_len, int) and not isinstance(max_seq_len, bool) and max_seq_len <= 0:
        raise InvalidConfigError(
            f"--model.max_seq_len {max_seq_len} is not possible: use a whole number >= 1 (the model's context length, "
            "which is also the length of the training windows)"
        )


PATH_OPTIONS = {
    "ckpt_path", "ckpt_dir", "path", "cache_dir", "prepared_dir", "tokenizer_path", "prompts_file", "default_root_dir",
    "dirpath", "out", "output",
}  # fmt: skip
"""Options that name a file or directory: an empty string there would mean the current directory (a corpus, an
output folder) or no checkpoint at all, never what was meant."""


def check_no_empty_paths(config: Any, command_line: list[str], prog: str) -> None:
    """In a config file (strings) or on the command line (where a Path option has already become '.')."""
    given = [key for key, value in config.items() if isinstance(value, str) and value == ""]
    for i, arg in enumerate(command_line):
        option, equals, value = arg.partition("=")
        if option.startswith("--") and (value == "" if equals else command_line[i + 1 : i + 2] == [""]):
            given.append(option.removeprefix("--"))
    for key in given:
        if key.rsplit(".", 1)[-1] in PATH_OPTIONS:
            raise InvalidConfigError(
                f"--{key} is an empty string: pass a path, or leave the option out ({prog} --help)"
            )


LOGGED_METRICS = ("val/loss", "val/perplexity")
"""What a fit's validation logs (NanoTricksterModule): the values --checkpoint.monitor can watch when checkpoints
are saved, at the end of validation."""


def check_monitored_metric(monitor: Any) -> None:
    """A metric the fit never logs would stop it with a traceback at the first checkpoint, after training."""
    if monitor is not None and monitor not in LOGGED_METRICS:
        raise InvalidConfigError(
            f"--checkpoint.monitor {monitor!r} is not a metric this model logs: choose one of "
            f"{', '.join(LOGGED_METRICS)} (val/loss is the default), or null to keep the newest checkpoints"
        )


SEED_RANGE = (int(np.iinfo(np.uint32).min), int(np.iinfo(np.uint32).max))
"""What seed_everything accepts (numpy's seeds)."""


def check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        return  # true: a random seed; false: none
    low, high = SEED_RANGE
    if not low <= seed <= high:
        raise InvalidConfigError(
            f"--seed_everything: {seed} is not in bounds, numpy accepts from {low} to {high}: pick a seed in that range"
        )


def typed_options(command_line: list[str]) -> set[str]:
    """The options the command line itself sets (model.hidden_dim for --model.hidden_dim 8 or =8), as opposed to
    values from config files and defaults."""
    return {arg[2:].partition("=")[0] for arg in command_line if arg.startswith("--") and len(arg) > 2}
