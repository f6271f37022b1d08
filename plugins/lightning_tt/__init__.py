"""lightning_tt: train Lightning modules on Tenstorrent chips through ttml (tt-train of tt-metal v0.81.1).

Registered names (importing `lightning_tt.register`):
  accelerator "tt"     -> lightning_tt.accelerator.TTAccelerator
  strategy    "tt"     -> lightning_tt.strategy.TTStrategy (one chip; the strategy owns the training step)
  strategy    "tt_ddp" -> lightning_tt.mesh.TTMeshStrategy (data parallel over a mesh [rows, cols] of chips from one
                          process: [1, 2] N300, [2, 4] T3K/LoudBox, [8, 4] Galaxy; data.batch_size is the global
                          batch, split over all chips; trainer.num_devices = chips, trainer.world_size = 1)
The precision plugin (lightning_tt.precision.TTPrecision) comes with the strategy: --trainer.precision must be
"bf16-true" (float32 weights: bf16 computation and a bf16 AdamW update in that ttml, so "32-true" is refused).

The interface a LightningModule must offer (checked by lightning_tt.interface.check_network, one-line
lightning_tt.errors.TTConfigError naming what is missing):
- `module.model`: a torch module called as `model(idx, targets=None, cache=None) -> (logits, loss)` from the
  module's *_step methods (the strategy routes that call to the chip), with a `generate` that uses it;
- `module.model.config` with the fields vocab_size, hidden_dim, num_layers, num_heads, head_dim, mlp_dim,
  max_seq_len, dropout, tie_embeddings, rope_theta, norm_eps (lightning_tt.interface.CONFIG_FIELDS);
- `module.model.named_parameters()` giving exactly embedding.weight [V, E], final_norm.weight [E] and per block i
  blocks.i.{attn_norm.weight [E], attn.qkv.weight [3E, E] (Q|K|V rows), attn.proj.weight [E, E],
  mlp_norm.weight [E], mlp.gate.weight [M, E], mlp.up.weight [M, E], mlp.down.weight [E, M]}, plus
  output.weight [V, E] when the embedding is not tied: a pre-norm RMSNorm transformer with RoPE on adjacent channel
  pairs and a SwiGLU MLP (lightning_tt.twin.NanoTricksterTT computes exactly that on the chip);
- one torch.optim.AdamW from configure_optimizers (its param groups, LR schedule and hyper-parameters are applied
  to ttml's AdamW on the chip);
- optional `module.evaluation_needs_logits = False`: validation/test forwards then return (None, loss), and the loss
  is computed on the chip (the host reads one scalar per chip and batch); by default the logits are downloaded too.

Errors: every problem a user can fix raises a lightning_tt.errors.TTError subclass whose message is one line
(problem, then fix): TTConfigError for settings, TTHardwareError for the software stack, environment or chips.

This file imports nothing heavy: `lightning_tt.bridge`, `fabric`, `symbols` and `errors` must stay importable with
only ttnn and numpy installed (the torch-free CI leg); ttnn/ttml are imported only when a TT run is set up.
"""

ACCELERATOR_NAME = "tt"
STRATEGY_NAME = "tt"
MESH_STRATEGY_NAME = "tt_ddp"
