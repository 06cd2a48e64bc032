"""Throws a corpus of bad and unusual inputs at the public API and counts what happens.

Every case is a call of one public entry point and what the documentation promises for
it: either an error (`ValueError` / `TypeError`, or `FileNotFoundError` / `IsADirectoryError`
for a file path) whose message names the argument, or a valid result that a check accepts. Each
outcome falls in one class:

- `crash_or_hang`: the interpreter died (cases that may take faiss down run in a
  subprocess) or the call ran past the timeout;
- `silent_wrong`: an input the documentation rules out was accepted, or a result
  failed its check;
- `unclear_error`: another exception type, a message that does not name the argument,
  or a valid input refused;
- `clear_error`: the documented error, naming the argument;
- `valid`: a valid input handled as documented.

Usage: `python benchmarks/bad_input_corpus.py [--verbose]` prints one JSON object with
the counts (and, with `--verbose`, every case that is not a clear error or valid).
`tests/test_bad_inputs.py` reuses `PARAMETERS` for its property-based tests.
"""

import argparse
import json
import math
import numbers
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Measure the keras_agd of this checkout, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_agd  # noqa: E402
from keras_agd import _codebook_file  # noqa: E402

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)
TIMEOUT_S = 60
CLASSES = ("crash_or_hang", "silent_wrong", "unclear_error", "clear_error", "valid")

# Scalars thrown at every hyperparameter (the property tests draw more).
POOL = (
    float("nan"),
    float("inf"),
    -float("inf"),
    -1,
    0,
    0.5,
    1.5,
    3,
    1e39,
    1e-45,
    "abc",
    "3",
    None,
    True,
    [1],
    np.float32(0.5),
    np.int64(3),
    np.float64(2.0),
    np.bool_(True),
    complex(1, 1),
)


# --- Domains: what each documented argument admits.


def number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def finite(value):
    return number(value) and math.isfinite(value) and abs(value) <= F32_MAX


def in_range(low, high, low_open=False, high_open=False, allow_inf=False):
    def check(value):
        if not (finite(value) or (allow_inf and number(value) and value == math.inf)):
            return False
        above = value > low if low_open else value >= low
        below = high is None or (value < high if high_open else value <= high)
        return above and below

    return check


def optional(check):
    return lambda value: value is None or check(value)


def boolean(value):
    return isinstance(value, bool | np.bool_)


def int_at_least(low):
    return lambda value: integer(value) and value >= low


def one_of(*choices):
    return lambda value: isinstance(value, str) and value in choices


def float32_positive(value):
    return finite(value) and value >= F32_TINY


# --- The shared fixtures: a small labelled data set and its codebook.


class Fixtures:
    """Built once per process, on first use."""

    _cache = {}

    @classmethod
    def get(cls, name):
        if name not in cls._cache:
            cls._cache[name] = getattr(cls, f"_{name}")()
        return cls._cache[name]

    @staticmethod
    def _data():
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        return (x[:400] / 16.0).astype(np.float32), y[:400]

    @classmethod
    def _codebook(cls):

        return keras_agd.HierarchicalCodebook(branching=4, random_state=0).fit(*cls.get("data"))

    @classmethod
    def _schedule(cls):

        return keras_agd.schedules.from_codebook(cls.get("codebook"), 2)

    @classmethod
    def _annealing(cls):

        return keras_agd.Annealing(cls.get("codebook"), cls.get("schedule"), seed=0)


def is_a(kind_name):
    def check(result):

        kind = getattr(keras_agd, kind_name, None) or getattr(keras_agd.schedules, kind_name)
        return isinstance(result, kind)

    return check


def frontier_ok(result):
    n = len(Fixtures.get("data")[0])
    return int(result.node_weights.sum()) + len(result.samples) == n


def quantize_ok(result):
    n_nodes = len(Fixtures.get("codebook").node_count_)
    result = np.asarray(result)
    return bool(result.size) and bool(((result >= -1) & (result < n_nodes)).all())


def schedule_ok(result):
    # A schedule's ε is finite in float32, > 0 at step 0 and never increases.
    values = [float(result(step)) for step in range(4)]
    return math.isfinite(values[0]) and values[0] > 0 and values == sorted(values, reverse=True)


# --- Parameters: (entry, argument, call(value), valid(value), check(result)).


def _agd(**kwargs):

    return keras_agd.AGD(**kwargs)


def _layer_adaptive(**kwargs):

    return keras_agd.LayerAdaptive(keras.optimizers.SGD(0.01), **kwargs)


