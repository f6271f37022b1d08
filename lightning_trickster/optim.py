"""The optimizers NanoTrickster trains with and their learning-rate schedule.

`adamw`: AdamW on every parameter. `muon`: torch.optim.Muon on the 2-D weight matrices of the blocks, AdamW on the
embedding (tied to the output projection) and the norm weights, stepped together as one optimizer so Lightning's
automatic optimization, gradient clipping, accumulation and checkpoints work unchanged. Muon orthogonalizes each
matrix's momentum with a Newton-Schulz iteration (Jordan et al. 2024, "Muon: an optimizer for hidden layers in
neural networks"; the modded-nanogpt speedruns); embeddings and gains stay on AdamW, as there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch

OptimizerName = Literal["adamw", "muon"]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier: linear warmup to 1 over warmup_steps, then cosine decay to min_lr_ratio at total_steps."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


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
    ) -> None:
        self.muon = torch.optim.Muon(matrices, lr=muon_lr, weight_decay=muon_weight_decay)
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
    name: OptimizerName,
    learning_rate: float,
    weight_decay: float,
    betas: tuple[float, float],
    fused: bool | None,
    muon_learning_rate: float,
) -> torch.optim.Optimizer:
    """The optimizer `name` with weight decay on matrices and embeddings, none on the norm weights."""
    named = list(named_parameters)
    matrices = [p for n, p in named if name == "muon" and is_block_matrix(n, p)]
    in_muon = {id(p) for p in matrices}
    decay = [p for _, p in named if id(p) not in norm_weights and id(p) not in in_muon]
    no_decay = [p for _, p in named if id(p) in norm_weights]
    adamw_groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "adamw":
        return torch.optim.AdamW(adamw_groups, lr=learning_rate, betas=betas, fused=fused)
    return MuonWithAdamW(matrices, adamw_groups, muon_learning_rate, weight_decay, learning_rate, betas, fused)
