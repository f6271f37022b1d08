"""What strategy 'tt_ddp' assumes about ttnn's mesh mappers and the wheel's mesh graph descriptors, checked against
the real ttnn wheel (no chip needed).

ttml's shard_tensor_to_mesh_mapper(device, dim) (no cluster axis) is ttnn's mapper with placements [Shard(dim)] over
the mesh flattened to MeshShape(num_devices) (ttnn/cpp/ttnn/distributed/distributed_tensor.cpp), for a [1, N] mesh as
for a [2, 4] or [8, 4] one; it needs an open MeshDevice, so the same config is built here on the mesh's 2-D
MeshShape, which ttnn accepts without a device. The strategy
relies on: the batch is cut into equal row blocks in chip order (so concatenating the chips' shards on dim 0, as
concat_mesh_to_tensor_composer does, restores the batch and filler rows appended for an uneven evaluation batch
land at the end); an uneven split is refused; a tensor spread over several chips cannot be read without a
composer; a value put on the mesh without a mapper is copied to every chip.
"""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ttnn = pytest.importorskip("ttnn")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins"))
from lightning_tt import bindings, bridge, fabric, symbols  # noqa: E402
from lightning_tt.errors import TTConfigError, TTHardwareError  # noqa: E402

WHEEL_ROOT = Path(ttnn.__file__).resolve().parent
"""The ttnn package of the wheel: it holds tt_metal/fabric/mesh_graph_descriptors/, so it can be the
TT_METAL_RUNTIME_ROOT enable_fabric reads."""

pytestmark = pytest.mark.skipif(getattr(ttnn, "IS_TEST_DOUBLE", False), reason="needs the real ttnn, not the double")


