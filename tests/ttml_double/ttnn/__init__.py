"""Test double of the few `ttnn` (PyPI ttnn 0.81.1) host symbols lightning_tt uses, for the torch venv (Python 3.11,
where no ttnn wheel exists). Every public name here must exist in real ttnn: tests/ttnn_host/test_double_conformance.py
checks that against the real wheel in the Python 3.12 CI leg.

Device counting mirrors ttnn/ttnn/device.py (GetNumAvailableDevices, from _ttnn.device). The number of chips the
double reports is `ttnn.DOUBLE_CHIPS` (tests set it); with 0 it raises what the real library raises without a chip
(verified: RuntimeError "TT_FATAL @ .../tt_cluster.cpp:129: num_chips > 0").

The Metal context: counting chips (or opening a device) starts it, and it reads TT_MESH_GRAPH_DESC_PATH then, once
per process. tenstorrent/tt-metal tt-train/tests/.../sharded_cross_entropy_loss_perf_t3k test ((c) 2026, index id
55755251250): "calling tt_metal::GetNumAvailableDevices() implicitly initializes MetalContext, which would lock in
auto-discovery topology *before* enable_fabric has a chance to set TT_MESH_GRAPH_DESC_PATH ... calling it after the
first MetalContext touch silently leaves the process on the auto-discovery topology and causes CCL deadlocks on
1x8 t3k." The double records the descriptor the context started with (METAL_CONTEXT_DESCRIPTOR); the ttml double's
collectives fail on a fabric mesh whose descriptor differs from it, where the hardware would hang.

EVENTS is the one log of calls into the vendor stack, in order (the ttml double appends its own), for tests of the
set-up order.
"""

from __future__ import annotations

import enum
import os

IS_TEST_DOUBLE = True
DOUBLE_CHIPS = 1
EVENTS: list[str] = []
"""'GetNumAvailableDevices', and the ttml double's 'enable_fabric', 'open_device', ... in call order."""
DESCRIPTORS_AT_COUNT: list[str | None] = []
"""TT_MESH_GRAPH_DESC_PATH at each GetNumAvailableDevices call."""
METAL_CONTEXT_DESCRIPTOR: list[str | None] = []
"""Empty until the Metal context starts; then the TT_MESH_GRAPH_DESC_PATH it read (None: auto-discovery)."""


def start_metal_context() -> None:
    """What the first count or device open does (module docstring); later calls change nothing."""
    if not METAL_CONTEXT_DESCRIPTOR:
        METAL_CONTEXT_DESCRIPTOR.append(os.environ.get("TT_MESH_GRAPH_DESC_PATH"))


def new_process() -> None:
    """Double only: forget the Metal context, as a new process would (tests that run several machines' meshes)."""
    METAL_CONTEXT_DESCRIPTOR.clear()


def available_chips() -> int:
    """Double only: the chips the Metal context sees, without logging a call (what device open checks)."""
    if DOUBLE_CHIPS <= 0:
        raise RuntimeError(
            "TT_FATAL @ /project/tt_metal/llrt/tt_cluster.cpp:129: num_chips > 0\ninfo:\nNo chips detected"
        )
    return DOUBLE_CHIPS


class Layout(enum.Enum):
    ROW_MAJOR = 0
    TILE = 1
    INVALID = 2


class DataType(enum.Enum):
    BFLOAT16 = 0
    FLOAT32 = 1
    UINT32 = 2
    BFLOAT8_B = 3
    BFLOAT4_B = 4
    UINT8 = 5
    UINT16 = 6
    INT32 = 7
    INVALID = 8


class BufferType(enum.Enum):
    DRAM = 0
    L1 = 1


def GetNumAvailableDevices() -> int:  # noqa: N802 - real name
    EVENTS.append("GetNumAvailableDevices")
    DESCRIPTORS_AT_COUNT.append(os.environ.get("TT_MESH_GRAPH_DESC_PATH"))
    start_metal_context()
    return available_chips()


class Tensor:
    """What ttml's Tensor.get_value() returns: a device tensor, one shard per chip. Only the accessors the plugin
    reads."""

    def __init__(self, shards, dtype: DataType) -> None:
        self._shards = list(shards)
        self.dtype = dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._shards[0].shape)

    def item(self) -> float:
        if len(self._shards) != 1:  # verified with ttnn 0.81.1 on a host tensor distributed over a 1x2 mesh
            raise RuntimeError("TT_FATAL @ /project/tt_metal/impl/tensor/tensor_apis.cpp:618: buffers.size() == 1")
        value = self._shards[0]
        if value.numel() != 1:
            raise RuntimeError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return float(value.reshape(-1)[0])


class MemoryView:
    """ttnn._ttnn.device.MemoryView fields (ttnn 0.81.1)."""

    def __init__(self, num_banks: int, total_bytes_per_bank: int, total_bytes_allocated_per_bank: int) -> None:
        self.num_banks = num_banks
        self.total_bytes_per_bank = total_bytes_per_bank
        self.total_bytes_allocated_per_bank = total_bytes_allocated_per_bank
        self.total_bytes_free_per_bank = total_bytes_per_bank - total_bytes_allocated_per_bank
        self.largest_contiguous_bytes_free_per_bank = self.total_bytes_free_per_bank


def get_memory_view(device, buffer_type: BufferType) -> MemoryView:
    """ttnn/ttnn/device.py::get_memory_view(device, buffer_type); numbers of an n150 (12 DRAM banks of 1 GiB)."""
    if getattr(device, "closed", True):
        raise RuntimeError("get_memory_view: the device is not open")
    if buffer_type == BufferType.DRAM:
        return MemoryView(12, 1 << 30, device.allocated_bytes // 12)
    return MemoryView(64, 1_499_136, 0)
