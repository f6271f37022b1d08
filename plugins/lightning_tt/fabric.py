"""Opening a mesh of chips the way ttml of tt-metal v0.81.1 needs it: mesh graph descriptor first, then the fabric,
then counting and opening the chips, then the data-parallel context. Torch-free (ttml is passed in), so `tt-check`
and the ttnn CI leg can use it.

What the v0.81.1-era ttml does (tenstorrent/tt-metal, tt-train/sources/ttml/):
- ttnn_fixed/distributed/tt_metal.cpp @ 1fdc6cf5 (PR #42675): enable_fabric(num_devices) takes the descriptor from
  TT_MESH_GRAPH_DESC_PATH, else from $TT_METAL_RUNTIME_ROOT/tt_metal/fabric/mesh_graph_descriptors/ -- t3k_...
  for 8 chips, single_galaxy_... for 32 -- and throws "TT_METAL_RUNTIME_ROOT is not set" when neither variable is
  set (for any chip count); it infers the 2-D fabric (FABRIC_2D or a torus) from the descriptor's dim_types.
  nanobind/nb_core.cpp binds it without nb::arg, so Python calls it positionally (lightning_tt.bindings).
- The descriptor is read ONCE, when the Metal context starts, and counting chips (GetNumAvailableDevices) starts
  it: a tt-train T3K test (tests/.../sharded_cross_entropy_loss_perf_t3k, (c) 2026) warns that counting before
  enable_fabric locks the process to the auto-discovered topology and deadlocks collectives on a 1x8 T3K. So here
  the descriptor is exported (and the fabric enabled) before anything counts or opens a chip.
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

Which descriptor (resolve_mesh): the machine's TT_MESH_GRAPH_DESC_PATH when the user set it; else the one the
strategy names (a file name looked up in the installed descriptor directories, or a path); else, for a line mesh
of 8 or 32 chips, tt-metal's line descriptor (t3k_1x8 / galaxy_1x32 in a checkout's
tests/tt_metal/tt_fabric/custom_mesh_descriptors/, as tt-train's DDP examples use); else the one enable_fabric
picks by chip count (8: t3k, 32: single_galaxy). The installed directories are those of $TT_METAL_RUNTIME_ROOT,
$TT_METAL_HOME and the ttnn package (a wheel install ships its descriptors there).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_tt import bridge
from lightning_tt.errors import TTConfigError, TTHardwareError

DESCRIPTOR_VARIABLE = "TT_MESH_GRAPH_DESC_PATH"
DESCRIPTOR_DIR = Path("tt_metal") / "fabric" / "mesh_graph_descriptors"
"""Where descriptors live under TT_METAL_RUNTIME_ROOT (a tt-metal checkout, or the ttnn package of the wheel)."""
CUSTOM_DESCRIPTOR_DIR = Path("tests") / "tt_metal" / "tt_fabric" / "custom_mesh_descriptors"
"""Where a tt-metal checkout keeps the line descriptors (not shipped in the 0.81.1 wheel)."""

DEFAULT_DESCRIPTORS = {8: "t3k_mesh_graph_descriptor.textproto", 32: "single_galaxy_mesh_graph_descriptor.textproto"}
"""The descriptor enable_fabric picks by chip count when TT_MESH_GRAPH_DESC_PATH is not set."""
LINE_DESCRIPTORS = {8: "t3k_1x8_mesh_graph_descriptor.textproto", 32: "galaxy_1x32_mesh_graph_descriptor.textproto"}
"""tt-metal's descriptors of a [1, 8] T3K and a [1, 32] Galaxy line (tests/tt_metal/tt_fabric/custom_mesh_descriptors
in a checkout), which tt-train's DDP examples point TT_MESH_GRAPH_DESC_PATH at."""

SYSTEMS = {
    # system: (mesh shape, descriptor in the 0.81.1 wheel whose device_topology dims it is, preset)
    "n150": ([1, 1], "n150_mesh_graph_descriptor.textproto", "tt_n150.yaml"),
    "n300": ([1, 2], "n300_mesh_graph_descriptor.textproto", "tt_n300.yaml"),
    "t3k": ([2, 4], "t3k_mesh_graph_descriptor.textproto", "tt_t3k.yaml"),
    "galaxy": ([8, 4], "single_galaxy_mesh_graph_descriptor.textproto", "tt_galaxy.yaml"),
    "p150": ([1, 1], "p150_mesh_graph_descriptor.textproto", "tt_p150.yaml"),
    "p100": ([1, 1], "p100_mesh_graph_descriptor.textproto", "tt_p150.yaml"),
}
"""The systems the presets target (T3K covers LoudBox; p150 covers p100). The mesh presets name their descriptor
and take the shape from it; CI checks each shape against the wheel."""

