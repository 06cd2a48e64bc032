import json
import os
import stat
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from keras_agd import HierarchicalCodebook, _codebook_file, _streaming, schedules
from keras_agd.sources import Source


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x.reshape(-1, 8, 8).astype(np.float32) / 16.0, y


@pytest.fixture(scope="module", params=["faiss", "sklearn"])
def codebook(request, digits):
    if request.param == "faiss":
        pytest.importorskip("faiss")  # An optional extra; scikit-learn is the fallback.
    x, y = digits
    return HierarchicalCodebook(branching=4, random_state=0, backend=request.param).fit(x, y)


EPSILONS = [np.inf, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0]


def test_weights_of_every_frontier_sum_to_n(codebook, digits):
    for epsilon in EPSILONS:
        frontier = codebook.frontier(epsilon)
        assert frontier.node_weights.sum() + len(frontier.samples) == len(digits[0])
        np.testing.assert_array_equal(frontier.node_weights, codebook.node_count_[frontier.nodes])


def test_frontier_extremes_are_top_level_and_raw_samples(codebook, digits):
    top = codebook.frontier(np.inf)
    np.testing.assert_array_equal(top.nodes, np.flatnonzero(codebook.node_level_ == 0))
    assert len(top.nodes) == 10 and len(top.samples) == 0
    raw = codebook.frontier(0.0)
    assert len(raw.nodes) == 0
    np.testing.assert_array_equal(raw.samples, np.arange(len(digits[0])))


def test_frontier_size_never_decreases_as_epsilon_decreases(codebook):
    sizes = [codebook.frontier(epsilon).size for epsilon in np.linspace(4, 0, 41)]
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[-1]


def test_codewords_are_pure_in_label(codebook, digits):
    _, y = digits
    for level in range(codebook.n_levels_):
        nodes = codebook.sample_paths_[:, level]
        has = nodes >= 0
        np.testing.assert_array_equal(codebook.node_label_[nodes[has]], y[has])


def test_tree_is_consistent(codebook, digits):
    x, _ = digits
    flat = x.reshape(len(x), -1)
    # Every sample's chain starts at level 0 and each node's parent sits one level up.
    assert (codebook.sample_paths_[:, 0] >= 0).all()
    child = codebook.node_parent_ >= 0
    parent_level = codebook.node_level_[codebook.node_parent_[child]]
    np.testing.assert_array_equal(parent_level + 1, codebook.node_level_[child])
    # Counts are the number of samples passing through a node; codewords are their means.
    through = np.bincount(codebook.sample_paths_[codebook.sample_paths_ >= 0])
    np.testing.assert_array_equal(through, codebook.node_count_)
    node = codebook.node_count_.argmax()
    members = (codebook.sample_paths_ == node).any(axis=1)
    np.testing.assert_allclose(codebook.codewords_[node], flat[members].mean(0), atol=1e-5)


def test_errors_do_not_increase_from_node_to_children_on_average(codebook):
    child = codebook.node_parent_ >= 0
    parents = codebook.node_parent_[child]
    child_error = np.bincount(
        parents, codebook.node_count_[child] * codebook.node_mean_error_[child]
    ) / np.maximum(np.bincount(parents, codebook.node_count_[child]), 1)
    split = np.unique(parents)
    assert (child_error[split] <= codebook.node_mean_error_[split] + 1e-5).all()


def test_quantize_agrees_with_frontier(codebook, digits):
    for epsilon in EPSILONS:
        chosen = codebook.quantize(np.arange(len(digits[0])), epsilon)
        frontier = codebook.frontier(epsilon)
        np.testing.assert_array_equal(np.unique(chosen[chosen >= 0]), frontier.nodes)
        np.testing.assert_array_equal(np.flatnonzero(chosen < 0), frontier.samples)
    picked = codebook.quantize([5, 0, 5], 2.0)
    assert picked[0] == picked[2]


def test_max_criterion_is_stricter_than_mean(codebook):
    assert codebook.frontier(2.0, criterion="max").size >= codebook.frontier(2.0).size


def test_same_random_state_same_codebook(digits):
    x, y = digits
    first = HierarchicalCodebook(random_state=3).fit(x, y)
    second = HierarchicalCodebook(random_state=3, n_jobs=1).fit(x, y)
    np.testing.assert_array_equal(first.codewords_, second.codewords_)
    np.testing.assert_array_equal(first.sample_node_, second.sample_node_)


