"""lightning_tt: train Lightning modules on Tenstorrent chips through ttml (tt-train of tt-metal v0.81.1).

Registered names (importing `lightning_tt.register`):
  accelerator "tt"     -> lightning_tt.accelerator.TTAccelerator (checks that ttnn and ttml import; never counts)
  strategy    "tt"     -> lightning_tt.strategy.TTStrategy (one chip; the strategy owns the training step)
  strategy    "tt_ddp" -> lightning_tt.mesh.TTMeshStrategy (data parallel over a mesh of chips from one process;
                          the mesh shape is the machine's mesh graph descriptor's: [1, 2] N300, [2, 4] T3K/LoudBox,
                          [8, 4] Galaxy in the 0.81.1 wheel, or a [1, 8] / [1, 32] line; data.batch_size is the
                          global batch, split over all chips; trainer.num_devices = chips, trainer.world_size = 1)
The precision plugin (lightning_tt.precision.TTPrecision) comes with the strategy: --trainer.precision bf16-mixed
(bfloat16 compute, float32 master weights and moments in ttml's AdamWFullPrecision; checkpoints carry the masters)
or bf16-true (ttml's AdamW on bfloat16 weights; the strategy's stochastic_rounding option); "32-true" is refused.

The contract with the application (everything the plugin reads of it; it imports nothing of it):
- `module.model`: a torch module whose state_dict is the parameter map of lightning_tt.interface (names and shapes
  are read from it, checked against the roles that module documents), with `model.config` giving num_heads,
  max_seq_len, dropout, rope_theta and norm_eps; it is called as `model(idx, targets=None, cache=None) ->
  (logits, loss)` from the module's *_step methods and its `generate` (the strategy routes those calls to the chip);
- one torch.optim.AdamW from configure_optimizers: its param_groups (lr as the scheduler sets it, betas, eps,
  weight_decay, amsgrad) configure ttml's optimizer, one per group; its state_dict format is the one checkpoints
  carry ttml's moments in;
- optional `module.evaluation_needs_logits = False`: validation/test forwards then return (None, loss), and the loss
  is computed on the chip (the host reads one scalar per chip and batch); by default the logits are downloaded too.

The ttml/ttnn calls it makes are listed, with the real bindings' Python-visible signatures and the tt-metal source
file and commit each was read from, in lightning_tt.bindings; `tt-check` checks the installed libraries against it.

Errors: every problem a user can fix raises a lightning_tt.errors.TTError subclass whose message is one line
(problem, then fix): TTConfigError for settings, TTHardwareError for the software stack, environment or chips.

This file imports nothing heavy: `lightning_tt.bridge`, `fabric`, `symbols`, `bindings`, `interface` and `errors`
must stay importable with only ttnn and numpy installed (the torch-free CI leg); ttnn/ttml are imported only when
a TT run is set up. Documentation: docs/tenstorrent.md.
"""

ACCELERATOR_NAME = "tt"
STRATEGY_NAME = "tt"
MESH_STRATEGY_NAME = "tt_ddp"
