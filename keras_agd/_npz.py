"""Reading `.npz` files without pickle, with errors that name the file and its role."""

import os
import zipfile

import numpy as np


def read_npz(path, what):
    """Returns every array of the `.npz` file at `path` as a dict.

    Args:
        path: File path.
        what: What the file should be, for error messages ("MNIST", "codebook").

    Raises:
        FileNotFoundError: If there is no such file.
        IsADirectoryError: If `path` is a folder.
        ValueError: If it is not a readable `.npz` file (truncated, not a zip, pickled).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} file expected, found a folder: {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        # NumPy reports a non-npz file as a pickle it may not load (ValueError).
        raise ValueError(f"{path!r} is not a readable {what} file: {error}") from error
