"""The optimizers NanoTrickster trains with and their learning-rate schedule.

`adamw`: AdamW on every parameter. `muon`: torch.optim.Muon on the 2-D weight matrices of the blocks, AdamW on the
embedding (tied to the output projection) and the norm weights, stepped together as one optimizer so Lightning's
automatic optimization, gradient clipping, accumulation and checkpoints work unchanged. Muon orthogonalizes each
matrix's momentum with a Newton-Schulz iteration (Jordan et al. 2024, "Muon: an optimizer for hidden layers in
neural networks"; the modded-nanogpt speedruns); embeddings and gains stay on AdamW, as there. The Newton-Schulz
iterations of same-shape matrices run batched (BatchedMuon: torch's update and state, fewer and larger products).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.optim._muon import _adjust_lr

from lightning_trickster.errors import InvalidConfigError

OptimizerName = Literal["adamw", "muon"]


@dataclass(frozen=True)
class Optimization:
    """How the model is optimized: the optimizer, its learning rates and the warmup-cosine schedule."""

    optimizer: OptimizerName = "adamw"
    """'adamw' for every parameter, or 'muon' for the blocks' weight matrices with AdamW for the embedding and norms."""
    learning_rate: float = 3e-4
    """Peak AdamW learning rate, reached after warmup."""
    muon_learning_rate: float = 0.02
    """Peak Muon learning rate (optimizer 'muon'), on the same schedule."""
    weight_decay: float = 0.1
    """Weight decay, applied to matrices and embeddings only (not norms)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    warmup_steps: int = 100
    """Optimizer steps of linear learning-rate warmup."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to learning_rate * min_lr_ratio at trainer.max_steps, or at the end of the
    trainer.max_time budget when the run is bounded by time alone."""
    fused: bool | None = None
    """Use the fused AdamW kernel (None: on for CUDA and CPU, off elsewhere)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))  # a list from YAML or a checkpoint
        name = "model.optimization"
        if self.optimizer not in ("adamw", "muon"):
            raise InvalidConfigError(f"{name}.optimizer must be adamw or muon, got {self.optimizer!r}")
        if self.learning_rate <= 0:
            raise InvalidConfigError(f"{name}.learning_rate must be positive, got {self.learning_rate}")
        if self.muon_learning_rate <= 0:
            raise InvalidConfigError(f"{name}.muon_learning_rate must be positive, got {self.muon_learning_rate}")
        if self.warmup_steps < 0:
            raise InvalidConfigError(f"{name}.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise InvalidConfigError(f"{name}.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.weight_decay < 0:  # AdamW would push the weights away from zero instead
            raise InvalidConfigError(
                f"{name}.weight_decay must be >= 0, got {self.weight_decay}: e.g. 0.1, or 0 for none"
            )
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise InvalidConfigError(
                f"{name}.betas must be two numbers in [0, 1), got {list(self.betas)}: e.g. [0.9, 0.95]"
            )


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier: linear warmup to 1 over warmup_steps, then cosine decay to min_lr_ratio at total_steps."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    return cosine_decay(min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)), min_lr_ratio)


def warmup_cosine_over_time(step: int, warmup_steps: int, elapsed_fraction: float, min_lr_ratio: float) -> float:
    """LR multiplier of a run bounded by a time budget: the same linear warmup over warmup_steps, then the cosine at
    the fraction of the budget spent so far, so it reaches min_lr_ratio when the budget does. The cosine runs over the
    whole budget, warmup included (a 100-step warmup of a few minutes' run spends a few percent of it: the rate starts
    its decay within 0.5% of the peak)."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    return cosine_decay(min(1.0, elapsed_fraction), min_lr_ratio)


def cosine_decay(progress: float, min_lr_ratio: float) -> float:
    """Half a cosine from 1 at progress 0 down to min_lr_ratio at progress 1."""
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class BatchedMuon(torch.optim.Muon):
    """torch.optim.Muon with the Newton-Schulz iterations of every matrix of one shape run as one batched product.

    The update is torch's, step for step (momentum, Nesterov, bfloat16 Newton-Schulz on the wide orientation of each
    matrix, decoupled weight decay, the learning rate adjusted by shape), and so are the state and its state_dict:
    checkpoints move freely between the two. torch steps each matrix alone, three small products per iteration per
    matrix; here the matrices that share the shape the iteration runs on (a tall matrix is transposed first, as
    there) are stacked, so a block's gate, up and down projections, say, make one batched product per step. The
    momentum and weight updates use torch's foreach operations.
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            buffers: list[torch.Tensor] = []
            self._init_group(group, params, grads, buffers)
            if params:
                self._update(group, params, grads, buffers)
        return loss

    def _update(self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor],
                buffers: list[torch.Tensor]) -> None:  # fmt: skip
        lr = group["lr"].item() if isinstance(group["lr"], torch.Tensor) else group["lr"]
        momentum = group["momentum"]
        torch._foreach_lerp_(buffers, grads, 1 - momentum)
        # The orientation Newton-Schulz runs on: (short side, long side).
        same_shape: dict[tuple, list[int]] = defaultdict(list)
        for i, param in enumerate(params):
            same_shape[(min(param.shape), max(param.shape), param.dtype, param.device)].append(i)
        for indices in same_shape.values():
            updates = [grads[i].lerp(buffers[i], momentum) if group["nesterov"] else buffers[i] for i in indices]
            tall = [update.size(0) > update.size(1) for update in updates]
            wide = torch.stack([u.bfloat16().mT if t else u.bfloat16() for u, t in zip(updates, tall, strict=True)])
            orthogonal = newton_schulz(wide, group["ns_coefficients"], group["ns_steps"], group["eps"])
            by_shape: dict[torch.Size, tuple[list[torch.Tensor], list[torch.Tensor]]] = defaultdict(lambda: ([], []))
            for i, t, update in zip(indices, tall, orthogonal.unbind(0), strict=True):
                targets, steps = by_shape[params[i].shape]
                targets.append(params[i])
                steps.append(update.mT if t else update)
            for shape, (targets, steps) in by_shape.items():
                torch._foreach_mul_(targets, 1 - lr * group["weight_decay"])
                torch._foreach_add_(targets, steps, alpha=-_adjust_lr(lr, group["adjust_lr_fn"], shape))


