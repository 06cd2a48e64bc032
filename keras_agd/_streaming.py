"""Streaming passes over a `Source`: routing every sample down the codebook tree, hashing it."""

import hashlib

import numpy as np

# Samples read per batch, in stored bytes: memory stays bounded whatever N is.
BATCH_BYTES = 64 * 2**20


def batch_rows(source):
    """How many samples make one `BATCH_BYTES` batch of `source`."""
    row_bytes = int(np.prod(source.sample_shape, dtype=np.int64)) * source.dtype.itemsize
    return max(1, BATCH_BYTES // max(row_bytes, 1))


def fingerprint(source):
    """Identifies a training set by shape, dtype and a SHA-256 of its stored bytes.

    The bytes are hashed batch by batch in sample order, which gives the same digest as
    hashing the whole array at once: an in-memory array and a memory map of the same
    data agree.
    """
    digest = hashlib.sha256()
    for _, batch in source.batches(batch_rows(source)):
        digest.update(np.ascontiguousarray(batch).data)
    if source.labels is not None:
        # Labels are hashed as int64 so that uint8 and int64 copies of `y` agree.
        digest.update(np.ascontiguousarray(source.labels, dtype=np.int64).data)
    return {
        "n_samples": int(source.n_samples),
        "sample_shape": list(source.sample_shape),
        "dtype": str(source.dtype),
        "labeled": source.labels is not None,
        "sha256": digest.hexdigest(),
    }


def route(source, centroids, parents, roots, sample_node):
    """Assigns samples down the tree: at each node, to the nearest child centroid.

    Only samples with `roots[i] >= 0` are routed, starting at node `roots[i]`. Their
    deepest node is written into `sample_node`. Every node's count and errors are
    accumulated over all routed samples, measured against the centroids that routed
    them (so they are exact for these codewords).

    Args:
        source: The `Source` of the samples.
        centroids: float32 ndarray of shape (n_nodes, n_features). Children of a node
            must be consecutive (`KMeansForest` order).
        parents: int ndarray of shape (n_nodes,), -1 for roots.
        roots: int ndarray of shape (n_samples,), the start node per sample or -1.
        sample_node: int ndarray of shape (n_samples,), written in place.

    Returns:
        `(counts, mean_errors, max_errors)` per node (zero for nodes no sample reached).

    Raises:
        ValueError: If a routed sample holds NaN or infinite values.
    """
    n_nodes = len(centroids)
    has_parent = parents >= 0
    n_children = np.bincount(parents[has_parent], minlength=n_nodes)
    first_child = np.full(n_nodes, n_nodes, np.int64)
    np.minimum.at(first_child, parents[has_parent], np.flatnonzero(has_parent))
    # ||c||^2 once per node; ||x||^2 is the same for every child, so argmin skips it.
    squared_norms = np.einsum("ij,ij->i", centroids, centroids)
    counts = np.zeros(n_nodes, np.int64)
    error_sums = np.zeros(n_nodes, np.float64)
    max_errors = np.zeros(n_nodes, np.float32)

    for start, batch in source.batches(batch_rows(source)):
        batch = batch.reshape(len(batch), -1)
        active = np.flatnonzero(roots[start : start + len(batch)] >= 0)
        node = roots[start + active]
        while len(active):
            order = np.argsort(node, kind="stable")
            active, node = active[order], node[order]
            bounds = np.flatnonzero(np.diff(node)) + 1
            next_node = np.full(len(active), -1, np.int64)
            for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(node)]])):
                parent = node[lo]
                points = batch[active[lo:hi]].astype(np.float32)
                difference = points - centroids[parent]
                errors = np.sqrt(np.einsum("ij,ij->i", difference, difference))
                total = errors.sum(dtype=np.float64)
                if not np.isfinite(total):
                    raise ValueError(
                        f"`x` contains NaN or infinite values (in samples {start} to "
                        f"{start + len(batch) - 1})."
                    )
                counts[parent] += hi - lo
                error_sums[parent] += total
                max_errors[parent] = max(max_errors[parent], errors.max())
                first, k = first_child[parent], n_children[parent]
                if k == 0:
                    sample_node[start + active[lo:hi]] = parent
                    continue
                scores = (
                    squared_norms[first : first + k] - 2 * points @ centroids[first : first + k].T
                )
                next_node[lo:hi] = first + scores.argmin(axis=1)
            routed = next_node >= 0
            active, node = active[routed], next_node[routed]

    mean_errors = (error_sums / np.maximum(counts, 1)).astype(np.float32)
    return counts, mean_errors, max_errors
