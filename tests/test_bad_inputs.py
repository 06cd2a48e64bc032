"""Bad inputs at every public entry point: a clear error or a documented result.

Each property asserts, for any drawn input: a `ValueError` / `TypeError` whose message
names the argument, or a result that the documentation promises; never another
exception type, a hang, a non-finite weight, or a dead interpreter. The domains of the
arguments and the fixed cases come from `tests/bad_input_cases.py` (which
`benchmarks/bad_input_corpus.py` counts). A fixed case with a known library gap is
expected to fail, strictly, so that its fix shows.
"""

import contextlib
import math
import os
import signal
import tempfile

import bad_input_cases as corpus
import hypothesis.extra.numpy as hnp
import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_agd

# Deterministic and quick: the same examples on every run, no per-example deadline.
FAST = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SLOW = settings(FAST, max_examples=10)
HANG_S = 60

WORDS = [
    "mean",
    "max",
    "weighted",
    "proportional",
    "per_sample",
    "random_subset",
    "exponential",
    "linear",
]
SCALARS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32).map(np.float32),
    st.integers(-(2**70), 2**70),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.booleans(),
    st.just(np.bool_(False)),
    st.none(),
    st.text(max_size=4),
    st.sampled_from(WORDS + ["auto", "sklearn"]),
    st.lists(st.integers(0, 3), max_size=2),
    st.complex_numbers(max_magnitude=10),
)
# Integers around the boundaries of batch sizes and step counts, up to 2**64.
BOUNDARY_INTEGERS = st.one_of(
    st.integers(-2, 2**64),
    st.sampled_from([2**k + d for k in (24, 31, 32, 40, 62, 63, 64) for d in (-1, 0, 1)]),
).flatmap(
    lambda v: st.sampled_from(
        [v]
        + ([np.int64(v)] if -(2**63) <= v < 2**63 else [])
        + ([np.uint64(v)] if 0 <= v < 2**64 else [])
    )
)


@contextlib.contextmanager
def no_hang(seconds=HANG_S):
    def alarm(signum, frame):
        raise AssertionError(f"no answer after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def assert_clear_or_valid(call, argument, valid, check=None):
    """Runs `call()`: a clear error naming `argument` if not `valid`, else a good result."""
    with no_hang():
        try:
            result = call()
        except (ValueError, TypeError) as error:
            assert not valid, f"a valid `{argument}` was refused: {error}"
            assert corpus.names_argument(str(error), argument), f"unclear: {error}"
            return None
    assert valid, f"an invalid `{argument}` was accepted: {result!r}"
    if check is not None:
        assert check(result), f"a wrong result: {result!r}"
    return result


def _is_codebook(entry):
    return entry in ("HierarchicalCodebook", "frontier", "quantize")


def _rows(codebook):
    rows = [row for row in corpus.PARAMETERS if _is_codebook(row[0]) == codebook]
    return pytest.mark.parametrize(
        "entry, argument, call, valid, check", rows, ids=[f"{r[0]}-{r[1]}" for r in rows]
    )


@_rows(codebook=False)
@FAST
@given(value=SCALARS)
def test_hyperparameters(entry, argument, call, valid, check, value):
    assert_clear_or_valid(lambda: call(**{argument: value}), argument, valid(value), check)


@_rows(codebook=True)
@settings(FAST, max_examples=15)
@given(value=SCALARS)
def test_codebook_arguments(entry, argument, call, valid, check, value):
    assert_clear_or_valid(lambda: call(**{argument: value}), argument, valid(value), check)


@FAST
@given(value=BOUNDARY_INTEGERS)
def test_curriculum_batch_size_up_to_2_64(value):
    valid = 1 <= int(value) <= corpus.MAX_BATCH
    curriculum = assert_clear_or_valid(
        lambda: corpus._curriculum(batch_size=value), "batch_size", valid, corpus.curriculum_ok
    )
    if curriculum is not None:
        assert curriculum.steps_per_epoch == -(-400 // int(value))


@FAST
@given(value=BOUNDARY_INTEGERS)
def test_curriculum_steps_per_level_up_to_2_64(value):
    # Within the check's bounds but past the mosaic phase's planned items: refused too.
    valid = 1 <= int(value) <= corpus.MAX_STEPS_PER_LEVEL
    curriculum = assert_clear_or_valid(
        lambda: corpus._curriculum(steps_per_level=value),
        "steps_per_level",
        valid,
        corpus.curriculum_ok,
    )
    if curriculum is not None:
        assert [level.steps for level in curriculum.levels] == [int(value)] * 2


@FAST
@given(value=BOUNDARY_INTEGERS)
def test_stream_steps_per_epoch_up_to_2_64(value):
    valid = 1 <= int(value) <= corpus.MAX_STEPS_PER_EPOCH
    dataset = assert_clear_or_valid(
        lambda: corpus._dataset(steps_per_epoch=value), "steps_per_epoch", valid
    )
    if dataset is not None:
        assert int(dataset.cardinality()) == int(value)


# --- Arrays.

FLOATS = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=4),
    elements=st.floats(min_value=-1e300, max_value=1e300)
    | st.sampled_from([1e39, -1e39, 3.4e38, float("nan"), float("inf")]),
)


