"""`tt-check`: is this machine's Tenstorrent stack what lightning_tt needs, and does one training step on the chips
match the CPU? Part (a) needs no chip; part (b) runs only where ttnn sees chips."""

from __future__ import annotations

import importlib
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from lightning_tt import bridge, fabric, interface, symbols
from lightning_tt.errors import TTHardwareError

from lightning_trickster.model import NanoTrickster, NanoTricksterConfig

CHECK_MODEL = NanoTricksterConfig(
    vocab_size=64, hidden_dim=64, num_layers=2, num_heads=2, mlp_dim=128, max_seq_len=32, dropout=0.0
)
"""A tiny model that satisfies ttml's tile rules (head_dim 32), so a step takes well under a second on a chip."""

LEARNING_RATE, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.95), 1e-8, 0.1
PRECISIONS = ("bf16-mixed", "bf16-true")
"""Both ways the plugin trains: AdamWFullPrecision on float32 masters, ttml's AdamW on bfloat16 weights."""
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


def tt_check(
    run_on_chips: bool | None = None,
    mesh_shape: list[int] | None = None,
    mesh_graph_descriptor: str | None = None,
    seed: int = 0,
) -> None:
    """Check the installed ttnn/ttml against what lightning_tt calls, then (with chips) one training step against CPU.

    Part (a), no chip needed: every ttml/ttnn symbol the plugin calls (lightning_tt.symbols.PLUGIN_SYMBOLS) must
    exist with the parameter names of the real bindings (lightning_tt.bindings, read from the tt-metal sources);
    a table (symbol, found, signature ok) is printed.
    Part (b), with chips: one forward/backward/AdamW step of a tiny NanoTrickster in each precision (bf16-mixed:
    AdamWFullPrecision; bf16-true: AdamW) on the machine's full mesh and on a [1, 1] mesh, compared with the same
    step in float32 on the CPU (loss, a weight-norm checksum, the largest
    weight difference), with the time per step on the chips. The full mesh's descriptor is exported and its
    fabric enabled before the chips are counted (lightning_tt.fabric), so it runs first.

    Args:
        run_on_chips: Run part (b): None runs it when ttnn sees a chip, True requires chips, False skips it.
        mesh_shape: The full mesh for part (b), e.g. [2, 4] on a T3K; its descriptor is found as the tt_ddp
            strategy finds it. Default: the shape of the descriptor named (--mesh_graph_descriptor, else
            TT_MESH_GRAPH_DESC_PATH); without one, [1, 1] only (a mesh's descriptor must be named before the chips
            are counted).
        mesh_graph_descriptor: The machine's mesh graph descriptor, as the mesh presets name it (e.g.
            t3k_mesh_graph_descriptor.textproto, looked up in the installed descriptor directories) or a path.
        seed: Seed of the tiny model's weights and of its batch in part (b).

    Raises:
        TTHardwareError: A symbol is missing or has other parameters (after the table), no chip was found while
            run_on_chips is True, or a step on the chips differs from the CPU step (after its results).
    """
    check_symbols()
    if run_on_chips is False:
        print("part (b) skipped: --run_on_chips false")
        return
    plan = named_mesh(mesh_shape, mesh_graph_descriptor)
    if plan is not None and math.prod(plan.shape) > 1:
        fabric.prepare_fabric(importlib.import_module("ttml"), plan)  # descriptor and fabric before the count
    chips = chips_present()
    if chips == 0:
        if run_on_chips is None:
            print("part (b) skipped: ttnn sees no chip")
            return
        raise TTHardwareError(
            "tt-check --run_on_chips true: ttnn sees no Tenstorrent chip: run it on a machine with one"
        )
    plans = [fabric.MeshPlan([1, 1], None)]
    if plan is not None and plan.shape != [1, 1]:
        if math.prod(plan.shape) > chips:
            raise TTHardwareError(
                f"tt-check: mesh {plan.shape} needs {math.prod(plan.shape)} chips, ttnn sees {chips}: pass a smaller "
                "--mesh_shape"
            )
        plans.insert(0, plan)
    elif plan is None and chips > 1:
        print(
            f"full mesh not checked: ttnn sees {chips} chips but neither --mesh_graph_descriptor, --mesh_shape nor "
            "TT_MESH_GRAPH_DESC_PATH names their mesh graph descriptor, which ttml reads once, when chips are first "
            "counted: rerun with --mesh_graph_descriptor (e.g. t3k_mesh_graph_descriptor.textproto on a T3K)"
        )
    check_steps(plans, seed)


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


def named_mesh(mesh_shape: list[int] | None, descriptor: str | None = None) -> fabric.MeshPlan | None:
    """The full mesh and its descriptor as the tt_ddp strategy resolves them from --mesh_shape and
    --mesh_graph_descriptor, else TT_MESH_GRAPH_DESC_PATH's; None when nothing names a mesh."""
    if mesh_shape is not None or descriptor is not None:
        shape = None if mesh_shape is None else fabric.check_mesh_shape(mesh_shape)
        return fabric.resolve_mesh(shape, None, descriptor)
    named = os.environ.get(fabric.DESCRIPTOR_VARIABLE)
    return fabric.resolve_mesh(None, None, named) if named else None


