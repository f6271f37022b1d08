"""`tt-check`: is this machine's Tenstorrent stack what lightning_tt needs, and does one training step on the chips
match the CPU? Part (a) needs no chip; part (b) runs only where ttnn sees chips."""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from lightning_tt import bridge, fabric, symbols
from lightning_tt.errors import TTHardwareError

from lightning_trickster.model import NanoTrickster, NanoTricksterConfig

CHECK_MODEL = NanoTricksterConfig(
    vocab_size=64, hidden_dim=64, num_layers=2, num_heads=2, mlp_dim=128, max_seq_len=32, dropout=0.0
)
"""A tiny model that satisfies ttml's tile rules (head_dim 32), so a step takes well under a second on a chip."""

LEARNING_RATE, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.95), 1e-8, 0.1
LOSS_REL = 2e-2
"""bfloat16 compute (ttml's only format) against float32 on CPU: a loss near ln(64) = 4.2 moves by ~1e-2 at most."""
NORM_REL = 1e-2
"""Weight-norm checksum: bfloat16 storage moves each weight by <= 2^-9 relative; the norm by far less."""
MAX_WEIGHT_ABS = 2 * LEARNING_RATE + 1e-3
"""One AdamW step moves a weight by ~lr; a gradient whose sign differs in bfloat16 gives 2 lr, plus one bfloat16
step of the largest initial weights (~0.1)."""


@dataclass
class StepResult:
    loss: float
    weight_norm: float
    seconds: float
    weights: dict[str, np.ndarray]
    replica_spread: float = 0.0
    """Largest difference between the chips' copies of a weight after the step: 0 when every chip applied the same
    averaged gradient (one AdamW step moves a weight by about lr whatever the gradient's size, so the copies, not
    the CPU comparison, are what shows gradients that were not averaged)."""


def tt_check(run_on_chips: bool | None = None, mesh_shape: list[int] | None = None, seed: int = 0) -> None:
    """Check the installed ttnn/ttml against what lightning_tt calls, then (with chips) one training step against CPU.

    Part (a), no chip needed: every ttml/ttnn symbol the plugin calls (lightning_tt.symbols.PLUGIN_SYMBOLS) must
    exist with the parameter names the plugin passes; a table (symbol, found, signature ok) is printed.
    Part (b), with chips: one forward/backward/AdamW step of a tiny NanoTrickster on a [1, 1] mesh and on the
    machine's full mesh, compared with the same step in float32 on the CPU (loss, a weight-norm checksum, the
    largest weight difference), with the time per step on the chips.

    Args:
        run_on_chips: Run part (b): None runs it when ttnn sees a chip, True requires chips, False skips it.
        mesh_shape: The full mesh for part (b), e.g. [2, 4] on a T3K. Default: the shape of the mesh graph
            descriptor the environment names for the chips ttnn sees (TT_METAL_RUNTIME_ROOT or
            TT_MESH_GRAPH_DESC_PATH), else [1, chips].
        seed: Seed of the tiny model's weights and of its batch in part (b).

    Raises:
        TTHardwareError: A symbol is missing or has other parameters (after the table), no chip was found while
            run_on_chips is True, or a step on the chips differs from the CPU step (after its results).
    """
    check_symbols()
    chips = chips_present()
    if run_on_chips is False or (run_on_chips is None and chips == 0):
        print("part (b) skipped: " + ("--run_on_chips false" if run_on_chips is False else "ttnn sees no chip"))
        return
    if chips == 0:
        raise TTHardwareError(
            "tt-check --run_on_chips true: ttnn sees no Tenstorrent chip: run it on a machine with one"
        )
    full = fabric.check_mesh_shape(mesh_shape) if mesh_shape is not None else _default_mesh(chips)
    if math.prod(full) > chips:
        raise TTHardwareError(
            f"tt-check: mesh {full} needs {math.prod(full)} chips, ttnn sees {chips}: pass --mesh_shape"
        )
    check_steps([[1, 1]] if full == [1, 1] else [[1, 1], full], seed)


def check_symbols() -> None:
    """Part (a): print the symbol table; raise if anything is missing or differs."""
    for name in ("ttnn", "ttml"):
        problem = bridge.import_problem(name)
        if problem:
            print(f"{name}: {problem}")
    checks = symbols.check_all()
    print(symbols.format_table(checks))
    failed = [c for c in checks if not c.ok]
    if failed:
        raise TTHardwareError(
            f"tt-check: {len(failed)} of {len(checks)} ttnn/ttml symbols the plugin calls are missing or take other "
            f"parameters (first: {failed[0].symbol.path}; table above): install ttnn {bridge.TTNN_VERSION} and ttml "
            f"built from the same tt-metal tag v{bridge.TTNN_VERSION}"
        )
    print(f"part (a): all {len(checks)} symbols found with the expected parameters")


def chips_present() -> int:
    ttnn = bridge.import_optional("ttnn")
    return bridge.count_devices(ttnn)[0] if ttnn is not None else 0


def _default_mesh(chips: int) -> list[int]:
    from lightning_tt.mesh import default_mesh_shape

    return default_mesh_shape(chips)