@FAST
@given(x=FLOATS, as_float32=st.booleans())
def test_source_refuses_samples_that_float32_cannot_hold(x, as_float32):
    if as_float32:
        with np.errstate(over="ignore"):
            x = x.astype(np.float32)
    valid = bool(np.isfinite(x).all() and np.abs(x).max() <= corpus.F32_MAX)
    labels = np.zeros(len(x), np.int64)
    source = assert_clear_or_valid(lambda: keras_agd.Source(x, labels), "x", valid)
    if source is not None:
        assert np.isfinite(source.read(np.arange(len(x))).astype(np.float32)).all()


@FAST
@given(indices=st.lists(st.integers(-3, 10), max_size=4))
def test_source_reads_only_its_indices(indices):
    source = keras_agd.Source(np.arange(8.0).reshape(4, 2))
    valid = all(0 <= i < 4 for i in indices)
    try:
        batch = source.read(np.asarray(indices, np.int64))
    except IndexError:
        assert not valid
        return
    assert valid and batch.shape == (len(indices), 2)


X_DTYPES = ["float16", "float32", "float64", "uint8", "int8", "int16", "uint16"]
X_DTYPES += ["int32", "int64", "uint32", "bool", "complex64"]
Y_KINDS = ("int64", "uint8", "float", "float_integers", "bool", "negative", "short", "one_hot")


def _labels(kind, n, rng):
    y = rng.integers(0, 3, n)
    return {
        "int64": y,
        "uint8": y.astype(np.uint8),
        "float": y + 0.5,
        "float_integers": y.astype(np.float64),
        "bool": y > 0,
        "negative": y - 1 - y.max(),
        "short": y[: n - 1],
        "one_hot": np.eye(3)[y],
    }[kind]


@SLOW
@given(
    values=hnp.arrays(
        np.uint8,
        hnp.array_shapes(min_dims=2, max_dims=3, min_side=2, max_side=5),
        elements=st.integers(0, 100),
    ),
    dtype=st.sampled_from(X_DTYPES),
    y_kind=st.sampled_from(Y_KINDS),
    nan=st.booleans(),
)
def test_curriculum_takes_arrays_of_quantities_and_integer_labels(values, dtype, y_kind, nan):
    x = values.astype(dtype)
    if nan and x.dtype.kind == "f":
        x.flat[0] = np.nan
    y = _labels(y_kind, len(x), np.random.default_rng(0))
    kind = x.dtype.kind
    x_valid = (kind == "f" and bool(np.isfinite(x).all())) or (
        kind in "iu" and x.dtype.itemsize <= 2
    )
    y_valid = y_kind in ("int64", "uint8")
    schedule = keras_agd.schedules.ExponentialAnnealing(1e3, 0.5, final_epsilon=1e2)
    codebook = keras_agd.HierarchicalCodebook(branching=2, random_state=0)
    assert_clear_or_valid(
        lambda: keras_agd.Curriculum(
            x, y, schedule=schedule, codebook=codebook, batch_size=2, mosaic_batch_size=2, seed=0
        ),
        "x" if not x_valid else "y",
        x_valid and y_valid,
        corpus.curriculum_ok,
    )