def _exponential(**kwargs):

    arguments = {"initial_epsilon": 5.0, "decay_rate": 0.9, **kwargs}
    return keras_agd.schedules.ExponentialAnnealing(**arguments)


def _linear(**kwargs):

    arguments = {"initial_epsilon": 5.0, "delta": 1.0, "final_epsilon": 1.0, **kwargs}
    return keras_agd.schedules.LinearAnnealing(**arguments)


def _annealing(**kwargs):

    arguments = {"codebook": Fixtures.get("codebook"), "schedule": Fixtures.get("schedule")}
    return keras_agd.Annealing(**{**arguments, **kwargs})


def _codebook_fit(**kwargs):

    x, y = Fixtures.get("data")
    return keras_agd.HierarchicalCodebook(**{"branching": 4, **kwargs}).fit(x[:120], y[:120])


def _from_codebook(**kwargs):

    arguments = {"codebook": Fixtures.get("codebook"), "mosaic_epochs": 3, **kwargs}
    return keras_agd.schedules.from_codebook(**arguments)


def _frontier(**kwargs):
    return Fixtures.get("codebook").frontier(**{"epsilon": 1.0, **kwargs})


def _quantize(**kwargs):
    return Fixtures.get("codebook").quantize(**{"sample_indices": [0, 1], "epsilon": 1.0, **kwargs})


def _random_state(value):
    # As scikit-learn's `check_random_state` (without its bools).
    return value is None or integer(value) and 0 <= value < 2**32


PARAMETERS = [
    # AGD
    ("AGD", "learning_rate", _agd, in_range(0, None), is_a("AGD")),
    ("AGD", "mosaic_learning_rate", _agd, optional(in_range(0, None)), is_a("AGD")),
    ("AGD", "momentum", _agd, in_range(0, 1, high_open=True), is_a("AGD")),
    ("AGD", "nesterov", _agd, boolean, is_a("AGD")),
    ("AGD", "decay_start_epoch", _agd, optional(int_at_least(0)), is_a("AGD")),
    ("AGD", "epoch_decay_rate", _agd, in_range(0, 1, low_open=True), is_a("AGD")),
    ("AGD", "loss_threshold", _agd, optional(finite), is_a("AGD")),
    ("AGD", "loss_decay_steps", _agd, in_range(0, None, low_open=True), is_a("AGD")),
    ("AGD", "layer_adaptive", _agd, boolean, is_a("AGD")),
    ("AGD", "clipnorm", _agd, optional(in_range(0, None)), is_a("AGD")),
    ("AGD", "weight_decay", _agd, optional(in_range(0, None)), is_a("AGD")),
    # LayerAdaptive
    ("LayerAdaptive", "epsilon", _layer_adaptive, float32_positive, is_a("LayerAdaptive")),
    (
        "LayerAdaptive",
        "max_factor",
        _layer_adaptive,
        lambda v: v is None or number(v) and v >= 1,  # Above float32: no cap, as inf.
        is_a("LayerAdaptive"),
    ),
    # Schedules
    ("ExponentialAnnealing", "initial_epsilon", _exponential, float32_positive, schedule_ok),
    (
        "ExponentialAnnealing",
        "decay_rate",
        _exponential,
        lambda v: in_range(0, 1, low_open=True)(v) and v >= F32_TINY,
        schedule_ok,
    ),
    ("ExponentialAnnealing", "final_epsilon", _exponential, in_range(0, 5.0), schedule_ok),
    ("LinearAnnealing", "initial_epsilon", _linear, lambda v: finite(v) and v >= 1.0, schedule_ok),
    ("LinearAnnealing", "delta", _linear, float32_positive, schedule_ok),
    ("LinearAnnealing", "final_epsilon", _linear, in_range(0, 5.0), schedule_ok),
    ("from_codebook", "mosaic_epochs", _from_codebook, int_at_least(1), schedule_ok),
    ("from_codebook", "kind", _from_codebook, one_of("exponential", "linear"), schedule_ok),
    # Annealing
    ("Annealing", "batch_size", _annealing, int_at_least(1), is_a("Annealing")),
    ("Annealing", "mosaic_batch_size", _annealing, int_at_least(1), is_a("Annealing")),
    (
        "Annealing",
        "mode",
        _annealing,
        one_of("weighted", "proportional", "per_sample", "random_subset"),
        is_a("Annealing"),
    ),
    ("Annealing", "criterion", _annealing, one_of("mean", "max"), is_a("Annealing")),
    ("Annealing", "pad_batches", _annealing, boolean, is_a("Annealing")),
    ("Annealing", "seed", _annealing, optional(int_at_least(0)), is_a("Annealing")),
    ("Annealing", "mosaic_batches", _annealing, optional(int_at_least(1)), is_a("Annealing")),
    # HierarchicalCodebook: parameters (checked by `fit`), frontier and quantize
    ("HierarchicalCodebook", "branching", _codebook_fit, int_at_least(2), None),
    ("HierarchicalCodebook", "max_depth", _codebook_fit, optional(int_at_least(1)), None),
    ("HierarchicalCodebook", "min_cluster_size", _codebook_fit, optional(int_at_least(1)), None),
    ("HierarchicalCodebook", "target_error", _codebook_fit, in_range(0, None), None),
    (
        "HierarchicalCodebook",
        "max_iter",
        _codebook_fit,
        lambda v: int_at_least(1)(v) and v < 2**31,  # faiss takes a C int.
        None,
    ),
    ("HierarchicalCodebook", "backend", _codebook_fit, one_of("auto", "faiss", "sklearn"), None),
    (
        "HierarchicalCodebook",
        "n_jobs",
        _codebook_fit,
        lambda v: v is None or integer(v) and v != 0,  # Negative: as in joblib.
        None,
    ),
    ("HierarchicalCodebook", "random_state", _codebook_fit, _random_state, None),
    (
        "frontier",
        "epsilon",
        _frontier,
        lambda v: number(v) and not math.isnan(v) and v >= 0,
        frontier_ok,
    ),
    ("frontier", "criterion", _frontier, one_of("mean", "max"), frontier_ok),
    (
        "quantize",
        "epsilon",
        _quantize,
        lambda v: number(v) and not math.isnan(v) and v >= 0,
        quantize_ok,
    ),
]


