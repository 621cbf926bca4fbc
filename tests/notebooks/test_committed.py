"""The example notebooks are committed as tutorials: valid, with no outputs, execution
counts or saved widget state (which could carry a run's parameters), and with the kernel
the tests give them (``python3``)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.notebooks.conftest import NOTEBOOKS

SHIPPED = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_tutorials_are_there() -> None:
    assert {p.name for p in SHIPPED} >= {"deploy.ipynb", "explore.ipynb", "dashboard.ipynb"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert "widgets" not in nb.metadata
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs"
            assert cell.execution_count is None, f"{path.name}: a cell was run"


def test_the_check_can_fail(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", execution_count=1)])
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"})]
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3"}
    (tmp_path / "run.ipynb").write_text(nbformat.writes(nb))
    with pytest.raises(AssertionError, match="a cell has outputs"):
        test_committed_without_outputs(tmp_path / "run.ipynb")
