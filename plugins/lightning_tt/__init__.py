"""lightning_tt: train Lightning modules on Tenstorrent chips through ttml (tt-train).

Registered names (importing `lightning_tt.register`, which `lightning_trickster` does):
  accelerator "tt"  -> lightning_tt.accelerator.TTAccelerator
  strategy    "tt"  -> lightning_tt.strategy.TTStrategy (one chip; the strategy owns the training step)
  strategy    "tt_ddp" -> lightning_tt.mesh.TTMeshStrategy (data parallel over a [1, N] mesh from one process;
                          data.batch_size is the global batch, split over the chips)
The precision plugin (lightning_tt.precision.TTPrecision) comes with the strategy: --trainer.precision picks
"bf16-true" (ttml's native dtype) or "32-true".

This file imports nothing heavy: the torch-free `lightning_tt.bridge` must stay importable with only ttnn and
numpy installed, and ttnn/ttml are imported only when a TT run is set up.
"""

ACCELERATOR_NAME = "tt"
STRATEGY_NAME = "tt"
MESH_STRATEGY_NAME = "tt_ddp"