RUNTIME_ROOT_FIX = (
    "export TT_METAL_RUNTIME_ROOT=<the tt-metal checkout ttml was built from> (it must contain "
    f"{DESCRIPTOR_DIR}/), or TT_MESH_GRAPH_DESC_PATH=<this machine's mesh graph descriptor .textproto>"
)

_exported: dict[str, str] = {}
"""TT_MESH_GRAPH_DESC_PATH values this process exported (so a later resolution tells them from the user's)."""


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


def ttnn_package_dir() -> Path | None:
    """The installed ttnn package's directory, found without importing ttnn (a wheel install is its own runtime
    root: it ships tt_metal/fabric/mesh_graph_descriptors/)."""
    try:
        spec = importlib.util.find_spec("ttnn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


def descriptor_dirs(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The directories a descriptor named by file name is looked up in, in order."""
    dirs = []
    for variable in ("TT_METAL_RUNTIME_ROOT", "TT_METAL_HOME"):
        root = environ.get(variable)
        if root:
            dirs += [Path(root) / DESCRIPTOR_DIR, Path(root) / CUSTOM_DESCRIPTOR_DIR]
    package = ttnn_package_dir()
    if package is not None:
        dirs.append(package / DESCRIPTOR_DIR)
    return list(dict.fromkeys(dirs))


def find_descriptor(name: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """A descriptor given as a path, or as a file name in one of descriptor_dirs(); None if not found."""
    given = Path(name).expanduser()
    if given.is_file():
        return given
    if given.name != name:  # a path that does not exist
        return None
    return next((d / name for d in descriptor_dirs(environ) if (d / name).is_file()), None)


@dataclass(frozen=True)
class MeshPlan:
    shape: list[int]
    descriptor: Path | None
    """The mesh graph descriptor to export as TT_MESH_GRAPH_DESC_PATH before the fabric; None: none is used
    (one chip, or enable_fabric's own choice)."""
    source: str = ""
    """Where the descriptor came from, for messages."""


def _user_descriptor(environ: Mapping[str, str]) -> str | None:
    value = environ.get(DESCRIPTOR_VARIABLE)
    return value if value and _exported.get(DESCRIPTOR_VARIABLE) != value else None


def resolve_mesh(
    mesh_shape: list[int] | None = None,
    chips: int | None = None,
    descriptor: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> MeshPlan:
    """The mesh to open and the descriptor that describes it (module docstring: which descriptor), checked before
    any chip is touched. Raises TTConfigError when the mesh and the descriptor disagree (naming both shapes) and
    TTHardwareError when a named descriptor cannot be found."""
    shape = check_mesh_shape(mesh_shape) if mesh_shape is not None else None
    chips = math.prod(shape) if shape is not None else chips
    path, source = None, ""
    user = _user_descriptor(environ)
    if user:
        path, source = Path(user), DESCRIPTOR_VARIABLE
        if not path.is_file():
            raise TTHardwareError(f"the mesh graph descriptor {path} (from {DESCRIPTOR_VARIABLE}) does not exist: "
                                  f"{RUNTIME_ROOT_FIX}")  # fmt: skip
        if descriptor and find_descriptor(descriptor, environ) not in (None, path):
            raise TTConfigError(
                f"{DESCRIPTOR_VARIABLE} names {path} but the strategy's mesh_graph_descriptor is {descriptor}: unset "
                f"one of them (the environment variable is what ttml's enable_fabric would read)"
            )
    elif descriptor:
        path, source = find_descriptor(descriptor, environ), "the strategy's mesh_graph_descriptor"
        if path is None:
            where = ", ".join(str(d) for d in descriptor_dirs(environ)) or "no directory (nothing installed)"
            raise TTHardwareError(
                f"mesh_graph_descriptor {descriptor} is neither a file nor in the installed descriptor directories "
                f"({where}): give its path, or export TT_METAL_HOME=<the tt-metal checkout ttml was built from>"
            )
    elif shape is not None and is_line(shape) and chips in LINE_DESCRIPTORS:
        name = LINE_DESCRIPTORS[chips]
        path, source = find_descriptor(name, environ), "the line mesh"
        if path is None:
            raise TTHardwareError(
                f"a line mesh {shape} needs tt-metal's {name} ({CUSTOM_DESCRIPTOR_DIR}/ in a tt-metal checkout; the "
                f"wheel does not ship it): export TT_METAL_HOME=<that checkout>, or TT_MESH_GRAPH_DESC_PATH=<a "
                f"descriptor of shape {shape}>"
            )
    elif chips in DEFAULT_DESCRIPTORS:
        name = DEFAULT_DESCRIPTORS[chips]
        path, source = find_descriptor(name, environ), "the installed descriptor for that many chips"
        if path is None:
            raise TTHardwareError(
                f"a mesh of {chips} chips needs ttml's enable_fabric, which finds the mesh graph descriptor "
                f"{name} through TT_METAL_RUNTIME_ROOT or TT_MESH_GRAPH_DESC_PATH, and neither names one: "
                f"{RUNTIME_ROOT_FIX}"
            )
    if path is None:
        return MeshPlan(shape or [1, chips or 1], None)
    dims = descriptor_dims(path.read_text(encoding="utf-8", errors="replace"))
    if dims is None or len(dims) != 2:
        raise TTHardwareError(f"the mesh graph descriptor {path} has no 2-D device_topology dims: {RUNTIME_ROOT_FIX}")
    if shape is not None and dims != shape:
        raise TTConfigError(
            f"mesh_shape {shape} does not match this machine's mesh graph descriptor {path.name}, which is {dims} "
            f"(from {source}): set the strategy's mesh_shape to {dims} or leave it unset; for a line mesh [1, "
            f"{math.prod(dims)}] name a descriptor of that shape (docs/tenstorrent.md, Meshes)"
        )
    if chips is not None and math.prod(dims) != chips:
        raise TTConfigError(
            f"the mesh graph descriptor {path.name} (from {source}) describes {math.prod(dims)} chips {dims}, not "
            f"{chips}: set --trainer.devices {math.prod(dims)}, or name the descriptor of a {chips}-chip mesh"
        )
    return MeshPlan(dims, path, source)


def export_descriptor(plan: MeshPlan, environ: MutableMapping[str, str] = os.environ) -> None:
    """Set TT_MESH_GRAPH_DESC_PATH to the plan's descriptor (what ttml's enable_fabric and the Metal context read)."""
    if plan.descriptor is None:
        return
    environ[DESCRIPTOR_VARIABLE] = str(plan.descriptor)
    if environ is os.environ:
        _exported[DESCRIPTOR_VARIABLE] = str(plan.descriptor)


def check_fabric_environment(plan: MeshPlan, environ: Mapping[str, str] = os.environ) -> None:
    """What enable_fabric needs beyond the descriptor: with none to export, TT_METAL_RUNTIME_ROOT (its
    get_mgd_path throws "TT_METAL_RUNTIME_ROOT is not set" without it, for any chip count)."""
    if math.prod(plan.shape) > 1 and plan.descriptor is None and not environ.get("TT_METAL_RUNTIME_ROOT"):
        raise TTHardwareError(
            f"a mesh of {math.prod(plan.shape)} chips needs ttml's enable_fabric, which finds the mesh graph "
            f"descriptor through TT_METAL_RUNTIME_ROOT or TT_MESH_GRAPH_DESC_PATH, and neither is set: "
            f"{RUNTIME_ROOT_FIX}"
        )


def prepare_fabric(ttml: Any, plan: MeshPlan) -> None:
    """For a mesh of several chips: export its descriptor as TT_MESH_GRAPH_DESC_PATH and enable ttml's fabric,
    the two things that must precede anything that counts or opens chips."""
    chips = math.prod(plan.shape)
    if chips > 1:
        check_fabric_environment(plan)
        export_descriptor(plan)
        ttml.core.distributed.enable_fabric(chips)  # bound as enable_fabric(arg, /): positional only


ALREADY_OPEN_FIX = (
    "a ttml device is already open in this process (ttml's AutoContext.get_device() opens a 1x1 device when none "
    "is open): call ttml.autograd.AutoContext.get_instance().close_device() before training, or start a new process"
)


def open_mesh(ttml: Any, plan: MeshPlan | list[int]) -> Any:
    """Export the descriptor and enable the fabric (several chips), then count the chips, open the mesh and set up
    ttml's data-parallel context on a line mesh; returns the ttnn MeshDevice. Nothing counts or opens a chip
    before the descriptor and the fabric are set, and get_device() is never called before open_device (it would
    open a 1x1 device)."""
    plan = plan if isinstance(plan, MeshPlan) else resolve_mesh(plan)
    shape, chips = plan.shape, math.prod(plan.shape)
    prepare_fabric(ttml, plan)
    found, reason = bridge.count_devices(importlib.import_module("ttnn"))
    if found < chips:
        detail = f" (ttnn: {reason})" if reason else ""
        if chips == 1:
            raise TTHardwareError(
                f"accelerator 'tt' cannot run here: 1 Tenstorrent chip(s) needed but {found} found{detail}: run on a "
                "machine with a TT card (check with tt-smi); or train with --trainer.accelerator cpu"
            )
        raise TTHardwareError(
            f"mesh {list(shape)} needs {chips} Tenstorrent chip(s) but ttnn sees {found}{detail}: run on a machine "
            "with that many chips (check with tt-smi) or set a smaller mesh_shape and --trainer.devices"
        )
    context = ttml.autograd.AutoContext.get_instance()
    try:
        context.open_device(list(shape))
    except RuntimeError as err:
        if "after the device was created" in str(err):
            raise TTHardwareError(ALREADY_OPEN_FIX) from None
        raise
    if chips > 1 and is_line(shape):
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
