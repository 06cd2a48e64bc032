"""The hierarchical codebook of annealed gradient descent (Pan & Jiang, section 4.1)."""

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from keras_agd import _codebook_file
from keras_agd._kmeans_tree import BACKENDS, ClassTree, resolve_backend


class Frontier(NamedTuple):
    """The mosaic of eq. (6) at one quantization error: codewords plus raw samples.

    Attributes:
        nodes: ndarray of shape (n_codewords,), the codebook nodes used as codewords.
        node_weights: ndarray of shape (n_codewords,), how many samples each codeword
            stands for (ω in the paper).
        samples: ndarray of shape (n_raw,), the samples used as themselves (weight 1).
    """

    nodes: np.ndarray
    node_weights: np.ndarray
    samples: np.ndarray

    @property
    def size(self):
        """Number of distinct training items: codewords plus raw samples."""
        return len(self.nodes) + len(self.samples)


class HierarchicalCodebook(BaseEstimator):
    """Top-down hierarchical k-means codebook, one tree per class.

    Every class of the training set is clustered separately (so codewords are pure
    in label) by recursive k-means: a node is split into `branching` clusters until
    it has at most `min_cluster_size` samples, its mean quantization error is at most
    `target_error`, or it sits at `max_depth`. Every node's centroid is a codeword;
    level 0 holds one node per class (the class mean), and the paper's "first layer"
    is level 1. The samples are the leaves below the deepest nodes.

    Distances are Euclidean on the flattened features exactly as given (computed in
    float32); inputs are not rescaled, so fit the codebook on the same scaling that
    the model is trained on (e.g. MNIST pixels in [0, 1]).

    Args:
        branching: Number of children per split (K in the paper). Defaults to `5`.
        max_depth: Deepest level to split down to, or `None` for no limit.
            Defaults to `None`.
        min_cluster_size: Nodes with at most this many samples are not split.
            `None` means `branching`. Defaults to `None`.
        target_error: Nodes whose mean quantization error is at most this are not
            split. Defaults to `0.0`.
        max_iter: Lloyd iterations per split. Defaults to `25`.
        backend: Clustering library: `"faiss"`, `"sklearn"`, or `"auto"` (faiss when
            installed, else scikit-learn). Defaults to `"auto"`.
        n_jobs: Threads over classes; `None` means all cores. Defaults to `None`.
        random_state: Seed for the k-means initialisations; the same seed gives the
            same codebook. Defaults to `None`.
        verbose: `1` shows a progress bar and a per-level summary. Defaults to `0`.

    Attributes:
        codewords_: ndarray of shape (n_nodes, n_features), float32 node centroids,
            sorted by level. Reshape rows to `feature_shape_` to get inputs.
        node_level_: ndarray of shape (n_nodes,), depth of each node (0 = class root).
        node_parent_: ndarray of shape (n_nodes,), parent node, -1 for roots.
        node_label_: ndarray of shape (n_nodes,), class of each node (-1 without labels).
        node_count_: ndarray of shape (n_nodes,), samples under each node (ω).
        node_mean_error_: ndarray of shape (n_nodes,), mean distance of the node's
            samples to its codeword.
        node_max_error_: ndarray of shape (n_nodes,), their maximum distance.
        sample_node_: ndarray of shape (n_samples,), each sample's deepest node.
        sample_paths_: ndarray of shape (n_samples, n_levels_), each sample's chain of
            nodes from level 0 down, padded with -1 below its deepest node.
        n_levels_: int, number of levels.
        feature_shape_: tuple, the shape of one input sample.
        fingerprint_: dict identifying the training data (shape, dtype, SHA-256).
        build_seconds_: float, wall time of `fit`.

    Example:

    >>> (x, y), _ = keras_agd.datasets.load_mnist()
    >>> codebook = keras_agd.HierarchicalCodebook(random_state=0).fit(x / 255.0, y)
    >>> frontier = codebook.frontier(epsilon=7.5)
    >>> frontier.size, frontier.node_weights.sum() + len(frontier.samples)
    (..., 60000)

    Reference:
        H. Pan and H. Jiang, "Annealed Gradient Descent for Deep Learning", UAI 2015.
    """

    def __init__(
        self,
        branching=5,
        max_depth=None,
        min_cluster_size=None,
        target_error=0.0,
        max_iter=25,
        backend="auto",
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.branching = branching
        self.max_depth = max_depth
        self.min_cluster_size = min_cluster_size
        self.target_error = target_error
        self.max_iter = max_iter
        self.backend = backend
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, x, y=None):
        """Builds the codebook.

        Args:
            x: Array of shape `(N, ...)`, numeric, finite.
            y: Optional integer class labels of shape `(N,)`. With labels, each class
                gets its own tree; without, the whole set is one tree.

        Returns:
            `self`.
        """
        start = time.perf_counter()
        self._check_params()
        x, y = _check_inputs(x, y)
        features = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)
        min_cluster_size = self.min_cluster_size or self.branching
        backend = resolve_backend(self.backend)
        classes = np.unique(y) if y is not None else np.array([-1])
        seeds = np.random.SeedSequence(self.random_state).spawn(len(classes))

        def build(label, seed):
            members = np.flatnonzero(y == label) if y is not None else np.arange(len(x))
            return ClassTree(
                features,
                members,
                branching=self.branching,
                min_cluster_size=min_cluster_size,
                max_depth=self.max_depth,
                target_error=self.target_error,
                max_iter=self.max_iter,
                backend=backend,
                seed=seed.generate_state(1)[0],
            )

        progress = _progress_bar(len(classes)) if self.verbose else None
        with _faiss_single_threaded(backend), ThreadPoolExecutor(self._threads()) as pool:
            trees = []
            for tree in pool.map(build, classes, seeds):
                trees.append(tree)
                if progress:
                    progress.add(1, [("nodes", sum(len(t.counts) for t in trees))])
        self._set_nodes(trees, classes, len(x))
        self.feature_shape_ = tuple(x.shape[1:])
        self.fingerprint_ = _codebook_file.fingerprint(x, y)
        self.build_seconds_ = time.perf_counter() - start
        if self.verbose:
            print(self.summary())
        return self

    def frontier(self, epsilon, criterion="mean"):
        """The mosaic at quantization error `epsilon` (eq. 6, Algorithm 1).

        Every sample is replaced by the uppermost node on its chain whose error is
        strictly below `epsilon`, or kept as itself where no node is. So
        `epsilon=inf` gives level 0 and `epsilon=0` the raw samples.

        Args:
            epsilon: Non-negative quantization error (may be `inf`).
            criterion: `"mean"` or `"max"`: which node error must be below
                `epsilon`. Defaults to `"mean"`.

        Returns:
            A `Frontier`; its weights sum to the number of training samples.
        """
        check_is_fitted(self, "sample_paths_")
        chosen = self.quantize(np.arange(len(self.sample_paths_)), epsilon, criterion)
        nodes, node_weights = np.unique(chosen[chosen >= 0], return_counts=True)
        return Frontier(nodes, node_weights, np.flatnonzero(chosen < 0))

    def quantize(self, sample_indices, epsilon, criterion="mean"):
        """The codeword chosen for each sample at `epsilon`, as in `frontier`.

        Args:
            sample_indices: Integer array of training-sample indices.
            epsilon: Non-negative quantization error (may be `inf`).
            criterion: `"mean"` or `"max"`. Defaults to `"mean"`.

        Returns:
            Integer array like `sample_indices`: the chosen node, or -1 where the
            sample stands for itself.
        """
        check_is_fitted(self, "sample_paths_")
        errors = self._node_errors(criterion)
        epsilon = _check_epsilon(epsilon)
        paths = self.sample_paths_[np.asarray(sample_indices)]
        below = (paths >= 0) & (errors[paths] < epsilon)
        first = below.argmax(axis=-1)
        chosen = np.take_along_axis(paths, first[..., None], axis=-1)[..., 0]
        return np.where(below.any(axis=-1), chosen, -1)

    def level_summary(self):
        """Per level: codewords, samples covered, count-weighted mean and max error.

        Returns:
            List of dicts with keys `level`, `codewords`, `samples`, `mean_error`,
            `max_error`.
        """
        check_is_fitted(self, "sample_paths_")
        rows = []
        for level in range(self.n_levels_):
            at = self.node_level_ == level
            counts = self.node_count_[at]
            rows.append(
                {
                    "level": level,
                    "codewords": int(at.sum()),
                    "samples": int(counts.sum()),
                    "mean_error": float(np.average(self.node_mean_error_[at], weights=counts)),
                    "max_error": float(self.node_max_error_[at].max()),
                }
            )
        return rows

    def summary(self):
        """A printable table of `level_summary()` and the build time."""
        lines = [f"{'level':>5} {'codewords':>10} {'samples':>8} {'mean err':>9} {'max err':>8}"]
        for row in self.level_summary():
            lines.append(
                f"{row['level']:>5} {row['codewords']:>10} {row['samples']:>8} "
                f"{row['mean_error']:>9.3f} {row['max_error']:>8.3f}"
            )
        lines.append(
            f"{len(self.node_count_)} codewords over {len(self.sample_node_)} samples, "
            f"built in {self.build_seconds_:.1f} s"
        )
        return "\n".join(lines)

    def verify(self, x, y=None):
        """Raises `ValueError` unless `x` (and `y`) are the data this codebook was fit on.

        Args:
            x: Training inputs.
            y: Training labels, if the codebook was fit with labels.
        """
        check_is_fitted(self, "fingerprint_")
        x, y = _check_inputs(x, y)
        _codebook_file.check_fingerprint(self.fingerprint_, _codebook_file.fingerprint(x, y))

    def save(self, path):
        """Writes the codebook to one `.npz` file (atomically; no pickle).

        Args:
            path: Destination file path.
        """
        check_is_fitted(self, "sample_paths_")
        _codebook_file.save(path, self)

    @classmethod
    def load(cls, path):
        """Reads a codebook written by `save`.

        Args:
            path: File path.

        Returns:
            A fitted `HierarchicalCodebook`.

        Raises:
            ValueError: If the file is truncated, modified, or not a codebook.
        """
        return _codebook_file.load(path, cls)

    def _check_params(self):
        _check_int("branching", self.branching, minimum=2)
        _check_int("max_iter", self.max_iter, minimum=1)
        if self.max_depth is not None:
            _check_int("max_depth", self.max_depth, minimum=1)
        if self.min_cluster_size is not None:
            _check_int("min_cluster_size", self.min_cluster_size, minimum=1)
        if self.n_jobs is not None:
            _check_int("n_jobs", self.n_jobs, minimum=1)
        if not (np.isfinite(self.target_error) and self.target_error >= 0):
            raise ValueError(
                f"`target_error` must be a finite number >= 0. Received: "
                f"target_error={self.target_error}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(
                f"`backend` must be one of {BACKENDS}. Received: backend={self.backend!r}"
            )

    def _threads(self):
        return self.n_jobs or os.cpu_count() or 1

    def _node_errors(self, criterion):
        if criterion == "mean":
            return self.node_mean_error_
        if criterion == "max":
            return self.node_max_error_
        raise ValueError(f"`criterion` must be 'mean' or 'max'. Received: criterion={criterion!r}")

    def _set_nodes(self, trees, classes, n_samples):
        offsets = np.cumsum([0] + [len(tree.counts) for tree in trees])
        levels = np.concatenate([tree.levels for tree in trees])
        # Sorting nodes by level keeps each level contiguous; `rank` maps old ids to new.
        order = np.argsort(levels, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        parents = np.concatenate(
            [np.where(t.parents >= 0, t.parents + o, -1) for t, o in zip(trees, offsets)]
        )
        sample_node = np.empty(n_samples, np.int64)
        for tree, offset in zip(trees, offsets):
            sample_node[tree.sample_ids] = rank[tree.deepest + offset]

        self.codewords_ = np.concatenate([tree.centroids for tree in trees])[order]
        self.node_level_ = levels[order]
        self.node_parent_ = np.where(parents >= 0, rank[np.maximum(parents, 0)], -1)[order]
        self.node_label_ = np.repeat(classes, [len(tree.counts) for tree in trees])[order]
        self.node_count_ = np.concatenate([tree.counts for tree in trees])[order]
        self.node_mean_error_ = np.concatenate([tree.mean_errors for tree in trees])[order]
        self.node_max_error_ = np.concatenate([tree.max_errors for tree in trees])[order]
        self.sample_node_ = sample_node
        self._set_paths()

    def _set_paths(self):
        """Derives `sample_paths_` and `n_levels_` from `sample_node_` and the parents."""
        self.n_levels_ = int(self.node_level_.max()) + 1
        paths = np.full((len(self.sample_node_), self.n_levels_), -1, np.int64)
        rows = np.arange(len(self.sample_node_))
        node = self.sample_node_
        while len(rows):
            paths[rows, self.node_level_[node]] = node
            node = self.node_parent_[node]
            rows, node = rows[node >= 0], node[node >= 0]
        self.sample_paths_ = paths


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")


def _check_epsilon(epsilon):
    epsilon = float(epsilon)
    if np.isnan(epsilon) or epsilon < 0:
        raise ValueError(f"`epsilon` must be >= 0 (inf allowed). Received: epsilon={epsilon}")
    return epsilon


def _check_inputs(x, y):
    """Validates the training data; returns `x` and labels as an int64 vector (or None)."""
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"`x` must be a non-empty array of shape (N, ...). Received: {x.shape}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"`x` must hold integers or floats. Received dtype: {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(f"`x` contains {bad} NaN or infinite values.")
    if y is None:
        return x, None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"`y` must be a vector of class indices (not one-hot). Received shape: {y.shape}"
        )
    if len(y) != len(x):
        raise ValueError(f"`x` and `y` must have the same length. Received: {len(x)} and {len(y)}")
    if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"`y` must hold integer class labels. Received dtype: {y.dtype}")
    if y.min() < 0:
        raise ValueError(f"`y` must hold non-negative class labels. Received: min(y)={y.min()}")
    return x, y.astype(np.int64)


def _progress_bar(n_classes):
    import keras

    return keras.utils.Progbar(n_classes, unit_name="class", stateful_metrics=["nodes"])


@contextlib.contextmanager
def _faiss_single_threaded(backend):
    """Runs faiss on one OpenMP thread per call, since classes already run in parallel."""
    if backend != "faiss":
        yield
        return
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
