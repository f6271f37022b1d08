"""ttml.autograd double: AutoContext, Tensor, GradMode, PreferredPrecision.

Mirrors tt-train/sources/ttml/nanobind/nb_autograd.cpp @ 2e722865e62806b7cb8f4166650df45202f4d74f
(Tensor.from_numpy(numpy_tensor, layout=TILE, new_type=None, mapper=None), to_numpy(new_type=None, composer=None),
get_value(precision=HALF), assign(other), backward(retain_graph), get_grad_tensor(), set/get_requires_grad,
is_grad_initialized, shape(), dtype(); AutoContext.get_instance(), open_device(mesh_shape=None, device_ids=None)
with a 2-entry list, close_device(), get_device(), set_seed(seed), get_seed(), reset_graph(),
set_gradient_mode(mode)); the mapper/composer arguments follow nb_autograd.cpp @ 2e72286 and
tt-train/sources/ttml/nanobind/nb_util.cpp @ 28fa47762d3f8bed76e3b805b74576f8899fa576 (no mapper: the value is
put on every chip of the mesh; a mapper distributes it; to_numpy composes shards only through a composer). Every
device tensor is created on the context's device, so creating one while no device
is open fails, as in the real make_metal_tensor (tt-train/sources/ttml/nanobind/nb_util.cpp).
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import torch
import ttnn


class GradMode(enum.Enum):
    ENABLED = 0
    DISABLED = 1


class PreferredPrecision(enum.Enum):
    HALF = 0
    FULL = 1


class MeshDevice:
    """Stands in for ttnn.MeshDevice returned by AutoContext.get_device(): a [rows, cols] grid of chips, numbered
    row-major (ttnn's MeshDevice.get_num_devices() is rows * cols)."""

    def __init__(self, shape: tuple[int, int], device_ids: list[int], fabric_enabled: bool) -> None:
        self.shape = shape
        self.device_ids = device_ids
        self.fabric_enabled = fabric_enabled
        """Whether ttml.core.distributed.enable_fabric ran before this mesh opened (CCLs need it)."""
        self.closed = False
        self.allocated_bytes = 0

    def get_num_devices(self) -> int:
        return self.shape[0] * self.shape[1]


class AutoContext:
    _instance: AutoContext | None = None

    def __init__(self) -> None:
        self._device: MeshDevice | None = None
        self._seed = 5489
        self.grad_mode = GradMode.ENABLED
        self.graph_generation = 0
        """Bumped by reset_graph(); a tensor from an older graph can no longer run backward."""
        self.open_count = 0
        self.close_count = 0
        self.fabric_config: str | None = None
        """Set by ttml.core.distributed.enable_fabric (tt_fabric::SetFabricConfig); read when a mesh opens."""
        self.events: list[str] = []
        """'enable_fabric' / 'open_device' / 'close_device' in call order, for tests of the setup order."""

    @staticmethod
    def get_instance() -> AutoContext:
        if AutoContext._instance is None:
            AutoContext._instance = AutoContext()
        return AutoContext._instance

    def open_device(self, mesh_shape: Any = None, device_ids: Any = None) -> None:
        shape = (1, 1)
        if mesh_shape is not None:
            dims = list(mesh_shape)
            if len(dims) != 2:
                raise RuntimeError("mesh_shape must be a list/tuple of 2 integers: [rows, cols]")
            shape = (int(dims[0]), int(dims[1]))
        if self._device is not None:
            raise RuntimeError("open_device: a device is already open (close_device first)")
        chips = shape[0] * shape[1]
        available = ttnn.GetNumAvailableDevices()  # raises without chips, like the real device open
        if chips > available:
            raise RuntimeError(f"open_device: mesh {shape} needs {chips} chips, {available} available")
        self._device = MeshDevice(shape, list(device_ids or range(chips)), self.fabric_config is not None)
        self.open_count += 1
        self.events.append("open_device")

    def close_device(self) -> None:
        if self._device is not None:
            self._device.closed = True
            self.close_count += 1
            self.events.append("close_device")
        self._device = None

    def get_device(self) -> MeshDevice:
        if self._device is None:
            raise RuntimeError("Device not initialized: call open_device() first")
        return self._device

    def is_parallelism_context_initialized(self) -> bool:
        """False: the double does not model initialize_parallelism_context (DistributedConfig), so the
        one-argument synchronize_gradients returns early, as the real one does without it."""
        return False

    def set_seed(self, seed: int) -> None:
        if not 0 <= int(seed) < 2**32:
            raise TypeError(f"set_seed(): seed must fit uint32, got {seed}")
        self._seed = int(seed)
        torch.manual_seed(self._seed)

    def get_seed(self) -> int:
        return self._seed

    def reset_graph(self) -> None:
        self.graph_generation += 1

    def set_gradient_mode(self, mode: GradMode) -> None:
        if not isinstance(mode, GradMode):
            raise TypeError(f"set_gradient_mode(): expected ttml.autograd.GradMode, got {type(mode).__name__}")
        self.grad_mode = mode


def _ctx() -> AutoContext:
    return AutoContext.get_instance()


def store(value: torch.Tensor, dtype: ttnn.DataType) -> torch.Tensor:
    """What the chip keeps for a value of this dtype (bfloat16 rounds to nearest even)."""
    if dtype == ttnn.DataType.BFLOAT16:
        return value.detach().to(torch.bfloat16).to(torch.float32)
    if dtype == ttnn.DataType.FLOAT32:
        return value.detach().to(torch.float32)
    if dtype == ttnn.DataType.UINT32:
        return value.detach().to(torch.int64)
    raise RuntimeError(f"the ttml double does not model dtype {dtype}")


def _read_needs_composer() -> RuntimeError:
    # What real ttnn 0.81.1 raises when a tensor distributed over several chips is read as one (verified on host
    # tensors with 2 shards: Tensor.item() and Tensor.to_numpy() without a composer).
    return RuntimeError(
        "TT_FATAL @ /project/tt_metal/impl/tensor/tensor_apis.cpp:618: buffers.size() == 1\ninfo:\n"
        "Can't convert a tensor distributed on a multi-device mesh to row-major logical tensor. Supply a mesh "
        "composer to concatenate multi-device shards."
    )


class Tensor:
    """ttml.autograd.Tensor: a value on the chips of the open mesh, its gradients and its place in the graph.

    It holds one torch tensor per chip (row-major chip order): a replicated tensor holds equal copies, a sharded one
    the chip's slice. Each op runs chip by chip, so per-chip values (losses, gradients) stay apart until a
    collective (synchronize_gradients) or a composer (to_numpy(composer=...)) combines them, as on the hardware.
    """

    def __init__(
        self, shards: list[torch.Tensor], dtype: ttnn.DataType, layout: ttnn.Layout, requires_grad: bool = True
    ):
        chips = _ctx().get_device().get_num_devices()  # device tensors need an open device
        if len(shards) != chips:
            raise RuntimeError(f"a tensor on a {chips}-chip mesh needs {chips} shards, got {len(shards)}")
        self._dtype = dtype
        self._layout = layout
        self._generation = _ctx().graph_generation
        self._requires_grad = requires_grad and dtype != ttnn.DataType.UINT32
        self._shards = [
            s.detach().requires_grad_(True) if self._requires_grad and not s.requires_grad and s.is_leaf else s
            for s in shards
        ]

    # -- construction and host transfer
    @staticmethod
    def from_numpy(numpy_tensor: Any, layout: ttnn.Layout = ttnn.Layout.TILE, new_type: Any = None, mapper: Any = None):
        if not isinstance(numpy_tensor, np.ndarray):
            raise TypeError(f"from_numpy(): incompatible function arguments: numpy_tensor is {type(numpy_tensor)}")
        if not isinstance(layout, ttnn.Layout) or (new_type is not None and not isinstance(new_type, ttnn.DataType)):
            raise TypeError("from_numpy(): layout must be ttnn.Layout and new_type a ttnn.DataType or None")
        if numpy_tensor.dtype == np.uint32:
            native = ttnn.DataType.UINT32
        elif numpy_tensor.dtype == np.float32:
            native = ttnn.DataType.FLOAT32
        else:
            raise TypeError(f"from_numpy(): unsupported numpy dtype {numpy_tensor.dtype} (use float32 or uint32)")
        dtype = new_type or native
        if (dtype == ttnn.DataType.UINT32) != (native == ttnn.DataType.UINT32):
            raise TypeError(f"from_numpy(): cannot convert a {numpy_tensor.dtype} array to {dtype}")
        if layout == ttnn.Layout.TILE:
            if dtype == ttnn.DataType.UINT32:
                raise RuntimeError("token ids go to the chip in ROW_MAJOR layout (as in train_nanogpt.py)")
            if numpy_tensor.ndim != 4:
                raise RuntimeError(f"TILE tensors are rank 4 in ttml, got shape {numpy_tensor.shape}")
        value = torch.from_numpy(
            np.array(numpy_tensor, dtype=np.int64 if native == ttnn.DataType.UINT32 else np.float32)
        )
        chips = _ctx().get_device().get_num_devices()
        # nb_util.cpp: without a mapper Tensor::from_span(..., device) puts the same value on every chip.
        shards = [value.clone() for _ in range(chips)] if mapper is None else mapper.distribute(value, chips)
        return Tensor([store(s, dtype) for s in shards], dtype, layout, requires_grad=True)

    def to_numpy(self, new_type: Any = None, composer: Any = None) -> np.ndarray:
        target = new_type or self._dtype
        if target == ttnn.DataType.BFLOAT16:
            raise NotImplementedError("the double returns float data as FLOAT32 only: pass new_type=FLOAT32")
        if composer is not None:
            value = composer.compose([s.detach() for s in self._shards])
        elif len(self._shards) == 1:
            value = self._shards[0].detach()
        else:
            raise _read_needs_composer()
        if target == ttnn.DataType.UINT32:
            return value.numpy().astype(np.uint32)
        return value.to(torch.float32).numpy().copy()

    def get_value(self, precision: PreferredPrecision = PreferredPrecision.HALF) -> ttnn.Tensor:
        return ttnn.Tensor([s.detach() for s in self._shards], self._dtype)

    def assign(self, other: Tensor) -> None:
        if other.shape() != self.shape() or other._dtype != self._dtype or len(other._shards) != len(self._shards):
            raise RuntimeError(f"assign: {other.shape()} {other._dtype} into {self.shape()} {self._dtype}")
        with torch.no_grad():
            for mine, theirs in zip(self._shards, other._shards, strict=True):
                mine.copy_(theirs)

    def shape(self) -> list[int]:
        """The per-chip shape, as ttml's Tensor.shape() reports it for a distributed tensor."""
        return list(self._shards[0].shape)

    def dtype(self) -> ttnn.DataType:
        return self._dtype

    def get_rank(self) -> int:
        return self._shards[0].dim()

    # -- gradients
    def set_requires_grad(self, requires_grad: bool) -> None:
        self._requires_grad = bool(requires_grad)
        if not requires_grad:
            self._shards = [s.detach() if s.is_leaf else s for s in self._shards]

    def get_requires_grad(self) -> bool:
        return self._requires_grad

    def is_grad_initialized(self) -> bool:
        return self._shards[0].grad is not None

    def get_grad_tensor(self) -> Tensor | None:
        if self._shards[0].grad is None:
            return None
        grads = [s.grad.detach().clone() for s in self._shards]
        return Tensor(grads, self._dtype, self._layout, requires_grad=False)

    def backward(self, retain_graph: bool) -> None:
        """Each chip back-propagates its own value (e.g. the loss of its shard) into its own parameter copy."""
        if self._generation != _ctx().graph_generation:
            raise RuntimeError("backward() on a tensor whose graph was reset (reset_graph ran after its forward)")
        if self._shards[0].numel() != 1:
            raise RuntimeError(f"backward() of a non-scalar tensor {self.shape()}")
        if not self._shards[0].requires_grad:
            raise RuntimeError("backward() of a tensor built with gradients disabled")
        torch.autograd.backward(self._shards, retain_graph=retain_graph)


def from_op(results: list[torch.Tensor], like: Tensor) -> Tensor:
    """An op's output tensor (one result per chip), in the graph when gradients are enabled (ttml's GradMode)."""
    return Tensor(results, like._dtype, ttnn.Layout.TILE, requires_grad=results[0].requires_grad)


def grad_enabled() -> bool:
    return _ctx().grad_mode == GradMode.ENABLED
