"""The hierarchical codebook of annealed gradient descent (Pan & Jiang, section 4.1)."""

import math
import os
import time
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from keras_agd import _codebook_file, _streaming, _validation
from keras_agd._kmeans_tree import BACKENDS, KMeansForest, resolve_backend
from keras_agd.sources import as_source


class Frontier(NamedTuple):
    """The mosaic at one quantization error: codewords plus raw samples.

    The training set of the mosaic risk of [eq. (6)](agd.md#mosaic-risk) at one ε, as
    `HierarchicalCodebook.frontier` returns it: the codewords with the number of
    samples each stands for, and the samples that no codeword covers.

    Attributes:
        nodes: ndarray of shape (n_codewords,), the codebook nodes used as codewords.
        node_weights: ndarray of shape (n_codewords,), how many samples each codeword
            stands for (ω in the paper).
        samples: ndarray of shape (n_raw,), the samples used as themselves (weight 1).

    Example:

    >>> frontier = codebook.frontier(epsilon=5.0)
    >>> codewords = codebook.codewords_[frontier.nodes].reshape(-1, *codebook.feature_shape_)
    >>> x_mosaic = np.concatenate([codewords, x[frontier.samples]])
    >>> weights = np.concatenate([frontier.node_weights, np.ones(len(frontier.samples))])
    >>> len(x_mosaic) == frontier.size, int(weights.sum()) == len(x)
    (True, True)
    """

    nodes: np.ndarray
    node_weights: np.ndarray
    samples: np.ndarray

    @property
    def size(self):
        """Number of distinct training items: codewords plus raw samples."""
        return len(self.nodes) + len(self.samples)


