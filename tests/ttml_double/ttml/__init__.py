"""Test double of `ttml` (tt-train's Python package), limited to the symbols lightning_tt uses.

Its signatures are those of lightning_tt.bindings.BINDINGS, the table of the real bindings read from the sources
(tests/test_tt_double.py checks every row against the double, so the double cannot take a parameter name the real
library lacks, e.g. enable_fabric(arg, /)).

One era: tt-metal of 2026, the v0.81.1 era (the ttnn==0.81.1 wheel's files are dated 2026-10-23, and ttml is built
from the same tag). Each behaviour below cites the file it follows (each module lists them with commit or index
id):
  autograd      nanobind/nb_autograd.cpp (ParallelismContext bindings), autograd/auto_context.cpp 013f8575 /
                82e7356f, autocast_tensor.cpp 97622714, tensor.hpp 00bbd1e0, nanobind/nb_util.cpp 28fa4776
  modules       nanobind/nb_modules.cpp cc3c6ab5, ttml/modules/module_base.py 04a6c330
  ops           nanobind/nb_ops.cpp 0152e582 (2026), ops/losses.cpp (2026), ops/rope_op.cpp, ops/dropout_op.cpp
  optimizers    nanobind/nb_optimizers.cpp 04087d12, optimizers/adamw.cpp and adamw_full_precision.cpp 013b2173
                (2026), metal/optimizers/adamw/.../adamw_kernel.cpp (2026)
  core          nanobind/nb_core.cpp 01b9eefe, core/distributed/distributed.cpp 01c8afed,
                ttnn_fixed/distributed/tt_metal.cpp 1fdc6cf5 (PR #42675)

Semantics modelled because the plugin must be right under them: get_device() opening a 1x1 device when none is
open; ops reading bfloat16 (get_value() defaults to HALF) and writing bfloat16 results; assign copying the HALF
value; zero_grad writing zeros; AbstractModuleBase.__setattr__ registering any attribute with a get_value as a
parameter; the one-argument synchronize_gradients doing nothing without a parallelism context; enable_fabric
reading TT_MESH_GRAPH_DESC_PATH / TT_METAL_RUNTIME_ROOT; the Metal context reading the descriptor once, when chips
are first counted (ttnn double); dropout drawing one mask for every chip unless use_per_device_seed; AdamW updating
bfloat16 weights with bfloat16 moments (nearest or stochastic rounding) and AdamWFullPrecision keeping float32
masters and moments; optimizer state through get_state_dict / set_state_dict.

Numerics: float32 math in torch with every op result rounded to bfloat16; gradients pass straight through and are
kept in float32 (the chip keeps them in bfloat16; the optimizers read them rounded to bfloat16). So the double
proves the plugin's wiring under bfloat16 compute, not on-chip accuracy of the kernels.
"""

from . import autograd, core, modules, ops, optimizers  # noqa: F401

IS_TEST_DOUBLE = True
