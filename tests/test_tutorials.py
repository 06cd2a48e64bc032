"""The tutorial notebooks: in sync with their sources, clean as committed, and run top to
bottom (small data)."""

import importlib.util
import re
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the `docs` extra is not installed")
nbclient = pytest.importorskip("nbclient", reason="the `docs` extra is not installed")
nbformat = pytest.importorskip("nbformat", reason="the `docs` extra is not installed")

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


# --- The committed notebooks, as the site and Colab show them (fast: nothing is run).

NOTEBOOKS = [TUTORIALS_DIR / f"{name}.ipynb" for name in build_notebooks.TUTORIALS]
# Paths of the machine that ran a notebook, which its outputs must not show.
LOCAL_PATHS = ("/work/", "/home/", "/tmp/", "/Users/", "/root/", ".venv", "site-packages")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)|href=\"([^\"]+)\"")
COLAB_BADGE = re.compile(
    r"https://colab\.research\.google\.com/(assets/colab-badge\.svg"
    r"|github/([\w.-]+/[\w.-]+)/blob/\w+/docs/tutorials/(\w+)\.ipynb)$"
)
GITHUB_SLUG = re.compile(r"(?:github\.com|githubusercontent\.com)/([\w.-]+/[\w.-]+?)(?:[/@]|$)")


def _read(path):
    return nbformat.read(path, as_version=4)


def _output_texts(cell):
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            yield output.text
        elif output.output_type == "error":
            yield "\n".join([output.ename, output.evalue, *output.traceback])
        else:
            for mime, data in output.get("data", {}).items():
                if mime.startswith("text/"):
                    yield data if isinstance(data, str) else "".join(data)


def _markdown(nb):
    """The notebook's text: its markdown cells and its Markdown outputs."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            yield cell.source
        for output in cell.get("outputs", []):
            yield output.get("data", {}).get("text/markdown", "")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_committed_outputs_show_no_warning_traceback_or_local_path(path):
    nb = _read(path)
    assert any(cell.get("outputs") for cell in nb.cells), f"{path.name} was not executed"
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{path.name} cell {index}: an error"
            assert getattr(output, "name", "stdout") != "stderr", (
                f"{path.name} cell {index} wrote to stderr: {output.text[:200]!r}"
            )
        for text in _output_texts(cell):
            for word in ("Warning", "warnings.warn", "Traceback"):
                assert word not in text, f"{path.name} cell {index}: {word!r} in {text[:300]!r}"
            for local in LOCAL_PATHS:
                assert local not in text, f"{path.name} cell {index}: {local!r} in {text[:300]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_execution_counts_run_one_to_n_in_order(path):
    code = [cell for cell in _read(path).cells if cell.cell_type == "code"]
    for cell in code:
        if cell.outputs:
            assert cell.execution_count is not None, f"{path.name}: 'In [ ]' beside outputs"
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts {counts}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_links_stay_on_the_site(path):
    """Relative links to pages that exist; GitHub only in the badge and the install cell."""
    nb = _read(path)
    docs = TUTORIALS_DIR.parent
    for text in _markdown(nb):
        for match in MARKDOWN_LINK.finditer(text):
            target = match.group(1) or match.group(2)
            if target.startswith("#"):
                continue
            if target.startswith(("http://", "https://")):
                badge = COLAB_BADGE.match(target)
                assert badge, f"{path.name} links off the site: {target}"
                if badge.group(2):
                    assert badge.group(2) == build_notebooks.REPOSITORY
                    assert badge.group(3) == path.stem
                continue
            # A page of the site, relative to this page's URL (tutorials/<name>/).
            page = target.split("#")[0].rstrip("/")
            assert page.startswith("../") and not page.endswith((".md", ".ipynb")), (
                f"{path.name}: {target} is not a link to a page of the site (../../agd/)"
            )
            parts = page.split("/")
            if parts[:2] == ["..", ".."]:
                source = docs.joinpath(*parts[2:]).with_suffix(".md")
            else:
                source = TUTORIALS_DIR.joinpath(*parts[1:]).with_suffix(".ipynb")
            assert source.is_file(), f"{path.name}: {target} is no page ({source.name})"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        slugs = GITHUB_SLUG.findall(cell.source)
        assert set(slugs) <= {build_notebooks.REPOSITORY}, f"{path.name} cell {index}: {slugs}"
        if slugs and cell.source != build_notebooks.INSTALL_CELL.rstrip("\n"):
            assert "raw.githubusercontent.com" in cell.source, f"{path.name} cell {index}"


def test_the_repository_is_the_one_the_site_names():
    config = (TUTORIALS_DIR.parents[1] / "mkdocs.yml").read_text()
    repo_url = re.search(r"^repo_url: *(\S+)", config, re.M).group(1)
    assert repo_url.rstrip("/") == f"https://github.com/{build_notebooks.REPOSITORY}"


@pytest.mark.parametrize("name", build_notebooks.TUTORIALS)
def test_the_headings_are_plain_text(name):
    # The site's table of contents links to an id made from the heading's text; code or
    # emphasis in a heading makes the two disagree.
    for cell in build_notebooks.notebook(name).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    assert not re.search(r"[`*_\[\]<>]", line), f"{name}: {line!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_tables_in_the_outputs_are_narrow(path):
    for text in _markdown(_read(path)):
        for line in text.splitlines():
            if line.startswith("|"):
                visible = re.sub(r"[`*]", "", line)
                assert len(visible) <= 100, f"{path.name}: a table row of {len(visible)}: {line}"
                assert visible.count("|") <= 8, f"{path.name}: too many columns: {line}"


def _run_install_cell(monkeypatch, pypi_returncode, imported_keras):
    """Runs the install cell as on a runtime without keras-agd; returns what pip got."""
    import importlib.metadata
    import importlib.util
    import subprocess
    import sys
    import types

    calls = []

    def run(command, **kwargs):
        calls.append(command[-1])
        code = pypi_returncode if command[-1] == "keras-agd" else 0
        return subprocess.CompletedProcess(command, code, "", "no such package")

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9")
    for name in ("numpy", "tensorflow", "keras"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    if imported_keras:
        monkeypatch.setitem(sys.modules, "keras", types.SimpleNamespace(__version__="3.0.0"))
    exec(build_notebooks.INSTALL_CELL, {"__name__": "__main__"})
    return calls


def test_the_install_cell_uses_pypi_then_github_and_asks_for_a_restart(monkeypatch, capsys):
    assert _run_install_cell(monkeypatch, 0, imported_keras=False) == ["keras-agd"]
    assert capsys.readouterr().out == ""
    github = f"keras-agd @ git+https://github.com/{build_notebooks.REPOSITORY}@main"
    assert _run_install_cell(monkeypatch, 1, imported_keras=True) == ["keras-agd", github]
    out = capsys.readouterr().out
    assert "keras 3.0.0 (installed: 9.9.9)" in out
    assert "Restart the Colab runtime (from its Runtime menu) and run the notebook again." in out