@FAST
@given(
    gradients=st.lists(
        hnp.arrays(np.float32, st.integers(1, 3), elements=st.floats(width=32)), min_size=1
    ),
    epsilon=SCALARS,
)
def test_layer_factors_are_finite_and_at_least_one(gradients, epsilon):
    groups = ["a" if i % 2 else "b" for i in range(len(gradients))]
    valid = corpus.float32_positive(epsilon)
    factors = assert_clear_or_valid(
        lambda: keras_agd.layer_factors(gradients, groups, epsilon=epsilon), "epsilon", valid
    )
    for factor in (factors or {}).values():
        assert math.isfinite(float(factor)) and float(factor) >= 1.0


# --- The stream's arguments that vary in structure.

KEYS = st.one_of(
    st.integers(-3, 13), st.floats(), st.text(max_size=2), st.booleans(), st.none()
) | st.integers(0, 9).map(np.int64)
WEIGHTS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 10),
    st.integers(-2, 10),
    st.none(),
    st.text(max_size=2),
)


@FAST
@given(class_weight=st.dictionaries(KEYS, WEIGHTS, max_size=4))
def test_class_weight_keys_and_values(class_weight):
    def key_ok(key):
        return corpus.integer(key) and 0 <= key < 10

    valid = all(key_ok(k) and corpus.in_range(0, None)(v) for k, v in class_weight.items())
    assert_clear_or_valid(
        lambda: corpus._dataset(class_weight=class_weight), "class_weight", valid, corpus.is_dataset
    )


@FAST
@given(
    parts=st.integers(1, 4),
    features=st.sampled_from([64, 32]),
    batched=st.booleans(),
    length=st.sampled_from(["finite", "repeated", "unknown"]),
    as_dict=st.booleans(),
)
def test_regular_dataset_structures(parts, features, batched, length, as_dict):
    x, y = corpus.Fixtures.get("data")
    columns = [x[:, :features], y, np.ones(len(x), np.float32), y][:parts]
    elements = {f"c{i}": c for i, c in enumerate(columns)} if as_dict else tuple(columns)
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    dataset = dataset.batch(64) if batched else dataset
    if length == "repeated":
        dataset = dataset.repeat()
    elif length == "unknown":
        dataset = dataset.filter(lambda *element: True)
    valid = not as_dict and parts in (2, 3) and features == 64 and batched and length == "finite"
    assert_clear_or_valid(
        lambda: corpus._dataset(regular_dataset=dataset),
        "regular_dataset",
        valid,
        corpus.is_dataset,
    )


# --- Schedules and the curriculum's plan.


@FAST
@given(
    initial=st.floats(1e-30, 1e38),
    rate=st.floats(1e-30, 1.0),
    floor=st.floats(0.0, 0.99),
)
def test_valid_exponential_schedules_anneal(initial, rate, floor):
    # A floor within float32 rounding of the start (floor near 1) is no mosaic level at all.
    schedule = keras_agd.schedules.ExponentialAnnealing(initial, rate, floor * initial)
    assert corpus.schedule_ok(schedule)


@FAST
@given(initial=st.floats(1e-30, 1e38), delta=st.floats(1e-30, 1e38), floor=st.floats(0.0, 0.99))
def test_valid_linear_schedules_anneal(initial, delta, floor):
    schedule = keras_agd.schedules.LinearAnnealing(initial, delta, floor * initial)
    assert corpus.schedule_ok(schedule)