def test_uint8_and_float_inputs_agree(digits):
    x, y = digits
    as_uint8 = (x * 16).astype(np.uint8)
    from_uint8 = HierarchicalCodebook(random_state=0).fit(as_uint8, y)
    from_float = HierarchicalCodebook(random_state=0).fit(as_uint8.astype(np.float64), y)
    np.testing.assert_array_equal(from_uint8.sample_paths_, from_float.sample_paths_)


def test_stopping_rules(digits):
    x, y = digits
    shallow = HierarchicalCodebook(max_depth=2, random_state=0).fit(x, y)
    assert shallow.n_levels_ == 3
    coarse = HierarchicalCodebook(min_cluster_size=50, random_state=0).fit(x, y)
    split = np.unique(coarse.node_parent_[coarse.node_parent_ >= 0])
    assert (coarse.node_count_[split] > 50).all()
    early = HierarchicalCodebook(target_error=2.0, random_state=0).fit(x, y)
    assert (early.node_mean_error_[split_nodes(early)] > 2.0).all()


def split_nodes(codebook):
    return np.unique(codebook.node_parent_[codebook.node_parent_ >= 0])


def test_without_labels_the_whole_set_is_one_tree(digits):
    x, _ = digits
    codebook = HierarchicalCodebook(random_state=0).fit(x)
    assert codebook.frontier(np.inf).nodes.tolist() == [0]
    assert (codebook.node_label_ == -1).all()


def test_single_sample_class_is_its_own_leaf():
    x = np.array([[0.0, 0.0], [1.0, 1.0], [1.1, 0.9], [0.9, 1.2], [5.0, 5.0]])
    codebook = HierarchicalCodebook(branching=2, min_cluster_size=1, random_state=0)
    codebook.fit(x, [0, 1, 1, 1, 2])
    lone = codebook.sample_node_[0]
    assert codebook.node_count_[lone] == 1 and codebook.node_mean_error_[lone] == 0
    assert codebook.frontier(0.0).size == 5


def test_duplicate_points_stop_splitting():
    x = np.ones((20, 3))
    codebook = HierarchicalCodebook(random_state=0).fit(x, np.zeros(20, int))
    assert len(codebook.node_count_) == 1


def test_save_load_round_trip_is_exact(codebook, digits, tmp_path):
    path = tmp_path / "digits.codebook.npz"
    codebook.save(path)
    loaded = HierarchicalCodebook.load(path)
    assert loaded.get_params() == codebook.get_params()
    for name in ["codewords_", "node_parent_", "node_count_", "sample_paths_", "node_max_error_"]:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(codebook, name))
    assert loaded.fingerprint_ == codebook.fingerprint_
    loaded.verify(*digits)
    for got, expected in zip(loaded.frontier(1.5), codebook.frontier(1.5)):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_file_has_the_mode_the_umask_gives_new_files(codebook, tmp_path, umask):
    # Not the 0600 of a temporary file: other workers must be able to read a shared one.
    previous = os.umask(umask)
    try:
        codebook.save(tmp_path / "codebook.npz")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "codebook.npz").stat().st_mode) == 0o666 & ~umask


def test_save_keeps_the_exact_file_name(codebook, tmp_path):
    path = tmp_path / "my_codebook"
    codebook.save(path)
    assert path.is_file() and not (tmp_path / "my_codebook.npz").exists()


def test_verify_rejects_other_data(codebook, digits):
    x, y = digits
    with pytest.raises(ValueError, match="different training data"):
        codebook.verify(x * 2, y)
    with pytest.raises(ValueError, match="different training data"):
        codebook.verify(x, np.roll(y, 1))
    codebook.verify(x, y.astype(np.uint8))  # The labels' dtype does not matter.


def test_truncated_file_is_rejected(codebook, tmp_path):
    path = tmp_path / "cb.npz"
    codebook.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable codebook file"):
        HierarchicalCodebook.load(path)


def test_tampered_file_is_rejected(codebook, tmp_path):
    path = tmp_path / "cb.npz"
    codebook.save(path)
    with np.load(path) as data:
        contents = dict(data)
    contents["node_count_"] = contents["node_count_"] + 1
    np.savez(path, **contents)
    with pytest.raises(ValueError, match="checksum"):
        HierarchicalCodebook.load(path)


