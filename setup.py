"""Installs keras-agd.

Lower bounds are the oldest releases CI tests (constraints-oldest.txt), upper bounds admit
the newest (constraints.txt); tests/test_packaging.py checks both.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
# The repository, written once here; mkdocs.yml's repo_url must be the same
# (tests/test_packaging.py).
REPOSITORY = "https://github.com/keras-agd/keras-agd"
BRANCH = "main"
IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")

# Link targets in Markdown: [text](target) and ![alt](target), reference definitions
# ([label]: target), and the src= / href= of inline HTML.
_LINKS = (
    re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)"),
    re.compile(r"^( {0,3}\[[^\]]+\]:[ \t]*)(\S+)", re.MULTILINE),
    re.compile(r"""(\b(?:src|href)=["'])([^"']+)"""),
)
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)


def read_version():
    """`__version__` of keras_agd/_version.py, read as text: importing the package would
    import TensorFlow."""
    text = (HERE / "keras_agd" / "_version.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE).group(1)


def absolute_link(target):
    """A link of the README as a package index must show it: the index has no repository
    beside the text to resolve `docs/agd.md` against. Files become GitHub's page of the
    file, images the raw file; links with a scheme (`https:`, `mailto:`) and anchors
    (`#usage`) stay as they are."""
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|#", target):
        return target
    path = target.removeprefix("./").lstrip("/")
    if path.partition("#")[0].partition("?")[0].lower().endswith(IMAGES):
        owner_name = REPOSITORY.removeprefix("https://github.com/")
        return f"https://raw.githubusercontent.com/{owner_name}/{BRANCH}/{path}"
    return f"{REPOSITORY}/blob/{BRANCH}/{path}"


def absolute_links(markdown):
    """`markdown` with every relative link made absolute (`absolute_link`), code blocks
    left as they are."""

    def rewrite(text):
        for pattern in _LINKS:
            text = pattern.sub(lambda m: m.group(1) + absolute_link(m.group(2)), text)
        return text

    pieces, end = [], 0
    for fence in _FENCE.finditer(markdown):
        pieces += [rewrite(markdown[end : fence.start()]), fence.group(0)]
        end = fence.end()
    return "".join(pieces + [rewrite(markdown[end:])])


setup(
    name="keras-agd",
    version=read_version(),
    description=(
        "Annealed gradient descent and layer-specific adaptive learning rates for Keras 3."
    ),
    long_description=absolute_links((HERE / "README.md").read_text(encoding="utf-8")),
    long_description_content_type="text/markdown",
    author="keras-agd contributors",
    project_urls={
        # The site is built from docs/ by mkdocs; until it is hosted, docs/ on GitHub.
        "Documentation": f"{REPOSITORY}/tree/{BRANCH}/docs",
        "Source": REPOSITORY,
        "Changelog": f"{REPOSITORY}/blob/{BRANCH}/CHANGELOG.md",
        "Issues": f"{REPOSITORY}/issues",
    },
    keywords=[
        "keras",
        "tensorflow",
        "deep learning",
        "optimizer",
        "annealed gradient descent",
        "curriculum learning",
        "codebook",
        "k-means",
        "layer-wise learning rate",
    ],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        # What CI runs; Keras 3.15 needs 3.11 or newer.
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Software Development :: Libraries :: Python Modules",
    ],
    # Only the library: tests, benchmarks, docs and examples stay in the repository.
    packages=find_packages(include=["keras_agd", "keras_agd.*"]),
    python_requires=">=3.11",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "numpy>=2.0,<2.5",
        "scikit-learn>=1.4.2,<1.10",
        "tensorflow-datasets>=4.9.10,<4.10",
        "threadpoolctl>=3.1,<4",  # Used directly (one BLAS thread in the codebook's pass).
    ],
    extras_require={
        # Faster k-means for the codebook; without it, scikit-learn's KMeans is used.
        "faiss": ["faiss-cpu>=1.14.2,<1.16"],
        "dev": [
            "faiss-cpu>=1.14.2,<1.16",  # So that the tests cover both codebook backends.
            "pytest>=8,<10",
            "hypothesis>=6.155.2,<7",
            "ruff>=0.6,<0.18",
            "matplotlib>=3.9,<3.12",
            "build>=1.2.2,<1.7",  # The wheel and the sdist (`python -m build`).
        ],
        # The per-layer rules' tests on the JAX backend (optax: LARS's reference steps).
        "jax": ["jax>=0.10.2,<0.11", "optax>=0.2.8,<0.3"],
        # The documentation site (mkdocs.yml) and the tutorial notebooks (docs/tutorials/).
        # CI installs it with constraints.txt only, so its lower bounds are not tested.
        "docs": [
            "mkdocs>=1.6,<1.7",
            "mkdocs-material>=9.5,<9.9",
            "mkdocstrings[python]>=1.0,<1.1",
            "mkdocstrings-python>=2.0,<2.1",
            "mkdocs-jupyter>=0.25,<0.27",
            "jupytext>=1.16,<1.20",
            "nbclient>=0.10,<0.12",
            "ipykernel>=6.29,<8",
            "matplotlib>=3.9,<3.12",
        ],
    },
    # An SPDX expression (License-Expression, PEP 639), which replaces the license
    # classifiers: setuptools refuses both at once. The full text ships in the wheel
    # (.dist-info/licenses/) and the sdist.
    license_expression="Apache-2.0",
    license_files=["LICENSE"],
)