EPSILONS = st.one_of(
    st.floats(0.0, 20.0), st.just(0.0), st.just(float("nan")), st.floats(-2.0, -0.5)
)


@pytest.mark.slow
@SLOW
@given(epsilons=st.lists(EPSILONS, min_size=1, max_size=4))
def test_custom_schedules_plan_or_fail_clearly(epsilons):
    # The plan reads the schedule up to its first 0 (then the real samples).
    read = []
    for epsilon in epsilons:
        read.append(epsilon)
        if epsilon == 0:
            break
    valid = all(e >= 0 for e in read) and read == sorted(read, reverse=True)
    # A plan must hold codewords below the class means, or no mosaic phase at all.
    codebook = corpus.Fixtures.get("codebook")
    roots = codebook.node_mean_error_[codebook.node_level_ == 0].max()
    planned = []
    for epsilon in (e for e in read if e > 0):
        if not len(codebook.frontier(epsilon).nodes):
            break
        planned.append(epsilon)
    if valid and read[0] > 0:
        valid = bool(planned) and planned[-1] <= roots
    curriculum = assert_clear_or_valid(
        lambda: corpus._curriculum(schedule=corpus.steps_schedule(epsilons)),
        "annealing schedule",
        valid,
        corpus.curriculum_ok,
    )
    if curriculum is None:
        return
    planned = [level.epsilon for level in curriculum.levels]
    mosaic = [e for e in read if e > 0]
    # A level whose frontier holds no codeword ends the mosaic phase early.
    assert planned == mosaic[: len(planned)]
    if len(planned) < len(mosaic):
        assert len(corpus.Fixtures.get("codebook").frontier(mosaic[len(planned)]).nodes) == 0
    model = corpus._compiled(keras_agd.AGD(curriculum, 0.05))
    train = curriculum.dataset(model, steps_per_epoch=curriculum.mosaic_steps + 1)
    logger = keras_agd.CurriculumLogger()
    history = model.fit(train, epochs=1, verbose=0, callbacks=[logger], shuffle=False)
    assert history.history["mosaic_phase"] == [0.0]  # The last step was a regular one.
    assert corpus.all_finite(model.get_weights())


# --- Optimizers: a short fit with any valid hyperparameters keeps every weight finite.


@pytest.mark.slow
@SLOW
@given(
    learning_rate=st.floats(0.0, 1.0),
    mosaic_learning_rate=st.none() | st.floats(0.0, 1.0),
    momentum=st.floats(0.0, 0.99),
    nesterov=st.booleans(),
    layer_adaptive=st.booleans(),
    decay_start_epoch=st.none() | st.integers(0, 3),
)
def test_short_agd_fits_keep_weights_finite(**kwargs):
    assert corpus.all_finite(corpus.agd_fit(**kwargs))


# --- Every fixed case of the corpus.


def _fixed_cases():
    with tempfile.TemporaryDirectory() as folder:  # Only the cases' descriptions are kept.
        cases = corpus.hand_written_cases(folder)
    ids = [corpus.case_id(case) for case in cases]
    assert len(set(ids)) == len(ids), "case descriptions must be unique within an entry"
    return cases


def _marks(case):
    marks = [pytest.mark.slow] if case["slow"] or case["isolate"] else []
    if case["gap"] is not None:
        marks.append(pytest.mark.xfail(reason=case["gap"], strict=True))
    return marks


FIXED = _fixed_cases()


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    built = corpus.hand_written_cases(str(tmp_path_factory.mktemp("corpus")))
    return {corpus.case_id(case): case for case in built}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(corpus.case_id(case), marks=_marks(case), id=corpus.case_id(case))
        for case in FIXED
        if not case["isolate"]
    ],
)
def test_corpus_case(cases, name):
    case = cases[name]
    with no_hang(), np.errstate(invalid="ignore", over="ignore"):
        kind, detail = corpus.outcome(case)
    assert kind in ("clear_error", "valid"), f"{name}: {kind}: {detail}"


