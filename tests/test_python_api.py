"""The Python API page's example (docs/python-api.md) runs as written."""

import re
import subprocess
import sys

from conftest import REPO_ROOT, TINY_SHAKESPEARE


def test_the_python_api_example_trains_predicts_and_reloads(tmp_path):
    page = (REPO_ROOT / "docs" / "python-api.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.DOTALL).group(1)
    (tmp_path / "tests" / "data").mkdir(parents=True)
    (tmp_path / "tests" / "data" / "tinyshakespeare.txt").symlink_to(TINY_SHAKESPEARE)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("ROMEO:") for line in lines) and any(line.startswith("JULIET:") for line in lines)
    assert (tmp_path / "small.ckpt").is_file()
    assert not (tmp_path / "data" / "shakespeare" / "input.txt").exists()  # nothing was downloaded
