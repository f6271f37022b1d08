"""TTMeshStrategy ("tt_ddp"): data-parallel training over a mesh of Tenstorrent chips (N300, T3K or LoudBox,
Galaxy: the shape is the machine's mesh graph descriptor's, [1, 2], [2, 4], [8, 4] in the 0.81.1 wheel), from one
process.

One Python process drives every local chip through ttml (tt-train's process model: one process per host):
- Lightning sees one process (world_size 1, global_rank 0) but `trainer.num_devices` is the number of chips: the
  strategy is a ParallelStrategy whose parallel_devices are the chip ids, and it does the data parallelism itself;
- construction: resolve the mesh graph descriptor (the one named, or the installed one for the chip count, or a
  line descriptor) and export TT_MESH_GRAPH_DESC_PATH, so that it is set before anything can count chips
  (Lightning builds a strategy given in the config before the accelerator);
- setup: check the descriptor against the mesh, enable the fabric, then count and open the chips, and on a line
  mesh set up ttml's own DDP context (lightning_tt.fabric.open_mesh);
- each batch Lightning hands over is the *global* micro-batch: data.batch_size windows, split row-wise over all the
  chips in row-major chip order by ttml's shard_tensor_to_mesh_mapper(device, 0) (no cluster axis: the whole mesh);
  a batch that does not split evenly is a config error;
- every chip holds a copy of every weight, runs forward and backward on its rows and gets its own gradients; before
  clipping and the optimizer step they are averaged over every chip: ttml's synchronize_gradients over its DDP axis
  on a line mesh, over both axes [0, 1] on a 2-D mesh (all-reduce sum times 1/chips), so every copy takes the same
  AdamW step. The first step checks that this really averaged;
- the logged loss is the mean of the chips' shard losses (equal shards: the mean over the global batch);
- validation batches are split the same way (padded with filler rows that weigh nothing when they do not divide),
  so every window is scored exactly once; the loss is computed on the chips and the host reads one scalar per chip.

Lightning's collectives need no mesh logic: the values the module logs are already global (computed from the whole
batch), and with one process reduce/all_gather/broadcast/barrier are identities (SingleDeviceStrategy's).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.strategies import ParallelStrategy
from lightning.pytorch.utilities import rank_zero_info

from lightning_tt import MESH_STRATEGY_NAME, bridge, fabric
from lightning_tt.errors import TTConfigError, TTHardwareError
from lightning_tt.strategy import TTStrategy


class TTMeshStrategy(TTStrategy, ParallelStrategy):
    strategy_name = MESH_STRATEGY_NAME

    def __init__(
        self,
        mesh_shape: list[int] | None = None,
        mesh_graph_descriptor: str | None = None,
        stochastic_rounding: bool = False,
        accelerator: Any = None,
        checkpoint_io: Any = None,
        precision_plugin: Any = None,
    ) -> None:
        """
        Args:
            mesh_shape: chips as [rows, cols]; it must be the mesh graph descriptor's shape (a mismatch names both).
                Default: the descriptor's shape. [1, 8] / [1, 32] without a descriptor named is the line mesh
                option: TT_MESH_GRAPH_DESC_PATH then points at tt-metal's t3k_1x8 / galaxy_1x32 descriptor.
            mesh_graph_descriptor: the machine's mesh graph descriptor, a file name in the installed descriptor
                directories (e.g. t3k_mesh_graph_descriptor.textproto, which the T3K preset names) or a path.
                Default: TT_MESH_GRAPH_DESC_PATH if set, else the one ttml's enable_fabric picks for
                --trainer.devices chips (8: t3k, 32: single_galaxy).
            stochastic_rounding: bf16-true only, see lightning_tt.strategy.TTStrategy.
        """
        super().__init__(
            accelerator=accelerator,
            checkpoint_io=checkpoint_io,
            precision_plugin=precision_plugin,
            stochastic_rounding=stochastic_rounding,
        )
        self._requested_shape = None if mesh_shape is None else fabric.check_mesh_shape(mesh_shape)
        self._descriptor = mesh_graph_descriptor
        if self._requested_shape is not None or mesh_graph_descriptor is not None:
            # Export the descriptor now, before Lightning builds the accelerator; problems are reported (with the
            # fix) when the mesh opens, before any chip is touched.
            with contextlib.suppress(TTConfigError, TTHardwareError):
                fabric.export_descriptor(fabric.resolve_mesh(self._requested_shape, None, mesh_graph_descriptor))
        self._opened_shape: list[int] | None = None
        """The shape resolved when the mesh opened (the default reads the environment's descriptor once)."""
        self._batch_mapper: Any = None
        self._composer: Any = None
        self._grads_synced = True
        self._sync_verified = False

    # ---------------------------------------------------------------- one process, many chips
    # Plain values shadowing ParallelStrategy's cluster-environment properties: one process drives every chip.
    global_rank = 0
    local_rank = 0
    node_rank = 0
    world_size = 1

    @property
    def is_distributed(self) -> bool:
        return False  # Lightning must not insert a DistributedSampler: this process reads the whole batch

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        return {"num_replicas": 1, "rank": 0}

    def teardown(self) -> None:
        if self.cluster_environment is None:  # used without a Trainer; ParallelStrategy.teardown needs one
            self.cluster_environment = LightningEnvironment()
        super().teardown()

    # ---------------------------------------------------------------- mesh geometry
    @property
    def mesh_shape(self) -> list[int]:
        if self._opened_shape is not None:
            return list(self._opened_shape)
        return self.mesh_plan().shape

    def mesh_plan(self) -> fabric.MeshPlan:
        """The mesh and its descriptor (lightning_tt.fabric.resolve_mesh), checked against --trainer.devices."""
        chips_asked = len(self.parallel_devices) if self.parallel_devices else None
        if self._requested_shape is not None and chips_asked not in (None, math.prod(self._requested_shape)):
            raise TTConfigError(
                f"strategy 'tt_ddp' mesh_shape {self._requested_shape} has {math.prod(self._requested_shape)} chips "
                f"but --trainer.devices is {chips_asked}: set them to the same number of chips"
            )
        return fabric.resolve_mesh(self._requested_shape, chips_asked or 1, self._descriptor)

    @property
    def data_parallel_size(self) -> int:
        """Chips the global batch is split over (one process drives them all, so world_size stays 1)."""
        return math.prod(self.mesh_shape)

    def _check_batch_size(self) -> None:
        try:
            datamodule = self.lightning_module.trainer.datamodule
        except RuntimeError:  # used without a Trainer
            datamodule = None
        batch_size = getattr(datamodule, "hparams", {}).get("batch_size")
        chips = self.data_parallel_size
        if batch_size is not None and batch_size % chips:
            raise TTConfigError(self._split_message(batch_size))
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
        self._opened_shape = self.mesh_shape
        try:
            super().setup_environment()
        except BaseException:
            self._opened_shape = None  # not opened: a later attempt resolves the shape again
            raise

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
        self._opened_shape = None

    # ---------------------------------------------------------------- batches and results
    def _upload(self, array: np.ndarray, dtype: Any, layout: Any) -> Any:
        if array.shape[0] % self.data_parallel_size:
            raise TTConfigError(self._split_message(array.shape[0]))
        return self._ttml.autograd.Tensor.from_numpy(array, layout, dtype, self._batch_mapper)

    def _pad_rows(self, array: np.ndarray) -> np.ndarray:
        return bridge.pad_rows(array, self.data_parallel_size)

    def _download(self, tensor: Any) -> np.ndarray:
        return tensor.to_numpy(self._ttnn.DataType.FLOAT32, self._composer)  # chips' shards in batch order

    def _mean_over_chips(self, value: Any) -> float:
        # One scalar per chip (a mean over equal shards): their mean is the value over the whole batch.
        return float(self._download(value).mean())

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
        fabric.synchronize_gradients(self._ttml, parameters, self.mesh_shape)
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
            raise TTHardwareError(
                f"strategy 'tt_ddp': ttml's synchronize_gradients did not average the gradients over the "
                f"{self.data_parallel_size} chips of mesh {self.mesh_shape} (off by {error:.2g} of their scale), so "
                "the chips' copies would diverge: use ttml and ttnn built from the same tt-metal tag (v0.81.1)"
            )
        self._sync_verified = True

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        strategy_registry.register(
            cls.strategy_name,
            cls,
            description="Data parallel over a Tenstorrent mesh from one process (ttml); batch = global batch",
        )


def default_mesh_shape(chips: int) -> list[int]:
    """The shape of the descriptor that describes this many chips (lightning_tt.fabric.resolve_mesh), if one can
    be found; else one row [1, chips]."""
    try:
        return fabric.resolve_mesh(None, chips).shape
    except (TTConfigError, TTHardwareError):
        return [1, chips]  # reported when the mesh opens, with the fix