@pytest.mark.slow
def test_values_that_took_faiss_down_are_refused_in_a_subprocess():
    # x * 1e19 made faiss abort the interpreter (SIGABRT): each case runs in its own.
    with tempfile.TemporaryDirectory() as folder:
        isolated = [i for i, case in enumerate(corpus.all_cases(folder)) if case["isolate"]]
    assert len(isolated) >= 3
    for index in isolated:
        kind, detail = corpus.outcome_isolated(index)
        assert kind in ("clear_error", "valid"), f"case {index}: {kind}: {detail}"


def test_codebook_parameters_as_numpy_scalars_and_joblib_n_jobs(tmp_path):
    x, y = corpus.Fixtures.get("data")
    params = {"branching": np.int64(4), "max_iter": np.int64(5), "target_error": np.float32(0)}
    codebook = keras_agd.HierarchicalCodebook(n_jobs=-1, random_state=np.int64(0), **params)
    codebook.fit(x, y)
    path = tmp_path / "cb.npz"
    codebook.save(path)
    loaded = keras_agd.HierarchicalCodebook.load(path)
    np.testing.assert_array_equal(loaded.codewords_, codebook.codewords_)
    assert loaded.get_params()["branching"] == 4
    assert len(codebook.frontier(np.float32(1.0)).nodes) > 0
    assert list(os.listdir(tmp_path)) == ["cb.npz"]


@pytest.mark.parametrize("n_jobs", [2**40, -(2**40), 2**31])
def test_more_threads_than_cores_run_one_thread_a_core(n_jobs):
    # OpenMP takes a C int: 2**40 threads raised a raw OverflowError from faiss.
    x, y = corpus.Fixtures.get("data")
    codebook = keras_agd.HierarchicalCodebook(branching=4, n_jobs=n_jobs, random_state=0)
    one = keras_agd.HierarchicalCodebook(branching=4, n_jobs=1, random_state=0)
    np.testing.assert_array_equal(codebook.fit(x, y).codewords_, one.fit(x, y).codewords_)


def test_codebook_random_state_as_in_scikit_learn(tmp_path):
    x, y = corpus.Fixtures.get("data")

    def fit(random_state):
        return keras_agd.HierarchicalCodebook(branching=4, random_state=random_state).fit(x, y)

    same = fit(np.random.RandomState(0)).codewords_
    np.testing.assert_array_equal(same, fit(np.random.RandomState(0)).codewords_)
    fitted = fit(np.random.default_rng(0))
    fitted.save(tmp_path / "cb.npz")  # A generator is state, saved as None.
    assert keras_agd.HierarchicalCodebook.load(tmp_path / "cb.npz").random_state is None


def test_a_curriculum_and_its_stream_from_numpy_scalars():
    x, y = corpus.Fixtures.get("data")
    curriculum = keras_agd.Curriculum(
        x,
        y.astype(np.uint8),
        codebook=corpus.Fixtures.get("codebook"),
        schedule=np.int64(2),
        batch_size=np.int32(64),
        mosaic_batch_size=np.uint64(128),
        steps_per_level=np.int16(2),
        seed=np.int64(0),
    )
    assert curriculum.mosaic_steps == 4 and curriculum.steps_per_epoch == 7
    model = corpus._compiled(keras_agd.AGD(curriculum, np.float32(0.05), momentum=np.float64(0.5)))
    train = curriculum.dataset(
        model, steps_per_epoch=np.int64(6), class_weight={np.int64(3): np.float32(2.0)}
    )
    model.fit(train, epochs=1, verbose=0, shuffle=False)
    assert int(model.optimizer.iterations.numpy()) == 6
    assert corpus.all_finite(model.get_weights())
    assert keras.ops.convert_to_numpy(model.optimizer.learning_rate) == np.float32(0.05)
