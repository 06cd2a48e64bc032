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
codes are dropped from the saved outputs; everything else is kept as the run printed it.

The notebooks name the repository `keras-agd/keras-agd` on GitHub, branch `main` (the Colab
badges, the install cell, links, the benchmark JSON read by "When does AGD pay?"); if the
repository lives elsewhere, replace that slug in every source here (`grep -r keras-agd/keras-agd`).
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
# In reading order; the site's navigation (mkdocs.yml) lists the same notebooks.
TUTORIALS = [
    "agd_in_ten_minutes",
    "your_own_data",
    "layer_adaptive_optimizers",
    "when_does_agd_pay",
]
# TensorFlow / absl C++ log lines ("I0000 00:00:... port.cc:153] ..."), their preamble, and
# the second line of TensorFlow's CPU-feature notice.
_NATIVE_LOG = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\]|WARNING: All log messages before absl"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate)"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def notebook(name):
    """The notebook of tutorial `name` as written from its source, without outputs."""
    return jupytext.read(HERE / f"{name}.py")


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
        cell.execution_count = None
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
