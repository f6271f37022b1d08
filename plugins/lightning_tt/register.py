"""Importing this module registers accelerator "tt" and strategies "tt" and "tt_ddp" with Lightning (no ttnn/ttml
import)."""

from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.strategies import StrategyRegistry

from lightning_tt import ACCELERATOR_NAME, MESH_STRATEGY_NAME, STRATEGY_NAME
from lightning_tt.accelerator import TTAccelerator
from lightning_tt.mesh import TTMeshStrategy
from lightning_tt.strategy import TTStrategy

if ACCELERATOR_NAME not in AcceleratorRegistry:
    TTAccelerator.register_accelerators(AcceleratorRegistry)
if STRATEGY_NAME not in StrategyRegistry:
    TTStrategy.register_strategies(StrategyRegistry)
if MESH_STRATEGY_NAME not in StrategyRegistry:
    TTMeshStrategy.register_strategies(StrategyRegistry)
