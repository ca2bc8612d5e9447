"""The scaling-laws notebook runs end to end on a tiny sweep."""

import os

import nbformat
from helpers import ROOT, sweep
from nbclient import NotebookClient


def test_scaling_laws_notebook_executes(tmp_path):
    run = tmp_path / "run"
    sweep("--d", "5,9,14", "--experiment", "thm1", "thm6", "--trials", "30", "--out", run)
    notebook = nbformat.read(ROOT / "notebooks" / "scaling_laws.ipynb", as_version=4)
    os.environ["JAXFRAG_RUN"] = str(run)
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
        ).execute()
    finally:
        os.environ.pop("JAXFRAG_RUN")
    text = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "180 trials" in text and "slope" in text and "largest |z|" in text
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2
