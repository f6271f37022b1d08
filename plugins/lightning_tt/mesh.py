"""TTMeshStrategy ("tt_ddp"): data-parallel training over a one-row mesh of Tenstorrent chips, from one process.

One Python process drives every local chip through ttml (tt-train's process model: one process per host), so
Lightning sees a single process (world_size 1) and the strategy does the data parallelism itself:
- setup: enable the fabric (ttml.core.distributed.enable_fabric) *before* the mesh opens, then open [1, N];
- each batch Lightning hands over is the *global* micro-batch: data.batch_size windows, split row-wise over the N
  chips by ttml's shard_tensor_to_mesh_mapper(device, 0) (data.batch_size / N windows per chip); a batch that does
  not split evenly is a config error;
- every chip holds a copy of every weight, runs forward and backward on its shard and gets its own gradients;
  before clipping and the optimizer step they are averaged across the chips (synchronize_gradients: all-reduce sum
  times 1/N), so every copy takes the same AdamW step. The first step checks that this really averaged;
- the logged loss is the mean of the chips' shard losses (equal shards: the mean over the global batch);
- validation/prediction batches are split the same way, padded with filler rows when they do not divide, and
  the chips' logits are concatenated back in batch order and cropped, so every window is scored exactly once.

Lightning's collectives need no mesh logic: the values the module logs are already global (computed from the whole
batch), and with one process reduce/all_gather/broadcast/barrier are identities (SingleDeviceStrategy's).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from lightning_trickster.errors import HardwareError, InvalidConfigError
from lightning_tt import MESH_STRATEGY_NAME, bridge
from lightning_tt.strategy import TTStrategy


class TTMeshStrategy(TTStrategy):
    strategy_name = MESH_STRATEGY_NAME

    def __init__(
        self,
        mesh_shape: list[int] | None = None,
        accelerator: Any = None,
        checkpoint_io: Any = None,
        precision_plugin: Any = None,
    ) -> None:
        """
        Args:
            mesh_shape: chips as [1, N]: [1, 2] N300, [1, 8] T3K/LoudBox, [1, 32] Galaxy. Default: [1, trainer.devices].
        """
        super().__init__(accelerator=accelerator, checkpoint_io=checkpoint_io, precision_plugin=precision_plugin)
        try:
            self._requested_shape = None if mesh_shape is None else bridge.check_mesh_shape(mesh_shape)
        except ValueError as err:
            raise InvalidConfigError(str(err)) from None
        self.parallel_devices: list[int] | None = None
        """Chip ids from --trainer.devices; Lightning's connector fills this in."""
        self._batch_mapper: Any = None
        self._composer: Any = None
        self._grads_synced = True
        self._sync_verified = False

    # ---------------------------------------------------------------- mesh geometry
    @property
    def mesh_shape(self) -> list[int]:
        chips_asked = len(self.parallel_devices) if self.parallel_devices else None
        if self._requested_shape is None:
            return [1, chips_asked or 1]
        if chips_asked is not None and chips_asked != math.prod(self._requested_shape):
            raise InvalidConfigError(
                f"strategy 'tt_ddp' mesh_shape {self._requested_shape} has {math.prod(self._requested_shape)} chips "
                f"but --trainer.devices is {chips_asked}: set them to the same number of chips"
            )
        return list(self._requested_shape)

    @property
    def data_parallel_size(self) -> int:
        """Chips the global batch is split over (one process drives them all, so world_size stays 1)."""
        return math.prod(self.mesh_shape)

    def _check_batch_size(self) -> None:
        datamodule = getattr(self.lightning_module._trainer, "datamodule", None)  # None: used without a Trainer
        batch_size = getattr(datamodule, "hparams", {}).get("batch_size")
        chips = self.data_parallel_size
        if batch_size is not None and batch_size % chips:
            raise InvalidConfigError(self._split_message(batch_size))
        if batch_size is not None:
            rank_zero_info(
                f"tt_ddp: mesh {self.mesh_shape}, one process drives {chips} chip(s); data.batch_size {batch_size} "
                f"is the global micro-batch: {batch_size // chips} windows per chip"
            )

    def _split_message(self, rows: int) -> str:
        chips = self.data_parallel_size
        return (
            f"a batch of {rows} windows does not split over the {chips} chips of mesh {self.mesh_shape}: with "
            f"strategy 'tt_ddp' data.batch_size is the global batch; set it to a multiple of {chips}"
        )

    # ---------------------------------------------------------------- device lifetime
    def setup_environment(self) -> None:
        self._check_batch_size()  # before any chip opens
        super().setup_environment()

    def _before_open_device(self) -> None:
        chips = self.data_parallel_size
        if chips == 1:
            return
        if not os.environ.get("TT_METAL_HOME") and not os.environ.get("TT_MESH_GRAPH_DESC_PATH"):
            raise HardwareError(
                f"strategy 'tt_ddp' on {chips} chips needs the fabric, and ttml's enable_fabric reads the mesh graph "
                "descriptors from the tt-metal checkout: export TT_METAL_HOME=<the tt-metal tree ttml was built from>"
                " (or TT_MESH_GRAPH_DESC_PATH=<descriptor>)"
            )
        self._ttml.core.distributed.enable_fabric(chips)  # must precede open_device

    def _after_open_device(self, mesh_device: Any) -> None:
        distributed = self._ttml.core.distributed
        self._batch_mapper = distributed.shard_tensor_to_mesh_mapper(mesh_device, 0)
        self._composer = distributed.concat_mesh_to_tensor_composer(mesh_device, 0)

    def setup(self, trainer: Any) -> None:
        super().setup(trainer)
        if self.data_parallel_size > 1:
            self.device_model.replica_composer = self._composer

    def _close_device(self) -> None:
        self._batch_mapper = self._composer = None
        super()._close_device()

    # ---------------------------------------------------------------- batches and results
    def _upload(self, array: np.ndarray, dtype: Any, layout: Any) -> Any:
        if array.shape[0] % self.data_parallel_size:
            raise InvalidConfigError(self._split_message(array.shape[0]))
        return self._ttml.autograd.Tensor.from_numpy(array, layout, dtype, self._batch_mapper)

    def _pad_rows(self, array: np.ndarray) -> np.ndarray:
        return bridge.pad_rows(array, self.data_parallel_size)

    def _download(self, tensor: Any) -> np.ndarray:
        return tensor.to_numpy(self._ttnn.DataType.FLOAT32, self._composer)  # chips' shards in batch order

    def _loss_to_host(self, loss: Any) -> float:
        # One mean loss per chip, over equal shards: their mean is the loss over the whole batch.
        return float(self._download(loss).mean())

    # ---------------------------------------------------------------- gradients
    def _after_backward(self) -> None:
        self._grads_synced = False
        if self._in_optimizer_step:  # the last micro-batch: average now, before the host copy and the clipping
            self._synchronize_gradients()

    def _step_device_optimizers(self) -> None:
        if not self._grads_synced:
            self._synchronize_gradients()
        super()._step_device_optimizers()

    def _synchronize_gradients(self) -> None:
        self._grads_synced = True
        if self.data_parallel_size == 1:
            return
        parameters = self.device_model.parameters()
        probe = None if self._sync_verified else self._probe_gradient()
        distributed = self._ttml.core.distributed
        try:
            distributed.synchronize_gradients(parameters, [bridge.DATA_PARALLEL_AXIS])
        except TypeError:  # a ttml without the cluster_axes overload: its one-argument form averages over all chips
            distributed.synchronize_gradients(parameters)
        if probe is not None:
            self._verify_average(*probe)

    def _probe_gradient(self) -> tuple[Any, np.ndarray]:
        """The smallest parameter and its per-chip gradients, rows = chips (a sync point, first steps only)."""
        tensor = min(
            (t for t in self.device_model.tensors.values() if t.is_grad_initialized()),
            key=lambda t: math.prod(t.shape()),
        )
        return tensor, self._chip_rows(tensor)

    def _chip_rows(self, tensor: Any) -> np.ndarray:
        return self._download(tensor.get_grad_tensor()).reshape(self.data_parallel_size, -1)

    def _verify_average(self, tensor: Any, before: np.ndarray) -> None:
        """Training on chips whose gradients are not averaged diverges silently: check it once, on the first step
        where the chips' gradients differ."""
        expected = before.mean(axis=0)
        scale = float(np.abs(expected).max()) or 1.0
        if float(np.abs(before - expected).max()) <= 1e-3 * scale:
            return  # the shards gave (nearly) equal gradients: nothing to tell an average from
        after = self._chip_rows(tensor)
        error = float(np.abs(after - expected).max()) / scale
        if error > 2e-2:  # bfloat16 all-reduce rounding is ~1e-2 of the largest value at most
            raise HardwareError(
                f"strategy 'tt_ddp': ttml's synchronize_gradients did not average the gradients over the "
                f"{self.data_parallel_size} chips (off by {error:.2g} of their scale), so the chips' copies would "
                "diverge: use a ttml built from the same tt-metal tag as ttnn whose synchronize_gradients averages "
                "over the mesh (README, Tenstorrent meshes)"
            )
        self._sync_verified = True

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        strategy_registry.register(
            cls.strategy_name,
            cls,
            description="Data parallel over a [1, N] Tenstorrent mesh from one process (ttml); batch = global batch",
        )
