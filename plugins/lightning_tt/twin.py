"""NanoTricksterTT: the ttml twin of a torch model with the parameter map lightning_tt.interface documents (read
from the model's state_dict into a ModelSpec), built from ttml ops, with weights addressed by torch name.

Imported only after TTAccelerator found ttnn and ttml. Same computation as the torch model:
RMSNorm -> fused qkv -> heads -> RoPE on adjacent channel pairs -> causal SDPA -> proj -> residual, RMSNorm ->
down(silu(gate x) * up x) -> residual, final RMSNorm, output tied to the embedding.

Conventions checked in tt-metal sources (tt-train/sources/ttml/):
- ops/multi_head_utils.cpp: heads_creation splits qkv (B, 1, T, 3E) laid out [Q | K | V], like torch's
  qkv(x).split(hidden); heads_fusion is its inverse.
- ops/rope_op.cpp: gen_freqs repeats each frequency for channels (2i, 2i+1) and gen_trans_mat swaps adjacent
  pairs, i.e. the same adjacent-pair (Meta) rotation as RotaryEmbedding in model.py: no weight permutation.
  build_rope_params needs head_dim % 32 == 0 and the exact sequence length.
- nanobind/nb_ops.cpp @ 0152e582: dropout(tensor, probability, use_per_device_seed=False); without the flag every
  chip of a mesh draws the same mask (ttnn adds the device id to the seed only with it), so on a mesh the twin
  passes use_per_device_seed=True: each chip's rows get their own mask, as each DDP replica's do on GPUs.
Differences, on purpose: ttml's fused SDPA has no dropout, so with dropout > 0 only the residual-branch dropout
is applied on TT (the strategy warns); the vocabulary is padded to a multiple of 32 with an additive -1e4 logit
bias on the padding, so padded tokens get zero probability and the loss equals the unpadded one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ttml
import ttnn

from lightning_tt import bridge


class NanoTricksterTT(ttml.modules.AbstractModuleBase):
    """Flat module: every tensor is registered under its torch parameter name, so ttml's parameter names are
    "NanoTricksterTT/<torch name>" and named_parameters() yields the torch names."""

    def __init__(self, spec: Any, weights: dict[str, np.ndarray], dtype: Any, per_device_dropout: bool = False) -> None:
        """spec: the model's lightning_tt.interface.ModelSpec; weights: its parameter map's tensors (torch name ->
        float32 array); dtype: ttnn.DataType.BFLOAT16; per_device_dropout: draw each chip's dropout mask from its
        own seed (on a mesh)."""
        super().__init__()
        self.config = spec
        self.dtype = dtype
        self.per_device_dropout = per_device_dropout
        self.padded_vocab = bridge.round_up_to_tile(spec.vocab_size)
        self.tensors: dict[str, Any] = {}
        """Torch parameter name -> ttml Tensor on the chip (the tied output weight is "embedding.weight")."""
        for name, array in weights.items():
            tensor = ttml.autograd.Tensor.from_numpy(self.device_layout(name, array), ttnn.Layout.TILE, dtype)
            self.register_tensor(tensor, name)
            self.tensors[name] = tensor
        # Constants live in dicts: ttml's AbstractModuleBase.__setattr__ registers any attribute with a get_value
        # as a parameter (ttml/modules/module_base.py @ 04a6c330), which would hand them to the optimizer.
        self._constants = {"vocab_bias": self._constant(bridge.vocab_pad_bias(spec.vocab_size, self.padded_vocab))}
        self._rope: dict[int, Any] = {}
        self._masks: dict[int, Any] = {}
        self.replica_composer: Any = None
        """On a mesh every chip holds a copy of each weight: a composer concatenating the copies on dim 0, of
        which reads keep chip 0's. None on one chip."""

    def device_layout(self, name: str, array: np.ndarray) -> np.ndarray:
        """A torch-shaped float32 array of parameter `name` (or its optimizer state) as the chip holds it."""
        if array.ndim == 1:
            return bridge.gain_to_device_layout(array)
        rows = self.padded_vocab if name in ("embedding.weight", "output.weight") else None
        return bridge.matrix_to_device_layout(array, rows)

    def _constant(self, array: np.ndarray) -> Any:
        # Not registered, so not a parameter: no gradient is kept and the optimizer never sees it.
        tensor = ttml.autograd.Tensor.from_numpy(array, ttnn.Layout.TILE, self.dtype)
        tensor.set_requires_grad(False)
        return tensor

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Overwrite chip weights in place (so optimizer state stays attached) from torch-named float32 arrays.

        `assign` copies the source's bfloat16 value (nb_autograd.cpp: set_value(other->get_value()), HALF by
        default); the weights are bfloat16 on the chip anyway, so nothing more is lost than at upload."""
        for name, array in weights.items():
            source = ttml.autograd.Tensor.from_numpy(self.device_layout(name, array), ttnn.Layout.TILE, self.dtype)
            self.tensors[name].assign(source)

    def export_weights(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
        """Chip weights as torch-shaped float32 arrays (exact: bfloat16 values are representable in float32)."""
        return {name: self.read_array(self.tensors[name], shape) for name, shape in shapes.items()}

    def read_array(self, tensor: Any, shape: tuple[int, ...]) -> np.ndarray:
        """A chip tensor laid out like a parameter (the parameter itself, its master copy or a moment), as a
        torch-shaped float32 array (chip 0's copy on a mesh)."""
        return bridge.from_device_layout(self._read(tensor), shape)

    def _read(self, tensor: Any) -> np.ndarray:
        if self.replica_composer is None:
            return tensor.to_numpy(ttnn.DataType.FLOAT32)
        return tensor.to_numpy(ttnn.DataType.FLOAT32, self.replica_composer)[:1]

    def export_gradients(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
        """Gradients accumulated on the chip, torch-shaped; parameters without a gradient are left out."""
        grads = {}
        for name, shape in shapes.items():
            grad = self.tensors[name].get_grad_tensor()
            if grad is not None:
                grads[name] = bridge.from_device_layout(self._read(grad), shape)
        return grads

    def _rope_params(self, seq_len: int) -> Any:
        if seq_len not in self._rope:
            self._rope[seq_len] = ttml.ops.rope.build_rope_params(seq_len, self.config.head_dim, self.config.rope_theta)
        return self._rope[seq_len]

    def _causal_mask(self, seq_len: int) -> Any:
        if seq_len not in self._masks:
            self._masks[seq_len] = self._constant(bridge.causal_mask(seq_len))
        return self._masks[seq_len]

    def _residual_dropout(self, x: Any) -> Any:
        if self.config.dropout > 0 and self.get_run_mode() == ttml.modules.RunMode.TRAIN:
            return ttml.ops.dropout.dropout(x, self.config.dropout, use_per_device_seed=self.per_device_dropout)
        return x

    def forward(self, tokens: Any) -> Any:
        """tokens: [B, 1, 1, T] UINT32 (T a multiple of 32) -> logits [B, 1, T, V_padded]."""
        ops, w, cfg = ttml.ops, self.tensors, self.config
        seq_len = tokens.shape()[-1]
        rope, mask = self._rope_params(seq_len), self._causal_mask(seq_len)
        x = ops.embedding.embedding(tokens, w["embedding.weight"])  # (B, 1, T, E)
        for i in range(cfg.num_layers):
            p = f"blocks.{i}."
            h = ops.rmsnorm.rmsnorm(x, w[p + "attn_norm.weight"], cfg.norm_eps)
            qkv = ops.linear.linear(h, w[p + "attn.qkv.weight"], None)  # (B, 1, T, 3E)
            q, k, v = ops.multi_head_utils.heads_creation(qkv, cfg.num_heads)  # (B, H, T, hd)
            q, k = ops.rope.rope(q, rope), ops.rope.rope(k, rope)
            y = ops.attention.scaled_dot_product_attention(q, k, v, mask)
            y = ops.linear.linear(ops.multi_head_utils.heads_fusion(y), w[p + "attn.proj.weight"], None)
            x = ops.binary.add(x, self._residual_dropout(y))
            h = ops.rmsnorm.rmsnorm(x, w[p + "mlp_norm.weight"], cfg.norm_eps)
            gate = ops.unary.silu(ops.linear.linear(h, w[p + "mlp.gate.weight"], None))
            up = ops.linear.linear(h, w[p + "mlp.up.weight"], None)
            y = ops.linear.linear(ops.binary.mul(gate, up), w[p + "mlp.down.weight"], None)
            x = ops.binary.add(x, self._residual_dropout(y))
        x = ops.rmsnorm.rmsnorm(x, w["final_norm.weight"], cfg.norm_eps)
        output = w["embedding.weight"] if cfg.tie_embeddings else w["output.weight"]
        return ops.linear.linear(x, output, self._constants["vocab_bias"])  # (B, 1, T, V_padded)
