"""Top-down hierarchical k-means, level by level: the private engine of `HierarchicalCodebook`."""

import contextlib
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BACKENDS = ("auto", "faiss", "sklearn")


def resolve_backend(backend):
    """Maps `"auto"` to the fastest installed backend."""
    if backend != "auto":
        if backend == "faiss":
            _import_faiss()
        return backend
    try:
        _import_faiss()
    except ImportError:
        return "sklearn"
    return "faiss"


def _import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "backend='faiss' needs the faiss-cpu package: `pip install faiss-cpu` "
            "(or `pip install keras-agd[faiss]`)."
        ) from error
    return faiss


def _split_faiss(points, n_clusters, max_iter, seed):
    faiss = _import_faiss()
    kmeans = faiss.Kmeans(
        points.shape[1],
        n_clusters,
        niter=max_iter,
        seed=seed,
        # faiss subsamples to 256 points per centroid by default; tree nodes must use them all.
        max_points_per_centroid=len(points),
        # Deep nodes are small by design; silence faiss' "too few points" warning.
        min_points_per_centroid=1,
        verbose=False,
    )
    kmeans.train(points)
    _, labels = kmeans.index.search(points, 1)
    return labels[:, 0]


def _split_sklearn(points, n_clusters, max_iter, seed):
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters, n_init=1, max_iter=max_iter, random_state=seed)
    return kmeans.fit_predict(points)


_SPLITTERS = {"faiss": _split_faiss, "sklearn": _split_sklearn}


@contextlib.contextmanager
def faiss_threads(backend, n_threads):
    """Sets faiss' OpenMP thread count for the calling thread only, and restores it.

    OpenMP keeps the count per thread, so a worker must set it itself: a setting made
    in the main thread does not reach pool threads (they start from the default, all
    cores, and would oversubscribe).
    """
    if backend != "faiss":
        yield
        return
    faiss = _import_faiss()
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n_threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def node_stats(points):
    """Centroid (mean, accumulated in float64) and mean / max distance of `points` to it."""
    centroid = points.mean(axis=0, dtype=np.float64).astype(np.float32)
    distances = np.linalg.norm(points - centroid, axis=1)
    return centroid, float(distances.mean()), float(distances.max())


def _child_seed(seed, k):
    """A seed for child `k` that depends only on its parent's seed.

    Each node's split then depends only on its path from the root, not on which other
    nodes are split, so a tree built with stricter stopping rules is exactly the full
    tree pruned (and `threads` cannot change results).
    """
    # splitmix64 of (seed, k): cheap enough to run for every node.
    mask = 2**64 - 1
    z = (seed * 0x9E3779B97F4A7C15 + k + 1) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) >> 33


