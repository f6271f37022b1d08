"""Opening a mesh of chips the way ttml of tt-metal v0.81.1 needs it: environment, mesh graph descriptor, fabric,
device, data-parallel context. Torch-free (ttml is passed in), so `tt-check` and the ttnn CI leg can use it.

What the v0.81.1-era ttml does (tenstorrent/tt-metal, tt-train/sources/ttml/):
- ttnn_fixed/distributed/tt_metal.cpp @ 1fdc6cf5 (PR #42675): enable_fabric(num_devices) takes the descriptor from
  TT_MESH_GRAPH_DESC_PATH, else from $TT_METAL_RUNTIME_ROOT/tt_metal/fabric/mesh_graph_descriptors/ -- t3k_...
  for 8 chips, single_galaxy_... for 32 -- and throws "TT_METAL_RUNTIME_ROOT is not set" when neither variable is
  set (for any chip count); it infers the 2-D fabric (FABRIC_2D or a torus) from the descriptor itself.
- ttml/_mesh.py @ 03725f26 (_validate_mgd): the descriptor's device_topology dims must equal the mesh shape.
- autograd/auto_context.cpp @ 013f8575: get_device() opens a 1x1 device when none is open, after which
  open_device() throws "open_device was called after the device was created"; close_device() disables the fabric
  but keeps the parallelism context, which cannot be initialised twice. ParallelismContext: on a line mesh
  ([1, N] or [N, 1]) DistributedConfig(enable_ddp=True) puts DDP on the long axis; on a 2-D mesh the number of
  enabled parallelisms must equal the mesh rank, so data parallel over both axes of [2, 4] / [8, 4] is not
  expressible there and gradients are averaged with the explicit-axes synchronize_gradients(params, [0, 1]).
- core/distributed/distributed.cpp @ 01c8afed: synchronize_gradients(params) averages over the context's DDP axis
  and does nothing without a context; synchronize_gradients(params, axes) all-reduces over `axes` and scales by
  1 / (product of their sizes).
"""

from __future__ import annotations

import importlib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning_tt import bridge
from lightning_tt.errors import TTConfigError, TTHardwareError

DESCRIPTOR_DIR = Path("tt_metal") / "fabric" / "mesh_graph_descriptors"
"""Where descriptors live under TT_METAL_RUNTIME_ROOT (a tt-metal checkout, or the ttnn package of the wheel)."""

DEFAULT_DESCRIPTORS = {8: "t3k_mesh_graph_descriptor.textproto", 32: "single_galaxy_mesh_graph_descriptor.textproto"}
"""The descriptor enable_fabric picks by chip count when TT_MESH_GRAPH_DESC_PATH is not set."""

SYSTEMS = {
    # system: (mesh shape, descriptor in the 0.81.1 wheel whose device_topology dims it is, preset)
    "n150": ([1, 1], "n150_mesh_graph_descriptor.textproto", "tt_n150.yaml"),
    "n300": ([1, 2], "n300_mesh_graph_descriptor.textproto", "tt_n300.yaml"),
    "t3k": ([2, 4], "t3k_mesh_graph_descriptor.textproto", "tt_t3k.yaml"),
    "galaxy": ([8, 4], "single_galaxy_mesh_graph_descriptor.textproto", "tt_galaxy.yaml"),
    "p150": ([1, 1], "p150_mesh_graph_descriptor.textproto", "tt_p150.yaml"),
    "p100": ([1, 1], "p100_mesh_graph_descriptor.textproto", "tt_p150.yaml"),
}
"""The systems the presets target (T3K covers LoudBox; p150 covers p100). CI checks each shape against the wheel."""

RUNTIME_ROOT_FIX = (
    "export TT_METAL_RUNTIME_ROOT=<the tt-metal checkout ttml was built from> (it must contain "
    f"{DESCRIPTOR_DIR}/), or TT_MESH_GRAPH_DESC_PATH=<this machine's mesh graph descriptor .textproto>"
)


def check_mesh_shape(mesh_shape: Any) -> list[int]:
    """A mesh shape [rows, cols] of positive ints, or a TTConfigError naming the fix."""
    shape = list(mesh_shape) if isinstance(mesh_shape, (list, tuple)) else None
    if (
        shape is None
        or len(shape) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)
    ):
        raise TTConfigError(
            f"mesh_shape {mesh_shape!r} is not a mesh [rows, cols] of chips: use [1, 2] (N300), [2, 4] "
            "(T3K/LoudBox) or [8, 4] (Galaxy), as the machine's mesh graph descriptor says"
        )
    return shape


def is_line(mesh_shape: list[int]) -> bool:
    """One row or one column: ttml's ParallelismContext can put DDP on it (auto_context.cpp)."""
    return min(mesh_shape) == 1


def descriptor_dims(text: str) -> list[int] | None:
    """The device_topology dims of a mesh graph descriptor (textproto), as ttml's _validate_mgd reads them."""
    match = re.search(r"device_topology\s*\{[^}]*dims\s*:\s*\[\s*([\d\s,]+)\]", text)
    if not match:
        return None
    return [int(d) for d in match[1].replace(",", " ").split()]


