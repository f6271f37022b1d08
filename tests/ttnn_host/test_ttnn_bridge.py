"""The host-side conversions lightning_tt relies on, checked against the real ttnn wheel (no chip needed).

Runs in the Python 3.12 CI leg (.ci/run: a venv with only ttnn, numpy and pytest); skipped where ttnn is absent.
Imports only ttnn, numpy, pytest and the torch-free bridge.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ttnn = pytest.importorskip("ttnn")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins"))
from lightning_tt import bridge  # noqa: E402

pytestmark = pytest.mark.skipif(getattr(ttnn, "IS_TEST_DOUBLE", False), reason="needs the real ttnn, not the double")


def chips_present() -> bool:
    return bridge.count_devices(ttnn)[0] > 0


def test_the_bridge_does_not_need_torch():
    assert "torch" not in sys.modules


def test_bfloat16_rounding_matches_ttnn_host_conversion_bit_for_bit():
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.normal(0, 0.02, 2000), rng.normal(0, 30, 2000),
        [1.0, 1.00390625, 1.005859375, 1.0029296875, -2.7182818, 65504.0, 1e-3, 3.0e38, -0.0, 0.0],
    ]).astype(np.float32)  # fmt: skip
    converted = ttnn.Tensor(values.reshape(1, -1), ttnn.DataType.BFLOAT16)
    from_ttnn = np.array(converted.to_list(), dtype=np.float32).reshape(-1)
    np.testing.assert_array_equal(bridge.round_to_bfloat16(values).view(np.uint32), from_ttnn.view(np.uint32))


def test_token_and_target_layouts_are_what_ttnn_builds_as_uint32_row_major():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (4, 64))
    tokens = bridge.tokens_layout(batch, vocab_size=256)
    device_tokens = ttnn.Tensor(tokens, ttnn.DataType.UINT32)
    assert list(device_tokens.shape) == [4, 1, 1, 64]
    assert device_tokens.dtype == ttnn.DataType.UINT32 and device_tokens.layout == ttnn.Layout.ROW_MAJOR
    np.testing.assert_array_equal(np.asarray(device_tokens.to_numpy()), batch.reshape(4, 1, 1, 64))
    targets = ttnn.Tensor(bridge.targets_layout(batch, vocab_size=256), ttnn.DataType.UINT32)
    assert list(targets.shape) == [4, 64]
    np.testing.assert_array_equal(np.asarray(targets.to_numpy()), batch)


def test_layout_helpers_reject_what_ttml_cannot_take():
    with pytest.raises(ValueError, match="multiple of 32"):
        bridge.tokens_layout(np.zeros((2, 30), dtype=np.int64), vocab_size=256)
    with pytest.raises(ValueError, match="padding"):
        bridge.targets_layout(np.full((2, 32), -100), vocab_size=256)
    padded, length = bridge.pad_time(np.ones((2, 5), dtype=np.int64))
    assert padded.shape == (2, 32) and length == 5 and padded[:, 5:].sum() == 0


def test_weight_layouts_round_trip_through_ttnn_float32_tensors():
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(65, 64)).astype(np.float32)  # a char vocabulary, padded to 96 rows on the chip
    laid_out = bridge.matrix_to_device_layout(matrix, rows=bridge.round_up_to_tile(65))
    host = ttnn.Tensor(laid_out, ttnn.DataType.FLOAT32)
    assert list(host.shape) == [1, 1, 96, 64]
    np.testing.assert_array_equal(bridge.from_device_layout(np.asarray(host.to_numpy()), (65, 64)), matrix)
    gain = rng.normal(size=64).astype(np.float32)
    gain_host = ttnn.Tensor(bridge.gain_to_device_layout(gain), ttnn.DataType.FLOAT32)
    assert list(gain_host.shape) == [1, 1, 1, 64]
    np.testing.assert_array_equal(bridge.from_device_layout(np.asarray(gain_host.to_numpy()), (64,)), gain)


def test_batch_shards_match_ttnn_mesh_mapper_on_a_1x2_mesh():
    batch = bridge.tokens_layout(np.arange(4 * 32).reshape(4, 32), vocab_size=4 * 32)
    mapper = ttnn.create_mesh_mapper(
        ttnn.MeshShape(1, 2), ttnn.MeshMapperConfig([ttnn.PlacementReplicate(), ttnn.PlacementShard(0)])
    )
    shards = ttnn.get_device_tensors(ttnn.distribute_tensor(ttnn.Tensor(batch, ttnn.DataType.UINT32), mapper))
    ours = bridge.shard_rows(batch, 2)
    assert len(shards) == len(ours) == 2
    for theirs, mine in zip(shards, ours, strict=True):
        np.testing.assert_array_equal(np.asarray(theirs.to_numpy()), mine)
    with pytest.raises(ValueError, match="multiple of 2"):
        bridge.shard_rows(batch[:3], 2)


def test_precision_names_map_to_real_ttnn_dtypes():
    assert bridge.ttnn_dtype(ttnn, "bf16-true") == ttnn.DataType.BFLOAT16
    assert bridge.ttnn_dtype(ttnn, "bf16-mixed") == ttnn.DataType.BFLOAT16  # bf16 compute, fp32 masters in AdamW
    for refused in ("32-true", "16-mixed"):  # ttml computes in bfloat16: float32 compute would not be kept
        with pytest.raises(ValueError, match="--trainer.precision"):
            bridge.ttnn_dtype(ttnn, refused)


def test_memory_stats_read_fields_that_ttnn_memory_view_has():
    view_class = ttnn._ttnn.device.MemoryView
    for field in ("num_banks", "total_bytes_per_bank", "total_bytes_allocated_per_bank", "total_bytes_free_per_bank"):
        assert hasattr(view_class, field), field
    assert hasattr(ttnn.BufferType, "DRAM") and hasattr(ttnn.BufferType, "L1")


@pytest.mark.skipif(chips_present(), reason="this machine has a Tenstorrent chip")
def test_selecting_tt_without_a_chip_is_one_clear_line():
    found, reason = bridge.count_devices(ttnn)
    assert found == 0 and "num_chips > 0" in reason
    assert bridge.setup_problem(need_ttml=False) is None  # without devices_wanted nothing counts (fabric first)
    problem = bridge.setup_problem(need_ttml=True, devices_wanted=1)
    assert "\n" not in problem
    assert problem.startswith("accelerator 'tt' cannot run here:")
    assert "1 Tenstorrent chip(s) needed but 0 found" in problem
    assert "ttml is not installed: build it from tenstorrent/tt-metal at tag v0.81.1" in problem  # no ttml here
    assert problem.endswith("or train with --trainer.accelerator cpu")


def test_the_ttnn_double_only_has_names_the_real_ttnn_has():
    spec = importlib.util.spec_from_file_location(
        "ttnn_double", REPO / "tests" / "ttml_double" / "ttnn" / "__init__.py"
    )
    double = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(double)
    double_only = {"IS_TEST_DOUBLE", "DOUBLE_CHIPS", "EVENTS", "DESCRIPTORS_AT_COUNT", "METAL_CONTEXT_DESCRIPTOR",
                   "start_metal_context", "new_process", "available_chips", "annotations", "enum", "os"}  # fmt: skip
    for name in (n for n in vars(double) if not n.startswith("_") and n not in double_only):
        assert hasattr(ttnn, name) or hasattr(ttnn._ttnn.device, name), f"ttnn has no {name}"
    for enum_name in ("Layout", "DataType", "BufferType"):
        real_members = set(dir(getattr(ttnn, enum_name)))
        for member in getattr(double, enum_name).__members__:
            assert member in real_members, f"ttnn.{enum_name} has no {member}"
    for field in ("num_banks", "total_bytes_per_bank", "total_bytes_allocated_per_bank", "total_bytes_free_per_bank"):
        assert hasattr(ttnn._ttnn.device.MemoryView, field)
