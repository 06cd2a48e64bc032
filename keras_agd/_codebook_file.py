"""The codebook's `.npz` file format: checksummed, validated on load, no pickle."""

import hashlib
import json
import os
import tempfile

import numpy as np

from keras_agd import _validation
from keras_agd._npz import read_npz

FORMAT = "keras_agd.HierarchicalCodebook"
# 2: the checksum covers the metadata and the arrays' dtypes and shapes; `sample_node_`
# is int32; parameters `min_coverage` and `subsample`.
FORMAT_VERSION = 2
# Learned arrays written to the file; `n_levels_` is derived on load.
ARRAYS = {
    "codewords_": np.float32,
    "node_level_": np.int64,
    "node_parent_": np.int64,
    "node_label_": np.int64,
    "node_count_": np.int64,
    "node_mean_error_": np.float32,
    "node_max_error_": np.float32,
    "sample_node_": np.int32,
}
PARAMS = (
    "branching",
    "max_depth",
    "min_cluster_size",
    "target_error",
    "min_coverage",
    "subsample",
    "max_iter",
    "backend",
    "n_jobs",
    "random_state",
    "verbose",
)


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


def _checksum(metadata, arrays):
    """SHA-256 of the metadata (but its checksum) and of every array's dtype, shape, bytes."""
    described = {key: value for key, value in metadata.items() if key != "checksum"}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
    for name in ARRAYS:
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()


def save(path, codebook):
    arrays = {name: np.asarray(getattr(codebook, name), dtype) for name, dtype in ARRAYS.items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "params": {name: _json_param(getattr(codebook, name)) for name in PARAMS},
        "feature_shape": list(codebook.feature_shape_),
        "fingerprint": codebook.fingerprint_,
        "build_seconds": codebook.build_seconds_,
    }
    metadata["checksum"] = _checksum(metadata, arrays)
    path = _validation.check_path("path", path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"Cannot save the codebook to {path!r}: it is a folder. Pass a file path, "
            f"e.g. {os.path.join(path, 'codebook.npz')!r}."
        )
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Cannot save the codebook to {path!r}: the folder {directory!r} does not exist."
        )
    # Write beside the target, then rename: an interrupted save never leaves half a file.
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as file:
        try:
            np.savez(file, metadata=np.array(json.dumps(metadata)), **arrays)
        except BaseException:
            os.unlink(file.name)
            raise
    try:
        # A temporary file is private (0600); the codebook gets the mode of any file
        # the user creates, so that other workers or users can read a shared one.
        os.chmod(file.name, 0o666 & ~_umask())
        os.replace(file.name, path)
    except BaseException:
        os.unlink(file.name)
        raise


def _umask():
    """The process's umask, read without setting it (which would race other threads)."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("Umask:"))
        return int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError, IndexError):
        return 0o022


def _json_param(value):
    """A parameter as JSON: NumPy scalars as numbers; a random generator, being
    state rather than a setting, as None (it only matters to a refit)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.random.RandomState | np.random.Generator):
        return None
    return value


def load(path, cls):
    path = _validation.check_path("path", path)
    contents = read_npz(path, "codebook")

    missing = [name for name in ("metadata", *ARRAYS) if name not in contents]
    if missing:
        raise ValueError(f"{path!r} is not a keras_agd codebook file: missing {missing}.")
    try:
        metadata = json.loads(str(contents["metadata"]))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path!r}: the codebook metadata is corrupt: {error}") from error
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a keras_agd codebook file.")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} has codebook format version {metadata.get('format_version')}; this "
            f"keras_agd reads version {FORMAT_VERSION}. Rebuild the codebook."
        )
    if _checksum(metadata, contents) != metadata.get("checksum"):
        raise ValueError(f"{path!r}: the codebook does not match its checksum (corrupt).")
    try:
        _check_tree(contents, metadata)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path!r} holds an invalid codebook: {error}") from error

    codebook = cls(**metadata["params"])
    for name in ARRAYS:
        setattr(codebook, name, contents[name])
    codebook.n_levels_ = int(codebook.node_level_.max()) + 1
    codebook.feature_shape_ = tuple(metadata["feature_shape"])
    codebook.fingerprint_ = metadata["fingerprint"]
    codebook.build_seconds_ = metadata["build_seconds"]
    return codebook


def _check_tree(arrays, metadata):
    """Raises `ValueError` unless the arrays form a tree `frontier` can walk.

    The checksum catches accidents; this catches a file written by other code (or
    edited with a recomputed checksum) that would otherwise give wrong frontiers.
    Every check is O(n_nodes + N) and none follows parent links, so no input hangs.
    """
    for name, dtype in ARRAYS.items():
        if arrays[name].dtype != dtype:
            raise ValueError(f"`{name}` has dtype {arrays[name].dtype}, expected {dtype}.")
    codewords, levels, parents = (arrays[k] for k in ("codewords_", "node_level_", "node_parent_"))
    n_nodes = len(levels)
    n_features = int(np.prod(metadata.get("feature_shape", [-1])))
    if n_nodes == 0 or codewords.shape != (n_nodes, n_features):
        raise ValueError(
            f"codewords of shape {codewords.shape} for {n_nodes} nodes of {n_features} features."
        )
    for name in ARRAYS:
        if name not in ("codewords_", "sample_node_") and arrays[name].shape != (n_nodes,):
            raise ValueError(f"`{name}` has shape {arrays[name].shape}, expected ({n_nodes},).")
    ids = np.arange(n_nodes)
    # Parents precede children, so following parents always ends at a root: no cycles.
    if not ((parents >= -1) & (parents < ids)).all():
        raise ValueError("a node's parent does not precede it.")
    has_parent = parents >= 0
    if (levels[~has_parent] != 0).any() or (
        levels[has_parent] != levels[parents[has_parent]] + 1
    ).any():
        raise ValueError("node levels disagree with their parents.")
    if (np.diff(levels) < 0).any():
        raise ValueError("nodes are not sorted by level.")
    labels = arrays["node_label_"]
    if (labels[has_parent] != labels[parents[has_parent]]).any():
        raise ValueError("a node's label differs from its parent's.")
    sample_node = arrays["sample_node_"]
    if sample_node.ndim != 1 or len(sample_node) != metadata["fingerprint"]["n_samples"]:
        raise ValueError("`sample_node_` does not have one entry per training sample.")
    if len(sample_node) and (sample_node.min() < 0 or sample_node.max() >= n_nodes):
        raise ValueError("`sample_node_` refers to nodes that do not exist.")
    # ω: the samples whose deepest node is this one, plus those under its children.
    expected = np.bincount(sample_node, minlength=n_nodes).astype(np.int64)
    bounds = np.searchsorted(levels, np.arange(levels.max() + 2))
    for lo, hi in zip(bounds[-2:0:-1], bounds[-1:1:-1]):
        np.add.at(expected, parents[lo:hi], expected[lo:hi])
    if not np.array_equal(expected, arrays["node_count_"]):
        raise ValueError("node counts disagree with the samples' nodes.")
    mean_error, max_error = arrays["node_mean_error_"], arrays["node_max_error_"]
    if not (
        np.isfinite(codewords).all()
        and (mean_error >= 0).all()
        and (max_error >= mean_error * (1 - 1e-5)).all()
        and np.isfinite(max_error).all()
    ):
        raise ValueError("codewords or node errors are not finite and consistent.")
