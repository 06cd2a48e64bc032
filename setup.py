"""Installs keras-agd.

Lower bounds are the oldest releases CI tests (constraints-oldest.txt), upper bounds the
newest (constraints.txt).
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_version():
    """`__version__` of keras_agd/_version.py, read as text: importing the package would
    import TensorFlow."""
    text = (HERE / "keras_agd" / "_version.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE).group(1)


setup(
    name="keras-agd",
    version=read_version(),
    description=(
        "Annealed gradient descent and layer-specific adaptive learning rates for Keras 3."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_agd", "keras_agd.*"]),
    python_requires=">=3.10",
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
            "hypothesis>=6,<7",
            "ruff>=0.6,<0.18",
            "matplotlib>=3.9,<3.12",
        ],
        # The documentation site (mkdocs.yml) and the tutorial notebooks (docs/tutorials/).
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
    license="Apache-2.0",
    # The full text ships in the wheel (.dist-info/licenses/) and the sdist.
    license_files=["LICENSE"],
)
