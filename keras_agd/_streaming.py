"""Streaming passes over a `Source`: routing every sample down the codebook tree, hashing it."""

import collections
import hashlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

# Samples read at a time, in stored bytes: memory stays bounded whatever N is.
BATCH_BYTES = 64 * 2**20
# float32 bytes of samples processed at once (fits in a core's cache).
CHUNK_BYTES = 2 * 2**20
# Levels with at most this many nodes are routed in sequential batches; below them,
# samples are read node by node, so that each deep node is visited once, not once
# per batch (Python's per-node overhead would otherwise grow as N * nodes / batch).
SEQUENTIAL_NODES = 2048


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


def route(source, centroids, parents, levels, roots, sample_node, threads=1):
    """Assigns samples down the tree: at each node, to the nearest child centroid.

    Only samples with `roots[i] >= 0` are routed, starting at node `roots[i]`; their
    deepest node is written into `sample_node`. Each node's count and errors are
    accumulated over all samples routed through it, measured against the centroids
    that routed them (so they are exact for these codewords).

    The top levels are routed in one sequential pass of batches. The samples that
    reach the first level with more than `SEQUENTIAL_NODES` nodes are then read
    grouped by their node there (random access, a batch of whole subtrees at a time)
    and routed to the bottom. Batches run on `threads` threads, at most two each in
    flight; their statistics are added up in batch order, so the result does not
    depend on `threads`.

    Args:
        source: The `Source` of the samples.
        centroids: float32 ndarray of shape (n_nodes, n_features). Nodes must be
            sorted by level with the children of a node consecutive.
        parents: int ndarray of shape (n_nodes,), -1 for roots.
        levels: int ndarray of shape (n_nodes,).
        roots: int ndarray of shape (n_samples,), the start node per sample or -1.
        sample_node: int ndarray of shape (n_samples,), written in place.
        threads: Number of threads. Defaults to `1`.

    Returns:
        `(counts, mean_errors, max_errors)` per node (zero for nodes no sample reached).

    Raises:
        ValueError: If a routed sample holds NaN or infinite values.
    """
    # The products are small (a chunk times a few children): BLAS threads would only
    # spin, and steal the cores the other work needs. The limit is undone on return.
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        return _route(source, centroids, parents, levels, roots, sample_node, pool, threads)


def _route(source, centroids, parents, levels, roots, sample_node, pool, threads):
    router = _Router(centroids, parents, levels)
    total = _Stats(len(centroids))
    per_level = np.bincount(levels)
    split_level = int(np.argmax(np.append(per_level, np.inf) > SEQUENTIAL_NODES))
    rows_per_batch = batch_rows(source)

    # Where each sample stops in the sequential pass: a leaf above `split_level`
    # (done), or its node at `split_level` (not yet visited).
    stop = np.full(source.n_samples, -1, np.int64)

    def sequential(start, batch):
        rows = np.flatnonzero(roots[start : start + len(batch)] >= 0)
        points = batch.reshape(len(batch), -1)
        stats = _Stats(len(centroids))
        stop[start + rows] = router.descend(points, rows, roots[start + rows], split_level, stats)
        return stats

    for stats in _in_order(pool, sequential, source.batches(rows_per_batch), 2 * threads):
        total.add(stats)
    done = (stop >= 0) & (levels[np.maximum(stop, 0)] < split_level)
    sample_node[done] = stop[done]

    def by_node(ids):
        # An array (or memory map) is indexed directly: `ids` are already sorted.
        points = source.array[ids] if source.array is not None else source.read(ids)
        stats = _Stats(len(centroids))
        points = points.reshape(len(ids), -1)
        sample_node[ids] = router.descend(points, np.arange(len(ids)), stop[ids], None, stats)
        return stats

    pending = np.flatnonzero((stop >= 0) & ~done)
    pending = pending[np.argsort(stop[pending], kind="stable")]
    for stats in _in_order(
        pool, by_node, _node_batches(pending, stop, rows_per_batch), 2 * threads
    ):
        total.add(stats)
    return total.counts, total.mean_errors(), total.max_errors