def check_steps(meshes: list[list[int]], seed: int) -> None:
    """Part (b): one step per mesh against the CPU; print the results, raise on a mismatch."""
    rows = 2 * max(math.prod(shape) for shape in meshes)  # two windows per chip on the largest mesh
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, CHECK_MODEL.vocab_size, (rows, CHECK_MODEL.max_seq_len + 1), generator=generator)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    torch.manual_seed(seed)
    model = NanoTrickster(CHECK_MODEL)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    reference = cpu_step(model, inputs, targets)
    print(f"cpu    : loss {reference.loss:.5f}  weight norm {reference.weight_norm:.6f}")
    mismatches = []
    for shape in meshes:
        result = chip_step(shape, initial, inputs.numpy(), targets.numpy())
        worst = max(float(np.abs(result.weights[n] - reference.weights[n]).max()) for n in reference.weights)
        loss_ok = math.isclose(result.loss, reference.loss, rel_tol=LOSS_REL)
        norm_ok = math.isclose(result.weight_norm, reference.weight_norm, rel_tol=NORM_REL)
        same_copies = result.replica_spread == 0.0
        verdict = "ok" if loss_ok and norm_ok and worst <= MAX_WEIGHT_ABS and same_copies else "MISMATCH"
        print(
            f"{str(shape):7}: loss {result.loss:.5f}  weight norm {result.weight_norm:.6f}  max |dw| {worst:.2e}  "
            f"chips' copies differ by {result.replica_spread:.2e}  step {result.seconds * 1000:.1f} ms  {verdict}"
        )
        if verdict != "ok":
            mismatches.append(str(shape))
    if mismatches:
        raise TTHardwareError(
            f"tt-check: the training step on mesh {', '.join(mismatches)} differs from the CPU step beyond bfloat16 "
            f"tolerance (loss {LOSS_REL:g} relative, weight norm {NORM_REL:g}, weights {MAX_WEIGHT_ABS:g}, chips' "
            "copies equal; results "
            "above): check that ttml and ttnn come from the same tt-metal v0.81.1 build; reset the chips (tt-smi -r)"
        )
    print("part (b): every mesh matches the CPU step")


def cpu_step(model: NanoTrickster, inputs: torch.Tensor, targets: torch.Tensor) -> StepResult:
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    start = time.perf_counter()
    _, loss = model(inputs, targets)
    loss.backward()
    optimizer.step()
    seconds = time.perf_counter() - start
    weights = {name: p.detach().numpy().copy() for name, p in model.named_parameters()}
    return StepResult(float(loss.detach()), weight_norm(weights), seconds, weights)


def weight_norm(weights: dict[str, np.ndarray]) -> float:
    return float(math.sqrt(sum(float(np.square(w.astype(np.float64)).sum()) for w in weights.values())))


def chip_step(
    shape: list[int], initial: dict[str, torch.Tensor], inputs: np.ndarray, targets: np.ndarray
) -> StepResult:
    """The same step through ttml on a mesh of `shape` (data parallel over all its chips), as the tt / tt_ddp
    strategies run it."""
    from lightning_tt.twin import NanoTricksterTT

    ttml, ttnn = importlib.import_module("ttml"), importlib.import_module("ttnn")
    chips = math.prod(shape)
    device = fabric.open_mesh(ttml, shape)
    try:
        distributed = ttml.core.distributed
        mapper = distributed.shard_tensor_to_mesh_mapper(device, 0) if chips > 1 else None
        composer = distributed.concat_mesh_to_tensor_composer(device, 0) if chips > 1 else None
        weights = {name: value.numpy() for name, value in initial.items()}
        model = NanoTricksterTT(CHECK_MODEL, weights, ttnn.DataType.BFLOAT16)
        model.replica_composer = composer
        config = ttml.optimizers.AdamWConfig.make(LEARNING_RATE, BETAS[0], BETAS[1], EPS, WEIGHT_DECAY)
        optimizer = ttml.optimizers.AdamW(model.parameters(), config)
        vocab = CHECK_MODEL.vocab_size
        upload = ttml.autograd.Tensor.from_numpy
        start = time.perf_counter()
        token_ids = upload(bridge.tokens_layout(inputs, vocab), ttnn.Layout.ROW_MAJOR, ttnn.DataType.UINT32, mapper)
        labels = upload(bridge.targets_layout(targets, vocab), ttnn.Layout.ROW_MAJOR, ttnn.DataType.UINT32, mapper)
        model.train()
        loss = ttml.ops.loss.cross_entropy_loss(model(token_ids), labels, reduce=ttml.ops.ReduceType.MEAN)
        loss.backward(False)
        ttml.autograd.AutoContext.get_instance().reset_graph()
        fabric.synchronize_gradients(ttml, model.parameters(), shape)
        optimizer.step()
        losses = loss.to_numpy(ttnn.DataType.FLOAT32, composer) if composer else loss.to_numpy(ttnn.DataType.FLOAT32)
        seconds = time.perf_counter() - start  # reading the loss waits for the chips
        exported = model.export_weights({name: tuple(value.shape) for name, value in initial.items()})
        spread = 0.0
        if composer is not None:
            for tensor in model.tensors.values():
                copies = tensor.to_numpy(ttnn.DataType.FLOAT32, composer)  # every chip's copy, stacked on dim 0
                spread = max(spread, float(np.abs(copies - copies[:1]).max()))
    finally:
        ttml.autograd.AutoContext.get_instance().close_device()
    return StepResult(float(np.mean(losses)), weight_norm(exported), seconds, exported, spread)
