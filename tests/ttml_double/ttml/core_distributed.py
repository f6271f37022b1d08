"""ttml.core.distributed double: enable_fabric, mesh mappers/composers, synchronize_gradients.

Mirrors, in tenstorrent/tt-metal:
- tt-train/sources/ttml/nanobind/nb_core.cpp @ 01b9eefebb60985b56d0cdf8aae83326c29c53af: the names and arguments
  enable_fabric(arg, /) (bound as `py_distributed.def("enable_fabric", &...::enable_fabric)` without nb::arg, so
  nanobind exposes one positional-only parameter named `arg`; the same in every stored version of the file),
  shard_tensor_to_mesh_mapper(device, dim, cluster_axis=None),
  concat_mesh_to_tensor_composer(mesh_device, dim), synchronize_gradients(parameters) and
  synchronize_gradients(parameters, cluster_axes) (two nanobind overloads; NamedParameters only).
- tt-train/sources/ttml/ttnn_fixed/distributed/tt_metal.cpp @ 1fdc6cf5 (PR #42675): enable_fabric(num_devices)
  uses TT_MESH_GRAPH_DESC_PATH if set; else it throws "TT_METAL_RUNTIME_ROOT is not set" unless that is set, and
  for 8 / 32 chips takes $TT_METAL_RUNTIME_ROOT/tt_metal/fabric/mesh_graph_descriptors/t3k_... / single_galaxy_...
  (exporting TT_MESH_GRAPH_DESC_PATH to it); it sets a 2-D fabric config (FABRIC_2D, or a torus the descriptor's
  dim_types ask for) that the mesh opened afterwards uses. The older a6584115 read TT_METAL_HOME instead.
- ttnn/cpp/ttnn/distributed/distributed_tensor.cpp @ a5d26bf57a07aa62847957050e3882007e81fde8:
  shard_tensor_to_mesh_mapper(mesh_device, dim) (no cluster axis) splits `dim` over all mesh_device.num_devices()
  chips in row-major chip order, whatever the mesh's rank; concat_mesh_to_tensor_composer(mesh_device, dim)
  concatenates the chips' shards along `dim`. An uneven split fails (verified with ttnn 0.81.1: "TT_FATAL ...
  Shard shape mismatch").
- tt-train/sources/ttml/core/distributed/distributed.cpp @ 01c8afed5a09a5fdd7c3ddbe0167f81b9607feb3:
  synchronize_gradients(parameters) returns at once unless the parallelism context is initialised, and then
  averages over its DDP axis; synchronize_gradients(parameters, cluster_axes) all-reduces (sum) each initialised
  gradient over the given mesh axes and multiplies it by 1 / (product of those axes' sizes): the
  average ("all_reduce Mean is not supported, use sum and divide").
The all-reduce needs the fabric: on a mesh opened without enable_fabric the double raises where the hardware would
fail or hang; likewise on a mesh whose Metal context started on another descriptor than the fabric's (chips
counted before the descriptor was set: the ttnn double's docstring).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .autograd import MeshDevice, _ctx
from .modules import NamedParameters


class TensorToMesh:
    """ttnn's ShardTensorToMesh: split dim `dim` into equal row-major shards, one per chip."""

    def __init__(self, num_devices: int, dim: int) -> None:
        self.num_devices, self.dim = num_devices, dim

    def distribute(self, value: torch.Tensor, chips: int) -> list[torch.Tensor]:
        if chips != self.num_devices:
            raise RuntimeError(f"mapper built for {self.num_devices} chips used on a {chips}-chip mesh")
        size = value.shape[self.dim]
        if size % chips:
            raise RuntimeError(
                f"TT_FATAL @ /project/ttnn/core/distributed/distributed_tensor.cpp:133: Shard shape mismatch: "
                f"{size} rows do not split over {chips} devices"
            )
        return [part.clone() for part in torch.chunk(value, chips, dim=self.dim)]


