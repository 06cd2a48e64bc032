"""Top-down hierarchical k-means for one class: the private engine of `HierarchicalCodebook`."""

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
            "backend='faiss' needs the faiss-cpu package: `pip install faiss-cpu`."
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


class ClassTree:
    """The nodes of one class's tree, in creation order (parents before children).

    Attributes:
        centroids: ndarray of shape (n_nodes, n_features), the mean of each node's samples.
        parents: local index of each node's parent, -1 for the root.
        levels: depth of each node, 0 for the root.
        counts: number of samples under each node.
        mean_errors, max_errors: mean and max Euclidean distance of a node's samples
            to its centroid.
        sample_ids: the samples of the class (global indices).
        deepest: for each of `sample_ids`, the local index of its deepest node.
    """

    def __init__(
        self,
        x,
        sample_ids,
        *,
        branching,
        min_cluster_size,
        max_depth,
        target_error,
        max_iter,
        backend,
        seed,
    ):
        split = _SPLITTERS[backend]
        rng = np.random.default_rng(seed)
        self.sample_ids = sample_ids
        self.deepest = np.zeros(len(sample_ids), np.int64)
        centroids, parents, levels, counts, mean_errors, max_errors = [], [], [], [], [], []
        # Depth-first with an explicit stack; `members` index into `sample_ids`.
        stack = [(np.arange(len(sample_ids)), -1, 0)]
        while stack:
            members, parent, level = stack.pop()
            node = len(centroids)
            points = x[sample_ids[members]]
            centroid = points.mean(axis=0, dtype=np.float64).astype(np.float32)
            distances = np.linalg.norm(points - centroid, axis=1)
            centroids.append(centroid)
            parents.append(parent)
            levels.append(level)
            counts.append(len(members))
            mean_errors.append(distances.mean())
            max_errors.append(distances.max())
            self.deepest[members] = node

            if (
                len(members) <= min_cluster_size
                or mean_errors[-1] <= target_error
                or (max_depth is not None and level >= max_depth)
            ):
                continue
            n_clusters = min(branching, len(members))
            labels = split(points, n_clusters, max_iter, int(rng.integers(2**31 - 1)))
            children = [members[labels == k] for k in range(n_clusters)]
            children = [child for child in children if len(child)]
            if len(children) < 2:  # k-means made no progress (e.g. duplicate points): a leaf.
                continue
            # Reversed so that children are created in cluster order.
            stack.extend((child, node, level + 1) for child in reversed(children))

        self.centroids = np.stack(centroids)
        self.parents = np.asarray(parents, np.int64)
        self.levels = np.asarray(levels, np.int64)
        self.counts = np.asarray(counts, np.int64)
        self.mean_errors = np.asarray(mean_errors, np.float32)
        self.max_errors = np.asarray(max_errors, np.float32)
