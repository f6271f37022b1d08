"""`tt-check` against the ttml double: part (a) (symbols and signatures) passes on the double and fails with a
clear table when a symbol is missing or takes other parameters; part (b) (one step on the chips vs CPU) runs on the
double's meshes and fails when the chips' step differs."""

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


def test_part_b_runs_one_step_on_1x1_and_the_full_mesh_and_matches_cpu(tt_double, capsys, monkeypatch, tmp_path):
    import ttnn

    ttnn.DOUBLE_CHIPS = 8
    set_runtime_root(monkeypatch, tmp_path)
    tt_check()  # chips present: part (b) runs, on [1, 1] and on the T3K descriptor's [2, 4]
    lines = capsys.readouterr().out.splitlines()
    results = {line.split(":")[0].strip(): line for line in lines if line.startswith(("cpu", "[1, 1]", "[2, 4]"))}
    assert list(results) == ["cpu", "[1, 1]", "[2, 4]"]
    assert results["[2, 4]"].endswith(" ok") and " ms " in results["[2, 4]"]
    assert lines[-1] == "part (b): every mesh matches the CPU step"


def test_part_b_fails_when_the_chips_do_not_average_their_gradients(tt_double, capsys, monkeypatch, tmp_path):
    import ttnn

    ttnn.DOUBLE_CHIPS = 2
    monkeypatch.setenv("TT_METAL_RUNTIME_ROOT", str(tmp_path))

    def no_sync(parameters, cluster_axes=None):  # the binding's signature, but the chips keep their own gradients
        pass

    monkeypatch.setattr(tt_double.core.distributed, "synchronize_gradients", no_sync)
    with pytest.raises(TTHardwareError, match=r"the training step on mesh \[1, 2\] differs from the CPU step"):
        tt_check(run_on_chips=True, mesh_shape=[1, 2])
    assert "MISMATCH" in capsys.readouterr().out


def test_part_b_refuses_to_run_without_chips_when_asked_to(tt_double, capsys):
    import ttnn

    ttnn.DOUBLE_CHIPS = 0
    tt_check()  # auto: part (a) only
    assert capsys.readouterr().out.splitlines()[-1] == "part (b) skipped: ttnn sees no chip"
    with pytest.raises(TTHardwareError, match="ttnn sees no Tenstorrent chip"):
        tt_check(run_on_chips=True)