def distribute(array: np.ndarray, chips: int, placement, mesh_shape: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Host tensor -> per-chip host arrays, as ttml's mapper for a mesh of `chips` ([1, chips] unless given)
    distributes it."""
    config = ttnn.MeshMapperConfig([placement], ttnn.MeshShape([chips]))
    mapper = ttnn.create_mesh_mapper(ttnn.MeshShape(*(mesh_shape or (1, chips))), config)
    dtype = ttnn.DataType.UINT32 if array.dtype == np.uint32 else ttnn.DataType.FLOAT32
    tensor = ttnn.distribute_tensor(ttnn.Tensor(array, dtype), mapper)
    return [np.asarray(shard.to_numpy()) for shard in ttnn.get_device_tensors(tensor)]


@pytest.mark.parametrize("mesh_shape", [(1, 2), (2, 4), (8, 4)], ids=["n300", "t3k", "galaxy"])
def test_the_batch_mapper_gives_each_chip_its_block_of_rows_in_order(mesh_shape):
    chips = mesh_shape[0] * mesh_shape[1]
    batch = np.arange(2 * chips * 32).reshape(2 * chips, 32) % 256
    tokens = bridge.tokens_layout(batch, vocab_size=256)  # [B, 1, 1, T] as the strategy uploads it
    shards = distribute(tokens, chips, ttnn.PlacementShard(0), mesh_shape)
    assert len(shards) == chips and all(s.shape == (2, 1, 1, 32) for s in shards)
    for theirs, mine in zip(shards, bridge.shard_rows(tokens, chips), strict=True):
        np.testing.assert_array_equal(theirs, mine)
    np.testing.assert_array_equal(np.concatenate(shards, axis=0), tokens)  # what the dim-0 composer rebuilds
    targets = bridge.targets_layout(batch, vocab_size=256)  # [B, T] is split the same way
    rebuilt = np.concatenate(distribute(targets, chips, ttnn.PlacementShard(0), mesh_shape))
    np.testing.assert_array_equal(rebuilt, targets)
    _, mask = bridge.scored_targets(batch, 256, 32)  # validation's position weights are split the same way
    np.testing.assert_array_equal(np.concatenate(distribute(mask, chips, ttnn.PlacementShard(0), mesh_shape)), mask)


def test_an_uneven_split_is_refused_and_padding_makes_it_even_with_filler_last():
    tokens = bridge.tokens_layout(np.arange(3 * 32).reshape(3, 32) % 256, vocab_size=256)
    with pytest.raises(RuntimeError, match="Shard shape mismatch"):
        distribute(tokens, 2, ttnn.PlacementShard(0))
    padded = bridge.pad_rows(tokens, 2)
    shards = distribute(padded, 2, ttnn.PlacementShard(0))
    rebuilt = np.concatenate(shards, axis=0)
    np.testing.assert_array_equal(rebuilt[:3], tokens)  # cropping to the real rows drops exactly the filler
    assert rebuilt.shape[0] == 4 and not rebuilt[3].any()


def test_a_value_spread_over_chips_cannot_be_read_without_a_composer():
    losses = np.array([[2.5], [3.5]], dtype=np.float32)  # one shard loss per chip
    config = ttnn.MeshMapperConfig([ttnn.PlacementShard(0)], ttnn.MeshShape([2]))
    mapper = ttnn.create_mesh_mapper(ttnn.MeshShape(1, 2), config)
    spread = ttnn.distribute_tensor(ttnn.Tensor(losses, ttnn.DataType.FLOAT32), mapper)
    with pytest.raises(RuntimeError, match="buffers.size"):
        spread.item()
    with pytest.raises(RuntimeError, match="buffers.size"):
        spread.to_numpy()


def test_a_value_without_a_mapper_is_copied_to_every_chip_and_chip_0_is_the_first_block():
    weight = bridge.matrix_to_device_layout(np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32))
    copies = distribute(weight, 8, ttnn.PlacementReplicate())
    assert len(copies) == 8 and all(np.array_equal(c, weight) for c in copies)
    np.testing.assert_array_equal(np.concatenate(copies, axis=0)[:1], weight)  # what the twin keeps when it reads


def test_mesh_shapes_the_strategy_accepts():
    for shape in ([1, 1], [1, 2], [2, 4], (8, 4)):
        assert fabric.check_mesh_shape(shape) == list(shape)
    for shape in ([1, 0], [1], [1, 2.0], "1x2", [True, 2], [2, 4, 1]):
        with pytest.raises(TTConfigError, match=r"is not a mesh \[rows, cols\] of chips"):
            fabric.check_mesh_shape(shape)


@pytest.mark.parametrize("system", list(fabric.SYSTEMS))
def test_the_wheels_mesh_graph_descriptors_have_the_shapes_the_presets_take_from_them(system):
    shape, descriptor, preset_name = fabric.SYSTEMS[system]
    text = (WHEEL_ROOT / fabric.DESCRIPTOR_DIR / descriptor).read_text()
    assert fabric.descriptor_dims(text) == shape
    preset = yaml.safe_load((REPO / "configs" / preset_name).read_text())
    strategy = preset["trainer"]["strategy"]
    assert preset["trainer"]["devices"] == shape[0] * shape[1]
    if isinstance(strategy, dict):  # a mesh preset names the descriptor and takes its shape from the wheel's file
        named = strategy["init_args"]["mesh_graph_descriptor"]
        plan = fabric.resolve_mesh(None, shape[0] * shape[1], named, environ={})  # no TT_METAL_* variable set
        assert plan.shape == shape and plan.descriptor == WHEEL_ROOT / fabric.DESCRIPTOR_DIR / descriptor


@pytest.mark.parametrize(("chips", "shape"), [(8, [2, 4]), (32, [8, 4])])
def test_the_descriptor_enable_fabric_picks_by_chip_count_is_in_the_wheel_and_checked_against_the_mesh(chips, shape):
    environ = {"TT_METAL_RUNTIME_ROOT": str(WHEEL_ROOT)}  # a wheel install: the ttnn package is the runtime root
    plan = fabric.resolve_mesh(None, chips, environ=environ)
    assert plan.descriptor.name == fabric.DEFAULT_DESCRIPTORS[chips] and plan.shape == shape
    assert fabric.resolve_mesh(shape, environ=environ).descriptor == plan.descriptor
    transposed = shape[::-1]
    expected = f"mesh_shape {transposed} does not match this machine's mesh graph descriptor {plan.descriptor.name}, "
    expected += f"which is {shape}"
    with pytest.raises(TTConfigError, match=re.escape(expected)):
        fabric.resolve_mesh(transposed, environ=environ)


def test_the_wheel_ships_no_line_descriptor_so_a_line_mesh_needs_a_checkout():
    for name in fabric.LINE_DESCRIPTORS.values():
        assert fabric.find_descriptor(name, environ={}) is None
    with pytest.raises(TTHardwareError, match=r"a line mesh \[1, 8\] needs tt-metal's t3k_1x8_mesh_graph_descriptor"):
        fabric.resolve_mesh([1, 8], environ={})


def test_nanobind_names_unannotated_parameters_as_the_bindings_table_assumes():
    """nanobind (src/nb_func.cpp): one parameter without nb::arg is `arg`, several are `arg0, arg1, ...`, and all of
    them positional-only; that is how the table records enable_fabric (bound without nb::arg in nb_core.cpp)."""
    assert symbols.parameter_lists(ttnn.GetPCIeDeviceID, "GetPCIeDeviceID") == [["arg", "/"]]
    several = ttnn._ttnn.operations.core.num_cores_to_corerangeset
    assert symbols.parameter_lists(several, "num_cores_to_corerangeset") == [["arg0", "arg1", "arg2", "/"]]
    assert bindings.binding("ttml.core.distributed.enable_fabric").expected == ("arg", "/")
    found = symbols.check_symbol(symbols.Symbol("ttnn.GetPCIeDeviceID", ("arg", "/")))
    assert found.signature_ok is True
    renamed = symbols.check_symbol(symbols.Symbol("ttnn.GetPCIeDeviceID", ("num_devices",)))
    assert renamed.signature_ok is False and "found (arg, /)" in renamed.detail


def test_the_ttnn_symbols_the_plugin_calls_exist_in_the_wheel_with_their_parameter_names():
    checks = symbols.check_all(tuple(s for s in symbols.PLUGIN_SYMBOLS if s.path.startswith("ttnn.")))
    assert checks and all(c.ok for c in checks), symbols.format_table(checks)


def test_the_symbol_check_reads_nanobind_signatures_and_catches_a_changed_order():
    # ttnn's functions are nanobind bindings, as ttml's are: their parameter names come from __nb_signature__.
    assert ["tensor", "mapper", "mesh_device"] in symbols.parameter_lists(ttnn.distribute_tensor, "distribute_tensor")
    assert symbols.check_symbol(symbols.Symbol("ttnn.distribute_tensor", ("tensor", "mapper"))).signature_ok is True
    swapped = symbols.check_symbol(symbols.Symbol("ttnn.distribute_tensor", ("mapper", "tensor")))
    assert swapped.found and swapped.signature_ok is False and "found (tensor, mapper, mesh_device)" in swapped.detail
    assert not symbols.check_symbol(symbols.Symbol("ttnn.no_such_function")).found
