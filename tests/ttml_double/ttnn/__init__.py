"""Test double of the few `ttnn` (PyPI ttnn 0.81.1) host symbols lightning_tt uses, for the torch venv (Python 3.11,
where no ttnn wheel exists). Every public name here must exist in real ttnn: tests/ttnn_host/test_double_conformance.py
checks that against the real wheel in the Python 3.12 CI leg.

Device counting mirrors ttnn/ttnn/device.py (GetNumAvailableDevices, from _ttnn.device). The number of chips the
double reports is `ttnn.DOUBLE_CHIPS` (tests set it); with 0 it raises what the real library raises without a chip
(verified: RuntimeError "TT_FATAL @ .../tt_cluster.cpp:129: num_chips > 0").
"""

from __future__ import annotations

import enum

IS_TEST_DOUBLE = True
DOUBLE_CHIPS = 1


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
    if DOUBLE_CHIPS <= 0:
        raise RuntimeError(
            "TT_FATAL @ /project/tt_metal/llrt/tt_cluster.cpp:129: num_chips > 0\ninfo:\nNo chips detected"
        )
    return DOUBLE_CHIPS


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
