"""The Colab quickstart notebook runs top to bottom (tiny data, a few training steps)."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path):
    """Given the notebook, when every cell runs in a fresh kernel, then none raises and the stream is decoded."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parents[1])}}
    )
    try:
        client.execute()
    except Exception as error:  # nbclient raises CellExecutionError with the failing cell's traceback
        pytest.fail(f"quickstart.ipynb failed: {error}")
    outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "chunks, median" in outputs