class MeshToTensor:
    """ttnn's ConcatMeshToTensor: concatenate the chips' shards (row-major chip order) along `dim`."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def compose(self, shards: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(shards, dim=self.dim)


def _mesh(device: Any) -> MeshDevice:
    if not isinstance(device, MeshDevice) or device.closed:
        raise TypeError("incompatible function arguments: expected the open ttnn.MeshDevice")
    return device


DESCRIPTOR_DIR = "tt_metal/fabric/mesh_graph_descriptors"
DEFAULT_DESCRIPTORS = {8: "t3k_mesh_graph_descriptor.textproto", 32: "single_galaxy_mesh_graph_descriptor.textproto"}


def enable_fabric(arg: int, /) -> None:
    if not isinstance(arg, int) or isinstance(arg, bool):
        raise TypeError("enable_fabric(): incompatible function arguments (arg: int, /)")
    descriptor = os.environ.get("TT_MESH_GRAPH_DESC_PATH")
    if not descriptor:
        root = os.environ.get("TT_METAL_RUNTIME_ROOT")
        if not root:
            raise RuntimeError("TT_METAL_RUNTIME_ROOT is not set")
        if arg in DEFAULT_DESCRIPTORS:
            descriptor = f"{root}/{DESCRIPTOR_DIR}/{DEFAULT_DESCRIPTORS[arg]}"
            os.environ["TT_MESH_GRAPH_DESC_PATH"] = descriptor
    context = _ctx()
    context.fabric_config = "FABRIC_2D"
    context.fabric_descriptor = descriptor or None
    context.events.append("enable_fabric")


def shard_tensor_to_mesh_mapper(device: Any, dim: int, cluster_axis: int | None = None) -> TensorToMesh:
    if cluster_axis is not None:
        raise NotImplementedError("the ttml double shards over the whole mesh only: pass cluster_axis=None")
    return TensorToMesh(_mesh(device).get_num_devices(), int(dim))


def concat_mesh_to_tensor_composer(mesh_device: Any, dim: int) -> MeshToTensor:
    _mesh(mesh_device)
    return MeshToTensor(int(dim))


def _all_reduce_sum(shards: list[torch.Tensor], shape: tuple[int, int], axis: int) -> list[torch.Tensor]:
    rows, cols = shape
    reduced = list(shards)
    groups = (
        [[r * cols + c for r in range(rows)] for c in range(cols)]
        if axis == 0
        else [[r * cols + c for c in range(cols)] for r in range(rows)]
    )
    for group in groups:
        total = torch.stack([shards[i] for i in group]).sum(0)
        for i in group:
            reduced[i] = total
    return reduced


def synchronize_gradients(parameters: NamedParameters, cluster_axes: list[int] | None = None) -> None:
    if not isinstance(parameters, NamedParameters):
        raise TypeError("synchronize_gradients(): incompatible function arguments, parameters must be NamedParameters")
    context = _ctx()
    if cluster_axes is None:
        if not context.is_parallelism_context_initialized():
            return
        ddp_axis = context.get_parallelism_context().get_ddp_axis()
        cluster_axes = [] if ddp_axis is None else [ddp_axis]
    if not isinstance(cluster_axes, (list, tuple)) or not all(isinstance(a, int) for a in cluster_axes):
        raise TypeError("synchronize_gradients(): incompatible function arguments, cluster_axes must be list[int]")
    device = context.get_device()
    scaler = 1
    for axis in cluster_axes:
        if not 0 <= axis < len(device.shape):
            raise RuntimeError("TT_FATAL: Cluster axis must be within mesh shape")
        scaler *= device.shape[axis]
    if scaler == 1:
        return
    if not device.fabric_enabled:
        raise RuntimeError(
            "all_reduce on a mesh opened without fabric: call ttml.core.distributed.enable_fabric(num_devices) "
            "before open_device"
        )
    if device.topology_locked:
        raise RuntimeError(f"all_reduce would hang: {device.topology_locked}")
    with torch.no_grad():
        for tensor in parameters.values():
            if not tensor.is_grad_initialized():
                continue
            grads = [s.grad for s in tensor._shards]
            for axis in cluster_axes:
                grads = _all_reduce_sum(grads, device.shape, axis)
            for shard, grad in zip(tensor._shards, grads, strict=True):
                shard.grad = grad / scaler