class HierarchicalCodebook(BaseEstimator):
    r"""Top-down hierarchical k-means codebook, one tree per class.

    Every class of the training set is clustered separately (so codewords are pure
    in label) by recursive k-means, level by level: a node is split into `branching`
    clusters unless it has at most `min_cluster_size` samples, its mean quantization
    error is at most `target_error`, or it sits at `max_depth`. Every node's centroid
    is a codeword; level 0 holds one node per class (the class mean), and the paper's
    "first layer" is level 1. The samples are the leaves below the deepest nodes.

    By default the tree stops where annealing stops using it.
    `schedules.from_codebook` starts at level 1's mean error and ends at the mean
    error $e_\text{floor}$ of the deepest level that covers half of the samples;
    below that, training uses the real samples. A frontier at
    $\varepsilon > e_\text{floor}$ never goes below a node whose error is under ε,
    so the nodes under a node of error $\le e_\text{floor}$ can never be selected.
    Hence the rule: once the next level would cover less than `min_coverage` (one
    half) of the samples, the current level is the floor, and below it only nodes
    with mean error above $e_\text{floor}$ are split. Every frontier of such a
    schedule is then the one the full tree gives (on MNIST: 8 levels and 36,455
    codewords instead of 38,415). Pass `min_coverage=0` for the full tree (down to
    `min_cluster_size`), e.g. for hand-made schedules that go below $e_\text{floor}$.

    Large training sets are never held in memory as float32. When there are more
    than `subsample` samples, each class's tree is fit on a random subset (classes
    share the budget in proportion to their size), then one streaming pass routes
    every sample down the tree (nearest child centroid at each level) and measures
    the node counts (ω, which [eq. (6)](agd.md#mosaic-risk) needs exact) and errors
    over all samples. The codewords stay the centroids fit on the subset: they are
    the points that routed the samples, so the recorded errors are exactly those of
    quantizing to them, and a second pass for the members' exact means is not needed
    (they differ from the subset means only by sampling noise). The shape of such a
    tree is decided on the subset: its leaves hold about `min_cluster_size` subset
    samples.

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
        min_coverage: The floor level is the last one before a level that would
            hold less than this fraction of the samples; below it, only nodes with
            a mean error above the floor level's are split. `0` builds the full
            tree. Defaults to `0.5`, the coverage of the level that
            `schedules.from_codebook` ends on.
        subsample: Most samples the k-means trees are fit on, or `None` for all.
            With at most this many samples (MNIST), every tree is fit on its whole
            class, exactly. The subset is held as float32 (300 MB at 784 features),
            and the trees get about one codeword per 2 to 3 of its samples.
            Defaults to `100_000`.
        max_iter: Lloyd iterations per split. Defaults to `25`.
        backend: Clustering library: `"faiss"`, `"sklearn"`, or `"auto"` (faiss when
            installed, else scikit-learn). Defaults to `"auto"`.
        n_jobs: Threads; `None` means all cores, a negative number counts back from
            them as in joblib (`-1`: all, `-2`: all but one); at most one thread a
            core runs. Defaults to `None`.
        random_state: Seed for the subsets and the k-means initialisations: an
            integer (the same seed gives the same codebook), a
            `np.random.RandomState` or `np.random.Generator` (one seed is drawn from
            it; saved as `None`), or `None`. Defaults to `None`.
        verbose: `1` prints a per-level summary. Defaults to `0`.

    Attributes:
        codewords_: ndarray of shape (n_nodes, n_features), float32 node centroids,
            sorted by level. Reshape rows to `feature_shape_` to get inputs.
        node_level_: ndarray of shape (n_nodes,), depth of each node (0 = class root).
        node_parent_: ndarray of shape (n_nodes,), parent node, -1 for roots. Every
            parent's index is smaller than its children's.
        node_label_: ndarray of shape (n_nodes,), class of each node (-1 without labels).
        node_count_: ndarray of shape (n_nodes,), samples under each node (ω).
        node_mean_error_: ndarray of shape (n_nodes,), mean distance of the node's
            samples to its codeword.
        node_max_error_: ndarray of shape (n_nodes,), their maximum distance.
        sample_node_: int32 ndarray of shape (n_samples,), each sample's deepest node.
        n_levels_: int, number of levels.
        feature_shape_: tuple, the shape of one input sample.
        fingerprint_: dict identifying the training data (shape, dtype, SHA-256).
        build_seconds_: float, wall time of `fit`.

    Example:

    >>> (x, y), _ = keras_agd.datasets.load_mnist()
    >>> x = x / 255.0
    >>> codebook = keras_agd.HierarchicalCodebook(random_state=0).fit(x, y)
    >>> [round(row["mean_error"], 1) for row in codebook.level_summary()[:4]]
    [6.4, 5.5, 4.9, 4.4]
    >>> frontier = codebook.frontier(epsilon=5.0)  # between levels 1 and 2
    >>> len(frontier.nodes), len(frontier.samples)  # with the faiss backend
    (3336, 174)

    Reference:
        H. Pan and H. Jiang, "Annealed Gradient Descent for Deep Learning", UAI 2015.
    """

    def __init__(
        self,
        branching=5,
        max_depth=None,
        min_cluster_size=None,
        target_error=0.0,
        min_coverage=0.5,
        subsample=100_000,
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
        self.min_coverage = min_coverage
        self.subsample = subsample
        self.max_iter = max_iter
        self.backend = backend
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, x, y=None):
        """Builds the codebook.

        Args:
            x: Samples of shape `(N, ...)`, numeric and finite: an array, an
                `np.memmap`, a tfds data source, or a `keras_agd.Source`. Values
                must stay below about `1e18 / sqrt(n_features)` in magnitude, so
                that squared distances fit in float32.
            y: Optional integer class labels of shape `(N,)` (or in the `Source`).
                With labels, each class gets its own tree; without, the whole set
                is one tree.

        Returns:
            `self`.
        """
        start = time.perf_counter()
        params = self._check_params()
        source = as_source(x, y)
        backend = resolve_backend(self.backend)
        labels = source.labels
        classes = np.unique(labels) if labels is not None else np.array([-1])
        members = (
            [np.flatnonzero(labels == label) for label in classes]
            if labels is not None
            else [np.arange(source.n_samples)]
        )
        seeds = params["random_state"].spawn(len(classes) + 1)
        fit_on = _subsample(members, params["subsample"], np.random.default_rng(seeds[-1]))
        forest = KMeansForest(
            [_read_features(source, ids) for ids in fit_on],
            [seed.generate_state(1)[0] for seed in seeds[:-1]],
            branching=params["branching"],
            min_cluster_size=params["min_cluster_size"] or params["branching"],
            max_depth=params["max_depth"],
            target_error=params["target_error"],
            min_coverage=params["min_coverage"],
            max_iter=params["max_iter"],
            backend=backend,
            threads=params["threads"],
        )
        self._set_nodes(forest, classes, members, fit_on, source)
        self.feature_shape_ = tuple(source.sample_shape)
        self.fingerprint_ = _streaming.fingerprint(source)
        self.build_seconds_ = time.perf_counter() - start
        if self.verbose:
            print(self.summary())
        return self

    def frontier(self, epsilon, criterion="mean"):
        """The mosaic at quantization error `epsilon` ([eq. (6)](agd.md#mosaic-risk), Algorithm 1).

        Every sample is replaced by the uppermost node on its chain whose error is
        strictly below `epsilon`, or kept as itself where no node is. So
        `epsilon=inf` gives level 0 and `epsilon=0` the raw samples. Costs
        O(n_nodes + N).

        Args:
            epsilon: Non-negative quantization error (may be `inf`).
            criterion: `"mean"` or `"max"`: which node error must be below
                `epsilon`. Defaults to `"mean"`.

        Returns:
            A `Frontier`; its weights sum to the number of training samples.
        """
        check_is_fitted(self, "sample_node_")
        chosen = self._chosen_nodes(epsilon, criterion)
        nodes = np.flatnonzero(chosen == np.arange(len(chosen)))
        samples = np.flatnonzero(chosen[self.sample_node_] < 0)
        return Frontier(nodes, self.node_count_[nodes], samples)

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
        check_is_fitted(self, "sample_node_")
        indices = _check_indices(sample_indices, len(self.sample_node_))
        chosen = self._chosen_nodes(epsilon, criterion)
        return chosen[self.sample_node_[indices]]

    def level_summary(self):
        """Per level: codewords, samples covered, count-weighted mean and max error.

        Returns:
            List of dicts with keys `level`, `codewords`, `samples`, `mean_error`,
            `max_error`.
        """
        check_is_fitted(self, "sample_node_")
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

        Reads the data once in batches; an array and a memory map of the same bytes
        are the same data.

        Args:
            x: Training inputs (anything `fit` accepts).
            y: Training labels, if the codebook was fit with labels.
        """
        check_is_fitted(self, "fingerprint_")
        received = _streaming.fingerprint(as_source(x, y))
        _codebook_file.check_fingerprint(self.fingerprint_, received)

    def save(self, path):
        """Writes the codebook to one `.npz` file (atomically; no pickle).

        Args:
            path: Destination file path.
        """
        check_is_fitted(self, "sample_node_")
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

    @property
    def sample_paths_(self):
        """ndarray of shape (n_samples, n_levels_): each sample's chain of nodes.

        Level 0 first, padded with -1 below its deepest node. Computed on each access
        in O(N * n_levels_) memory, for code that walks whole chains;
        `frontier` and `quantize` do not need it.
        """
        check_is_fitted(self, "sample_node_")
        paths = np.full((len(self.sample_node_), self.n_levels_), -1, np.int64)
        rows = np.arange(len(self.sample_node_))
        node = self.sample_node_.astype(np.int64)
        while len(rows):
            paths[rows, self.node_level_[node]] = node
            node = self.node_parent_[node]
            rows, node = rows[node >= 0], node[node >= 0]
        return paths

    def _check_params(self):
        """The parameters, checked, as Python numbers (faiss takes no NumPy integers)."""
        check_int, check_number = _validation.check_integer, _validation.check_number

        def optional_int(name, minimum):
            value = getattr(self, name)
            return None if value is None else check_int(name, value, minimum)

        if self.backend not in BACKENDS:
            raise ValueError(
                f"`backend` must be one of {BACKENDS}. Received: backend={self.backend!r}"
            )
        return {
            "branching": check_int("branching", self.branching, 2),
            "max_iter": check_int("max_iter", self.max_iter, 1, _validation.INT32_MAX),
            "max_depth": optional_int("max_depth", 1),
            "min_cluster_size": optional_int("min_cluster_size", 1),
            "subsample": optional_int("subsample", 1),
            "target_error": check_number("target_error", self.target_error, 0),
            "min_coverage": check_number("min_coverage", self.min_coverage, 0, 1),
            "threads": _threads(self.n_jobs),
            "random_state": _validation.check_random_state("random_state", self.random_state),
        }

    def _node_errors(self, criterion):
        if criterion == "mean":
            return self.node_mean_error_
        if criterion == "max":
            return self.node_max_error_
        raise ValueError(f"`criterion` must be 'mean' or 'max'. Received: criterion={criterion!r}")

    def _chosen_nodes(self, epsilon, criterion):
        """Per node: the uppermost node of its chain with error below ε, else -1."""
        # A float64 ε: a Python float beyond float32 would overflow when cast to the errors'.
        below = self._node_errors(criterion) < np.float64(_check_epsilon(epsilon))
        chosen = np.where(below, np.arange(len(below)), -1)
        # Nodes are sorted by level, so a parent is settled before its children read it.
        bounds = np.searchsorted(self.node_level_, np.arange(self.n_levels_ + 1))
        for lo, hi in zip(bounds[1:-1], bounds[2:]):
            inherited = chosen[self.node_parent_[lo:hi]]
            chosen[lo:hi] = np.where(inherited >= 0, inherited, chosen[lo:hi])
        return chosen

    def _set_nodes(self, forest, classes, members, fit_on, source):
        """Stores the forest's nodes; routes the samples the trees were not fit on."""
        sample_node = np.zeros(source.n_samples, np.int32)
        roots = np.full(source.n_samples, -1, np.int64)
        tree_roots = np.flatnonzero(forest.parents < 0)
        streamed = np.array([len(fitted) < len(ids) for ids, fitted in zip(members, fit_on)])
        for tree, ids in enumerate(members):
            if streamed[tree]:
                roots[ids] = tree_roots[tree]
            else:  # Fit on the whole class: the k-means memberships are exact.
                sample_node[ids] = forest.deepest[tree]
        counts, mean_errors = forest.counts, forest.mean_errors
        max_errors = forest.max_errors
        if streamed.any():
            routed = _streaming.route(
                source,
                forest.centroids,
                forest.parents,
                forest.levels,
                roots,
                sample_node,
                threads=_threads(self.n_jobs),
            )
            redo = streamed[forest.trees]
            counts = np.where(redo, routed[0], counts)
            mean_errors = np.where(redo, routed[1], mean_errors)
            max_errors = np.where(redo, routed[2], max_errors)
        # A subset's centroid can be nearest to no sample; it (and its subtree) goes.
        keep = counts > 0
        new_id = np.cumsum(keep) - 1
        parents = forest.parents[keep]
        self.codewords_ = forest.centroids if keep.all() else forest.centroids[keep]
        self.node_level_ = forest.levels[keep]
        self.node_parent_ = np.where(parents >= 0, new_id[np.maximum(parents, 0)], -1)
        self.node_label_ = classes[forest.trees[keep]]
        self.node_count_ = counts[keep]
        self.node_mean_error_ = mean_errors[keep]
        self.node_max_error_ = max_errors[keep]
        self.sample_node_ = new_id[sample_node].astype(np.int32)
        self.n_levels_ = int(self.node_level_.max()) + 1


