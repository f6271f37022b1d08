"""Host-side preparation of everything the TT strategy hands to ttml/ttnn: numpy and ttnn only, never torch.

Kept free of torch and Lightning so the real-ttnn CI leg (Python 3.12, `pip install ttnn numpy pytest`) can
import it and check these conversions against the real library. ttnn is imported lazily and passed in.

Layouts follow tt-train (tenstorrent/tt-metal `tt-train/sources/examples/nano_gpt/train_nanogpt.py`):
tokens [B, 1, 1, T] UINT32 ROW_MAJOR, targets [B, T] UINT32 ROW_MAJOR, weights (1, 1, out, in) TILE,
norm gains (1, 1, 1, F) TILE, causal mask [1, 1, T, T] with 1 = attend.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from lightning_tt.errors import TTConfigError

TILE_SIZE = 32
"""Edge of a ttnn tile; ttml needs sequence length, widths and head_dim in multiples of it."""

TTNN_VERSION = "0.81.1"
"""The ttnn release this plugin was checked against (its host APIs, in CI); ttml must be built from the same tag."""

PRECISION_TO_DTYPE = {"bf16-true": "BFLOAT16", "bf16-mixed": "BFLOAT16"}
"""Lightning precision string -> ttnn.DataType of parameters and activations on the device. Both compute in
bfloat16 (the v0.81.1-era ttml computes in bfloat16 even on FLOAT32 tensors: autocast_tensor.cpp, get_value()
defaults to HALF). bf16-true updates the bfloat16 weights with ttml's AdamW (bfloat16 moments; optimizers/adamw.cpp
@ 013b2173); bf16-mixed keeps float32 master weights and moments in ttml's AdamWFullPrecision and writes their
bfloat16 copy back after each step (optimizers/adamw_full_precision.cpp @ 013b2173)."""

INSTALL_TTNN = f"pip install ttnn=={TTNN_VERSION} (wheels exist for CPython 3.10 and 3.12 only)"
BUILD_TTML = (
    f"build it from tenstorrent/tt-metal at tag v{TTNN_VERSION}: ./build_metal.sh --build-tt-train, "
    "then pip install --no-build-isolation -e tt-train (see docs/tenstorrent.md, Install)"
)


def import_optional(name: str) -> Any | None:
    """The module, or None when it (or a library it loads) cannot be imported."""
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a broken native extension raises more than ImportError
        return None


def import_problem(name: str) -> str | None:
    """Why `import <name>` (ttnn or ttml) fails, as one line with the fix; None when it imports.

    Each cause gets its own message (tt-metal v0.81.1 era): not installed; ttml's __init__ raising EnvironmentError
    because TT_METAL_HOME is unset and ~/tt-metal is missing (ttml/__init__.py @ 0126f1ba, issue #35389);
    std::bad_cast when _ttml and _ttnn come from different builds (_ttml reuses ttnn's nanobind types).
    """
    try:
        importlib.import_module(name)
        return None
    except ModuleNotFoundError as err:
        if err.name in (name, f"_{name}"):
            return f"{name} is not installed: {INSTALL_TTNN if name == 'ttnn' else BUILD_TTML}"
        reason = err
    except Exception as err:  # noqa: BLE001 - a broken native extension raises anything
        reason = err
    text = " ".join(str(reason).split()) or type(reason).__name__
    if "bad_cast" in text:
        return (
            f"import {name} failed with std::bad_cast: _ttml and _ttnn come from different builds; install ttnn from "
            f"the same tt-metal build as ttml (build_metal.sh --build-tt-train, then use that tree's ttnn), not the "
            f"PyPI wheel next to a separately built ttml"
        )
    if "TT_METAL_HOME" in text:
        return (
            f"import {name} failed: TT_METAL_HOME is not set and ~/tt-metal does not exist: export "
            "TT_METAL_HOME=<the tt-metal checkout ttml was built from>"
        )
    return f"import {name} failed ({type(reason).__name__}: {text[:200]}): {BUILD_TTML}"


def count_devices(ttnn: Any) -> tuple[int, str | None]:
    """Number of Tenstorrent chips ttnn sees, and why it is 0 when ttnn failed to look.

    Without a chip ttnn raises `RuntimeError: TT_FATAL ... num_chips > 0` ("No chips detected") instead of
    returning 0 (verified with ttnn 0.81.1).
    """
    try:
        return int(ttnn.GetNumAvailableDevices()), None
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return 0, first_line


def setup_problem(need_ttml: bool = True, devices_wanted: int = 0) -> str | None:
    """One line naming everything that stops TT training here and how to fix it; None when nothing does.

    Chips are counted only when devices_wanted > 0: counting starts the Metal context, which reads the mesh graph
    descriptor once, so nothing that may run before a mesh's descriptor and fabric are set (the accelerator, which
    Lightning builds first) may count (lightning_tt.fabric)."""
    problems = []
    ttnn_problem = import_problem("ttnn")
    if ttnn_problem:
        problems.append(ttnn_problem)
    if need_ttml:
        ttml_problem = import_problem("ttml")
        if ttml_problem and ttml_problem != ttnn_problem:
            problems.append(ttml_problem)
    if not ttnn_problem and devices_wanted > 0:
        found, reason = count_devices(importlib.import_module("ttnn"))
        if found < devices_wanted:
            detail = f" (ttnn: {reason})" if reason else ""
            problems.append(
                f"{devices_wanted} Tenstorrent chip(s) needed but {found} found{detail}: run on a machine with a TT "
                "card (check with tt-smi)"
            )
    if not problems:
        return None
    return "accelerator 'tt' cannot run here: " + "; ".join(problems) + "; or train with --trainer.accelerator cpu"


def round_up_to_tile(n: int) -> int:
    return -(-n // TILE_SIZE) * TILE_SIZE


def tokens_layout(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """Token ids [B, T] (T a multiple of 32) -> the [B, 1, 1, T] uint32 array ttml's embedding takes."""
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, time], got shape {tokens.shape}")
    if tokens.shape[1] % TILE_SIZE:
        raise ValueError(f"sequence length {tokens.shape[1]} is not a multiple of {TILE_SIZE}: pad it first")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab_size}), got [{tokens.min()}, {tokens.max()}]")
    return np.ascontiguousarray(tokens, dtype=np.uint32).reshape(tokens.shape[0], 1, 1, tokens.shape[1])


