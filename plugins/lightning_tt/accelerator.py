"""TTAccelerator: the `tt` accelerator. Checks that ttnn and ttml import; the TT strategy counts, opens and drives
the chips.

It never counts chips: Lightning builds the accelerator before a strategy given by name, and counting starts the
Metal context, which reads the mesh graph descriptor once; a mesh's descriptor and fabric must be set first
(lightning_tt.fabric.open_mesh counts after them)."""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from lightning.pytorch.accelerators import Accelerator
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_tt import ACCELERATOR_NAME, bridge, fabric
from lightning_tt.errors import TTHardwareError


class TTAccelerator(Accelerator):
    """Tenstorrent chips (Wormhole/Blackhole) driven by ttml. Needs ttnn and ttml; the strategy needs the chips."""

    def __init__(self) -> None:
        # Lightning builds the accelerator from its registered name before it checks is_available(): failing here
        # gives the user the exact missing piece instead of Lightning's generic "not available" message. No chip
        # count here (module docstring): a machine without chips is told so when the strategy opens them.
        problem = bridge.setup_problem(devices_wanted=0)
        if problem:
            raise TTHardwareError(problem)
        super().__init__()
        self.mesh_device: Any = None
        """The open ttnn MeshDevice, set by the TT strategy while its chips are open (None otherwise)."""

    def setup_device(self, device: torch.device) -> None:
        """Nothing to do: the strategy opens the chip through ttml's AutoContext (it owns the device)."""

    def teardown(self) -> None:
        """Nothing to do: the strategy closes the chip."""

    @staticmethod
    def parse_devices(devices: int | str | list[int]) -> int:
        """Number of chips requested by --trainer.devices (an int, a digit string, or a list of chip ids)."""
        if isinstance(devices, (list, tuple)):
            count = len(devices)
        elif isinstance(devices, str) and devices.strip().isdigit():
            count = int(devices)
        elif isinstance(devices, int) and not isinstance(devices, bool):
            count = devices
        else:
            raise MisconfigurationException(
                f"--trainer.devices {devices!r} is not a chip count for accelerator 'tt': pass a positive integer"
            )
        if count < 1:
            raise MisconfigurationException(
                f"--trainer.devices {devices!r} selects no chip: pass a positive integer (1 for an n150)"
            )
        return count

    @staticmethod
    def get_parallel_devices(devices: int) -> list[int]:
        """Chip ids 0..devices-1; one process drives them all."""
        return list(range(devices))

    @staticmethod
    def auto_device_count() -> int:
        """--trainer.devices auto: the chips of the mesh graph descriptor TT_MESH_GRAPH_DESC_PATH names, else 1
        (without counting, module docstring); pass --trainer.devices for a mesh."""
        path = os.environ.get(fabric.DESCRIPTOR_VARIABLE)
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as file:
                dims = fabric.descriptor_dims(file.read())
            if dims:
                return math.prod(dims)
        return 1

    @staticmethod
    def is_available() -> bool:
        """True when ttnn and ttml import (chips are counted when the strategy opens them). Never raises."""
        try:
            return bridge.setup_problem(devices_wanted=0) is None
        except Exception:  # noqa: BLE001 - availability probing must not fail
            return False

    @staticmethod
    def name() -> str:
        return ACCELERATOR_NAME

    def get_device_stats(self, device: Any) -> dict[str, Any]:
        """DRAM/L1 bytes allocated, free and total on the open mesh (ttnn.get_memory_view); {} when none is open.

        Never asks ttml for the device: AutoContext.get_device() would open a 1x1 device when none is open."""
        if self.mesh_device is None:
            return {}
        import ttnn

        return bridge.memory_stats(ttnn, self.mesh_device)

    @classmethod
    def register_accelerators(cls, accelerator_registry: Any) -> None:
        accelerator_registry.register(
            ACCELERATOR_NAME, cls, description="Tenstorrent chips through ttml (tt-train); see lightning_tt"
        )