def test_foreign_file_is_rejected(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a keras_agd codebook file"):
        HierarchicalCodebook.load(path)
    with pytest.raises(FileNotFoundError):
        HierarchicalCodebook.load(tmp_path / "missing.npz")


def test_unfitted_codebook_raises():
    with pytest.raises(ValueError, match="not fitted"):
        HierarchicalCodebook().frontier(1.0)


GOOD_X = np.arange(24, dtype=np.float32).reshape(6, 4)
GOOD_Y = np.array([0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((0, 4)), None, "non-empty"),
        (np.where(GOOD_X > 20, np.nan, GOOD_X), GOOD_Y, "NaN or infinite"),
        (np.where(GOOD_X > 20, np.inf, GOOD_X), GOOD_Y, "NaN or infinite"),
        (GOOD_X, GOOD_Y[:5], "same length"),
        (GOOD_X, GOOD_Y - 1, "non-negative"),
        (GOOD_X, GOOD_Y + 0.5, "integer class labels"),
        (GOOD_X, np.eye(6)[GOOD_Y], "not one-hot"),
        (GOOD_X.astype(str), GOOD_Y, "integers or floats"),
    ],
)
def test_bad_inputs_raise(x, y, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalCodebook().fit(x, y)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"branching": 1}, "`branching` must be an integer >= 2"),
        ({"branching": 2.5}, "`branching`"),
        ({"max_depth": 0}, "`max_depth`"),
        ({"min_cluster_size": 0}, "`min_cluster_size`"),
        ({"target_error": -1.0}, "`target_error`"),
        ({"target_error": float("nan")}, "`target_error`"),
        ({"min_coverage": 1.5}, "`min_coverage` must be in"),
        ({"subsample": 0}, "`subsample` must be an integer >= 1"),
        ({"backend": "cuml"}, "`backend` must be one of"),
    ],
)
def test_bad_params_raise(params, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalCodebook(**params).fit(GOOD_X, GOOD_Y)


@pytest.mark.parametrize("epsilon", [-1.0, float("nan")])
def test_bad_epsilon_raises(codebook, epsilon):
    with pytest.raises(ValueError, match="`epsilon` must be >= 0"):
        codebook.frontier(epsilon)


def test_unknown_criterion_raises(codebook):
    with pytest.raises(ValueError, match="`criterion`"):
        codebook.frontier(1.0, criterion="median")


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    n_classes=st.integers(1, 4),
    branching=st.integers(2, 6),
    seed=st.integers(0, 10),
)
def test_any_small_dataset_gives_a_valid_tree(n, n_classes, branching, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).round(1)  # Rounding makes duplicate points likely.
    y = rng.integers(0, n_classes, size=n)
    codebook = HierarchicalCodebook(branching=branching, random_state=seed).fit(x, y)
    assert (codebook.sample_paths_[:, 0] >= 0).all()
    assert len(codebook.node_level_) <= 2 * n - 1  # The most nodes `load` accepts.
    for epsilon in [np.inf, 1.0, 0.3, 0.0]:
        frontier = codebook.frontier(epsilon)
        assert frontier.node_weights.sum() + len(frontier.samples) == n


# Large data: sources, subsets and the streaming pass.


def memmap_of(array, tmp_path):
    np.save(tmp_path / "x.npy", array)
    return np.load(tmp_path / "x.npy", mmap_mode="r")


def brute_force_nodes(codebook, epsilon, criterion="mean"):
    """Per sample, the uppermost node of its chain with error below ε, else -1."""
    errors = codebook._node_errors(criterion)
    chosen = []
    for path in codebook.sample_paths_:
        below = [node for node in path if node >= 0 and errors[node] < epsilon]
        chosen.append(below[0] if below else -1)
    return np.array(chosen)


def assert_same_codebook(first, second):
    for name in ["codewords_", "node_parent_", "node_count_", "node_mean_error_", "sample_node_"]:
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


@pytest.mark.parametrize("subsample", [None, 600])
def test_memmap_source_gives_the_same_codebook_as_the_array(digits, tmp_path, subsample):
    x, y = digits
    params = {"branching": 4, "subsample": subsample, "random_state": 0}
    from_array = HierarchicalCodebook(**params).fit(x, y)
    from_memmap = HierarchicalCodebook(**params).fit(Source(memmap_of(x, tmp_path), y))
    assert_same_codebook(from_array, from_memmap)
    assert from_array.fingerprint_ == from_memmap.fingerprint_