def check_steps(plans: list[fabric.MeshPlan], seed: int) -> None:
    """Part (b): one step per mesh against the CPU; print the results, raise on a mismatch."""
    rows = 2 * max(math.prod(plan.shape) for plan in plans)  # two windows per chip on the largest mesh
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, CHECK_MODEL.vocab_size, (rows, CHECK_MODEL.max_seq_len + 1), generator=generator)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    torch.manual_seed(seed)
    model = NanoTrickster(CHECK_MODEL)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    reference = cpu_step(model, inputs, targets)
    print(f"cpu     float32   : loss {reference.loss:.5f}  weight norm {reference.weight_norm:.6f}")
    spec = interface.read_spec(model)
    mismatches = []
    for plan in plans:
        for precision in PRECISIONS:
            shape = plan.shape
            result = chip_step(plan, spec, initial, inputs.numpy(), targets.numpy(), precision)
            worst = max(float(np.abs(result.weights[n] - reference.weights[n]).max()) for n in reference.weights)
            loss_ok = math.isclose(result.loss, reference.loss, rel_tol=LOSS_REL)
            norm_ok = math.isclose(result.weight_norm, reference.weight_norm, rel_tol=NORM_REL)
            same_copies = result.replica_spread == 0.0
            verdict = "ok" if loss_ok and norm_ok and worst <= MAX_WEIGHT_ABS and same_copies else "MISMATCH"
            print(
                f"{str(shape):7} {precision:10}: loss {result.loss:.5f}  weight norm {result.weight_norm:.6f}  "
                f"max |dw| {worst:.2e}  chips' copies differ by {result.replica_spread:.2e}  "
                f"step {result.seconds * 1000:.1f} ms  {verdict}"
            )
            if verdict != "ok":
                mismatches.append(f"{shape} {precision}")
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
    plan: fabric.MeshPlan,
    spec: interface.ModelSpec,
    initial: dict[str, torch.Tensor],
    inputs: np.ndarray,
    targets: np.ndarray,
    precision: str = "bf16-true",
) -> StepResult:
    """The same step through ttml on the plan's mesh (data parallel over all its chips), as the tt / tt_ddp
    strategies run it: bf16-true with ttml's AdamW on the bfloat16 weights, bf16-mixed with AdamWFullPrecision on
    float32 masters set to the initial float32 weights (the weights compared are then the masters)."""
    from lightning_tt.twin import NanoTricksterTT

    ttml, ttnn = importlib.import_module("ttml"), importlib.import_module("ttnn")
    shape = plan.shape
    chips = math.prod(shape)
    device = fabric.open_mesh(ttml, plan)
    try:
        distributed = ttml.core.distributed
        mapper = distributed.shard_tensor_to_mesh_mapper(device, 0) if chips > 1 else None
        composer = distributed.concat_mesh_to_tensor_composer(device, 0) if chips > 1 else None
        weights = {name: value.numpy() for name, value in initial.items()}
        model = NanoTricksterTT(spec, weights, ttnn.DataType.BFLOAT16, per_device_dropout=chips > 1)
        model.replica_composer = composer
        hyper = (LEARNING_RATE, BETAS[0], BETAS[1], EPS, WEIGHT_DECAY, False)
        masters = None
        if precision == "bf16-mixed":
            config = ttml.optimizers.AdamWFullPrecisionConfig.make(*hyper)
            optimizer = ttml.optimizers.AdamWFullPrecision(model.parameters(), config)
            state = optimizer.get_state_dict()
            masters = type(state["master_weights"])()
            for name, array in weights.items():
                laid_out = model.device_layout(name, array)
                key = f"{model.get_name()}/{name}"
                masters[key] = ttml.autograd.Tensor.from_numpy(laid_out, ttnn.Layout.TILE, ttnn.DataType.FLOAT32)
            optimizer.set_state_dict({**state, "master_weights": masters})
        else:
            config = ttml.optimizers.AdamWConfig.make(*hyper, False)
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
        shapes = {name: tuple(value.shape) for name, value in initial.items()}
        exported = model.export_weights(shapes)
        if masters is not None:
            exported = {n: model.read_array(masters[f"{model.get_name()}/{n}"], s) for n, s in shapes.items()}
        spread = 0.0
        if composer is not None:
            for tensor in model.tensors.values():
                copies = tensor.to_numpy(ttnn.DataType.FLOAT32, composer)  # every chip's copy, stacked on dim 0
                spread = max(spread, float(np.abs(copies - copies[:1]).max()))
    finally:
        ttml.autograd.AutoContext.get_instance().close_device()
    return StepResult(float(np.mean(losses)), weight_norm(exported), seconds, exported, spread)
