"""Puts the ttml/ttnn test doubles in place of the real packages for one test, and takes them out after."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

DOUBLE_ROOT = Path(__file__).resolve().parent
MESH_DESCRIPTOR_VARIABLE = "TT_MESH_GRAPH_DESC_PATH"


def _forget_vendor_modules() -> None:
    # lightning_tt.twin binds ttml/ttnn at import: it must be re-imported against each test's double.
    for name in list(sys.modules):
        if name.split(".")[0] in ("ttml", "ttnn") or name == "lightning_tt.twin":
            del sys.modules[name]
    package = sys.modules.get("lightning_tt")
    if package is not None and hasattr(package, "twin"):
        delattr(package, "twin")


@contextlib.contextmanager
def install_double() -> Iterator:
    """Make `import ttml` / `import ttnn` load the doubles; yields the double's ttml module."""
    _forget_vendor_modules()
    sys.path.insert(0, str(DOUBLE_ROOT))
    # The double's enable_fabric exports TT_MESH_GRAPH_DESC_PATH as the real one does (setenv in tt_metal.cpp):
    # undo that after the test, as a new process would start without it.
    exported_before = os.environ.get(MESH_DESCRIPTOR_VARIABLE)
    try:
        import ttml
        import ttnn

        assert getattr(ttml, "IS_TEST_DOUBLE", False) and getattr(ttnn, "IS_TEST_DOUBLE", False)
        yield ttml
    finally:
        sys.path.remove(str(DOUBLE_ROOT))
        _forget_vendor_modules()
        if exported_before is None:
            os.environ.pop(MESH_DESCRIPTOR_VARIABLE, None)
        else:
            os.environ[MESH_DESCRIPTOR_VARIABLE] = exported_before


@pytest.fixture
def tt_double():
    """The double's ttml module; its ttnn double reports one chip (set ttnn.DOUBLE_CHIPS to change that)."""
    with install_double() as ttml:
        yield ttml