def test_records_source_gives_the_same_codebook_as_the_array(digits):
    x, y = digits
    records = [{"image": image, "label": label} for image, label in zip(x, y)]
    params = {"branching": 4, "subsample": 600, "random_state": 0}
    from_array = HierarchicalCodebook(**params).fit(x, y)
    from_records = HierarchicalCodebook(**params).fit(Source(records, x_key="image", y_key="label"))
    assert_same_codebook(from_array, from_records)


def test_fingerprint_is_the_same_for_array_and_memmap(codebook, digits, tmp_path):
    x, y = digits
    codebook.verify(memmap_of(x, tmp_path), y)
    codebook.verify(Source(x, y))
    with pytest.raises(ValueError, match="different training data"):
        codebook.verify(memmap_of(x[::-1], tmp_path), y)


@pytest.mark.parametrize("sequential_nodes", [2048, 30])
def test_streamed_counts_and_errors_are_exact(digits, monkeypatch, sequential_nodes):
    # A low node limit and small batches take the node-by-node second phase too.
    monkeypatch.setattr(_streaming, "SEQUENTIAL_NODES", sequential_nodes)
    monkeypatch.setattr(_streaming, "BATCH_BYTES", 64 * 4 * 300)
    x, y = digits
    flat = x.reshape(len(x), -1)
    codebook = HierarchicalCodebook(branching=4, subsample=500, n_jobs=3, random_state=0)
    codebook.fit(x, y)
    one_thread = HierarchicalCodebook(branching=4, subsample=500, n_jobs=1, random_state=0)
    assert_same_codebook(codebook, one_thread.fit(x, y))
    assert codebook.frontier(np.inf).node_weights.sum() == len(x)
    paths = codebook.sample_paths_
    for node in range(len(codebook.node_count_)):
        members = (paths == node).any(axis=1)
        distances = np.linalg.norm(flat[members] - codebook.codewords_[node], axis=1)
        assert codebook.node_count_[node] == members.sum()
        np.testing.assert_allclose(codebook.node_mean_error_[node], distances.mean(), rtol=1e-5)
        np.testing.assert_allclose(codebook.node_max_error_[node], distances.max(), rtol=1e-5)
    # Every step of a chain goes to the nearest child; chains end at leaves.
    children = {n: np.flatnonzero(codebook.node_parent_ == n) for n in np.unique(paths)}
    for sample in range(0, len(x), 7):
        path = paths[sample][paths[sample] >= 0]
        for parent, child in zip(path[:-1], path[1:]):
            options = children[parent]
            distances = np.linalg.norm(codebook.codewords_[options] - flat[sample], axis=1)
            assert np.isclose(
                distances.min(),
                np.linalg.norm(codebook.codewords_[child] - flat[sample]),
                rtol=1e-5,
            )
        assert path[-1] not in codebook.node_parent_


@pytest.mark.parametrize("criterion", ["mean", "max"])
def test_frontier_and_quantize_match_a_brute_force_walk(codebook, criterion):
    for epsilon in [np.inf, 2.5, 1.7, 1.2, 0.8, 0.0]:
        expected = brute_force_nodes(codebook, epsilon, criterion)
        n = len(expected)
        np.testing.assert_array_equal(codebook.quantize(np.arange(n), epsilon, criterion), expected)
        frontier = codebook.frontier(epsilon, criterion)
        nodes, weights = np.unique(expected[expected >= 0], return_counts=True)
        np.testing.assert_array_equal(frontier.nodes, nodes)
        np.testing.assert_array_equal(frontier.node_weights, weights)
        np.testing.assert_array_equal(frontier.samples, np.flatnonzero(expected < 0))


