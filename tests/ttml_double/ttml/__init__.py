"""Test double of `ttml` (tt-train's Python package), limited to the symbols lightning_tt uses
(lightning_tt.symbols.PLUGIN_SYMBOLS; tests/test_tt_double.py checks the double has every one of them).

Pinned to the tt-metal v0.81.1 era: the ttnn==0.81.1 wheel's files are dated 2026-10-23, and ttml is built from the
same tag. The sources read are tenstorrent/tt-metal files of 2026 (SPDX year 2026, or 2026-only APIs such as
ParallelismContext with line/2-D rules, metal cross_entropy_fw with ReduceType.NONE, TT_METAL_RUNTIME_ROOT in
enable_fabric); each module cites the file and commit per symbol. The indexed tools show commits, not dates, so the
range is stated by those commits rather than by a git log:
  autograd      nb_autograd.cpp (2026, ParallelismContext bindings), auto_context.cpp 013f8575 / 82e7356f,
                autocast_tensor.cpp 97622714, tensor.hpp 00bbd1e0, nb_util.cpp 28fa4776
  modules       nb_modules.cpp cc3c6ab5, ttml/modules/module_base.py 04a6c330 / b844a98d
  ops           nb_ops.cpp 6d90ded4 / 0152e582 (2026), losses.cpp (2026, cross_entropy_fw), rope_op.cpp
  optimizers    nb_optimizers.cpp decdb877, adamw.cpp 013b2173 (2026 update) + 4ca8c04e (zero_grad)
  core          nb_core.cpp 01b9eefe, core/distributed/distributed.cpp 01c8afed,
                ttnn_fixed/distributed/tt_metal.cpp 1fdc6cf5 (PR #42675)
Two of these (nb_optimizers decdb877, adamw 4ca8c04e) are older file versions: they are cited for behaviour the
2026 code keeps (the AdamWConfig.make argument order) or that the issue asks the plugin to survive (zero_grad leaving
gradients uninitialised; the 2026 adamw writes zeros, and the plugin is correct under both).

Semantics modelled because the plugin must be right under them: get_device() opening a 1x1 device when none is
open; ops reading bfloat16 (get_value() defaults to HALF) and writing bfloat16 results; assign copying the HALF
value; zero_grad leaving gradients uninitialised; AbstractModuleBase.__setattr__ registering any attribute with a
get_value as a parameter; the one-argument synchronize_gradients doing nothing without a parallelism context;
enable_fabric reading TT_MESH_GRAPH_DESC_PATH / TT_METAL_RUNTIME_ROOT.

Numerics: float32 math in torch with every op result rounded to bfloat16 (gradients pass straight through and are
kept in float32; the chip keeps them in bfloat16). So the double proves the plugin's wiring under bfloat16
compute, not on-chip accuracy of the kernels.
"""

from . import autograd, core, modules, ops, optimizers  # noqa: F401

IS_TEST_DOUBLE = True
