import numpy as np
import pytest

from keras_agd.datasets import load_mnist


def test_load_mnist_from_local_file(mnist_path):
    (x_train, y_train), (x_test, y_test) = load_mnist(mnist_path)
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist()[:3] == [5923, 6742, 5958]
    assert y_test.shape == (10000,)


def test_environment_variable_is_used(mnist_path, monkeypatch):
    monkeypatch.setenv("KERAS_AGD_MNIST", str(mnist_path))
    (x_train, _), _ = load_mnist()
    assert len(x_train) == 60000


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST file not found"):
        load_mnist(tmp_path / "nope.npz")


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable MNIST file"):
        load_mnist(path)


def test_file_with_wrong_arrays_is_a_clear_error(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="missing arrays"):
        load_mnist(path)


def test_file_with_wrong_shapes_is_a_clear_error(tmp_path):
    path = tmp_path / "mnist.npz"
    x, y = np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8)
    np.savez(path, x_train=x, y_train=y[:2], x_test=x, y_test=y)
    with pytest.raises(ValueError, match="y_train must have shape"):
        load_mnist(path)
