"""ttml.optimizers double: AdamWConfig.make and AdamW (Python name "AdamW").

Signatures mirror tt-train/sources/ttml/nanobind/nb_optimizers.cpp @ decdb8775347cb21653cc86f97e7d57b8d408f1a
(AdamWConfig.make(lr, beta1, beta2, epsilon, weight_decay); AdamW(parameters: NamedParameters, config);
OptimizerBase.zero_grad/step/get_lr/set_lr). The update mirrors tt-train/sources/ttml/optimizers/adamw.cpp @
013b2173: decoupled weight decay, bias correction through running beta powers, parameters without a gradient
skipped, the result written to the parameter's bfloat16 value. zero_grad() leaves gradients UNINITIALISED
(set_grad(ttnn::Tensor()), adamw.cpp @ 4ca8c04e), so the next backward starts them afresh; the 013b2173 variant
writes zeros instead, which the plugin treats the same (it never reads a gradient between zero_grad and backward).
"""

from __future__ import annotations

import torch

from .autograd import store
from .modules import NamedParameters


class AdamWConfig:
    def __init__(self) -> None:
        self.lr, self.beta1, self.beta2, self.epsilon, self.weight_decay = 1e-3, 0.9, 0.999, 1e-8, 0.01

    @staticmethod
    def make(lr: float, beta1: float, beta2: float, epsilon: float, weight_decay: float) -> AdamWConfig:
        config = AdamWConfig()
        for name, value in zip(
            ("lr", "beta1", "beta2", "epsilon", "weight_decay"), (lr, beta1, beta2, epsilon, weight_decay), strict=True
        ):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"AdamWConfig.make(): {name} must be a float")
            setattr(config, name, float(value))
        return config


class AdamW:
    def __init__(self, parameters: NamedParameters, config: AdamWConfig) -> None:
        if not isinstance(parameters, NamedParameters) or not isinstance(config, AdamWConfig):
            raise TypeError("AdamW.__init__(): incompatible function arguments (NamedParameters, AdamWConfig)")
        self._parameters = dict(parameters.items())
        self._config = config
        # Optimizer state per chip: every chip updates its own copy of the parameters.
        trained = {n: t for n, t in self._parameters.items() if t.get_requires_grad()}
        self._exp_avg = {n: [torch.zeros_like(s) for s in t._shards] for n, t in trained.items()}
        self._exp_avg_sq = {n: [torch.zeros_like(s) for s in t._shards] for n, t in trained.items()}
        self._steps = 0
        self._beta1_pow = 1.0
        self._beta2_pow = 1.0

    def zero_grad(self) -> None:
        for tensor in self._parameters.values():
            if tensor.get_requires_grad() and tensor.is_grad_initialized():
                tensor.clear_grad()

    def step(self) -> None:
        cfg = self._config
        self._steps += 1
        self._beta1_pow *= cfg.beta1
        self._beta2_pow *= cfg.beta2
        with torch.no_grad():
            for name, tensor in self._parameters.items():
                if not tensor.is_grad_initialized():
                    continue
                for chip, param in enumerate(tensor._shards):
                    grad, exp_avg, exp_avg_sq = param.grad, self._exp_avg[name][chip], self._exp_avg_sq[name][chip]
                    param.mul_(1.0 - cfg.lr * cfg.weight_decay)
                    exp_avg.mul_(cfg.beta1).add_(grad, alpha=1.0 - cfg.beta1)
                    exp_avg_sq.mul_(cfg.beta2).addcmul_(grad, grad, value=1.0 - cfg.beta2)
                    denom = (exp_avg_sq / (1.0 - self._beta2_pow)).sqrt().add_(cfg.epsilon)
                    param.addcdiv_(exp_avg, denom, value=-cfg.lr / (1.0 - self._beta1_pow))
                    param.copy_(store(param, tensor.dtype()))

    def get_lr(self) -> float:
        return self._config.lr

    def set_lr(self, lr: float) -> None:
        if not isinstance(lr, float):
            raise TypeError("set_lr(): incompatible function arguments (lr: float)")
        self._config.lr = lr
