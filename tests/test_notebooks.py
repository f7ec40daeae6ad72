"""The notebooks in examples/ run top to bottom in a real Jupyter kernel,
each within the time a reader would wait, and are committed executed, so that
GitHub shows their results."""

import json
import os
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import shared_cifar10

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
NOTEBOOKS = ["01_model_zoo.ipynb", "02_training.ipynb", "03_transfer.ipynb"]
BUDGET_S = 180  # a whole notebook, kernel start included
CELL_TIMEOUT_S = 300


@pytest.fixture
def python3_kernel(tmp_path, monkeypatch):
    """Makes the kernel named python3 this interpreter's (the test venv's):
    JUPYTER_PATH comes before every other kernelspec folder, so a python3
    kernelspec of another Python elsewhere on the machine cannot be picked."""
    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (tests)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    return "python3"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_without_errors_in_time(name, python3_kernel, tmp_path, monkeypatch):
    # What a notebook writes (02's run and export) lands in pytest's folder.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setenv("KERAS_RESNET_CIFAR10", shared_cifar10())  # also under Bazel's runfiles
    nb = nbformat.read(os.path.join(EXAMPLES, name), as_version=4)
    client = NotebookClient(nb, kernel_name=python3_kernel, timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": EXAMPLES}})
    start = time.monotonic()
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    seconds = time.monotonic() - start
    assert seconds < BUDGET_S, f"{name} took {seconds:.0f} s (budget {BUDGET_S} s)"
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_executed(name):
    nb = nbformat.read(os.path.join(EXAMPLES, name), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert cells
    # Run once, top to bottom, in a fresh kernel; every cell shows something.
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    for index, cell in enumerate(cells):
        assert cell.outputs, f"code cell {index} of {name} has no output"
        assert all(o.output_type != "error" for o in cell.outputs), f"code cell {index} of {name}"
    images = [o for cell in cells for o in cell.outputs if "image/png" in o.get("data", {})]
    assert images, f"{name} shows no figure"
    # Figures small enough to keep the repository and its diffs light.
    assert os.path.getsize(os.path.join(EXAMPLES, name)) < 400_000
