"""ttml.autograd double: AutoContext, ParallelismContext, DistributedConfig, Tensor, GradMode, PreferredPrecision.

Pinned to the 2026 (v0.81.1) era (see ttml/__init__.py). Mirrors, in tenstorrent/tt-metal tt-train/sources/ttml/:
- nanobind/nb_autograd.cpp (index file id 27252762278, the version with ParallelismContext/DistributedConfig
  bindings; lightning_tt.bindings records its signatures): Tensor.from_numpy(
  numpy_tensor, layout=TILE, new_type=None, mapper=None), to_numpy(new_type=None, composer=None) reading the FULL
  value, get_value(precision=HALF), assign(other) = set_value(other.get_value()) (HALF), backward(retain_graph),
  get_grad_tensor() (None while the gradient is uninitialised), set/get_requires_grad, is_grad_initialized, shape(),
  dtype(); AutoContext.get_instance(), open_device(mesh_shape=None, device_ids=None) with a 2-entry list,
  close_device(), get_device(), set_seed(seed), get_seed(), reset_graph(), set_gradient_mode(mode),
  initialize_parallelism_context(config), get_parallelism_context(), is_parallelism_context_initialized();
  ParallelismContext.get_ddp_size/get_ddp_axis; DistributedConfig(enable_ddp, enable_tp).
- autograd/auto_context.cpp @ 013f8575: get_device() OPENS a 1x1 device when none is open; open_device() after that
  throws "open_device was called after the device was created"; close_device() also disables the fabric;
  ParallelismContext: on a line mesh exactly one parallelism, put on the long axis; on a 2-D mesh the number of
  enabled parallelisms must equal the rank (TT_FATAL); initialising it twice throws; close_device keeps it. The
  context's generator (set_seed) gives ops their seeds (ops/dropout_op.cpp: autograd::ctx().get_generator()()).
- A device open starts the Metal context (the ttnn double's start_metal_context): a fabric mesh whose context
  started on another descriptor than enable_fabric's is marked, and its collectives fail (core_distributed).
- autograd/autocast_tensor.cpp @ 97622714 and tensor.hpp @ 00bbd1e0: a FLOAT32 value also keeps a BFLOAT16 copy and
  get_value() defaults to HALF, so every op reads bfloat16 (modelled in ops._run); results are BFLOAT16.
- nanobind/nb_util.cpp @ 28fa4776 (make_metal_tensor): without a mapper the value is put on every chip of the mesh;
  a mapper distributes it; to_numpy composes shards only through a composer.
Gradients: the chip accumulates them in bfloat16; the double keeps them in float32 (torch autograd stands in for
ttml's graph), so its backward is slightly more exact than the chip's.
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


class DistributedConfig:
    def __init__(self, enable_ddp: bool = False, enable_tp: bool = False) -> None:
        self.enable_ddp, self.enable_tp = bool(enable_ddp), bool(enable_tp)


class ParallelismContext:
    def __init__(self, shape: tuple[int, int], config: DistributedConfig) -> None:
        enabled = [name for name in ("ddp", "tp") if getattr(config, f"enable_{name}")]
        self._axes: dict[str, int] = {}
        self._shape = shape
        if min(shape) == 1:  # a line topology ([1, N], [N, 1], [1, 1])
            if len(enabled) != 1:
                raise RuntimeError(
                    f"TT_FATAL: For line mesh topology (shape {list(shape)}), exactly one parallelism type must be "
                    f"enabled. Got: ddp={config.enable_ddp}, tp={config.enable_tp}"
                )
            self._axes[enabled[0]] = next((i for i, n in enumerate(shape) if n > 1), 0)
        else:
            if len(enabled) != len(shape):
                raise RuntimeError(
                    f"TT_FATAL: For 2D mesh (shape {list(shape)}), number of enabled parallelization axes "
                    f"({len(enabled)}) must equal mesh dimensions ({len(shape)})."
                )
            self._axes = {name: axis for axis, name in enumerate(enabled)}

    def get_ddp_axis(self) -> int | None:
        return self._axes.get("ddp")

    def get_ddp_size(self) -> int:
        axis = self._axes.get("ddp")
        return 1 if axis is None else self._shape[axis]


class MeshDevice:
    """Stands in for ttnn.MeshDevice returned by AutoContext.get_device(): a [rows, cols] grid of chips, numbered
    row-major (ttnn's MeshDevice.get_num_devices() is rows * cols)."""

    def __init__(
        self, shape: tuple[int, int], device_ids: list[int], fabric_enabled: bool, topology_locked: str | None = None
    ) -> None:
        self.shape = shape
        self.device_ids = device_ids
        self.fabric_enabled = fabric_enabled
        """Whether ttml.core.distributed.enable_fabric ran before this mesh opened (CCLs need it)."""
        self.topology_locked = topology_locked
        """Why this mesh's collectives would deadlock (ttnn double: the Metal context started on another
        descriptor than the fabric's), or None."""
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
        self.fabric_descriptor: str | None = None
        """The mesh graph descriptor enable_fabric used (TT_MESH_GRAPH_DESC_PATH), None for its FABRIC_2D default."""
        self._parallelism: ParallelismContext | None = None
        self._generator = torch.Generator().manual_seed(self._seed)
        """autograd::ctx().get_generator(): ops draw their seeds from it (ops/dropout_op.cpp)."""

    @property
    def events(self) -> list[str]:
        """'enable_fabric' / 'GetNumAvailableDevices' / 'open_device' / 'open_device(lazy 1x1)' /
        'initialize_parallelism_context' / 'close_device' in call order (ttnn.EVENTS, shared with the ttnn
        double), for tests of the set-up order."""
        return ttnn.EVENTS

    def next_seed(self) -> int:
        """The next value of the context's generator (a uint32 seed)."""
        return int(torch.randint(0, 2**32 - 1, (1,), generator=self._generator))

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
            raise RuntimeError("open_device was called after the device was created.")
        chips = shape[0] * shape[1]
        ttnn.start_metal_context()  # a device open starts it too (reading TT_MESH_GRAPH_DESC_PATH then)
        available = ttnn.available_chips()  # raises without chips, like the real device open
        if chips > available:
            raise RuntimeError(f"open_device: mesh {shape} needs {chips} chips, {available} available")
        locked = None
        started_on = ttnn.METAL_CONTEXT_DESCRIPTOR[0]
        if chips > 1 and self.fabric_config is not None and started_on != self.fabric_descriptor:
            locked = (
                f"the Metal context started on {started_on or 'auto-discovery'} before enable_fabric set "
                f"TT_MESH_GRAPH_DESC_PATH to {self.fabric_descriptor}: collectives on this mesh deadlock "
                "(tt-train's T3K test, see the ttnn double)"
            )
        self._device = MeshDevice(shape, list(device_ids or range(chips)), self.fabric_config is not None, locked)
        self.open_count += 1
        self.events.append("open_device")

    def close_device(self) -> None:
        if self._device is not None:
            self._device.closed = True
            self.close_count += 1
            self.events.append("close_device")
        self._device = None
        self.fabric_config = self.fabric_descriptor = None  # close_device() disables the fabric (auto_context.cpp)

    def get_device(self) -> MeshDevice:
        if self._device is None:  # the real get_device() opens a default 1x1 device instead of failing
            self.open_device()
            self.events[-1] = "open_device(lazy 1x1)"
        return self._device

    def initialize_parallelism_context(self, config: DistributedConfig) -> None:
        if not isinstance(config, DistributedConfig):
            raise TypeError("initialize_parallelism_context(): incompatible function arguments (DistributedConfig)")
        if self._parallelism is not None:
            raise RuntimeError("ParallelismContext is already initialized.")
        self._parallelism = ParallelismContext(self.get_device().shape, config)
        self.events.append("initialize_parallelism_context")

    def get_parallelism_context(self) -> ParallelismContext:
        if self._parallelism is None:
            raise RuntimeError("ParallelismContext is not initialized.")
        return self._parallelism

    def is_parallelism_context_initialized(self) -> bool:
        return self._parallelism is not None

    def set_seed(self, seed: int) -> None:
        if not 0 <= int(seed) < 2**32:
            raise TypeError(f"set_seed(): seed must fit uint32, got {seed}")
        self._seed = int(seed)
        self._generator.manual_seed(self._seed)

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


def half(value: torch.Tensor) -> torch.Tensor:
    """bfloat16 rounding (nearest even), kept as float32."""
    return value.to(torch.bfloat16).to(torch.float32)


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
        chips = _ctx().get_device().get_num_devices()  # a device tensor opens the 1x1 default if none is open
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
        """HALF (the default) gives the bfloat16 copy of a FLOAT32 value, FULL the value itself."""
        if precision == PreferredPrecision.HALF and self._dtype == ttnn.DataType.FLOAT32:
            return ttnn.Tensor([half(s.detach()) for s in self._shards], ttnn.DataType.BFLOAT16)
        return ttnn.Tensor([s.detach() for s in self._shards], self._dtype)

    def half_shards(self) -> list[torch.Tensor]:
        """What an op reads: get_value() at its HALF default (bfloat16 for FLOAT32 values), still in the graph."""
        if self._dtype != ttnn.DataType.FLOAT32:
            return self._shards
        return [s + (half(s) - s).detach() for s in self._shards]

    def assign(self, other: Tensor) -> None:
        """nb_autograd.cpp: self.set_value(other.get_value()) -- the HALF value, so FLOAT32 is rounded."""
        if other.shape() != self.shape() or len(other._shards) != len(self._shards):
            raise RuntimeError(f"assign: {other.shape()} into {self.shape()}")
        value = other.get_value()
        with torch.no_grad():
            for mine, theirs in zip(self._shards, value._shards, strict=True):
                mine.copy_(theirs)
        self._dtype = value.dtype

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

    def zero_grad(self) -> None:
        """Double only: set_grad(zeros_like(value)), what the 2026 AdamW.zero_grad does to an initialised gradient
        (optimizers/adamw.cpp @ 013b2173); the gradient stays initialised."""
        for shard in self._shards:
            if shard.grad is not None:
                shard.grad = torch.zeros_like(shard.grad)

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
    """An op's output tensor (one result per chip), in the graph when gradients are enabled (ttml's GradMode).

    The chip writes op results as bfloat16: each result is rounded (straight through, so gradients pass as if it
    were not), which is where the double's numerics match the chip's bfloat16 arithmetic to first order."""
    rounded = [r + (half(r) - r).detach() if r.requires_grad else half(r) for r in results]
    return Tensor(rounded, ttnn.DataType.BFLOAT16, ttnn.Layout.TILE, requires_grad=results[0].requires_grad)


def grad_enabled() -> bool:
    return _ctx().grad_mode == GradMode.ENABLED