def targets_layout(targets: np.ndarray, vocab_size: int) -> np.ndarray:
    """Target ids [B, T] -> [B, T] uint32, as ttml's cross_entropy_loss takes them (it has no ignore index)."""
    if targets.ndim != 2:
        raise ValueError(f"targets must be [batch, time], got shape {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= vocab_size):
        raise ValueError(
            f"targets must be token ids in [0, {vocab_size}); padding (-100) cannot be scored by ttml's "
            "cross_entropy_loss"
        )
    return np.ascontiguousarray(targets, dtype=np.uint32)


def scored_targets(targets: np.ndarray, vocab_size: int, padded_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets [B, T] with -100 marking unscored positions -> (ids [B, T_pad] uint32 with 0 where unscored, weights
    [B, 1, T_pad, 1] float32: 1 where scored). ttml's cross_entropy_loss has no ignore index, so ignored positions
    get a valid id and weight 0; time padding up to T_pad weighs 0 too."""
    if targets.ndim != 2 or targets.shape[1] > padded_length:
        raise ValueError(f"targets must be [batch, time <= {padded_length}], got shape {targets.shape}")
    scored = targets != -100
    if targets[scored].size and (targets[scored].min() < 0 or targets[scored].max() >= vocab_size):
        raise ValueError(f"targets must be token ids in [0, {vocab_size}) or -100 (not scored)")
    ids = np.zeros((targets.shape[0], padded_length), dtype=np.uint32)
    ids[:, : targets.shape[1]] = np.where(scored, targets, 0)
    weights = np.zeros((targets.shape[0], 1, padded_length, 1), dtype=np.float32)
    weights[:, 0, : targets.shape[1], 0] = scored
    return ids, weights


def pad_time(tokens: np.ndarray) -> tuple[np.ndarray, int]:
    """Right-pad [B, T] token ids with 0 to a multiple of 32; returns the padded array and the original T.

    Right padding does not change the causal outputs at positions < T.
    """
    length = tokens.shape[1]
    padded = np.zeros((tokens.shape[0], round_up_to_tile(max(length, 1))), dtype=tokens.dtype)
    padded[:, :length] = tokens
    return padded, length


def causal_mask(seq_len: int) -> np.ndarray:
    """[1, 1, T, T] float32, 1 where a query may attend to a key (ttml's mask convention)."""
    return np.tril(np.ones((1, 1, seq_len, seq_len), dtype=np.float32))


def vocab_pad_bias(vocab_size: int, padded_vocab: int) -> np.ndarray:
    """(1, 1, 1, V_pad) float32: 0 for real tokens, -1e4 for tile padding, so padded logits get ~0 probability."""
    bias = np.zeros((1, 1, 1, padded_vocab), dtype=np.float32)
    bias[..., vocab_size:] = -1.0e4
    return bias


def matrix_to_device_layout(weight: np.ndarray, rows: int | None = None) -> np.ndarray:
    """A torch weight [out, in] -> (1, 1, out, in) float32; rows > out appends zero rows (vocab tile padding)."""
    out_features, in_features = weight.shape
    rows = out_features if rows is None else rows
    laid_out = np.zeros((1, 1, rows, in_features), dtype=np.float32)
    laid_out[0, 0, :out_features] = weight
    return laid_out


def gain_to_device_layout(gain: np.ndarray) -> np.ndarray:
    """An RMSNorm weight [F] -> (1, 1, 1, F) float32."""
    return np.ascontiguousarray(gain, dtype=np.float32).reshape(1, 1, 1, -1)


def from_device_layout(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo matrix/gain_to_device_layout: drop the leading (1, 1), crop tile padding, reshape to the torch shape."""
    array = np.asarray(array, dtype=np.float32)
    array = array.reshape(array.shape[-2:]) if array.ndim == 4 else array
    if len(shape) == 1:
        return np.ascontiguousarray(array.reshape(-1)[: shape[0]])
    return np.ascontiguousarray(array[: shape[0], : shape[1]])


def round_to_bfloat16(array: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), returned as float32.

    This is what ttnn does when a float32 host array becomes a BFLOAT16 tensor (checked against ttnn in CI).
    """
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounding = np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    rounded = ((bits + rounding) & np.uint32(0xFFFF0000)).astype(np.uint32)
    keep_nan = np.isnan(array)
    result = rounded.view(np.float32).copy()
    result[keep_nan] = np.nan
    return result


def shard_rows(batch: np.ndarray, num_shards: int) -> list[np.ndarray]:
    """Split a batch along dim 0 into equal per-device parts, as ttnn's PlacementShard(0) does."""
    if batch.shape[0] % num_shards:
        raise ValueError(
            f"batch of {batch.shape[0]} cannot be split evenly over {num_shards} devices: "
            f"use a data.batch_size that is a multiple of {num_shards}"
        )
    return np.split(batch, num_shards, axis=0)


def pad_rows(array: np.ndarray, multiple: int) -> np.ndarray:
    """Append zero rows until dim 0 is a multiple of `multiple` (filler an evaluation crops off again)."""
    missing = -array.shape[0] % multiple
    if not missing:
        return array
    return np.concatenate([array, np.zeros((missing, *array.shape[1:]), dtype=array.dtype)])


PRECISION_32_REFUSED = (
    "--trainer.precision '32-true' is not supported on Tenstorrent: ttml (v0.81.1) has no float32 compute, every op "
    "reads the bfloat16 copy of a float32 tensor; for float32 master weights use --trainer.precision bf16-mixed "
    "(bfloat16 compute, ttml's AdamWFullPrecision), or bf16-true"
)


def ttnn_dtype(ttnn: Any, precision: str) -> Any:
    """The ttnn.DataType of weights and activations for a Lightning precision string (bf16-mixed, bf16-true)."""
    if precision not in PRECISION_TO_DTYPE:
        if precision == "32-true":
            raise TTConfigError(PRECISION_32_REFUSED)
        raise TTConfigError(
            f"--trainer.precision {precision!r} is not supported on Tenstorrent: use --trainer.precision bf16-mixed "
            "(float32 master weights) or bf16-true"
        )
    return getattr(ttnn.DataType, PRECISION_TO_DTYPE[precision])


def memory_stats(ttnn: Any, device: Any) -> dict[str, float]:
    """DRAM and L1 usage of an open device in bytes, from ttnn.get_memory_view (a MemoryView per buffer type)."""
    stats = {}
    for name in ("DRAM", "L1"):
        view = ttnn.get_memory_view(device, getattr(ttnn.BufferType, name))
        banks = view.num_banks
        stats[f"tt_{name.lower()}_allocated_bytes"] = float(view.total_bytes_allocated_per_bank * banks)
        stats[f"tt_{name.lower()}_free_bytes"] = float(view.total_bytes_free_per_bank * banks)
        stats[f"tt_{name.lower()}_total_bytes"] = float(view.total_bytes_per_bank * banks)
    return stats
