"""Every ttml/ttnn symbol the plugin calls, with the parameter names it relies on: the one list that
`tt-check` verifies against the installed libraries and that the test double's coverage test walks.

Parameter names are those of the v0.81.1-era nanobind bindings (tenstorrent/tt-metal tt-train/sources/ttml/nanobind/
nb_autograd.cpp, nb_ops.cpp, nb_core.cpp, nb_optimizers.cpp, nb_modules.cpp), listed in call order; `None` means the
plugin only needs the name to exist (a class, an enum member, a method called without arguments). Torch-free.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Symbol:
    path: str
    """Dotted path from the top module, e.g. "ttml.ops.loss.cross_entropy_loss"."""
    parameters: tuple[str, ...] | None = None
    """Leading parameter names (self excluded) one overload must start with; None: existence only."""


def _s(path: str, *parameters: str) -> Symbol:
    return Symbol(path, parameters or None)


PLUGIN_SYMBOLS: tuple[Symbol, ...] = (
    # ttnn: chips, dtypes, layouts, memory statistics
    _s("ttnn.GetNumAvailableDevices"),
    _s("ttnn.DataType.BFLOAT16"),
    _s("ttnn.DataType.FLOAT32"),
    _s("ttnn.DataType.UINT32"),
    _s("ttnn.Layout.TILE"),
    _s("ttnn.Layout.ROW_MAJOR"),
    _s("ttnn.BufferType.DRAM"),
    _s("ttnn.BufferType.L1"),
    _s("ttnn.get_memory_view", "device", "buffer_type"),
    _s("ttnn.Tensor.item"),
    # ttml.autograd: the context (device, seed, graph, data parallelism) and tensors
    _s("ttml.autograd.AutoContext.get_instance"),
    _s("ttml.autograd.AutoContext.open_device", "mesh_shape", "device_ids"),
    _s("ttml.autograd.AutoContext.close_device"),
    _s("ttml.autograd.AutoContext.get_device"),
    _s("ttml.autograd.AutoContext.set_seed", "seed"),
    _s("ttml.autograd.AutoContext.reset_graph"),
    _s("ttml.autograd.AutoContext.set_gradient_mode", "mode"),
    _s("ttml.autograd.AutoContext.initialize_parallelism_context", "config"),
    _s("ttml.autograd.AutoContext.is_parallelism_context_initialized"),
    _s("ttml.autograd.AutoContext.get_parallelism_context"),
    _s("ttml.autograd.ParallelismContext.get_ddp_size"),
    _s("ttml.autograd.DistributedConfig", "enable_ddp"),
    _s("ttml.autograd.GradMode.ENABLED"),
    _s("ttml.autograd.GradMode.DISABLED"),
    _s("ttml.autograd.Tensor.from_numpy", "numpy_tensor", "layout", "new_type", "mapper"),
    _s("ttml.autograd.Tensor.to_numpy", "new_type", "composer"),
    _s("ttml.autograd.Tensor.get_value"),
    _s("ttml.autograd.Tensor.assign", "other"),
    _s("ttml.autograd.Tensor.backward", "retain_graph"),
    _s("ttml.autograd.Tensor.get_grad_tensor"),
    _s("ttml.autograd.Tensor.is_grad_initialized"),
    _s("ttml.autograd.Tensor.set_requires_grad", "requires_grad"),
    _s("ttml.autograd.Tensor.shape"),
    # ttml.modules: the twin is an AbstractModuleBase
    _s("ttml.modules.AbstractModuleBase"),
    _s("ttml.modules.AbstractModuleBase.register_tensor", "tensor", "name"),
    _s("ttml.modules.AbstractModuleBase.parameters"),
    _s("ttml.modules.AbstractModuleBase.get_name"),
    _s("ttml.modules.AbstractModuleBase.train"),
    _s("ttml.modules.AbstractModuleBase.eval"),
    _s("ttml.modules.AbstractModuleBase.get_run_mode"),
    _s("ttml.modules.RunMode.TRAIN"),
    # ttml.ops: NanoTrickster's forward and loss
    _s("ttml.ops.embedding.embedding", "tensor", "weight"),
    _s("ttml.ops.linear.linear", "tensor", "weight", "bias"),
    _s("ttml.ops.rmsnorm.rmsnorm", "tensor", "gamma", "epsilon"),
    _s("ttml.ops.multi_head_utils.heads_creation", "qkv", "num_heads"),
    _s("ttml.ops.multi_head_utils.heads_fusion", "x"),
    _s("ttml.ops.rope.build_rope_params", "sequence_length", "head_dim", "theta"),
    _s("ttml.ops.rope.rope", "input", "rope_params"),
    _s("ttml.ops.attention.scaled_dot_product_attention", "query", "key", "value", "mask"),
    _s("ttml.ops.binary.add", "a", "b"),
    _s("ttml.ops.binary.mul", "a", "b"),
    _s("ttml.ops.unary.silu", "tensor"),
    _s("ttml.ops.unary.mean", "tensor"),
    _s("ttml.ops.dropout.dropout", "tensor", "probability"),
    _s("ttml.ops.loss.cross_entropy_loss", "prediction", "target", "reduce"),
    _s("ttml.ops.ReduceType.MEAN"),
    _s("ttml.ops.ReduceType.NONE"),
    # ttml.optimizers / ttml.core: the update, clipping and the mesh
    _s("ttml.optimizers.AdamWConfig.make", "lr", "beta1", "beta2", "epsilon", "weight_decay"),
    _s("ttml.optimizers.AdamW", "parameters", "config"),
    _s("ttml.optimizers.AdamW.step"),
    _s("ttml.optimizers.AdamW.zero_grad"),
    _s("ttml.optimizers.AdamW.set_lr", "lr"),
    _s("ttml.core.clip_grad_norm", "parameters", "max_norm", "p_norm_type", "error_if_nonfinite"),
    _s("ttml.core.distributed.enable_fabric", "num_devices"),
    _s("ttml.core.distributed.shard_tensor_to_mesh_mapper", "device", "dim", "cluster_axis"),
    _s("ttml.core.distributed.concat_mesh_to_tensor_composer", "mesh_device", "dim"),
    _s("ttml.core.distributed.synchronize_gradients", "parameters", "cluster_axes"),
)


@dataclass(frozen=True)
class SymbolCheck:
    symbol: Symbol
    found: bool
    signature_ok: bool | None
    """None: nothing to compare (existence only, or the binding exposes no signature text)."""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.found and self.signature_ok is not False


def resolve(path: str) -> Any:
    """The object at a dotted path, importing modules along the way; raises LookupError when absent."""
    parts = path.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:  # a submodule not yet attached to its package
            obj = importlib.import_module(".".join(parts[: i + 1]))
        except ImportError:
            raise LookupError(f"{'.'.join(parts[:i])} has no attribute {part}") from None
    return obj


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def parameter_lists(obj: Any, name: str) -> list[list[str]]:
    """Parameter names of each overload of a callable (self excluded), from Python's signature or from the
    signature text nanobind puts in __nb_signature__ / __doc__ ("name(a: T, b: T = ...) -> R")."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = list(inspect.signature(target).parameters.values())
        names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return [[n for n in names if n != "self"]]
    except (TypeError, ValueError):
        pass
    texts = [entry[0] for entry in getattr(target, "__nb_signature__", ()) if entry]
    texts += (getattr(target, "__doc__", None) or getattr(obj, "__doc__", None) or "").splitlines()
    overloads = []
    for text in texts:
        match = re.search(rf"(?:def\s+)?(?:{re.escape(name)}|__init__)\((.*)\)", text)
        if not match:
            continue
        names = [re.split(r"[:=]", part, maxsplit=1)[0].strip().lstrip("*") for part in _split_top_level(match[1])]
        names = [n for n in names if n and n not in ("self", "/", "")]
        if names not in overloads:  # __nb_signature__ and __doc__ repeat each overload
            overloads.append(names)
    return overloads


