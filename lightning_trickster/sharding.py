"""ShardedStrategy: Lightning's FSDPStrategy (fully sharded data parallel), usable on CPU as well as GPU.

Two gaps of Lightning 2.6's FSDPStrategy are closed here, nothing else is changed:

- On CPU it refuses to start, and torch's FSDP needs ``device_id=cpu`` to shard a CPU module (Lightning passes
  ``None``). CPU sharding over gloo is what lets CI run the sharded path with 2 processes and no GPU.
- Saving a full (single-file) checkpoint on CPU crashes (SIGSEGV in torch 2.13) because Lightning asks FSDP to
  offload the gathered weights to the CPU they are already on; on CPU they are gathered without offloading.
- Gradient clipping by norm raises: every rank holds a shard of each gradient, so only the root FSDP module can
  compute the global norm (``FullyShardedDataParallel.clip_grad_norm_``). This strategy's precision plugin calls it.

On GPU the model is wrapped by Lightning's own code path.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import FSDPPrecision, Precision
from lightning.pytorch.strategies import FSDPStrategy
from torch import Tensor
from torch.distributed.fsdp import (
    FullOptimStateDictConfig,
    FullStateDictConfig,
    FullyShardedDataParallel,
    OptimStateKeyType,
    StateDictType,
)
from torch.optim import Optimizer


class ShardedPrecision(FSDPPrecision):
    """FSDPPrecision that clips by the global gradient norm across all shards."""

    root: FullyShardedDataParallel | None = None

    def clip_grad_by_norm(self, optimizer: Optimizer, clip_val: float) -> None:
        if self.root is None:
            raise RuntimeError("ShardedPrecision.root is set when the strategy wraps the model; it was not wrapped")
        self.root.clip_grad_norm_(clip_val)


class ShardedStrategy(FSDPStrategy):
    """FSDPStrategy that also runs on CPU (gloo) and supports ``gradient_clip_val`` (clipping by norm)."""

    def __init__(self, state_dict_type: Literal["full", "sharded"] = "full", **kwargs: Any) -> None:
        """
        Args:
            state_dict_type: "full": one checkpoint file gathered on rank 0; "sharded": a folder with one file per
                rank. Every other argument is FSDPStrategy's.
        """
        super().__init__(state_dict_type=state_dict_type, **kwargs)
        self.state_dict_type = state_dict_type

    @property
    def precision_plugin(self) -> FSDPPrecision:
        return FSDPStrategy.precision_plugin.fget(self)

    @precision_plugin.setter
    def precision_plugin(self, plugin: Precision | None) -> None:
        if type(plugin) is FSDPPrecision:  # what Lightning's connector builds for an FSDPStrategy
            plugin = ShardedPrecision(plugin.precision, plugin.scaler)
        FSDPStrategy.precision_plugin.fset(self, plugin)

    def setup(self, trainer: pl.Trainer) -> None:
        # On CPU the model is wrapped here, with the CPU as its device; FSDPStrategy.setup then finds it wrapped and
        # goes on as it does for a model its user wrapped (activation checkpointing, optimizers, precision).
        already_wrapped = any(isinstance(module, FullyShardedDataParallel) for module in self.model.modules())
        if self.root_device.type == "cpu" and not already_wrapped:
            self.model = FullyShardedDataParallel(
                module=self.precision_plugin.convert_module(self.model),
                cpu_offload=self.cpu_offload,
                mixed_precision=self.mixed_precision_config,
                sharding_strategy=self.sharding_strategy,
                device_id=self.root_device,
                **self.kwargs,
            )
            self.kwargs.pop("auto_wrap_policy", None)  # applied; FSDPStrategy warns about a policy it cannot apply
        super().setup(trainer)
        if isinstance(self.precision_plugin, ShardedPrecision):
            self.precision_plugin.root = self.model

    def gathers_on_cpu(self) -> bool:
        return self.root_device.type == "cpu" and self.state_dict_type == "full"

    def _full_state_dict_without_offload(self) -> AbstractContextManager:
        return FullyShardedDataParallel.state_dict_type(
            self.model,
            StateDictType.FULL_STATE_DICT,
            FullStateDictConfig(offload_to_cpu=False, rank0_only=True),
            FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=True),
        )

    def lightning_module_state_dict(self) -> dict[str, Any]:
        if not self.gathers_on_cpu():
            return super().lightning_module_state_dict()
        with self._full_state_dict_without_offload():
            return self.model.state_dict()

    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Tensor]:
        if not self.gathers_on_cpu():
            return super().optimizer_state(optimizer)
        if isinstance(optimizer, LightningOptimizer):
            optimizer = optimizer.optimizer
        with self._full_state_dict_without_offload():
            state = FullyShardedDataParallel.optim_state_dict(self.model, optimizer)
            if self.global_rank == 0:  # the same standard layout as FSDPStrategy writes
                state = FullyShardedDataParallel.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
            return state
