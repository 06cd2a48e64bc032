"""The codebook's `.npz` file format and its training-data fingerprint."""

import hashlib
import json
import os
import tempfile

import numpy as np

from keras_agd._npz import read_npz

FORMAT = "keras_agd.HierarchicalCodebook"
FORMAT_VERSION = 1
# Learned arrays written to the file; `sample_paths_` is derived on load.
ARRAYS = (
    "codewords_",
    "node_level_",
    "node_parent_",
    "node_label_",
    "node_count_",
    "node_mean_error_",
    "node_max_error_",
    "sample_node_",
)
PARAMS = (
    "branching",
    "max_depth",
    "min_cluster_size",
    "target_error",
    "max_iter",
    "backend",
    "n_jobs",
    "random_state",
    "verbose",
)


def fingerprint(x, y):
    """Identifies a training set by shape, dtype and a SHA-256 of its bytes."""
    digest = hashlib.sha256(np.ascontiguousarray(x).data)
    if y is not None:
        # Labels are hashed as int64 so that uint8 and int64 copies of `y` agree.
        digest.update(np.ascontiguousarray(y, dtype=np.int64).data)
    return {
        "n_samples": int(len(x)),
        "sample_shape": list(x.shape[1:]),
        "dtype": str(x.dtype),
        "labeled": y is not None,
        "sha256": digest.hexdigest(),
    }


def check_fingerprint(expected, received):
    if expected == received:
        return
    differences = [
        f"{key}: codebook has {expected.get(key)!r}, data has {received.get(key)!r}"
        for key in expected
        if expected.get(key) != received.get(key)
    ]
    raise ValueError(
        "This codebook was fit on different training data ("
        + "; ".join(differences)
        + "). Pass the exact `x` (same scaling and dtype) and `y` it was fit on, or refit."
    )


def _checksum(arrays):
    digest = hashlib.sha256()
    for name in ARRAYS:
        digest.update(np.ascontiguousarray(arrays[name]).data)
    return digest.hexdigest()


def save(path, codebook):
    arrays = {name: getattr(codebook, name) for name in ARRAYS}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "params": {name: getattr(codebook, name) for name in PARAMS},
        "feature_shape": list(codebook.feature_shape_),
        "fingerprint": codebook.fingerprint_,
        "build_seconds": codebook.build_seconds_,
        "checksum": _checksum(arrays),
    }
    path = os.fspath(path)
    # Write beside the target, then rename: an interrupted save never leaves half a file.
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as file:
        try:
            np.savez(file, metadata=np.array(json.dumps(metadata)), **arrays)
        except BaseException:
            os.unlink(file.name)
            raise
    os.replace(file.name, path)


def load(path, cls):
    path = os.fspath(path)
    contents = read_npz(path, "codebook")

    missing = [name for name in ("metadata", *ARRAYS) if name not in contents]
    if missing:
        raise ValueError(f"{path!r} is not a keras_agd codebook file: missing {missing}.")
    try:
        metadata = json.loads(str(contents["metadata"]))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path!r}: the codebook metadata is corrupt: {error}") from error
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a keras_agd codebook file.")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} has codebook format version {metadata.get('format_version')}; this "
            f"keras_agd reads version {FORMAT_VERSION}. Rebuild the codebook."
        )
    if _checksum(contents) != metadata.get("checksum"):
        raise ValueError(f"{path!r}: the codebook arrays do not match their checksum (corrupt).")

    codebook = cls(**metadata["params"])
    for name in ARRAYS:
        setattr(codebook, name, contents[name])
    codebook.feature_shape_ = tuple(metadata["feature_shape"])
    codebook.fingerprint_ = metadata["fingerprint"]
    codebook.build_seconds_ = metadata["build_seconds"]
    codebook._set_paths()
    return codebook