def check_symbol(symbol: Symbol) -> SymbolCheck:
    try:
        obj = resolve(symbol.path)
    except Exception as err:  # noqa: BLE001 - a broken native module raises more than ImportError
        return SymbolCheck(symbol, False, None, str(err).splitlines()[0] if str(err) else type(err).__name__)
    if symbol.parameters is None:
        return SymbolCheck(symbol, True, None)
    overloads = parameter_lists(obj, symbol.path.rsplit(".", 1)[-1])
    if not overloads:
        return SymbolCheck(symbol, True, None, "no signature exposed")
    wanted = list(symbol.parameters)
    if any(names[: len(wanted)] == wanted for names in overloads):
        return SymbolCheck(symbol, True, True)
    shown = " | ".join("(" + ", ".join(names) + ")" for names in overloads)
    return SymbolCheck(symbol, True, False, f"expected ({', '.join(wanted)}, ...), found {shown}")


def check_all(symbols: tuple[Symbol, ...] = PLUGIN_SYMBOLS) -> list[SymbolCheck]:
    return [check_symbol(symbol) for symbol in symbols]


def format_table(checks: list[SymbolCheck]) -> str:
    """A plain-text table: symbol, found, signature ok (and what differs)."""
    rows = [("symbol", "found", "signature ok", "")]
    for check in checks:
        signature = "-" if check.signature_ok is None else ("yes" if check.signature_ok else "NO")
        rows.append((check.symbol.path, "yes" if check.found else "NO", signature, check.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in rows]
    lines.insert(1, "-" * (sum(widths) + 4))
    return "\n".join(lines)