def test_default_depth_stops_where_the_schedule_stops(digits):
    x, y = digits
    default = HierarchicalCodebook(branching=4, n_jobs=1, random_state=0).fit(x, y)
    full = HierarchicalCodebook(branching=4, min_coverage=0, n_jobs=1, random_state=0).fit(x, y)
    assert len(default.node_count_) < len(full.node_count_)
    levels = default.level_summary()
    floor_level = max(row["level"] for row in levels if row["samples"] >= len(x) / 2)
    floor = levels[floor_level]["mean_error"]
    schedule = schedules.from_codebook(default, 5)
    assert schedule.final_epsilon == pytest.approx(floor)
    assert full.level_summary()[floor_level + 1]["samples"] < len(x) / 2
    # Below the floor level only nodes above the schedule's last ε were split, so every
    # frontier the schedule asks for is the full tree's.
    deep = default.node_level_ > floor_level
    assert (default.node_mean_error_[default.node_parent_[deep]] > floor).all()
    for epsilon in [float(schedule(step)) for step in range(5)] + [floor * 1.0001]:
        chosen = [codebook.quantize(np.arange(len(x)), epsilon) for codebook in (default, full)]
        assert (chosen[0] < 0).sum() == (chosen[1] < 0).sum()
        np.testing.assert_array_equal(
            default.codewords_[chosen[0][chosen[0] >= 0]],
            full.codewords_[chosen[1][chosen[1] >= 0]],
        )
    shallow = HierarchicalCodebook(branching=4, min_coverage=1.0, random_state=0).fit(x, y)
    assert shallow.n_levels_ < default.n_levels_


def test_one_class_uses_every_thread_and_gives_a_valid_tree(digits):
    x, _ = digits
    one = HierarchicalCodebook(branching=4, n_jobs=1, random_state=0).fit(x)
    two = HierarchicalCodebook(branching=4, n_jobs=2, random_state=0).fit(x)
    for codebook in (one, two):
        child = codebook.node_parent_ >= 0
        assert (codebook.node_parent_[child] < np.flatnonzero(child)).all()
        assert codebook.frontier(1.0).node_weights.sum() + len(
            codebook.frontier(1.0).samples
        ) == len(x)
    np.testing.assert_array_equal(one.sample_node_, two.sample_node_)


def test_nan_outside_the_subset_is_found_by_the_streaming_pass(digits):
    x, y = digits
    x = x.copy()
    x[np.flatnonzero(y == 3)[-1], 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        HierarchicalCodebook(subsample=100, random_state=0).fit(x, y)


def rewrite(path, change):
    """Applies `change(metadata, arrays)` to a saved codebook, then rewrites it."""
    with np.load(path) as data:
        contents = dict(data)
    metadata = json.loads(str(contents.pop("metadata")))
    change(metadata, contents)
    np.savez(path, metadata=np.array(json.dumps(metadata)), **contents)


def resign(metadata, arrays):
    metadata["checksum"] = _codebook_file._checksum(metadata, arrays)


def test_edited_metadata_is_rejected(codebook, tmp_path):
    path = tmp_path / "cb.npz"
    codebook.save(path)
    rewrite(path, lambda metadata, arrays: metadata.update(feature_shape=[64]))
    with pytest.raises(ValueError, match="checksum"):
        HierarchicalCodebook.load(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m, a: a["node_parent_"].__setitem__(slice(10, 12), [11, 10]), "precede"),
        (lambda m, a: a["node_parent_"].__setitem__(10, -1), "levels"),
        (lambda m, a: a["node_count_"].__setitem__(0, a["node_count_"][0] + 1), "counts"),
        (lambda m, a: a["node_label_"].__setitem__(-1, 99), "label"),
        (lambda m, a: a["sample_node_"].__setitem__(0, 10**6), "do not exist"),
        (lambda m, a: m.update(feature_shape=[8, 9]), "codewords of shape"),
    ],
)
def test_invalid_tree_with_a_valid_checksum_is_rejected_quickly(
    codebook, tmp_path, change, message
):
    path = tmp_path / "cb.npz"
    codebook.save(path)
    rewrite(path, lambda metadata, arrays: (change(metadata, arrays), resign(metadata, arrays)))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        HierarchicalCodebook.load(path)
    assert time.perf_counter() - start < 5


def test_other_format_version_is_rejected(codebook, tmp_path):
    path = tmp_path / "cb.npz"
    codebook.save(path)
    rewrite(path, lambda metadata, arrays: metadata.update(format_version=1))
    with pytest.raises(ValueError, match="format version 1"):
        HierarchicalCodebook.load(path)


def test_without_faiss_auto_uses_scikit_learn(digits, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now fails.
    x, y = digits
    codebook = HierarchicalCodebook(branching=4, max_depth=2, random_state=0).fit(x, y)
    assert codebook.frontier(np.inf).node_weights.sum() == len(x)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        HierarchicalCodebook(backend="faiss").fit(x, y)