class KMeansForest:
    """Several top-down k-means trees (one per class), built together level by level.

    A node is split into `branching` clusters unless it has at most
    `min_cluster_size` points, its mean error is at most `target_error`, or it sits at
    `max_depth`. Once the level below would hold less than `min_coverage` of all
    points, the current level is the floor: below it, a node is split only if its
    mean error is above the floor level's mean error.

    All splits of one level are independent and run in a thread pool; when a level
    has fewer splits than threads (the first levels of an unlabeled set), faiss
    gets the spare threads, so one tree still uses every core.

    Node ids are in level order: all roots, then level 1, ... Children of a node are
    consecutive and every parent id is smaller than its children's.

    Args:
        points: List of float32 arrays of shape (n_i, n_features), one per tree.
        seeds: One integer seed per tree.
        threads: Number of worker threads.
        Other arguments: as in `HierarchicalCodebook`.

    Attributes:
        centroids: ndarray of shape (n_nodes, n_features), the mean of each node's points.
        parents, levels, trees: per node, the parent (-1 for roots), depth, and tree.
        counts, mean_errors, max_errors: per node, the points under it and their mean
            and max Euclidean distance to its centroid.
        deepest: list, per tree, of the deepest node of each of its points.
    """

    def __init__(
        self,
        points,
        seeds,
        *,
        branching,
        min_cluster_size,
        max_depth,
        target_error,
        min_coverage,
        max_iter,
        backend,
        threads,
    ):
        self._points = points
        self._split = _SPLITTERS[backend]
        self._backend = backend
        self._branching = branching
        self._max_iter = max_iter
        self._threads = threads
        self._seeds = []
        self._centroids, self._parents, self._levels, self._trees = [], [], [], []
        self._counts, self._mean_errors, self._max_errors = [], [], []
        self.deepest = [np.zeros(len(p), np.int64) for p in points]

        with ThreadPoolExecutor(threads) as pool:
            everyone = [np.arange(len(p)) for p in points]
            n_points = sum(len(p) for p in points)
            roots = pool.map(node_stats, points)
            members = {}
            for tree, stats in enumerate(roots):
                root = self._add(tree, -1, 0, everyone[tree], stats, int(seeds[tree]) & 0x7FFFFFFF)
                members[root] = everyone[tree]
            level, frontier, floor = 0, list(members), None
            while frontier and (max_depth is None or level < max_depth):
                split = [
                    node
                    for node in frontier
                    if self._counts[node] > min_cluster_size
                    and self._mean_errors[node] > target_error
                ]
                if floor is None and sum(self._counts[n] for n in split) < min_coverage * n_points:
                    # The level below would cover too few points for a schedule to end on
                    # it, so this is the last full level; past it, only nodes whose error is
                    # above this level's (the smallest ε such a schedule uses) are split.
                    counts = np.array([self._counts[n] for n in frontier])
                    errors = np.array([self._mean_errors[n] for n in frontier])
                    floor = float(np.average(errors, weights=counts))
                if floor is not None:
                    split = [n for n in split if self._mean_errors[n] > floor]
                omp_threads = max(1, threads // max(len(split), 1))
                results = pool.map(
                    self._children,
                    [self._trees[n] for n in split],
                    [members[n] for n in split],
                    [self._seeds[n] for n in split],
                    itertools.repeat(omp_threads),
                )
                frontier = []
                for node, children in zip(split, results):
                    for k, (child_members, stats) in enumerate(children):
                        seed = _child_seed(self._seeds[node], k)
                        child = self._add(
                            self._trees[node], node, level + 1, child_members, stats, seed
                        )
                        members[child] = child_members
                        frontier.append(child)
                members = {node: members[node] for node in frontier}
                level += 1

        self._points = None  # The (large) inputs are not needed past the build.
        self.centroids = np.stack(self._centroids)
        self._centroids = None
        self.parents = np.asarray(self._parents, np.int64)
        self.levels = np.asarray(self._levels, np.int64)
        self.trees = np.asarray(self._trees, np.int64)
        self.counts = np.asarray(self._counts, np.int64)
        self.mean_errors = np.asarray(self._mean_errors, np.float32)
        self.max_errors = np.asarray(self._max_errors, np.float32)

    def _add(self, tree, parent, level, members, stats, seed):
        node = len(self._centroids)
        self._seeds.append(seed)
        centroid, mean_error, max_error = stats
        self._centroids.append(centroid)
        self._parents.append(parent)
        self._levels.append(level)
        self._trees.append(tree)
        self._counts.append(len(members))
        self._mean_errors.append(mean_error)
        self._max_errors.append(max_error)
        self.deepest[tree][members] = node
        return node

    def _children(self, tree, members, seed, omp_threads):
        """Splits one node; returns `[(members, stats)]` per child, or `[]` for a leaf."""
        points = self._points[tree][members]
        n_clusters = min(self._branching, len(members))
        with faiss_threads(self._backend, omp_threads):
            labels = self._split(points, n_clusters, self._max_iter, seed)
        children = [np.flatnonzero(labels == k) for k in range(n_clusters)]
        children = [child for child in children if len(child)]
        if len(children) < 2:  # k-means made no progress (e.g. duplicate points): a leaf.
            return []
        return [(members[child], node_stats(points[child])) for child in children]
