"""Shared fixtures: the local MNIST copy and deterministic seeds; which keras_agd the
tests import."""

import importlib.util
import os
import sysconfig
from pathlib import Path

import keras
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


def _keras_agd_location():
    """Where `import keras_agd` finds the package, without importing it yet (imported
    here, its import-time warnings would escape the run's warning filters)."""
    spec = importlib.util.find_spec("keras_agd")
    return Path(spec.origin).resolve().parent if spec and spec.origin else None


def pytest_report_header(config):
    return f"keras_agd: {_keras_agd_location()}"


def pytest_configure(config):
    """With KERAS_AGD_TEST_IMPORT=checkout or =wheel (.ci/run sets it), the run stops at
    once when the tests would import another keras_agd: a checkout's keras_agd/ found
    first on sys.path would otherwise be tested in the installed wheel's place."""
    expected = os.environ.get("KERAS_AGD_TEST_IMPORT")
    if expected is None:
        return
    where = _keras_agd_location()
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    # CI's virtual environments sit inside the checkout: compare with its keras_agd/.
    wanted = {
        "checkout": where == ROOT / "keras_agd",
        "wheel": where == site_packages / "keras_agd",
    }
    if expected not in wanted:
        raise pytest.UsageError(
            f"KERAS_AGD_TEST_IMPORT must be 'checkout' or 'wheel'. Received: {expected!r}"
        )
    if not wanted[expected]:
        raise pytest.UsageError(
            f"KERAS_AGD_TEST_IMPORT={expected}, but the tests would import keras_agd from "
            f"{where} (checkout: {ROOT}, site-packages: {site_packages})"
        )


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
