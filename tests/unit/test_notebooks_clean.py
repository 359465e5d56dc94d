"""Tutorial notebooks are committed without outputs, so diffs stay readable and nothing stale is shipped."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_valid_and_has_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "a tutorial without code"
    stale = [i for i, cell in enumerate(code) if cell.outputs or cell.execution_count is not None]
    assert not stale, f"strip outputs of code cells {stale} (e.g. `jupyter nbconvert --clear-output --inplace`)"