def _node_batches(pending, stop, rows_per_batch):
    """Yields `(sorted sample ids,)` of about `rows_per_batch` samples, whole nodes if possible."""
    lo = 0
    while lo < len(pending):
        # Widened (up to twice) to end on a node boundary, so most nodes are visited once.
        hi = min(lo + rows_per_batch, len(pending))
        limit = min(lo + 2 * rows_per_batch, len(pending))
        while hi < limit and stop[pending[hi]] == stop[pending[hi - 1]]:
            hi += 1
        yield (np.sort(pending[lo:hi]),)
        lo = hi


def _in_order(pool, function, arguments, window):
    """`pool.map(function, *zip(*arguments))` with at most `window` calls in flight.

    `pool.map` would read every batch up front, i.e. the whole data set.
    """
    running = collections.deque()
    for args in arguments:
        running.append(pool.submit(function, *args))
        if len(running) >= window:
            yield running.popleft().result()
    while running:
        yield running.popleft().result()


class _Stats:
    """Per-node count, sum and maximum of the distances of the samples seen."""

    def __init__(self, n_nodes):
        self.counts = np.zeros(n_nodes, np.int64)
        self.error_sums = np.zeros(n_nodes, np.float64)
        self.max_errors = np.zeros(n_nodes, np.float32)

    def add(self, other):
        self.counts += other.counts
        self.error_sums += other.error_sums
        np.maximum(self.max_errors, other.max_errors, out=self.max_errors)

    def mean_errors(self):
        return (self.error_sums / np.maximum(self.counts, 1)).astype(np.float32)


class _Router:
    """The nearest-child descent; read-only, so threads can share it."""

    def __init__(self, centroids, parents, levels):
        n_nodes = len(centroids)
        has_parent = parents >= 0
        self.centroids = centroids
        self.levels = levels
        self.n_children = np.bincount(parents[has_parent], minlength=n_nodes)
        self.first_child = np.full(n_nodes, n_nodes, np.int64)
        np.minimum.at(self.first_child, parents[has_parent], np.flatnonzero(has_parent))
        self.chunk_rows = max(64, CHUNK_BYTES // (4 * centroids.shape[1]))

    def descend(self, points, rows, node, stop_level, stats):
        """Routes `points[rows]` from `node` to a leaf or a node at `stop_level`.

        Visits every node on the way (not the ones at `stop_level`), adding the rows'
        distances to `stats`. Returns the final node of each row.
        """
        final = node.copy()
        position = np.arange(len(rows))
        while len(position):
            order = np.argsort(node, kind="stable")
            position, node = position[order], node[order]
            bounds = np.flatnonzero(np.diff(node)) + 1
            next_node = np.full(len(position), -1, np.int64)
            for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(node)]):
                next_node[lo:hi] = self._visit(
                    points, rows, position[lo:hi], node[lo], stop_level, stats
                )
            final[position] = np.where(next_node >= 0, final[position], node)
            moving = next_node >= 0
            position, node = position[moving], next_node[moving]
        return final

    def _visit(self, points, rows, position, parent, stop_level, stats):
        """Adds the rows to `parent`'s statistics; returns their child, or -1 to stop."""
        if stop_level is not None and self.levels[parent] >= stop_level:
            return -1
        first, k = self.first_child[parent], self.n_children[parent]
        centre = self.centroids[parent]
        # Centred on the parent: small values keep the float32 products accurate.
        offsets = self.centroids[first : first + k] - centre
        offset_norms = np.einsum("ij,ij->i", offsets, offsets)
        chosen = np.full(len(position), -1, np.int64)
        # Chunks of a few MB stay in cache through the cast, centring and products,
        # so memory traffic is one read of the stored rows.
        for lo in range(0, len(position), self.chunk_rows):
            chunk = slice(lo, lo + self.chunk_rows)
            residuals = points[rows[position[chunk]]].astype(np.float32)
            residuals -= centre
            errors = np.sqrt(np.einsum("ij,ij->i", residuals, residuals))
            total = errors.sum(dtype=np.float64)
            if not np.isfinite(total):
                raise ValueError("`x` contains NaN or infinite values.")
            stats.counts[parent] += len(errors)
            stats.error_sums[parent] += total
            stats.max_errors[parent] = max(stats.max_errors[parent], errors.max())
            if k:
                distances = offset_norms - 2 * residuals @ offsets.T
                chosen[chunk] = first + distances.argmin(axis=1)
        return chosen
