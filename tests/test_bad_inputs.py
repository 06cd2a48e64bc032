"""Generated bad inputs at every public entry point: a clear error or a documented result.

Each property asserts, for any drawn input: a `ValueError` / `TypeError` whose message
names the argument, or a result that the documentation promises; never another
exception type, a hang, a non-finite weight, or a dead interpreter. The domains of the
arguments come from `benchmarks/bad_input_corpus.py`, which counts the same corpus.
"""

import contextlib
import math
import os
import signal
import sys
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_agd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bad_input_corpus as corpus  # noqa: E402

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


@pytest.mark.parametrize(
    "entry, argument, call, valid, check",
    [row for row in corpus.PARAMETERS if not _is_codebook(row[0])],
    ids=[f"{row[0]}-{row[1]}" for row in corpus.PARAMETERS if not _is_codebook(row[0])],
)
@FAST
@given(value=SCALARS)
def test_hyperparameters(entry, argument, call, valid, check, value):
    assert_clear_or_valid(lambda: call(**{argument: value}), argument, valid(value), check)


@pytest.mark.parametrize(
    "entry, argument, call, valid, check",
    [row for row in corpus.PARAMETERS if _is_codebook(row[0])],
    ids=[f"{row[0]}-{row[1]}" for row in corpus.PARAMETERS if _is_codebook(row[0])],
)
@settings(FAST, max_examples=15)
@given(value=SCALARS)
def test_codebook_arguments(entry, argument, call, valid, check, value):
    assert_clear_or_valid(lambda: call(**{argument: value}), argument, valid(value), check)


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


# --- Schedules and the Annealing callback.


@FAST
@given(
    initial=st.floats(1e-30, 1e38),
    rate=st.floats(1e-30, 1.0),
    floor=st.floats(0.0, 1.0),
)
def test_valid_exponential_schedules_anneal(initial, rate, floor):
    schedule = keras_agd.schedules.ExponentialAnnealing(initial, rate, floor * initial)
    assert corpus.schedule_ok(schedule)


@FAST
@given(initial=st.floats(1e-30, 1e38), delta=st.floats(1e-30, 1e38), floor=st.floats(0.0, 1.0))
def test_valid_linear_schedules_anneal(initial, delta, floor):
    schedule = keras_agd.schedules.LinearAnnealing(initial, delta, floor * initial)
    assert corpus.schedule_ok(schedule)


EPSILONS = st.one_of(st.floats(0.0, 20.0), st.just(float("nan")), st.floats(-2.0, -0.5))


@pytest.mark.slow
@SLOW
@given(epsilons=st.lists(EPSILONS, min_size=1, max_size=4))
def test_custom_schedules_anneal_or_fail_clearly(epsilons):
    schedule = corpus._Steps.make(epsilons)
    padded = epsilons + [epsilons[-1]] * (4 - len(epsilons))
    valid = all(e >= 0 for e in padded) and padded == sorted(padded, reverse=True)
    history = assert_clear_or_valid(
        lambda: corpus._annealing_fit(schedule), "annealing schedule", valid
    )
    if history is not None:
        assert history.history["epsilon"] == pytest.approx(np.float32(padded).tolist())


# --- Optimizers: a short fit with any valid hyperparameters keeps every weight finite.


@pytest.mark.slow
@SLOW
@given(
    learning_rate=st.floats(0.0, 1.0),
    mosaic_learning_rate=st.none() | st.floats(0.0, 1.0),
    momentum=st.floats(0.0, 0.99),
    nesterov=st.booleans(),
    layer_adaptive=st.booleans(),
    loss_threshold=st.none() | st.floats(-1.0, 10.0),
)
def test_short_agd_fits_keep_weights_finite(**kwargs):
    weights = corpus._agd_fit(**kwargs)
    assert corpus._all_finite(weights)


# --- Fixed cases of the corpus, including those that may crash the interpreter.


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return corpus.all_cases(str(tmp_path_factory.mktemp("corpus")))


@pytest.mark.parametrize(
    "name",
    [
        "a schedule that increases",
        "a schedule back to codewords after 0",
        "a schedule that returns NaN first",
        "a schedule returning a string",
        "x with a NaN",
        "float64 x beyond float32",
        "records missing the key",
        "x_key with an array",
        "a memmap with a NaN, read",
        "path=3",
        "a folder",
        "gradients=3",
        "variables=[1, 2]",
        "momentum beside optimizer",
        "codebook=None",
    ],
)
def test_corpus_cases_outside_the_codebook(cases, name):
    chosen = [
        case for case in cases if case["case"] == name and not _is_codebook_case(case["entry"])
    ]
    assert chosen, name
    for case in chosen:
        kind, detail = corpus.classify(case)
        assert kind in ("clear_error", "valid"), f"{case['entry']}: {name}: {kind}: {detail}"


def _is_codebook_case(entry):
    return entry in ("fit", "frontier", "quantize", "save", "load")


@pytest.mark.parametrize(
    "entry, name",
    [
        ("fit", "x of shape (N, 0)"),
        ("fit", "float64 x beyond float32"),
        ("fit", "random_state RandomState"),
        ("fit", "random_state Generator"),
        ("frontier", "epsilon='abc'"),
        ("quantize", "sample_indices=[-1]"),
        ("quantize", "sample_indices=[n]"),
        ("quantize", "sample_indices=[10**6]"),
        ("quantize", "sample_indices=[0.5]"),
        ("save", "to a missing folder"),
        ("save", "onto a folder"),
        ("save", "path=3"),
        ("load", "path=None"),
        ("load", "a parent cycle, checksum recomputed"),
        ("load", "an edited feature_shape"),
        ("from_codebook", "identical samples (error 0)"),
    ],
)
def test_corpus_cases_of_the_codebook(cases, entry, name):
    case = next(case for case in cases if case["entry"] == entry and case["case"] == name)
    kind, detail = corpus.classify(case)
    assert kind in ("clear_error", "valid"), f"{entry}: {name}: {kind}: {detail}"


@pytest.mark.slow
def test_values_that_took_faiss_down_are_refused_in_a_subprocess(cases):
    # x * 1e19 made faiss abort the interpreter (SIGABRT): each case runs in its own.
    isolated = [index for index, case in enumerate(cases) if case["isolate"]]
    assert len(isolated) >= 3
    for index in isolated:
        kind, detail = corpus.classify_isolated(index)
        assert kind in ("clear_error", "valid"), f"{cases[index]['case']}: {kind}: {detail}"


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


def test_codebook_random_state_as_in_scikit_learn(tmp_path):
    x, y = corpus.Fixtures.get("data")

    def fit(random_state):
        return keras_agd.HierarchicalCodebook(branching=4, random_state=random_state).fit(x, y)

    same = fit(np.random.RandomState(0)).codewords_
    np.testing.assert_array_equal(same, fit(np.random.RandomState(0)).codewords_)
    fitted = fit(np.random.default_rng(0))
    fitted.save(tmp_path / "cb.npz")  # A generator is state, saved as None.
    assert keras_agd.HierarchicalCodebook.load(tmp_path / "cb.npz").random_state is None