# --- Hand-written cases: arrays, files, functions, fits.


def _case(entry, description, call, expect, isolate=False):
    """`expect`: the argument an error must name, or a check of a valid result."""
    return {
        "entry": entry,
        "case": description,
        "call": call,
        "expect": expect,
        "isolate": isolate,
    }


def _source(x, y=None, **kwargs):

    return keras_agd.Source(x, y, **kwargs)


def _mosaic(**kwargs):

    x, y = Fixtures.get("data")
    arguments = {"annealing": _annealing(seed=0), "x": x, "y": y, **kwargs}
    return keras_agd.mosaic_dataset(**arguments)


def _fit_codebook(x, y=None, **kwargs):

    return keras_agd.HierarchicalCodebook(**{"branching": 4, "random_state": 0, **kwargs}).fit(x, y)


def _codebook_finite(result):
    return bool(np.isfinite(result.node_mean_error_).all() and np.isfinite(result.codewords_).all())


def _save(path):
    Fixtures.get("codebook").save(path)
    return Path(path)


def _save_onto_directory(folder):
    try:
        Fixtures.get("codebook").save(folder)
    finally:
        stray = [name for name in os.listdir(folder) if name.endswith(".tmp")]
        stray += [name for name in os.listdir(os.path.dirname(folder)) if ".tmp" in name]
        if stray:
            raise AssertionError(f"stray temporary files left: {stray}")


