"""`tt-check` against the ttml double: part (a) (symbols and signatures, as lightning_tt.bindings records the real
bindings) passes on the double and fails with a clear table when a symbol is missing or takes other parameters
(enable_fabric renamed to num_devices among them); part (b) (one step on the chips vs CPU) runs through on the
double's meshes, descriptor and fabric before the chip count, and fails when the chips' step differs."""

import re

import pytest
from lightning_tt.errors import TTHardwareError
from lightning_tt.symbols import PLUGIN_SYMBOLS
from test_tt_mesh import set_runtime_root
from ttml_double import harness

from lightning_trickster.commands.tt_check import tt_check

tt_double = harness.tt_double


def table_rows(output: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in output.splitlines() if line.startswith(("ttml.", "ttnn."))}


def test_part_a_passes_on_the_double_and_prints_one_row_per_symbol(tt_double, capsys):
    assert tt_check(run_on_chips=False) is None
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert list(rows) == [s.path for s in PLUGIN_SYMBOLS]  # the one list the plugin's calls are declared in
    assert rows["ttml.ops.loss.cross_entropy_loss"] == ["yes", "yes"]
    assert out.splitlines()[0].split() == ["symbol", "found", "signature", "ok"]


def test_part_a_fails_with_the_table_when_a_symbol_is_removed(tt_double, capsys, monkeypatch):
    monkeypatch.delattr(tt_double.ops.unary, "mean")
    with pytest.raises(
        TTHardwareError, match=r"1 of \d+ ttnn/ttml symbols .* \(first: ttml.ops.unary.mean; table above\)"
    ):
        tt_check(run_on_chips=False)
    rows = table_rows(capsys.readouterr().out)
    assert rows["ttml.ops.unary.mean"][:2] == ["NO", "-"]


def test_part_a_fails_when_a_binding_takes_other_parameters(tt_double, capsys, monkeypatch):
    monkeypatch.setattr(tt_double.ops.binary, "mul", lambda b, a: None)  # arguments swapped
    with pytest.raises(TTHardwareError, match="first: ttml.ops.binary.mul"):
        tt_check(run_on_chips=False)
    row = table_rows(capsys.readouterr().out)["ttml.ops.binary.mul"]
    assert row[:2] == ["yes", "NO"] and "expected (a, b, ...), found (b, a)" in " ".join(row)


def test_part_a_fails_naming_enable_fabric_when_the_doubles_parameter_is_renamed_to_num_devices(
    tt_double, capsys, monkeypatch
):
    """The name the plugin and the double once agreed on, which no real build has (nb_core.cpp binds enable_fabric
    without nb::arg): the table's expectation catches it."""

    def enable_fabric(num_devices: int) -> None:
        pass

    monkeypatch.setattr(tt_double.core.distributed, "enable_fabric", enable_fabric)
    with pytest.raises(
        TTHardwareError, match=r"1 of \d+ .* \(first: ttml.core.distributed.enable_fabric; table above\)"
    ):
        tt_check(run_on_chips=False)
    row = table_rows(capsys.readouterr().out)["ttml.core.distributed.enable_fabric"]
    assert row[:2] == ["yes", "NO"] and "expected (arg, /, ...), found (num_devices)" in " ".join(row)


def test_part_b_runs_the_full_mesh_first_then_1x1_and_matches_cpu(tt_double, capsys, monkeypatch, tmp_path):
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    set_runtime_root(monkeypatch, tmp_path)
    # chips present: part (b) runs on the T3K descriptor's [2, 4] (the preset's descriptor), then on [1, 1]
    tt_check(mesh_graph_descriptor="t3k_mesh_graph_descriptor.textproto")
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith(("cpu", "[1, 1]", "[2, 4]"))]
    results = {" ".join(line.split(":")[0].split()): line for line in rows}
    assert list(results) == [
        "cpu float32", "[2, 4] bf16-mixed", "[2, 4] bf16-true", "[1, 1] bf16-mixed", "[1, 1] bf16-true"
    ]  # fmt: skip
    assert all(line.endswith(" ok") and " ms " in line for name, line in results.items() if name != "cpu float32")
    assert lines[-1] == "part (b): every mesh matches the CPU step"
    # Fabric first: the descriptor was exported and the fabric enabled before anything counted chips.
    events = tt_double.autograd.AutoContext.get_instance().events
    assert events[:2] == ["enable_fabric", "GetNumAvailableDevices"]
    t3k = str(tmp_path / "tt_metal/fabric/mesh_graph_descriptors/t3k_mesh_graph_descriptor.textproto")
    assert ttnn.DESCRIPTORS_AT_COUNT[0] == t3k and [t3k] == ttnn.METAL_CONTEXT_DESCRIPTOR


def test_part_b_takes_the_full_mesh_from_the_descriptor_the_environment_names(tt_double, capsys, monkeypatch, tmp_path):
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    set_runtime_root(monkeypatch, tmp_path)
    t3k = tmp_path / "tt_metal/fabric/mesh_graph_descriptors/t3k_mesh_graph_descriptor.textproto"
    monkeypatch.setenv("TT_MESH_GRAPH_DESC_PATH", str(t3k))
    tt_check()
    out = capsys.readouterr().out
    assert (
        re.search(r"^\[2, 4\] +bf16-mixed *: loss", out, re.M)
        and out.splitlines()[-1] == "part (b): every mesh matches the CPU step"
    )


def test_part_b_without_a_named_mesh_checks_one_chip_and_says_how_to_check_the_mesh(tt_double, capsys):
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    tt_check()
    out = capsys.readouterr().out
    assert "full mesh not checked: ttnn sees 8 chips but neither --mesh_graph_descriptor, --mesh_shape nor" in out
    assert re.search(r"^\[1, 1\] +bf16-true *: loss", out, re.M) and not re.search(r"^\[2, 4\]", out, re.M)


def test_part_b_fails_when_the_chips_do_not_average_their_gradients(tt_double, capsys, monkeypatch, tmp_path):
    import ttnn

    ttnn.DOUBLE_CHIPS = 2
    monkeypatch.setenv("TT_METAL_RUNTIME_ROOT", str(tmp_path))
    monkeypatch.delenv("TT_MESH_GRAPH_DESC_PATH", raising=False)

    def no_sync(parameters, cluster_axes=None):  # the binding's signature, but the chips keep their own gradients
        pass

    monkeypatch.setattr(tt_double.core.distributed, "synchronize_gradients", no_sync)
    mismatch = r"the training step on mesh \[1, 2\] bf16-mixed, \[1, 2\] bf16-true differs from the CPU step"
    with pytest.raises(TTHardwareError, match=mismatch):
        tt_check(run_on_chips=True, mesh_shape=[1, 2])
    assert "MISMATCH" in capsys.readouterr().out


def test_part_b_refuses_to_run_without_chips_when_asked_to(tt_double, capsys):
    import ttnn

    ttnn.DOUBLE_CHIPS = 0
    tt_check()  # auto: part (a) only
    assert capsys.readouterr().out.splitlines()[-1] == "part (b) skipped: ttnn sees no chip"
    with pytest.raises(TTHardwareError, match="ttnn sees no Tenstorrent chip"):
        tt_check(run_on_chips=True)
