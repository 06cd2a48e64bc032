"""The curriculum as a value: every step's batch is a pure function of the step.

Properties over generated data sets (sizes, sample shapes, dtypes, classes) and plans
(batch sizes, modes, steps per level): the phase boundaries add up, every batch is full
and holds only items of its level's frontier, weights keep eq. (6)'s scale, the regular
phase is a sequence of permutations, the same arguments give the same plan and digest,
and the tf.data stream yields exactly `Curriculum.batch(step)` from whatever step the
optimizer is at.
"""

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import keras_agd
from keras_agd import Curriculum, HierarchicalCodebook

PROPERTY = settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MODES = ("weighted", "proportional", "per_sample", "random_subset")


@st.composite
def datasets(draw):
    """Small labelled data sets of varied size, sample shape, dtype and class count."""
    n_classes = draw(st.integers(1, 4))
    per_class = draw(st.integers(6, 40))
    shape = draw(st.sampled_from([(3,), (4, 4), (2, 3, 2)]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.uint8, np.int16]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = np.concatenate([rng.normal(3 * c, 1.0, (per_class, *shape)) for c in range(n_classes)])
    if np.issubdtype(dtype, np.integer):
        x = np.clip(np.round(x * 10 + 50), 0, 255)
    y = np.repeat(np.arange(n_classes), per_class)
    order = rng.permutation(len(y))
    return x[order].astype(dtype), y[order]


def plans():
    return st.fixed_dictionaries(
        {
            "batch_size": st.integers(1, 50),
            "mosaic_batch_size": st.integers(1, 70),
            "mode": st.sampled_from(MODES),
            "steps_per_level": st.none() | st.integers(1, 4),
            "seed": st.integers(0, 2**31 - 1),
            "schedule": st.integers(1, 4),
        }
    )


def make(data, plan):
    """The curriculum of `plan`; a batch larger than the data must be refused by name."""
    codebook = HierarchicalCodebook(branching=2, random_state=0, backend="sklearn")
    too_large = [
        name for name in ("batch_size", "mosaic_batch_size") if plan.get(name, 0) > len(data[1])
    ]
    if too_large:
        with pytest.raises(ValueError, match=f"`{too_large[0]}` must be at most the number"):
            Curriculum(*data, codebook=codebook, **plan)
        assume(False)
    return Curriculum(*data, codebook=codebook, **plan)


@PROPERTY
@given(datasets(), plans())
def test_every_batch_is_full_and_holds_only_its_levels_items(data, plan):
    curriculum = make(data, plan)
    x, y = data
    n_samples = len(y)
    codebook = curriculum.codebook
    first = 0
    for index, level in enumerate(curriculum.levels):
        assert level.first_step == first and level.steps >= 1
        assert 0 < level.epsilon and (
            index == 0 or level.epsilon <= curriculum.levels[index - 1].epsilon
        )
        first += level.steps
        frontier = codebook.frontier(level.epsilon)
        allowed = np.concatenate([n_samples + frontier.nodes, frontier.samples])
        if plan["mode"] == "per_sample":
            chosen = codebook.quantize(np.arange(n_samples), level.epsilon)
            allowed = np.where(chosen >= 0, n_samples + chosen, np.arange(n_samples))
        if plan["mode"] == "random_subset":
            allowed = np.arange(n_samples)
        for step in range(level.first_step, level.first_step + level.steps):
            rows, weights = curriculum.batch(step)
            assert rows.dtype == np.int64 and weights.dtype == np.float32
            assert len(rows) == len(weights) == plan["mosaic_batch_size"]
            assert np.isin(rows, allowed).all()
            assert np.isfinite(weights).all() and (weights > 0).all()
            assert curriculum.phase(step) == "mosaic" and curriculum.level_of(step) == index
            assert curriculum.epsilon(step) == level.epsilon
    assert curriculum.mosaic_steps == first
    assert curriculum.phase(first) == "regular" and curriculum.epsilon(first) == 0.0
    rows, weights = curriculum.batch(first)
    assert len(rows) == plan["batch_size"] and (weights == 1).all()
    assert ((rows >= 0) & (rows < n_samples)).all()
    # Codewords carry the label of the class they were clustered in.
    nodes = curriculum.mosaic_rows[curriculum.mosaic_rows >= n_samples] - n_samples
    assert ((codebook.node_label_[nodes] >= 0) & (codebook.node_label_[nodes] < y.max() + 1)).all()


@PROPERTY
@given(datasets(), plans())
def test_weighted_levels_are_eq6_passes_with_mean_weight_one(data, plan):
    plan = {**plan, "mode": "weighted", "steps_per_level": None}
    curriculum = make(data, plan)
    n_samples = len(data[1])
    size = plan["mosaic_batch_size"]
    for level in curriculum.levels:
        start = level.first_step * size
        rows = curriculum.mosaic_rows[start : start + level.frontier_size]
        weights = curriculum.mosaic_weights[start : start + level.frontier_size]
        frontier = curriculum.codebook.frontier(level.epsilon)
        # The first pass is the frontier itself, each item once, weighted by ω.
        expected = dict(zip(n_samples + frontier.nodes, frontier.node_weights))
        expected.update(dict.fromkeys(frontier.samples, 1))
        assert sorted(rows.tolist()) == sorted(expected)
        omega = np.array([expected[row] for row in rows], np.float64)
        np.testing.assert_allclose(weights, omega * level.frontier_size / n_samples, rtol=1e-6)
        np.testing.assert_allclose(weights.mean(), 1.0, rtol=1e-5)
        assert level.steps == -(-level.frontier_size // size)


@PROPERTY
@given(datasets(), st.integers(1, 50), st.integers(0, 2**31 - 1))
def test_the_regular_phase_is_a_sequence_of_permutations(data, batch_size, seed):
    curriculum = make(data, {"batch_size": batch_size, "seed": seed, "schedule": 2})
    n_samples = len(data[1])
    steps = -(-3 * n_samples // batch_size)
    first = curriculum.mosaic_steps
    rows = np.concatenate([curriculum.batch(first + step)[0] for step in range(steps)])
    passes = [rows[i * n_samples : (i + 1) * n_samples] for i in range(3)]
    for one in passes:
        assert sorted(one.tolist()) == list(range(n_samples))
    if n_samples > 8:  # Each pass is shuffled anew.
        assert not np.array_equal(passes[0], passes[1])


@PROPERTY
@given(datasets(), plans())
def test_the_plan_is_a_pure_function_of_its_arguments(data, plan):
    first, second = make(data, plan), make(data, plan)
    assert first.digest == second.digest and first.get_config() == second.get_config()
    for step in (0, first.mosaic_steps - 1, first.mosaic_steps, first.mosaic_steps + 7):
        if step >= 0:
            np.testing.assert_array_equal(first.batch(step)[0], second.batch(step)[0])
            np.testing.assert_array_equal(first.batch(step)[1], second.batch(step)[1])
    other = make(data, {**plan, "seed": (plan["seed"] + 1) % 2**31})
    assert other.digest != first.digest


def test_the_identity_changes_with_every_field():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    y = np.repeat([0, 1, 2], 40)
    codebook = HierarchicalCodebook(branching=2, random_state=0).fit(x, y)
    base = {"codebook": codebook, "seed": 3, "schedule": 3}
    digests = {Curriculum(x, y, **base).digest}
    for change in (
        {"seed": 4},
        {"schedule": 2},
        {"batch_size": 64},
        {"mosaic_batch_size": 100},
        {"mode": "proportional"},
        {"criterion": "max"},
        {"steps_per_level": 2},
        {"codebook": HierarchicalCodebook(branching=3, random_state=0).fit(x, y)},
    ):
        digests.add(Curriculum(x, y, **{**base, **change}).digest)
    assert len(digests) == 9


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("in_memory", [True, False])
def test_the_stream_yields_the_batches_of_the_optimizers_step(digits, mode, in_memory, tmp_path):
    x, y = digits
    if not in_memory:  # A memory map: the NumPy reader instead of the in-graph gather.
        path = tmp_path / "x.npy"
        np.save(path, x)
        x = np.load(path, mmap_mode="r")
    curriculum = Curriculum(
        x, y, schedule=2, batch_size=40, mosaic_batch_size=90, mode=mode, seed=5, steps_per_level=2
    )
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    model.compile(keras_agd.AGD(curriculum, 0.0), "sparse_categorical_crossentropy")
    codewords = curriculum.codebook.codewords_
    node_labels = curriculum.codebook.node_label_
    n_samples = len(y)
    for start in (0, 1, curriculum.mosaic_steps - 1, curriculum.mosaic_steps + 3):
        model.optimizer.iterations.assign(start)
        batches = list(curriculum.dataset(model, steps_per_epoch=4))
        assert len(batches) == 4
        for offset, (batch_x, batch_y, batch_w) in enumerate(batches):
            rows, weights = curriculum.batch(start + offset)
            is_node = rows >= n_samples
            expected_x = np.where(
                is_node[:, None],
                codewords[np.maximum(rows - n_samples, 0)],
                np.asarray(x)[np.minimum(rows, n_samples - 1)],
            )
            expected_y = np.where(
                is_node,
                node_labels[np.maximum(rows - n_samples, 0)],
                y[np.minimum(rows, n_samples - 1)],
            )
            np.testing.assert_allclose(batch_x.numpy(), expected_x, rtol=1e-6)
            np.testing.assert_array_equal(batch_y.numpy(), expected_y)
            np.testing.assert_array_equal(batch_w.numpy(), weights)


def test_a_schedule_that_never_reaches_the_samples_is_refused(digits):
    x, y = digits
    codebook = HierarchicalCodebook(branching=4, random_state=0).fit(x, y)
    schedule = keras_agd.schedules.ExponentialAnnealing(5.0, 0.9999)  # final_epsilon=0
    with pytest.raises(ValueError, match="has not reached the real samples after"):
        Curriculum(x, y, codebook=codebook, schedule=schedule, mosaic_batch_size=8)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"schedule": "six"}, TypeError, "`schedule` must be a keras_agd.schedules"),
        ({"schedule": 0}, ValueError, "`schedule` must be an integer >= 1"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be an integer >= 1"),
        ({"batch_size": 2**40}, ValueError, "`batch_size` must be an integer"),
        ({"mosaic_batch_size": 1.5}, ValueError, "`mosaic_batch_size` must be an integer"),
        ({"mode": "mean"}, ValueError, "`mode` must be one of"),
        ({"criterion": "median"}, ValueError, "`criterion` must be 'mean' or 'max'"),
        ({"steps_per_level": 0}, ValueError, "`steps_per_level` must be an integer >= 1"),
        ({"seed": -1}, ValueError, "`seed` must be an integer >= 0"),
        ({"codebook": "cb"}, TypeError, "`codebook` must be a keras_agd.HierarchicalCodebook"),
    ],
)
def test_bad_arguments_name_themselves(digits, kwargs, error, match):
    x, y = digits
    with pytest.raises(error, match=match):
        Curriculum(x, y, **kwargs)


def test_a_codebook_of_other_data_is_refused(digits):
    x, y = digits
    codebook = HierarchicalCodebook(branching=4, random_state=0).fit(x[:500], y[:500])
    with pytest.raises(ValueError, match="fit on different training data"):
        Curriculum(x, y, codebook=codebook)


def test_from_config_rebuilds_the_same_plan(digits):
    x, y = digits
    curriculum = Curriculum(x, y, schedule=3, mode="proportional", steps_per_level=2, seed=9)
    again = Curriculum.from_config(curriculum.get_config(), x, y, codebook=curriculum.codebook)
    assert again.digest == curriculum.digest
    np.testing.assert_array_equal(again.mosaic_rows, curriculum.mosaic_rows)
    with pytest.raises(ValueError, match="the data or codebook differ"):
        other = HierarchicalCodebook(branching=3, random_state=0).fit(x, y)
        Curriculum.from_config(curriculum.get_config(), x, y, codebook=other)
