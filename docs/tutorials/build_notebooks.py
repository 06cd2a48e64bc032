"""Writes the tutorial notebooks (`.ipynb`) from their jupytext sources (`.py`).

The percent-format `.py` files are the source of truth; the `.ipynb` files beside them
are generated, for Colab and the documentation site:

    python docs/tutorials/build_notebooks.py            # notebooks without outputs
    python docs/tutorials/build_notebooks.py --execute  # run each one (full size) and keep
                                                        # its outputs: plots on the site
    python docs/tutorials/build_notebooks.py --check    # exit 1 if an .ipynb is out of date

`--execute` runs every notebook top to bottom in a temporary folder, with the
environment as it is (set `KERAS_AGD_TUTORIAL_SMALL=1` for the small CI setting,
`KERAS_AGD_MNIST` for a local MNIST file). TensorFlow's C++ log lines and terminal colour
codes are dropped from the saved outputs, and the cells keep the execution counts of the
run (1, 2, ... in order); everything else is kept as the run printed it.

The sources hold the tutorials' text and code only. Every notebook gets two cells from
here: the "Open in Colab" badge under its title and the install cell before its first code
cell, both naming the repository `REPOSITORY` below (the same as mkdocs.yml's `repo_url`).
Links in the text are relative links to the documentation site's pages (`../../agd/`), so
that they stay on the site.
"""

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
# The repository on GitHub (owner/name) and its branch: the Colab badges and the install
# cell name it; "When does AGD pay?" reads the benchmark JSON from it where it runs outside a
# checkout (its source names the same slug, which tests/test_tutorials.py checks).
REPOSITORY = "keras-agd/keras-agd"
BRANCH = "main"
# In reading order; the site's navigation (mkdocs.yml) lists the same notebooks.
TUTORIALS = [
    "agd_in_ten_minutes",
    "your_own_data",
    "layer_adaptive_optimizers",
    "fine_tuning",
    "when_does_agd_pay",
]
# TensorFlow / absl C++ log lines ("I0000 00:00:... port.cc:153] ..."), their preamble, and
# the second line of TensorFlow's CPU-feature notice.
_NATIVE_LOG = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\]|WARNING: All log messages before absl"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate)"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# The first code cell of every notebook. Where keras-agd is missing (Colab), it installs it,
# and warns when pip replaced a package that the runtime had already imported: keras-agd
# pins the TensorFlow and Keras releases it is tested with, which may differ from Colab's.
INSTALL_CELL = """\
# Installs keras-agd where it is missing (on Colab): `pip install keras-agd` from PyPI once
# it is published there, until then from GitHub. From a checkout of the repository:
# `pip install -e .` in its folder.
import importlib.metadata
import importlib.util
import subprocess
import sys

GITHUB = "keras-agd @ git+https://github.com/<repository>@<branch>"


def pip_install(package):
    command = [sys.executable, "-m", "pip", "install", "-q", package]
    return subprocess.run(command, capture_output=True, text=True)


if importlib.util.find_spec("keras_agd") is None:
    if pip_install("keras-agd").returncode != 0:
        print("keras-agd is not on PyPI (not published yet?): installing it from GitHub.")
        installed = pip_install(GITHUB)
        if installed.returncode != 0:
            raise RuntimeError("pip could not install keras-agd:\\n" + installed.stderr)
    # A package imported before pip replaced it stays at its old version until a restart.
    replaced = [
        f"{name} {sys.modules[name].__version__} (installed: {importlib.metadata.version(name)})"
        for name in ("numpy", "tensorflow", "keras")
        if name in sys.modules
        and sys.modules[name].__version__ != importlib.metadata.version(name)
    ]
    if replaced:
        print(
            "pip replaced packages that this runtime had already imported: "
            + ", ".join(replaced)
            + ".\\nRestart the Colab runtime (from its Runtime menu) and run the notebook again."
        )
""".replace("<repository>", REPOSITORY).replace("<branch>", BRANCH)


def colab_badge(name):
    url = (
        f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}"
        f"/docs/tutorials/{name}.ipynb"
    )
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def notebook(name):
    """The notebook of tutorial `name` as written from its source, without outputs.

    The source's first cell is its title; the badge goes under it, and the install cell
    before the first code cell.
    """
    nb = jupytext.read(HERE / f"{name}.py")
    title = nb.cells[0]
    heading, _, rest = title.source.partition("\n")
    if title.cell_type != "markdown" or not heading.startswith("# "):
        raise ValueError(f"{name}.py: the first cell must start with the title, '# ...'")
    title.source = f"{heading}\n\n{colab_badge(name)}\n{rest}"
    first_code = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code")
    nb.cells.insert(first_code, nbformat.v4.new_code_cell(INSTALL_CELL.rstrip("\n")))
    for index, cell in enumerate(nb.cells):  # Stable ids: a rebuild changes only what changed.
        cell.id = f"cell-{index}"
    return nb


def cells(nb):
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def execute(nb, timeout=1800):
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as folder:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": folder}}
        )
        client.execute()
    return nb


def clean_outputs(nb):
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            if output.output_type == "stream":
                lines = output.text.splitlines(keepends=True)
                text = "".join(_ANSI.sub("", line) for line in lines if not _NATIVE_LOG.match(line))
                if not text.strip():
                    continue
                output.text = text
            outputs.append(output)
        cell.outputs = outputs
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--execute", action="store_true", help="run the notebooks, keep outputs")
    parser.add_argument("--check", action="store_true", help="only check the .ipynb are current")
    parser.add_argument("names", nargs="*", help=f"some of {TUTORIALS} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(TUTORIALS))
    if unknown:
        parser.error(f"unknown tutorials {unknown}; choose from {TUTORIALS}")
    stale = []
    for name in args.names or TUTORIALS:
        nb, target = notebook(name), HERE / f"{name}.ipynb"
        if args.check:
            if not target.is_file() or cells(nbformat.read(target, as_version=4)) != cells(nb):
                stale.append(target.name)
            continue
        if args.execute:
            start = time.perf_counter()
            execute(nb)
            print(f"{name}: executed in {time.perf_counter() - start:.0f} s")
        nbformat.write(clean_outputs(nb), target)
        print(f"wrote {target.relative_to(HERE.parents[1])}")
    if stale:
        print(
            f"Out of date: {stale}. Run `python docs/tutorials/build_notebooks.py --execute`.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