def descriptor_path(num_devices: int, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The descriptor enable_fabric(num_devices) will use, or None when it uses none (then FABRIC_2D).
    Raises TTHardwareError where enable_fabric would throw: neither variable set."""
    given = environ.get("TT_MESH_GRAPH_DESC_PATH")
    if given:
        return Path(given)
    root = environ.get("TT_METAL_RUNTIME_ROOT")
    if not root:
        raise TTHardwareError(
            f"a mesh of {num_devices} chips needs ttml's enable_fabric, which finds the mesh graph descriptor through "
            f"TT_METAL_RUNTIME_ROOT or TT_MESH_GRAPH_DESC_PATH, and neither is set: {RUNTIME_ROOT_FIX}"
        )
    name = DEFAULT_DESCRIPTORS.get(num_devices)
    return Path(root) / DESCRIPTOR_DIR / name if name else None


def check_fabric_environment(mesh_shape: list[int], environ: Mapping[str, str] = os.environ) -> Path | None:
    """Everything enable_fabric and the mesh need from the environment, checked before any chip opens:
    the variables, the descriptor file, and that its shape is the requested mesh. Returns the descriptor used."""
    chips = math.prod(mesh_shape)
    path = descriptor_path(chips, environ)
    if path is None:
        return None
    if not path.is_file():
        variable = "TT_MESH_GRAPH_DESC_PATH" if environ.get("TT_MESH_GRAPH_DESC_PATH") else "TT_METAL_RUNTIME_ROOT"
        raise TTHardwareError(f"the mesh graph descriptor {path} (from {variable}) does not exist: {RUNTIME_ROOT_FIX}")
    dims = descriptor_dims(path.read_text(encoding="utf-8", errors="replace"))
    if dims is not None and dims != list(mesh_shape):
        raise TTConfigError(
            f"mesh_shape {list(mesh_shape)} does not match this machine's mesh graph descriptor {path.name}, which is "
            f"{dims}: set the strategy's mesh_shape to {dims} (presets: tt_t3k.yaml [2, 4], tt_galaxy.yaml [8, 4])"
        )
    return path


ALREADY_OPEN_FIX = (
    "a ttml device is already open in this process (ttml's AutoContext.get_device() opens a 1x1 device when none "
    "is open): call ttml.autograd.AutoContext.get_instance().close_device() before training, or start a new process"
)


def open_mesh(ttml: Any, mesh_shape: list[int]) -> Any:
    """Enable the fabric (several chips), open the mesh, set up ttml's data-parallel context on a line mesh; returns
    the ttnn MeshDevice. Never calls get_device() before open_device (that would open a 1x1 device)."""
    chips = math.prod(mesh_shape)
    found, reason = bridge.count_devices(importlib.import_module("ttnn"))
    if found < chips:
        detail = f" (ttnn: {reason})" if reason else ""
        raise TTHardwareError(
            f"mesh {list(mesh_shape)} needs {chips} Tenstorrent chip(s) but ttnn sees {found}{detail}: run on a "
            "machine with that many chips (check with tt-smi) or set a smaller mesh_shape and --trainer.devices"
        )
    if chips > 1:
        check_fabric_environment(mesh_shape)
        ttml.core.distributed.enable_fabric(chips)  # must precede open_device
    context = ttml.autograd.AutoContext.get_instance()
    try:
        context.open_device(list(mesh_shape))
    except RuntimeError as err:
        if "after the device was created" in str(err):
            raise TTHardwareError(ALREADY_OPEN_FIX) from None
        raise
    if chips > 1 and is_line(mesh_shape):
        _use_library_data_parallelism(ttml, context, chips)
    return context.get_device()


def _use_library_data_parallelism(ttml: Any, context: Any, chips: int) -> None:
    """ttml's own DDP set-up, so the one-argument synchronize_gradients averages over the mesh."""
    if not context.is_parallelism_context_initialized():
        context.initialize_parallelism_context(ttml.autograd.DistributedConfig(enable_ddp=True))
        return
    # It outlives close_device and cannot be replaced: reuse it only if it is the same data parallelism.
    if context.get_parallelism_context().get_ddp_size() != chips:
        raise TTHardwareError(
            f"ttml's parallelism context of this process was set up for another mesh and cannot be replaced "
            f"(ttml has no API for it), so data parallel over {chips} chips cannot start: run in a new process"
        )


def synchronize_gradients(ttml: Any, parameters: Any, mesh_shape: list[int]) -> None:
    """Average each gradient over every chip: the library's DDP axis on a line mesh, both axes on a 2-D mesh."""
    if math.prod(mesh_shape) == 1:
        return
    distributed = ttml.core.distributed
    if is_line(mesh_shape):
        distributed.synchronize_gradients(parameters)
    else:
        distributed.synchronize_gradients(parameters, [0, 1])