def check_fitted(name, value):
    """`value` if it is a fitted `HierarchicalCodebook`, else a `TypeError` naming `name`."""
    if not (isinstance(value, HierarchicalCodebook) and hasattr(value, "sample_node_")):
        raise TypeError(
            f"`{name}` must be a fitted keras_agd.HierarchicalCodebook (call `.fit(x, y)` or "
            f"`HierarchicalCodebook.load(path)`). Received: {name}={value!r}"
        )
    return value


def _subsample(members, budget, rng):
    """Per class, the sorted samples its tree is fit on: all, or a share of `budget`."""
    n_samples = sum(len(ids) for ids in members)
    if budget is None or n_samples <= budget:
        return members
    fit_on = []
    for ids in members:
        share = max(1, round(budget * len(ids) / n_samples))
        fit_on.append(ids if share >= len(ids) else np.sort(rng.choice(ids, share, replace=False)))
    return fit_on


def _read_features(source, ids):
    """The samples `ids` as a float32 matrix, checked finite and within clustering range."""
    features = source.read(ids).reshape(len(ids), -1).astype(np.float32)
    if not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).sum())
        raise ValueError(f"`x` contains {bad} NaN or infinite values.")
    if features.size:
        # k-means sums squared differences in float32: beyond this (with a 10x margin)
        # they overflow to inf, and faiss aborts the process on the assignments.
        limit = math.sqrt(_validation.FLOAT32_MAX / (4 * features.shape[1])) / 10
        largest = float(np.abs(features).max())
        if largest > limit:
            raise ValueError(
                f"`x` must hold values of magnitude at most {limit:.3g} (for "
                f"{features.shape[1]} features): k-means computes squared distances in "
                f"float32, where larger ones overflow. Rescale `x` (e.g. to [0, 1]). "
                f"Received: max |x|={largest:.3g}"
            )
    return features


