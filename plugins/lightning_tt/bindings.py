"""The Python-visible signatures of the ttml/ttnn bindings lightning_tt calls, read from the sources, not from memory.

One row per symbol: its dotted path, its overloads as nanobind exposes them (parameter names in order, self left
out, "/" closing positional-only parameters), how many leading parameters the plugin relies on, and where the row
was read. `lightning_tt.symbols` derives what `tt-check` expects from this table, and the test double
(tests/ttml_double) is checked against it (tests/test_tt_double.py), so neither can rely on a name the real
library lacks.

How nanobind names parameters (wjakob/nanobind src/nb_func.cpp, nb_func_render_signature; checked against the
ttnn 0.81.1 wheel in tests/ttnn_host): a parameter declared with nb::arg("x") is "x"; one without nb::arg is "arg"
when the function takes one parameter and "arg0", "arg1", ... when it takes several; when no parameter of a
function is named, all of them are positional-only and the signature ends in ", /". So
`py_distributed.def("enable_fabric", &enable_fabric)` (no nb::arg) is `enable_fabric(arg: int, /)`: it must be
called positionally.

Sources: tenstorrent/tt-metal, files of the v0.81.1 era (2026: SPDX (c) 2026, or 2026-only APIs), read with the
code-search index (a git checkout of tt-metal is larger than what can be fetched here, and the index keeps file
versions by commit, not by tag, so which commit is v0.81.1 could not be looked up: the rows cite the commit of the
2026 file version read). Where the index shows a version without its commit, the row gives the index's file id.
Every version of nb_core.cpp the index holds binds enable_fabric without nb::arg. The ttnn rows were read from the
ttnn==0.81.1 wheel itself (tests/ttnn_host checks them against it in CI). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

NB_OPS = ("tt-train/sources/ttml/nanobind/nb_ops.cpp", "0152e582473a9434a29f25042fbecc96752a8c64")
NB_CORE = ("tt-train/sources/ttml/nanobind/nb_core.cpp", "01b9eefebb60985b56d0cdf8aae83326c29c53af")
NB_OPTIMIZERS = ("tt-train/sources/ttml/nanobind/nb_optimizers.cpp", "04087d1243eeafc57122bf65cd7373f963b8ff53")
NB_MODULES = ("tt-train/sources/ttml/nanobind/nb_modules.cpp", "cc3c6ab5dc0c14b6458f493e808473d3e583364d")
NB_AUTOGRAD = ("tt-train/sources/ttml/nanobind/nb_autograd.cpp", "index file id 27252762278 (no commit shown)")
MODULE_BASE_PY = ("tt-train/sources/ttml/ttml/modules/module_base.py", "04a6c330ca72eb61ce17b516e71d7fc56ba2a46f")
TTNN_WHEEL = ("ttnn==0.81.1 wheel (PyPI)", "v0.81.1, checked by tests/ttnn_host")


@dataclass(frozen=True)
class Binding:
    path: str
    """Dotted path from the top module, e.g. "ttml.ops.loss.cross_entropy_loss"."""
    overloads: tuple[tuple[str, ...], ...] | None
    """Each overload's parameter names as nanobind exposes them ("/" ends positional-only ones); None for a class
    or an enum member the plugin only names."""
    passes: int | None
    """How many leading names of the first overload the plugin relies on (positionally or by keyword)."""
    source: tuple[str, str]
    """(file, commit or index id) the row was read from."""
    note: str = ""

    @property
    def expected(self) -> tuple[str, ...] | None:
        """The leading parameter names tt-check requires of one overload of the installed symbol."""
        if self.overloads is None or self.passes is None:
            return None
        return self.overloads[0][: self.passes]


def _b(path: str, overloads, passes, source, note: str = "") -> Binding:
    return Binding(path, None if overloads is None else tuple(tuple(o) for o in overloads), passes, source, note)


NONE = None
"""Marks a row the plugin only needs to exist (a class, an enum member)."""

BINDINGS: tuple[Binding, ...] = (
    # ttnn: chips, dtypes, layouts, memory statistics
    _b("ttnn.GetNumAvailableDevices", [()], 0, TTNN_WHEEL, "counts chips; starts the Metal context"),
    _b("ttnn.DataType.BFLOAT16", NONE, None, TTNN_WHEEL),
    _b("ttnn.DataType.FLOAT32", NONE, None, TTNN_WHEEL),
    _b("ttnn.DataType.UINT32", NONE, None, TTNN_WHEEL),
    _b("ttnn.Layout.TILE", NONE, None, TTNN_WHEEL),
    _b("ttnn.Layout.ROW_MAJOR", NONE, None, TTNN_WHEEL),
    _b("ttnn.BufferType.DRAM", NONE, None, TTNN_WHEEL),
    _b("ttnn.BufferType.L1", NONE, None, TTNN_WHEEL),
    _b("ttnn.get_memory_view", [("device", "buffer_type")], 2, TTNN_WHEEL, "a Python function in ttnn/device.py"),
    _b("ttnn.Tensor.item", [()], 0, TTNN_WHEEL),
    # ttml.autograd: the context (device, seed, graph, data parallelism) and tensors
    _b("ttml.autograd.AutoContext.get_instance", [()], 0, NB_AUTOGRAD),
    _b("ttml.autograd.AutoContext.open_device", [("mesh_shape", "device_ids")], 1, NB_AUTOGRAD),
    _b("ttml.autograd.AutoContext.close_device", [()], 0, NB_AUTOGRAD),
    _b("ttml.autograd.AutoContext.get_device", [()], 0, NB_AUTOGRAD, "opens a 1x1 device when none is open"),
    _b("ttml.autograd.AutoContext.set_seed", [("seed",)], 1, NB_AUTOGRAD),
    _b("ttml.autograd.AutoContext.reset_graph", [()], 0, NB_AUTOGRAD),
    _b("ttml.autograd.AutoContext.set_gradient_mode", [("mode",)], 1, NB_AUTOGRAD),
    _b("ttml.autograd.AutoContext.initialize_parallelism_context", [("config",)], 1, NB_AUTOGRAD),
    _b("ttml.autograd.AutoContext.is_parallelism_context_initialized", [()], 0, NB_AUTOGRAD),
    _b("ttml.autograd.AutoContext.get_parallelism_context", [()], 0, NB_AUTOGRAD),
    _b("ttml.autograd.ParallelismContext.get_ddp_size", [()], 0, NB_AUTOGRAD),
    _b("ttml.autograd.DistributedConfig", [("enable_ddp", "enable_tp"), ()], 1, NB_AUTOGRAD, "constructor"),
    _b("ttml.autograd.GradMode.ENABLED", NONE, None, NB_AUTOGRAD),
    _b("ttml.autograd.GradMode.DISABLED", NONE, None, NB_AUTOGRAD),
    _b(
        "ttml.autograd.Tensor.from_numpy",
        [("numpy_tensor", "layout", "new_type", "mapper")],
        4,
        NB_AUTOGRAD,
        "two overloads (ndarray, object) with the same names",
    ),  # fmt: skip
    _b("ttml.autograd.Tensor.to_numpy", [("new_type", "composer")], 2, NB_AUTOGRAD, "reads the FULL value"),
    _b("ttml.autograd.Tensor.get_value", [("precision",)], 0, NB_AUTOGRAD, "precision defaults to HALF"),
    _b("ttml.autograd.Tensor.assign", [("other",)], 1, NB_AUTOGRAD, "set_value(other.get_value()): the HALF value"),
    _b("ttml.autograd.Tensor.backward", [("retain_graph",)], 1, NB_AUTOGRAD),
    _b("ttml.autograd.Tensor.get_grad_tensor", [()], 0, NB_AUTOGRAD),
    _b("ttml.autograd.Tensor.is_grad_initialized", [()], 0, NB_AUTOGRAD),
    _b("ttml.autograd.Tensor.set_requires_grad", [("requires_grad",)], 1, NB_AUTOGRAD),
    _b("ttml.autograd.Tensor.shape", [()], 0, NB_AUTOGRAD),
    # ttml.modules: the twin is an AbstractModuleBase (Python, over the C++ ModuleBase binding)
    _b("ttml.modules.AbstractModuleBase", NONE, None, MODULE_BASE_PY),
    _b("ttml.modules.AbstractModuleBase.register_tensor", [("tensor", "name")], 2, NB_MODULES),
    _b("ttml.modules.AbstractModuleBase.parameters", [()], 0, NB_MODULES),
    _b("ttml.modules.AbstractModuleBase.get_name", [()], 0, NB_MODULES),
    _b("ttml.modules.AbstractModuleBase.train", [()], 0, NB_MODULES),
    _b("ttml.modules.AbstractModuleBase.eval", [()], 0, NB_MODULES),
    _b("ttml.modules.AbstractModuleBase.get_run_mode", [()], 0, NB_MODULES),
    _b("ttml.modules.RunMode.TRAIN", NONE, None, NB_MODULES),
    # ttml.ops: NanoTrickster's forward and loss
    _b("ttml.ops.embedding.embedding", [("tensor", "weight")], 2, NB_OPS),
    _b("ttml.ops.linear.linear", [("tensor", "weight", "bias")], 3, NB_OPS),
    _b("ttml.ops.rmsnorm.rmsnorm", [("tensor", "gamma", "epsilon")], 3, NB_OPS),
    _b("ttml.ops.multi_head_utils.heads_creation", [("qkv", "num_heads")], 2, NB_OPS),
    _b("ttml.ops.multi_head_utils.heads_fusion", [("x",)], 1, NB_OPS),
    _b(
        "ttml.ops.rope.build_rope_params",
        [("sequence_length", "head_dim", "theta", "rope_scaling_params", "cp_axis")],
        3,
        NB_OPS,
    ),  # fmt: skip
    _b("ttml.ops.rope.rope", [("input", "rope_params", "token_position")], 2, NB_OPS),
    _b(
        "ttml.ops.attention.scaled_dot_product_attention",
        [("query", "key", "value", "mask")],
        4,
        NB_OPS,
        "two overloads: mask a ttml or a ttnn tensor",
    ),  # fmt: skip
    _b("ttml.ops.binary.add", [("a", "b")], 2, NB_OPS, "overloads for a ttml tensor, an AutocastTensor, a ttnn one"),
    _b("ttml.ops.binary.mul", [("a", "b")], 2, NB_OPS, "overloads for a tensor or a float b"),
    _b("ttml.ops.unary.silu", [("tensor", "use_composite_bw")], 1, NB_OPS),
    _b("ttml.ops.unary.mean", [("tensor",)], 1, NB_OPS),
    _b(
        "ttml.ops.dropout.dropout",
        [("tensor", "probability", "use_per_device_seed")],
        3,
        NB_OPS,
        "use_per_device_seed defaults to False in Python (True in the C++ header ops/dropout_op.hpp)",
    ),  # fmt: skip
    _b("ttml.ops.loss.cross_entropy_loss", [("prediction", "target", "reduce")], 3, NB_OPS),
    _b("ttml.ops.ReduceType.MEAN", NONE, None, NB_OPS),
    _b("ttml.ops.ReduceType.NONE", NONE, None, NB_OPS),
    # ttml.optimizers: AdamW (bf16 weights and moments) and AdamWFullPrecision (fp32 masters and moments)
    _b(
        "ttml.optimizers.AdamWConfig.make",
        [("lr", "beta1", "beta2", "epsilon", "weight_decay", "amsgrad", "stochastic_rounding")],
        7,
        NB_OPTIMIZERS,
    ),
    _b("ttml.optimizers.AdamW", [("parameters", "config")], 2, NB_OPTIMIZERS, "constructor"),
    _b(
        "ttml.optimizers.AdamWFullPrecisionConfig.make",
        [("lr", "beta1", "beta2", "epsilon", "weight_decay", "amsgrad")],
        6,
        NB_OPTIMIZERS,
    ),
    _b("ttml.optimizers.AdamWFullPrecision", [("parameters", "config")], 2, NB_OPTIMIZERS, "constructor"),
    _b("ttml.optimizers.AdamW.step", [()], 0, NB_OPTIMIZERS, "OptimizerBase.step"),
    _b("ttml.optimizers.AdamW.zero_grad", [()], 0, NB_OPTIMIZERS, "OptimizerBase.zero_grad"),
    _b("ttml.optimizers.AdamW.set_lr", [("lr",)], 1, NB_OPTIMIZERS, "OptimizerBase.set_lr"),
    _b("ttml.optimizers.AdamW.get_state_dict", [()], 0, NB_OPTIMIZERS, "OptimizerBase.get_state_dict"),
    _b("ttml.optimizers.AdamW.set_state_dict", [("dict",)], 1, NB_OPTIMIZERS, "OptimizerBase.set_state_dict"),
    _b("ttml.optimizers.AdamWFullPrecision.step", [()], 0, NB_OPTIMIZERS, "OptimizerBase.step"),
    _b("ttml.optimizers.AdamWFullPrecision.zero_grad", [()], 0, NB_OPTIMIZERS, "OptimizerBase.zero_grad"),
    _b("ttml.optimizers.AdamWFullPrecision.set_lr", [("lr",)], 1, NB_OPTIMIZERS, "OptimizerBase.set_lr"),
    _b("ttml.optimizers.AdamWFullPrecision.get_state_dict", [()], 0, NB_OPTIMIZERS, "OptimizerBase.get_state_dict"),
    _b(
        "ttml.optimizers.AdamWFullPrecision.set_state_dict",
        [("dict",)],
        1,
        NB_OPTIMIZERS,
        "OptimizerBase.set_state_dict",
    ),  # fmt: skip
    # ttml.core: clipping and the mesh
    _b("ttml.core.clip_grad_norm", [("parameters", "max_norm", "p_norm_type", "error_if_nonfinite")], 4, NB_CORE),
    _b(
        "ttml.core.distributed.enable_fabric",
        [("arg", "/")],
        2,
        NB_CORE,
        "bound without nb::arg: one positional-only parameter named arg",
    ),  # fmt: skip
    _b("ttml.core.distributed.shard_tensor_to_mesh_mapper", [("device", "dim", "cluster_axis")], 2, NB_CORE),
    _b("ttml.core.distributed.concat_mesh_to_tensor_composer", [("mesh_device", "dim")], 2, NB_CORE),
    _b(
        "ttml.core.distributed.synchronize_gradients",
        [("parameters", "cluster_axes"), ("parameters",)],
        2,
        NB_CORE,
        "two overloads: over the context's DDP axis, or over the given axes",
    ),  # fmt: skip
)


def binding(path: str) -> Binding:
    """The row for a dotted path; KeyError when the plugin does not call it."""
    for row in BINDINGS:
        if row.path == path:
            return row
    raise KeyError(path)


def markdown_table() -> str:
    """The table as Markdown: symbol, Python-visible parameters, source file, commit."""
    lines = ["| symbol | parameters (Python-visible) | source | commit |", "|---|---|---|---|"]
    for row in BINDINGS:
        params = "-" if row.overloads is None else " or ".join("(" + ", ".join(o) + ")" for o in row.overloads)
        lines.append(f"| `{row.path}` | `{params}` | `{row.source[0]}` | {row.source[1]} |")
    return "\n".join(lines)
