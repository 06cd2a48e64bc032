"""MNIST loading that works both online and on machines without a network."""

import os

import numpy as np

from keras_agd._npz import read_npz

MNIST_ENV_VAR = "KERAS_AGD_MNIST"
_MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_mnist(path=None):
    """Loads MNIST in the layout of `keras.datasets.mnist.load_data()`.

    The file is looked up in this order: `path`, the environment variable
    `KERAS_AGD_MNIST`, then Keras' own cache and download
    (`~/.keras/datasets/mnist.npz`).

    Args:
        path: Optional path to an `.npz` file with the arrays `x_train`,
            `y_train`, `x_test` and `y_test` (uint8 images of shape
            `(N, 28, 28)` and integer labels). Defaults to `None`.

    Returns:
        Tuple of NumPy arrays `(x_train, y_train), (x_test, y_test)`.

    Raises:
        FileNotFoundError: If the given file does not exist.
        ValueError: If the file is not a valid MNIST `.npz` file.
        RuntimeError: If no file is given and the download fails.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = keras_agd.datasets.load_mnist()
    >>> x_train.shape
    (60000, 28, 28)
    """
    path = path or os.environ.get(MNIST_ENV_VAR)
    if path is None:
        return _download_mnist()
    arrays = read_npz(path, "MNIST")
    missing = [key for key in _MNIST_KEYS if key not in arrays]
    if missing:
        raise ValueError(
            f"{path!r} is not an MNIST file: missing arrays {missing}. "
            f"Expected keys {list(_MNIST_KEYS)}."
        )
    for split in ("train", "test"):
        _check_split(path, split, arrays[f"x_{split}"], arrays[f"y_{split}"])
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _check_split(path, split, x, y):
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"{path!r}: x_{split} must have shape (N, 28, 28). Received: {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(
            f"{path!r}: y_{split} must have shape ({len(x)},) to match x_{split}. "
            f"Received: {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path!r}: y_{split} must hold integer labels. Received: {y.dtype}")


def _download_mnist():
    import keras

    try:
        return keras.datasets.mnist.load_data()
    except Exception as error:  # The download raises many kinds of network errors.
        raise RuntimeError(
            "Could not download MNIST with keras.datasets.mnist.load_data(). "
            f"Pass `path=` or set {MNIST_ENV_VAR} to a local mnist.npz. Cause: {error}"
        ) from error
