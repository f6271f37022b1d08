"""TTPrecision: the numeric formats on the chip; the host module stays float32."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.utilities import GradClipAlgorithmType

from lightning_tt.bridge import PRECISION_32_REFUSED
from lightning_tt.errors import TTConfigError

SUPPORTED = ("bf16-mixed", "bf16-true")


class TTPrecision(Precision):
    """The two formats ttml trains in (tt-metal v0.81.1 era), both computing in bfloat16:

    - "bf16-mixed": bfloat16 weights and activations on the chip, float32 master weights and float32 AdamW moments
      in ttml's AdamWFullPrecision (optimizers/adamw_full_precision.cpp: the update runs on the masters and their
      bfloat16 copy is written back). Checkpoints carry the float32 masters.
    - "bf16-true": bfloat16 weights updated in place by ttml's AdamW with bfloat16 moments (optimizers/adamw.cpp);
      the strategy's stochastic_rounding option turns on its stochastic rounding. An update smaller than half a
      bfloat16 step of a weight is lost without it.

    "32-true" is refused (one line, see bridge.PRECISION_32_REFUSED): that ttml reads float32 tensors as bfloat16
    in every op (autograd/autocast_tensor.cpp, get_value() defaults to HALF), so a "32-true" run would compute in
    bfloat16 while claiming float32.

    Backward and the parameter update run on the chip (the strategy does them), so this plugin never touches
    host gradients: `backward` is not used, and gradient clipping is recorded here and applied on the chip.
    """

    def __init__(self, precision: str = "bf16-true") -> None:
        if precision == "32-true":
            raise TTConfigError(PRECISION_32_REFUSED)
        if precision not in SUPPORTED:
            raise TTConfigError(
                f"--trainer.precision {precision!r} is not supported with accelerator 'tt': use bf16-mixed (float32 "
                "master weights) or bf16-true"
            )
        self.precision = precision
        self.requested_clip_norm: float | None = None
        """Max gradient norm Lightning asked for in the current optimizer step; the strategy clips on the chip."""

    def backward(self, tensor: Any, model: pl.LightningModule, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("TTPrecision.backward is not used: TTStrategy.backward runs the backward pass on the chip")

    def clip_gradients(
        self,
        optimizer: Any,
        clip_val: int | float = 0.0,
        gradient_clip_algorithm: GradClipAlgorithmType = GradClipAlgorithmType.NORM,
    ) -> None:
        if clip_val <= 0:
            return
        if gradient_clip_algorithm != GradClipAlgorithmType.NORM:
            raise TTConfigError(
                f"--trainer.gradient_clip_algorithm {gradient_clip_algorithm.value!r} is not supported with "
                "accelerator 'tt' (ttml clips by norm): use 'norm'"
            )
        self.requested_clip_norm = float(clip_val)

    def optimizer_step(
        self, optimizer: Any, model: pl.LightningModule, closure: Callable[[], Any], **kwargs: Any
    ) -> Any:
        def closure_then_release_host_grads() -> Any:
            # Runs training_step + backward (on the chip) and the on_before_optimizer_step/clipping hooks.
            result = self._wrap_closure(model, optimizer, closure)
            # Host grads exist only on logging steps, for the hooks to read; the chip's optimizer does the update.
            optimizer.zero_grad(set_to_none=True)
            return result

        # With no host gradient the host optimizer changes nothing, but its step is counted, which keeps
        # Lightning's step counter and the LR scheduler's bookkeeping exactly as on CPU.
        return optimizer.step(closure=closure_then_release_host_grads, **kwargs)
