"""Shared fixtures: the local MNIST copy and deterministic seeds."""

import os
from pathlib import Path

import keras
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The project's data folder sits beside the checkout (see ../shared/data/README.md).
LOCAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"


@pytest.fixture
def mnist_path():
    path = os.environ.get("KERAS_AGD_MNIST") or LOCAL_MNIST
    if not Path(path).is_file():
        pytest.skip(f"no local MNIST file at {path}")
    return path


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
