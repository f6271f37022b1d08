"""ttml.optimizers double: AdamW and AdamWFullPrecision with their configs, on OptimizerBase.

Signatures mirror tt-train/sources/ttml/nanobind/nb_optimizers.cpp @ 04087d1243eeafc57122bf65cd7373f963b8ff53:
AdamWConfig.make(lr, beta1, beta2, epsilon, weight_decay, amsgrad=False, stochastic_rounding=False),
AdamWFullPrecisionConfig.make(lr, beta1, beta2, epsilon, weight_decay, amsgrad=False), AdamW(parameters, config),
AdamWFullPrecision(parameters, config) with parameters a NamedParameters, and OptimizerBase's zero_grad(), step(),
get_lr(), set_lr(lr), get_state_dict(), set_state_dict(dict).

Behaviour, from the 2026 files (tt-train/sources/ttml/):
- optimizers/adamw.cpp @ 013b2173 (index id 55723938896): the moments are created as zeros_like of the bfloat16
  value and stay bfloat16; step() runs the metal AdamW kernel on the parameter's bfloat16 value in place;
  zero_grad() sets every initialised gradient to zeros (set_grad(zeros_like(...))); parameters whose gradient was
  never initialised are skipped by step(). get_state_dict() = {steps, lr, exp_avg, exp_avg_sq, amsgrad
  [, max_exp_avg_sq]}; set_state_dict() sets the step count (and with it the beta powers), lr, and REPLACES the
  moment maps with the ones given.
- metal/optimizers/adamw/device/kernels/compute/adamw_kernel.cpp (index id 60233880992, (c) 2026): per element,
  m = b1 m + (1 - b1) g and v = b2 v + (1 - b2) g^2 in float32 registers, each packed to the bfloat16 moment
  buffer and read back from it for the update; theta = (1 - lr wd) theta - (lr / (1 - b1^t)) m / (sqrt(v /
  (1 - b2^t)) + eps) [amsgrad: max of the stored and new v]; the result is packed to the bfloat16 weight, rounded
  to nearest (the double rounds to nearest even, as ttnn's host conversion does) or, with stochastic_rounding,
  by stochastic_round_tile: up or down with probability proportional to the distance (here: add uniform random
  low 16 bits, then truncate, from a generator seeded by the context).
- optimizers/adamw_full_precision.cpp @ 013b2173 (index id 55802603313): float32 master weights made by
  typecasting the bfloat16 weights at construction, float32 moments; step() runs the kernel on the masters and
  writes typecast(master, BFLOAT16) to the parameter; get_state_dict() adds master_weights; set_state_dict()
  replaces masters and moments.
Gradients are read as the chip holds them: bfloat16 (the double's autograd keeps them in float32).
"""

from __future__ import annotations

import torch
import ttnn

from .autograd import Tensor, _ctx, half, store
from .modules import NamedParameters


def _float(name: str, value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"make(): incompatible function arguments: {name} must be a float")
    return float(value)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"make(): incompatible function arguments: {name} must be a bool")
    return value


class AdamWConfig:
    def __init__(self) -> None:
        self.lr, self.beta1, self.beta2, self.epsilon, self.weight_decay = 1e-3, 0.9, 0.999, 1e-8, 0.01
        self.amsgrad = self.stochastic_rounding = False

    @staticmethod
    def make(
        lr: float,
        beta1: float,
        beta2: float,
        epsilon: float,
        weight_decay: float,
        amsgrad: bool = False,
        stochastic_rounding: bool = False,
    ) -> AdamWConfig:
        config = AdamWConfig()
        hyper = {"lr": lr, "beta1": beta1, "beta2": beta2, "epsilon": epsilon, "weight_decay": weight_decay}
        for name, value in hyper.items():
            setattr(config, name, _float(name, value))
        config.amsgrad = _bool("amsgrad", amsgrad)
        config.stochastic_rounding = _bool("stochastic_rounding", stochastic_rounding)
        return config


class AdamWFullPrecisionConfig:
    def __init__(self) -> None:
        self.lr, self.beta1, self.beta2, self.epsilon, self.weight_decay = 1e-3, 0.9, 0.999, 1e-8, 0.01
        self.amsgrad = False

    @staticmethod
    def make(
        lr: float, beta1: float, beta2: float, epsilon: float, weight_decay: float, amsgrad: bool = False
    ) -> AdamWFullPrecisionConfig:
        config = AdamWFullPrecisionConfig()
        hyper = {"lr": lr, "beta1": beta1, "beta2": beta2, "epsilon": epsilon, "weight_decay": weight_decay}
        for name, value in hyper.items():
            setattr(config, name, _float(name, value))
        config.amsgrad = _bool("amsgrad", amsgrad)
        return config


def stochastic_round(value: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """float32 -> bfloat16 values (as float32), rounding up or down with probability proportional to the distance:
    random low 16 bits added to the float32 bits, then truncated."""
    bits = value.contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, bits.shape, generator=generator, dtype=torch.int32)
    rounded = ((bits + noise) & ~0xFFFF).view(torch.float32)
    return torch.where(torch.isfinite(value), rounded, value)