def _load(path):

    return keras_agd.HierarchicalCodebook.load(path)


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _load_edited(folder, edit, rechecksum):
    """Saves the fixture codebook, edits its file, loads it again.

    With `rechecksum`, the edit also recomputes the checksum (what a writer who edits
    the file on purpose would do), so only the structural checks stand in the way.
    """
    path = os.path.join(folder, "cb.npz")
    Fixtures.get("codebook").save(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    edit(arrays)
    checksum = getattr(_codebook_file, "_checksum", None)
    if rechecksum and checksum is not None and "metadata" in arrays:
        metadata = json.loads(str(arrays["metadata"]))
        metadata["checksum"] = checksum(metadata, arrays)
        arrays["metadata"] = np.array(json.dumps(metadata))
    np.savez(path, **arrays)
    return _load(path)


def _cycle(arrays):
    parents = arrays["node_parent_"].copy()
    child = int(np.flatnonzero(parents >= 0)[0])
    parents[parents[child]] = child
    arrays["node_parent_"] = parents


def _agd_fit(**kwargs):
    """A two-epoch AGD fit; returns the weights, which must be finite."""

    x, y = Fixtures.get("data")
    annealing = _annealing(seed=0, batch_size=64, mosaic_batch_size=128)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    model.compile(keras_agd.AGD(**kwargs), keras.losses.SparseCategoricalCrossentropy(True))
    dataset = keras_agd.mosaic_dataset(annealing, x, y)
    model.fit(dataset, epochs=2, verbose=0, callbacks=[annealing])
    return model.get_weights()


def _all_finite(weights):
    return all(np.isfinite(w).all() for w in weights)


class _Steps:
    """A custom annealing schedule with listed ε (built on first use)."""

    @staticmethod
    def make(epsilons):

        class Steps(keras_agd.schedules.AnnealingSchedule):
            def __call__(self, step):
                return epsilons[min(int(step), len(epsilons) - 1)]

            def get_config(self):
                return {}

        return Steps()


def _annealing_fit(schedule):

    x, y = Fixtures.get("data")
    annealing = keras_agd.Annealing(Fixtures.get("codebook"), schedule, seed=0, batch_size=64)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    model.compile(keras_agd.AGD(0.05), keras.losses.SparseCategoricalCrossentropy(True))
    return model.fit(
        keras_agd.mosaic_dataset(annealing, x, y), epochs=4, verbose=0, callbacks=[annealing]
    )


def _variables():

    return [keras.Variable(np.ones(2), name="kernel")]


def hand_written_cases(tmp):

    x, y = Fixtures.get("data")
    n = len(x)
    nan_x = x.copy()
    nan_x[3, 5] = np.nan
    big64 = x.astype(np.float64)
    big64[0, 0] = 1e300
    not_npz = os.path.join(tmp, "not.npz")
    Path(not_npz).write_text("hello")
    folder = os.path.join(tmp, "a-folder")
    os.makedirs(folder)
    no_keys = _write_npz(os.path.join(tmp, "nokeys.npz"), a=np.ones(2))
    bad_mnist = _write_npz(
        os.path.join(tmp, "badmnist.npz"),
        x_train=np.ones((2, 28)),
        y_train=np.ones(2),
        x_test=np.ones((2, 28, 28)),
        y_test=np.ones(2),
    )
    cases = [
        # HierarchicalCodebook.fit: data
        _case(
            "fit",
            "x * 1e19 (finite float32), faiss",
            lambda: _fit_codebook(x * 1e19, y),
            "x",
            isolate=True,
        ),
        _case(
            "fit",
            "x * 1e19, sklearn",
            lambda: _fit_codebook(x * 1e19, y, backend="sklearn"),
            "x",
            isolate=True,
        ),
        _case(
            "fit",
            "x * 1e15, sklearn (large but within range)",
            lambda: _fit_codebook(x * 1e15, y, backend="sklearn"),
            _codebook_finite,
            isolate=True,
        ),
        _case(
            "fit",
            "x * 1e15, faiss (large but within range)",
            lambda: _fit_codebook(x * 1e15, y),
            _codebook_finite,
            isolate=True,
        ),
        _case("fit", "x with a NaN", lambda: _fit_codebook(nan_x, y), "x"),
        _case("fit", "float64 x beyond float32", lambda: _fit_codebook(big64, y), "x"),
        _case(
            "fit", "x of shape (N, 0)", lambda: _fit_codebook(np.ones((10, 0)), np.zeros(10)), "x"
        ),
        _case("fit", "empty x", lambda: _fit_codebook(np.ones((0, 3))), "x"),
        _case("fit", "scalar x", lambda: _fit_codebook(np.float32(3)), "x"),
        _case("fit", "string x", lambda: _fit_codebook(np.array([["a"]])), "x"),
        _case("fit", "x as nested lists", lambda: _fit_codebook(x.tolist(), y), _codebook_finite),
        _case("fit", "y shorter", lambda: _fit_codebook(x, y[:-1]), "y"),
        _case("fit", "y one-hot", lambda: _fit_codebook(x, np.eye(10)[y]), "y"),
        _case("fit", "y negative", lambda: _fit_codebook(x, y - 1), "y"),
        _case("fit", "y strings", lambda: _fit_codebook(x, y.astype(str)), "y"),
        _case("fit", "y floats 0.5", lambda: _fit_codebook(x, y + 0.5), "y"),
        _case(
            "fit",
            "y as float integers",
            lambda: _fit_codebook(x, y.astype(float)),
            _codebook_finite,
        ),
        _case("fit", "a single sample", lambda: _fit_codebook(x[:1], y[:1]), _codebook_finite),
        _case(
            "fit",
            "identical samples",
            lambda: _fit_codebook(np.ones((20, 3)), np.zeros(20)),
            _codebook_finite,
        ),
        _case(
            "fit", "uint8 x", lambda: _fit_codebook((x * 16).astype(np.uint8), y), _codebook_finite
        ),
        _case(
            "fit",
            "random_state RandomState",
            lambda: _fit_codebook(x, y, random_state=np.random.RandomState(0)),
            _codebook_finite,
        ),
        _case(
            "fit",
            "random_state Generator",
            lambda: _fit_codebook(x, y, random_state=np.random.default_rng(0)),
            _codebook_finite,
        ),
        # frontier / quantize
        _case("frontier", "epsilon='abc'", lambda: _frontier(epsilon="abc"), "epsilon"),
        _case("frontier", "epsilon=None", lambda: _frontier(epsilon=None), "epsilon"),
        _case("frontier", "epsilon=[1.0]", lambda: _frontier(epsilon=[1.0]), "epsilon"),
        _case(
            "frontier",
            "epsilon=np.float32(1)",
            lambda: _frontier(epsilon=np.float32(1)),
            frontier_ok,
        ),
        _case(
            "frontier",
            "unfitted codebook",
            lambda: keras_agd.HierarchicalCodebook().frontier(1.0),
            "HierarchicalCodebook",
        ),
        _case(
            "quantize",
            "sample_indices=[-1]",
            lambda: _quantize(sample_indices=[-1]),
            "sample_indices",
        ),
        _case(
            "quantize",
            "sample_indices=[n]",
            lambda: _quantize(sample_indices=[n]),
            "sample_indices",
        ),
        _case(
            "quantize",
            "sample_indices=[10**6]",
            lambda: _quantize(sample_indices=[10**6]),
            "sample_indices",
        ),
        _case(
            "quantize",
            "sample_indices=[0.5]",
            lambda: _quantize(sample_indices=[0.5]),
            "sample_indices",
        ),
        _case(
            "quantize",
            "sample_indices='a'",
            lambda: _quantize(sample_indices="a"),
            "sample_indices",
        ),
        _case(
            "quantize",
            "sample_indices=[True]",
            lambda: _quantize(sample_indices=[True]),
            "sample_indices",
        ),
        _case(
            "quantize",
            "sample_indices=np.int64(3)",
            lambda: _quantize(sample_indices=np.int64(3)),
            quantize_ok,
        ),
        _case(
            "quantize",
            "sample_indices=[] ",
            lambda: _quantize(sample_indices=[]),
            lambda r: np.asarray(r).shape == (0,),
        ),
        _case("quantize", "criterion='median'", lambda: _quantize(criterion="median"), "criterion"),
        # save / load
        _case(
            "save",
            "to a missing folder",
            lambda: _save(os.path.join(tmp, "no-dir", "cb.npz")),
            "no-dir",
        ),
        _case("save", "onto a folder", lambda: _save_onto_directory(folder), "a-folder"),
        _case("save", "path=3", lambda: _save(3), "path"),
        _case(
            "save",
            "unfitted",
            lambda: keras_agd.HierarchicalCodebook().save(os.path.join(tmp, "u.npz")),
            "HierarchicalCodebook",
        ),
        _case(
            "save",
            "a fresh path",
            lambda: _save(os.path.join(tmp, "ok.npz")),
            lambda p: p.is_file(),
        ),
        _case(
            "load", "a missing file", lambda: _load(os.path.join(tmp, "missing.npz")), "missing.npz"
        ),
        _case("load", "a text file", lambda: _load(not_npz), "not.npz"),
        _case("load", "an npz of other arrays", lambda: _load(no_keys), "nokeys.npz"),
        _case("load", "a folder", lambda: _load(folder), "a-folder"),
        _case("load", "path=None", lambda: _load(None), "path"),
        _case(
            "load",
            "a parent cycle, checksum recomputed",
            lambda: _load_edited(tempfile.mkdtemp(dir=tmp), _cycle, True),
            "cb.npz",
        ),
        _case(
            "load",
            "an edited feature_shape",
            lambda: _load_edited(tempfile.mkdtemp(dir=tmp), _edit_feature_shape, False),
            "cb.npz",
        ),
        # Schedules
        _case(
            "from_codebook",
            "codebook=None",
            lambda: _from_codebook(codebook=None, mosaic_epochs=3),
            "codebook",
        ),
        _case(
            "from_codebook",
            "unfitted codebook",
            lambda: _from_codebook(codebook=keras_agd.HierarchicalCodebook(), mosaic_epochs=3),
            "codebook",
        ),
        _case(
            "from_codebook",
            "identical samples (error 0)",
            lambda: keras_agd.schedules.from_codebook(
                _fit_codebook(np.ones((20, 3)), np.zeros(20)), 3
            ),
            "codebook",
        ),
        _case(
            "Annealing",
            "a schedule that increases",
            lambda: _annealing_fit(_Steps.make([1.0, 2.0])),
            "annealing schedule",
        ),
        _case(
            "Annealing",
            "a schedule that returns NaN later",
            lambda: _annealing_fit(_Steps.make([1.0, float("nan")])),
            "annealing schedule",
        ),
        _case(
            "Annealing",
            "a schedule that returns NaN first",
            lambda: _annealing(schedule=_Steps.make([float("nan")])),
            "annealing schedule",
        ),
        _case(
            "Annealing",
            "a schedule returning a string",
            lambda: _annealing(schedule=_Steps.make(["abc"])),
            "annealing schedule",
        ),
        _case(
            "Annealing",
            "a schedule back to codewords after 0",
            lambda: _annealing_fit(_Steps.make([1.0, 0.0, 1.0])),
            "annealing schedule",
        ),
        _case("Annealing", "schedule=7.5", lambda: _annealing(schedule=7.5), "schedule"),
        _case("Annealing", "codebook=None", lambda: _annealing(codebook=None), "codebook"),
        # mosaic_dataset and Source
        _case("mosaic_dataset", "annealing=None", lambda: _mosaic(annealing=None), "annealing"),
        _case("mosaic_dataset", "x with a NaN (other data)", lambda: _mosaic(x=nan_x), "x"),
        _case("mosaic_dataset", "float64 x beyond float32", lambda: _mosaic(x=big64), "x"),
        _case("mosaic_dataset", "augment=3", lambda: _mosaic(augment=3), "augment"),
        _case(
            "mosaic_dataset",
            "seed=1.5 (seeds belong to Annealing)",
            lambda: _mosaic(seed=1.5),
            "seed",
        ),
        _case(
            "mosaic_dataset",
            "augment of one argument",
            lambda: _mosaic(augment=lambda x: x),
            "augment",
        ),
        _case(
            "mosaic_dataset",
            "augment returning one tensor",
            lambda: _mosaic(augment=lambda x, y: x),
            "augment",
        ),
        _case(
            "mosaic_dataset",
            "regular_dataset=[1]",
            lambda: _mosaic(regular_dataset=[1]),
            "regular_dataset",
        ),
        _case("mosaic_dataset", "y=None", lambda: _mosaic(y=None), "y"),
        _case("mosaic_dataset", "x=None", lambda: _mosaic(x=None), "x"),
        _case("mosaic_dataset", "x_key with an array", lambda: _mosaic(x_key="image"), "x_key"),
        _case("mosaic_dataset", "y as a list", lambda: _mosaic(y=list(y)), lambda d: d is not None),
        _case("Source", "x with a NaN", lambda: _source(nan_x, y), "x"),
        _case("Source", "x with inf", lambda: _source(x * np.inf, y), "x"),
        _case("Source", "float64 x beyond float32", lambda: _source(big64, y), "x"),
        _case("Source", "x of shape (N, 0)", lambda: _source(np.ones((3, 0)), [0, 1, 2]), "x"),
        _case("Source", "x=None", lambda: _source(None), "x"),
        _case("Source", "x='abc'", lambda: _source("abc"), "x"),
        _case("Source", "x=3", lambda: _source(3), "x"),
        _case("Source", "x=[]", lambda: _source([]), "x"),
        _case("Source", "records of strings", lambda: _source(["a", "b"]), "x"),
        _case("Source", "x_key with an array", lambda: _source(x, y, x_key="image"), "x_key"),
        _case("Source", "y_key with an array", lambda: _source(x, y_key="label"), "y_key"),
        _case("Source", "y of another length", lambda: _source(x, y[:3]), "y"),
        _case("Source", "y one-hot", lambda: _source(x, np.eye(10)[y]), "y"),
        _case("Source", "y with NaN", lambda: _source(x, np.full(n, np.nan)), "y"),
        _case(
            "Source",
            "records missing the key",
            lambda: _source([{"img": 1}], x_key="image"),
            "x_key",
        ),
        _case("Source", "a list of arrays", lambda: _source(list(x), y), lambda s: len(s) == n),
        _case("Source", "a memmap with a NaN, read", lambda: _read_memmap(tmp, nan_x), "x"),
        # datasets
        _case("load_mnist", "path=3", lambda: keras_agd.datasets.load_mnist(3), "path"),
        _case(
            "load_mnist",
            "a missing file",
            lambda: keras_agd.datasets.load_mnist(os.path.join(tmp, "missing.npz")),
            "missing.npz",
        ),
        _case("load_mnist", "a folder", lambda: keras_agd.datasets.load_mnist(folder), "a-folder"),
        _case(
            "load_mnist", "a text file", lambda: keras_agd.datasets.load_mnist(not_npz), "not.npz"
        ),
        _case(
            "load_mnist",
            "an npz without MNIST keys",
            lambda: keras_agd.datasets.load_mnist(no_keys),
            "nokeys.npz",
        ),
        _case(
            "load_mnist",
            "an npz of wrong shapes",
            lambda: keras_agd.datasets.load_mnist(bad_mnist),
            "badmnist.npz",
        ),
        # layer_factors / variable_groups
        _case(
            "layer_factors", "gradients=3", lambda: keras_agd.layer_factors(3, ["a"]), "gradients"
        ),
        _case(
            "layer_factors",
            "groups=None",
            lambda: keras_agd.layer_factors([np.ones(2)], None),
            "groups",
        ),
        _case(
            "layer_factors",
            "groups='a'",
            lambda: keras_agd.layer_factors([np.ones(2)], "a"),
            "groups",
        ),
        _case(
            "layer_factors",
            "lengths differ",
            lambda: keras_agd.layer_factors([np.ones(2)], ["a", "b"]),
            "groups",
        ),
        _case(
            "layer_factors",
            "a NaN gradient",
            lambda: keras_agd.layer_factors([np.array([np.nan])], ["a"]),
            lambda r: float(r["a"]) == 1.0,
        ),
        _case(
            "layer_factors",
            "a zero gradient",
            lambda: keras_agd.layer_factors([np.zeros(3)], ["a"]),
            lambda r: math.isfinite(float(r["a"])),
        ),
        _case(
            "layer_factors",
            "epsilon=1e-45",
            lambda: keras_agd.layer_factors([np.zeros(3)], ["a"], epsilon=1e-45),
            "epsilon",
        ),
        _case(
            "layer_factors",
            "max_factor=0",
            lambda: keras_agd.layer_factors([np.zeros(3)], ["a"], max_factor=0),
            "max_factor",
        ),
        _case(
            "variable_groups",
            "variables=None",
            lambda: keras_agd.variable_groups(None),
            "variables",
        ),
        _case(
            "variable_groups",
            "variables=[1, 2]",
            lambda: keras_agd.variable_groups([1, 2]),
            "variables",
        ),
        _case(
            "variable_groups",
            "grouping='block'",
            lambda: keras_agd.variable_groups(_variables(), "block"),
            "grouping",
        ),
        _case(
            "variable_groups",
            "exclude=3",
            lambda: keras_agd.variable_groups(_variables(), exclude=3),
            "exclude",
        ),
        _case(
            "variable_groups",
            "exclude='('",
            lambda: keras_agd.variable_groups(_variables(), exclude="("),
            "exclude",
        ),
        _case(
            "variable_groups",
            "grouping returning 3",
            lambda: keras_agd.variable_groups(_variables(), lambda v: 3),
            "grouping",
        ),
        # Optimizers: objects and short fits
        _case("AGD", "optimizer='adam'", lambda: _agd(optimizer="adam"), "optimizer"),
        _case(
            "AGD",
            "momentum beside optimizer",
            lambda: _agd(optimizer=keras.optimizers.Adam(), momentum=0.9),
            "momentum",
        ),
        _case(
            "AGD", "an unknown keyword", lambda: _agd(nesterov_momentum=0.9), "nesterov_momentum"
        ),
        _case("AGD", "fit at learning_rate 0", lambda: _agd_fit(learning_rate=0.0), _all_finite),
        _case(
            "AGD",
            "fit with numpy scalars",
            lambda: _agd_fit(
                learning_rate=np.float32(0.1), momentum=np.float64(0.9), layer_adaptive=True
            ),
            _all_finite,
        ),
        _case(
            "AGD",
            "fit with loss_threshold 'abc'",
            lambda: _agd_fit(loss_threshold="abc"),
            "loss_threshold",
        ),
        _case(
            "LayerAdaptive",
            "inner_optimizer='sgd'",
            lambda: keras_agd.LayerAdaptive("sgd"),
            "inner_optimizer",
        ),
        _case(
            "LayerAdaptive", "an unknown keyword", lambda: _layer_adaptive(clipnorm=1.0), "clipnorm"
        ),
    ]
    return cases


def _edit_feature_shape(arrays):
    for key, value in arrays.items():
        if value.dtype.kind == "U" and "feature_shape" in str(value):
            metadata = json.loads(str(value))
            metadata = _replace_key(metadata, "feature_shape", [8, 8])
            arrays[key] = np.asarray(json.dumps(metadata))
            return


def _replace_key(tree, key, value):
    if isinstance(tree, dict):
        return {k: value if k == key else _replace_key(v, key, value) for k, v in tree.items()}
    return tree


def _read_memmap(tmp, x):
    path = os.path.join(tmp, "nan.npy")
    np.save(path, x)
    source = _source(np.load(path, mmap_mode="r"), Fixtures.get("data")[1])
    return source.read(np.arange(len(x)))


def parameter_cases():
    cases = []
    for entry, argument, call, valid, check in PARAMETERS:
        for value in POOL:
            expect = (check or (lambda result: True)) if valid(value) else argument
            cases.append(
                _case(entry, f"{argument}={value!r}", _bind(call, argument, value), expect)
            )
    return cases


def _bind(call, argument, value):
    return lambda: call(**{argument: value})


# --- Running and classifying.


class _Timeout(BaseException):
    pass


def names_argument(message, argument):
    """An argument name must appear as `name` or name=; a path or phrase anywhere."""
    if re.fullmatch(r"[a-z_]+", argument):
        return any(form in message for form in (f"`{argument}`", f"{argument}=", f"'{argument}'"))
    return argument in message


def classify(case):
    """Runs one case in this process; returns (class, detail)."""
    expect = case["expect"]

    def alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(TIMEOUT_S)
    try:
        result = case["call"]()
    except _Timeout:
        return "crash_or_hang", f"no answer after {TIMEOUT_S} s"
    except (ValueError, TypeError, FileNotFoundError, IsADirectoryError) as error:
        message = f"{type(error).__name__}: {error}"
        if isinstance(expect, str) and names_argument(str(error), expect):
            return "clear_error", message[:300]
        return "unclear_error", message[:300]
    except Exception as error:  # Any other type is unclear by definition.
        return "unclear_error", f"{type(error).__name__}: {error}"[:300]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if isinstance(expect, str):
        return "silent_wrong", f"accepted; returned {result!r}"[:300]
    try:
        ok = bool(expect(result))
    except Exception as error:
        return "silent_wrong", f"result failed its check: {error!r}"[:300]
    return ("valid", "") if ok else ("silent_wrong", f"bad result {result!r}"[:300])


def classify_isolated(index):
    """Runs case `index` in a fresh interpreter, so that a crash only kills that one."""
    command = [sys.executable, __file__, "--case", str(index)]
    # The child imports the same keras_agd as this process (not an installed copy).
    package_root = str(Path(keras_agd.__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=4 * TIMEOUT_S, env=env
        )
    except subprocess.TimeoutExpired:
        return "crash_or_hang", "subprocess timed out"
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] or [""]
        return "crash_or_hang", f"exit status {done.returncode}: {tail[0]}"[:300]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome["class"], outcome["detail"]


def all_cases(tmp):
    return hand_written_cases(tmp) + parameter_cases()


def run(verbose=False, isolate=True):
    with tempfile.TemporaryDirectory() as tmp:
        cases = all_cases(tmp)
        counts = dict.fromkeys(CLASSES, 0)
        problems = []
        for index, case in enumerate(cases):
            if case["isolate"] and isolate:
                kind, detail = classify_isolated(index)
            else:
                kind, detail = classify(case)
            counts[kind] += 1
            if kind not in ("clear_error", "valid"):
                problems.append(
                    {"class": kind, "entry": case["entry"], "case": case["case"], "detail": detail}
                )
    result = {"cases": len(cases), **counts}
    if verbose:
        result["problems"] = problems
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list every problem case")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case is not None:
        with tempfile.TemporaryDirectory() as tmp:
            kind, detail = classify(all_cases(tmp)[args.case])
        print(json.dumps({"class": kind, "detail": detail}))
        return None
    result = run(verbose=args.verbose)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