def _threads(n_jobs):
    """Worker threads for `n_jobs`: None is all cores; negative counts back as in joblib."""
    cores = os.cpu_count() or 1
    if n_jobs is None:
        return cores
    if not (_validation.is_integer(n_jobs) and n_jobs != 0):
        raise ValueError(
            "`n_jobs` must be a nonzero integer or None (-1: all cores, -2: all but one). "
            f"Received: n_jobs={n_jobs!r}"
        )
    # More threads than cores cannot run at once; OpenMP takes at most a C int anyway.
    return min(int(n_jobs), cores) if n_jobs > 0 else max(cores + 1 + max(n_jobs, -cores), 1)


def _check_indices(sample_indices, n_samples):
    indices = np.asarray(sample_indices)
    if indices.size == 0:
        return indices.astype(np.int64)
    if indices.dtype.kind not in "iu":
        raise ValueError(
            "`sample_indices` must be integer indices of training samples. "
            f"Received: sample_indices of dtype {indices.dtype}"
        )
    if indices.min() < 0 or indices.max() >= n_samples:
        raise ValueError(
            f"`sample_indices` must be in [0, {n_samples}) (no negative indices). "
            f"Received: sample_indices from {indices.min()} to {indices.max()}"
        )
    return indices


def _check_epsilon(epsilon):
    if not (_validation.is_number(epsilon) and epsilon >= 0):
        raise ValueError(
            f"`epsilon` must be >= 0 (a number; inf allowed). Received: epsilon={epsilon!r}"
        )
    return float(epsilon)
