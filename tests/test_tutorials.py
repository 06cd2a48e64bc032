"""The tutorial notebooks: in sync with their sources, and run top to bottom (small data)."""

import importlib.util
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the `docs` extra is not installed")
nbclient = pytest.importorskip("nbclient", reason="the `docs` extra is not installed")

TUTORIALS_DIR = Path(__file__).resolve().parents[1] / "docs" / "tutorials"
_spec = importlib.util.spec_from_file_location(
    "build_notebooks", TUTORIALS_DIR / "build_notebooks.py"
)
build_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_notebooks)


def test_the_notebooks_are_generated_from_their_sources():
    assert build_notebooks.main(["--check"]) == 0, (
        "run `python docs/tutorials/build_notebooks.py` (or with --execute) and commit"
    )


def test_the_notebooks_are_the_ones_the_site_lists():
    nav = (TUTORIALS_DIR.parents[1] / "mkdocs.yml").read_text()
    listed = [name for name in build_notebooks.TUTORIALS if f"tutorials/{name}.ipynb" in nav]
    assert listed == build_notebooks.TUTORIALS
    sources = sorted(p.stem for p in TUTORIALS_DIR.glob("*.py") if p.stem != "build_notebooks")
    assert sources == sorted(build_notebooks.TUTORIALS)


@pytest.mark.notebook
@pytest.mark.parametrize("name", build_notebooks.TUTORIALS)
def test_the_tutorial_runs_top_to_bottom(name, mnist_path, monkeypatch, tmp_path):
    # The kernel inherits this environment: the small-data switch and the local MNIST file.
    monkeypatch.setenv("KERAS_AGD_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("KERAS_AGD_MNIST", str(mnist_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = build_notebooks.notebook(name)
    resources = {"metadata": {"path": str(tmp_path)}}  # The kernel's working folder.
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources=resources
    )
    client.execute()  # Raises CellExecutionError, with the cell and its traceback, on failure.
    plots = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert plots, f"{name} drew no plot"
