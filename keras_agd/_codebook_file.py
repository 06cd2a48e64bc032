"""The codebook's `.npz` file format: checksummed, validated on load, no pickle."""

import hashlib
import json
import math
import os

import numpy as np

from keras_agd import _atomic_file, _validation
from keras_agd._npz import NpzFile

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
# The metadata is a JSON string of a few KiB (stored as UTF-32).
MAX_METADATA_BYTES = 2**20
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
    # Written beside the target, then renamed: an interrupted save never leaves half a file.
    with _atomic_file.replacing(path) as file:
        np.savez(file, metadata=np.array(json.dumps(metadata)), **arrays)


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
    with NpzFile(path, "codebook") as npz:
        _check_names(path, npz.names)
        metadata = _read_metadata(path, npz)
        try:
            _check_declared(npz.members, metadata)
        except ValueError as error:
            raise ValueError(f"{path!r} holds an invalid codebook: {error}") from error
        contents = {name: npz.read(name) for name in ARRAYS}
    if _checksum(metadata, contents) != metadata["checksum"]:
        raise ValueError(f"{path!r}: the codebook does not match its checksum (corrupt).")
    try:
        _check_tree(contents)
    except ValueError as error:
        raise ValueError(f"{path!r} holds an invalid codebook: {error}") from error

    codebook = cls(**metadata["params"])
    for name in ARRAYS:
        setattr(codebook, name, contents[name])
    codebook.n_levels_ = int(codebook.node_level_.max()) + 1
    codebook.feature_shape_ = tuple(metadata["feature_shape"])
    codebook.fingerprint_ = metadata["fingerprint"]
    codebook.build_seconds_ = metadata["build_seconds"]
    return codebook


def _check_names(path, names):
    """Raises `ValueError` unless the file holds exactly the metadata and `ARRAYS`."""
    expected = ["metadata", *ARRAYS]
    missing = [name for name in expected if name not in names]
    if missing:
        raise ValueError(f"{path!r} is not a keras_agd codebook file: missing {missing}.")
    unexpected = [name for name in names if name not in expected]
    if unexpected:
        raise ValueError(
            f"{path!r} is not a keras_agd codebook file: unexpected arrays {unexpected} "
            f"(a codebook holds exactly {expected})."
        )


def _read_metadata(path, npz):
    """The metadata, read (at most `MAX_METADATA_BYTES`) and checked before any array."""
    member = npz.members["metadata"]
    if member.dtype.kind != "U" or member.shape != ():
        raise ValueError(
            f"{path!r}: the codebook metadata is corrupt: it must be one string. "
            f"Received: {member.dtype} of shape {member.shape}"
        )
    try:
        metadata = json.loads(str(npz.read("metadata", max_bytes=MAX_METADATA_BYTES)))
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path!r}: the codebook metadata is corrupt: {error}") from error
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a keras_agd codebook file.")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} has codebook format version {metadata.get('format_version')}; this "
            f"keras_agd reads version {FORMAT_VERSION}. Rebuild the codebook."
        )
    try:
        _check_metadata(metadata)
    except ValueError as error:
        raise ValueError(f"{path!r}: the codebook metadata is corrupt: {error}") from error
    return metadata


def _check_metadata(metadata):
    """Raises `ValueError` unless every entry `load` uses is there, of the right type."""
    params, fingerprint = metadata.get("params"), metadata.get("fingerprint")
    if not (isinstance(params, dict) and sorted(params) == sorted(PARAMS)):
        raise ValueError(f"`params` must name exactly {list(PARAMS)}.")
    if not (isinstance(fingerprint, dict) and _is_count(fingerprint.get("n_samples"))):
        raise ValueError("`fingerprint` must give `n_samples`, a positive integer.")
    shape = metadata.get("feature_shape")
    if not (isinstance(shape, list) and all(_is_count(length) for length in shape)):
        raise ValueError(
            f"`feature_shape` must be a list of positive integers. Received: {shape!r:.80}"
        )
    seconds = metadata.get("build_seconds")
    if not (isinstance(seconds, int | float) and not isinstance(seconds, bool)):
        raise ValueError(f"`build_seconds` must be a number. Received: {seconds!r:.80}")
    if not isinstance(metadata.get("checksum"), str):
        raise ValueError("`checksum` must be a string.")


def _is_count(value):
    return _validation.is_integer(value) and value >= 1


def _check_declared(members, metadata):
    """Raises `ValueError` unless the arrays' `.npy` headers agree with the metadata.

    Runs on the headers alone, before any array is inflated: a file that declares
    more than its metadata allows is refused without allocating it.
    """
    for name, dtype in ARRAYS.items():
        if members[name].dtype != dtype:
            expected = np.dtype(dtype)
            raise ValueError(f"`{name}` has dtype {members[name].dtype}, expected {expected}.")
    n_samples = metadata["fingerprint"]["n_samples"]
    # Every node holds at least one of the samples its tree was fit on (at most all
    # n_samples), and a split makes at least two children, so m samples make at most
    # 2m - 1 nodes; a streamed fit only drops the nodes that no sample reaches.
    max_nodes = 2 * n_samples - 1
    shape = members["node_level_"].shape
    if len(shape) != 1 or not 1 <= shape[0] <= max_nodes:
        raise ValueError(
            f"`node_level_` has shape {shape}; {n_samples} samples make 1 to {max_nodes} nodes."
        )
    n_nodes, n_features = shape[0], math.prod(metadata["feature_shape"])
    if members["codewords_"].shape != (n_nodes, n_features):
        raise ValueError(
            f"codewords of shape {members['codewords_'].shape} for {n_nodes} nodes of "
            f"{n_features} features."
        )
    for name in ARRAYS:
        if name not in ("codewords_", "sample_node_") and members[name].shape != (n_nodes,):
            raise ValueError(f"`{name}` has shape {members[name].shape}, expected ({n_nodes},).")
    if members["sample_node_"].shape != (n_samples,):
        raise ValueError(
            f"`sample_node_` has shape {members['sample_node_'].shape}, not one entry per "
            f"training sample ({n_samples},)."
        )


def _check_tree(arrays):
    """Raises `ValueError` unless the arrays form a tree `frontier` can walk.

    The checksum catches accidents; this catches a file written by other code (or
    edited with a recomputed checksum) that would otherwise give wrong frontiers.
    Dtypes and shapes were checked on the headers (`_check_declared`). Every check is
    O(n_nodes + N) and none follows parent links, so no input hangs.
    """
    codewords, levels, parents = (arrays[k] for k in ("codewords_", "node_level_", "node_parent_"))
    n_nodes = len(levels)
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