class OptimizerBase:
    """The bookkeeping AdamW and AdamWFullPrecision share (steps, beta powers, lr); subclasses keep the moments."""

    MOMENT_DTYPE = ttnn.DataType.BFLOAT16

    def __init__(self, parameters: NamedParameters, config: object, config_type: type) -> None:
        if not isinstance(parameters, NamedParameters) or not isinstance(config, config_type):
            raise TypeError(
                f"{type(self).__name__}.__init__(): incompatible function arguments (NamedParameters, "
                f"{config_type.__name__})"
            )
        self._parameters = dict(parameters.items())
        self._config = config
        self._steps = 0
        self._beta1_pow = self._beta2_pow = 1.0
        self._trained = {n: t for n, t in self._parameters.items() if t.get_requires_grad()}
        self._moments = {
            name: self._zeros(self._start_values())
            for name in ("exp_avg", "exp_avg_sq", *(("max_exp_avg_sq",) if config.amsgrad else ()))
        }

    def _start_values(self) -> dict[str, list[torch.Tensor]]:
        """Per trained parameter, per chip: the values the moments are shaped like."""
        return {n: [half(s.detach()) for s in t._shards] for n, t in self._trained.items()}

    def _zeros(self, like: dict[str, list[torch.Tensor]]) -> NamedParameters:
        named = NamedParameters()
        for name, shards in like.items():
            named[name] = Tensor(
                [torch.zeros_like(s) for s in shards], self.MOMENT_DTYPE, ttnn.Layout.TILE, requires_grad=False
            )
        return named

    def zero_grad(self) -> None:
        for tensor in self._trained.values():
            if tensor.is_grad_initialized():
                tensor.zero_grad()

    def get_lr(self) -> float:
        return self._config.lr

    def set_lr(self, lr: float) -> None:
        if not isinstance(lr, float):
            raise TypeError("set_lr(): incompatible function arguments (lr: float)")
        self._config.lr = lr

    def get_state_dict(self) -> dict[str, object]:
        return {"steps": self._steps, "lr": self._config.lr, **self._moments, "amsgrad": self._config.amsgrad}

    def set_state_dict(self, dict: dict[str, object]) -> None:  # noqa: A002 - the binding's name
        if not isinstance(dict.get("steps"), int) or isinstance(dict["steps"], bool):
            raise RuntimeError("set_state_dict: 'steps' must be an integer (bad_variant_access)")
        self._steps = dict["steps"]
        self._beta1_pow, self._beta2_pow = self._config.beta1**self._steps, self._config.beta2**self._steps
        if "lr" in dict:
            self._config.lr = float(dict["lr"])
        for name in list(self._moments):
            value = dict.get(name)
            if name == "max_exp_avg_sq" and value is None:
                continue  # adamw.cpp: kept (re-initialised) when the dict has none
            if not isinstance(value, NamedParameters):  # std::get<NamedParameters>(dict.at(name))
                raise RuntimeError(f"set_state_dict: {name} must be NamedParameters (bad_variant_access)")
            self._moments[name] = value

    def _update(self, name: str, chip: int, weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The kernel's arithmetic in float32 for one parameter on one chip; stores the moments, returns the new
        weight (float32, before it is written back)."""
        cfg = self._config
        stored = self.MOMENT_DTYPE
        exp_avg = self._moments["exp_avg"][name]._shards[chip]
        exp_avg_sq = self._moments["exp_avg_sq"][name]._shards[chip]
        exp_avg.copy_(store(cfg.beta1 * exp_avg + (1.0 - cfg.beta1) * grad, stored))
        exp_avg_sq.copy_(store(cfg.beta2 * exp_avg_sq + (1.0 - cfg.beta2) * grad * grad, stored))
        second = exp_avg_sq
        if cfg.amsgrad:
            peak = self._moments["max_exp_avg_sq"][name]._shards[chip]
            peak.copy_(store(torch.maximum(peak, exp_avg_sq), stored))
            second = peak
        denom = (second / (1.0 - self._beta2_pow)).sqrt() + cfg.epsilon
        step_size = cfg.lr / (1.0 - self._beta1_pow)
        return (1.0 - cfg.lr * cfg.weight_decay) * weight - step_size * exp_avg / denom

    def step(self) -> None:
        cfg = self._config
        self._steps += 1
        self._beta1_pow *= cfg.beta1
        self._beta2_pow *= cfg.beta2
        with torch.no_grad():
            for name, tensor in self._trained.items():
                if not tensor.is_grad_initialized():
                    continue
                for chip, param in enumerate(tensor._shards):
                    self._apply(name, tensor, chip, param, half(param.grad))


class AdamW(OptimizerBase):
    def __init__(self, parameters: NamedParameters, config: AdamWConfig) -> None:
        super().__init__(parameters, config, AdamWConfig)
        self._rounding = torch.Generator().manual_seed(_ctx().next_seed())

    def _apply(self, name: str, tensor: Tensor, chip: int, param: torch.Tensor, grad: torch.Tensor) -> None:
        updated = self._update(name, chip, half(param), grad)
        if self._config.stochastic_rounding and tensor.dtype() == ttnn.DataType.BFLOAT16:
            param.copy_(stochastic_round(updated, self._rounding))
        else:
            param.copy_(store(updated, tensor.dtype()))


class AdamWFullPrecision(OptimizerBase):
    MOMENT_DTYPE = ttnn.DataType.FLOAT32

    def __init__(self, parameters: NamedParameters, config: AdamWFullPrecisionConfig) -> None:
        super().__init__(parameters, config, AdamWFullPrecisionConfig)
        masters = NamedParameters()
        for name, tensor in self._trained.items():  # typecast(bf16 weights, FLOAT32)
            masters[name] = Tensor(
                [half(s.detach()).clone() for s in tensor._shards],
                ttnn.DataType.FLOAT32,
                ttnn.Layout.TILE,
                requires_grad=False,
            )
        self._moments = {"master_weights": masters, **self._moments}

    def _apply(self, name: str, tensor: Tensor, chip: int, param: torch.Tensor, grad: torch.Tensor) -> None:
        master = self._moments["master_weights"][name]._shards[chip]
        master.copy_(self._update(name, chip, master, grad))
        param.copy_(store(master, tensor.dtype()))  # set_value(typecast(master, BFLOAT16))