def newton_schulz(
    matrices: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> torch.Tensor:
    """torch.optim.Muon's quintic Newton-Schulz orthogonalization of each matrix of a (N, rows, cols) bfloat16 stack
    with rows <= cols, batched: normalized by its own Frobenius norm, then `steps` iterations of
    X <- a X + (b A + c A A) X with A = X X^T."""
    a, b, c = coefficients
    x = matrices / torch.linalg.vector_norm(matrices, dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon for `matrices`, AdamW for the `adamw_groups`, as one optimizer.

    Its param_groups are the two optimizers' own group dicts, so an LR scheduler and gradient clipping act on both;
    each group keeps its own learning rate. Checkpoints hold both optimizers' states.
    """

    def __init__(
        self,
        matrices: list[torch.nn.Parameter],
        adamw_groups: list[dict[str, Any]],
        muon_lr: float,
        muon_weight_decay: float,
        adamw_lr: float,
        betas: tuple[float, float],
        fused: bool | None,
        batched: bool = True,
    ) -> None:
        """batched False: torch.optim.Muon, one matrix at a time (what BatchedMuon is measured and tested against)."""
        muon = BatchedMuon if batched else torch.optim.Muon
        self.muon = muon(matrices, lr=muon_lr, weight_decay=muon_weight_decay)
        self.adamw = torch.optim.AdamW(adamw_groups, lr=adamw_lr, betas=betas, fused=fused)
        # add_param_group appends the very dicts it is given: a scheduler's lr changes reach both optimizers.
        super().__init__(self.muon.param_groups + self.adamw.param_groups, defaults={})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        # Loading replaces the inner optimizers' group dicts: share the new ones.
        self.param_groups = self.muon.param_groups + self.adamw.param_groups


def is_block_matrix(name: str, parameter: torch.nn.Parameter) -> bool:
    """The weights Muon updates: every 2-D weight inside a transformer block (not the embedding, not norms)."""
    return name.startswith("model.blocks.") and parameter.dim() == 2


def build_optimizer(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    norm_weights: set[int],
    settings: Optimization,
    fused: bool | None,
) -> torch.optim.Optimizer:
    """The configured optimizer with weight decay on matrices and embeddings, none on the norm weights. fused: the
    AdamW implementation the caller chose for this device (None: torch's default)."""
    name, learning_rate, weight_decay, betas = (
        settings.optimizer, settings.learning_rate, settings.weight_decay, settings.betas
    )  # fmt: skip
    named = list(named_parameters)
    matrices = [p for n, p in named if name == "muon" and is_block_matrix(n, p)]
    in_muon = {id(p) for p in matrices}
    decay = [p for _, p in named if id(p) not in norm_weights and id(p) not in in_muon]
    no_decay = [p for _, p in named if id(p) in norm_weights]
    adamw_groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "adamw":
        return torch.optim.AdamW(adamw_groups, lr=learning_rate, betas=betas, fused=fused)
    return MuonWithAdamW(matrices, adamw_groups, settings.muon_learning_rate, weight_decay, learning_rate, betas, fused)
