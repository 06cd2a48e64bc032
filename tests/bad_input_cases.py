"""A corpus of bad and unusual inputs to the public API, each with the promised outcome.

Every case is a call of one public entry point and what the documentation promises for
it: either an error (`ValueError` / `TypeError`, or `FileNotFoundError` /
`IsADirectoryError` for a file path) whose message names the argument, or a valid
result that a check accepts. `PARAMETERS` lists the domain of every scalar argument,
for `POOL` here and for the generated values of `tests/test_bad_inputs.py`.

A case whose `gap` is set is one the library does not handle as promised yet: `gap`
says where and what happens instead. The tests expect those to fail
(`xfail(strict=True)`), so that a fix shows; `benchmarks/bad_input_corpus.py` counts
every case by what really happens.
"""

import json
import math
import numbers
import os
import re
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import keras_agd
from keras_agd import _codebook_file

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)
# Batch sizes and steps per level the curriculum takes; the mosaic phase holds at most
# MAX_MOSAIC_ITEMS planned items.
MAX_BATCH = 400  # The fixture's samples: a larger batch would repeat samples.
MAX_STEPS_PER_EPOCH = 1 << 40
MAX_LEVELS = 10_000
MAX_MOSAIC_ITEMS = 1 << 25
# The errors a bad argument may raise.
CLEAR_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError)

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


def names_argument(message, argument):
    """An argument name must appear as `name`, `name[...]`, name= or 'name'; a path or
    phrase anywhere."""
    if re.fullmatch(r"[a-z_]+", argument):
        forms = (f"`{argument}`", f"`{argument}[", f"{argument}=", f"'{argument}'")
        return any(form in message for form in forms)
    return argument in message


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


def int_between(low, high):
    return lambda value: integer(value) and low <= value <= high


def one_of(*choices):
    return lambda value: isinstance(value, str) and value in choices


def only_none(value):
    return value is None


def float32_positive(value):
    return finite(value) and value >= F32_TINY


# --- The shared fixtures: a small labelled data set, its codebook and curriculum.


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
    def _curriculum(cls):
        # 2 levels of 1 and 2 steps at batch 128, then 7 steps a pass at batch 64.
        return _curriculum()

    @classmethod
    def _model(cls):
        """A model compiled with AGD of the fixture curriculum (never trained)."""
        return _compiled(keras_agd.AGD(cls.get("curriculum"), 0.05))


def _compiled(optimizer):
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def is_a(kind_name):
    def check(result):
        kind = getattr(keras_agd, kind_name, None) or getattr(keras_agd.schedules, kind_name)
        return isinstance(result, kind)

    return check


def is_dataset(result):
    return isinstance(result, tf.data.Dataset)


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


def curriculum_ok(result):
    """A plan whose levels tile the mosaic phase and whose every batch is full."""
    steps = [level.steps for level in result.levels]
    firsts = [level.first_step for level in result.levels]
    return (
        isinstance(result, keras_agd.Curriculum)
        and firsts == [sum(steps[:i]) for i in range(len(steps))]
        and result.mosaic_steps == sum(steps)
        and len(result.mosaic_rows) == result.mosaic_steps * result.mosaic_batch_size
    )


# --- Entry points with the fixtures filled in.


def _agd(**kwargs):
    return keras_agd.AGD(**{"curriculum": Fixtures.get("curriculum"), **kwargs})


def _layer_adaptive(**kwargs):
    return keras_agd.LayerAdaptive(keras.optimizers.SGD(0.01), **kwargs)


def _exponential(**kwargs):
    arguments = {"initial_epsilon": 5.0, "decay_rate": 0.9, **kwargs}
    return keras_agd.schedules.ExponentialAnnealing(**arguments)


def _linear(**kwargs):
    arguments = {"initial_epsilon": 5.0, "delta": 1.0, "final_epsilon": 1.0, **kwargs}
    return keras_agd.schedules.LinearAnnealing(**arguments)


_FIXTURE = object()


def _curriculum(x=_FIXTURE, y=_FIXTURE, **kwargs):
    """`Curriculum` of the fixture data (or `x`, `y`), codebook and schedule."""
    data = Fixtures.get("data")
    x = data[0] if x is _FIXTURE else x
    y = data[1] if y is _FIXTURE else y
    arguments = {
        "codebook": Fixtures.get("codebook"),
        "schedule": Fixtures.get("schedule"),
        "batch_size": 64,
        "mosaic_batch_size": 128,
        "seed": 0,
    }
    return keras_agd.Curriculum(x, y, **{**arguments, **kwargs})


def _fresh_curriculum(x, y=None, **kwargs):
    """`Curriculum` that fits its own codebook on `x`."""
    codebook = keras_agd.HierarchicalCodebook(branching=4, random_state=0)
    arguments = {"codebook": codebook, "schedule": 2, "seed": 0, **kwargs}
    return keras_agd.Curriculum(x, y, **arguments)


def _dataset(**kwargs):
    """`curriculum.dataset(model, ...)` of the fixture curriculum and model."""
    arguments = {"model": Fixtures.get("model"), **kwargs}
    return Fixtures.get("curriculum").dataset(**arguments)


def _codebook_fit(**kwargs):
    x, y = Fixtures.get("data")
    return keras_agd.HierarchicalCodebook(**{"branching": 4, **kwargs}).fit(x[:120], y[:120])


def _from_codebook(**kwargs):
    arguments = {"codebook": Fixtures.get("codebook"), "levels": 3, **kwargs}
    return keras_agd.schedules.from_codebook(**arguments)


def _frontier(**kwargs):
    return Fixtures.get("codebook").frontier(**{"epsilon": 1.0, **kwargs})


def _quantize(**kwargs):
    return Fixtures.get("codebook").quantize(**{"sample_indices": [0, 1], "epsilon": 1.0, **kwargs})


def _random_state(value):
    # As scikit-learn's `check_random_state` (without its bools).
    return value is None or integer(value) and 0 <= value < 2**32


# With the fixture's 2 levels at batch 128, a level may last this many steps.
MAX_STEPS_PER_LEVEL = MAX_MOSAIC_ITEMS // (2 * 128)

# --- Parameters: (entry, argument, call(**{argument: value}), valid(value), check(result)).

PARAMETERS = [
    # AGD
    ("AGD", "curriculum", _agd, lambda v: False, None),
    ("AGD", "learning_rate", _agd, in_range(0, None), is_a("AGD")),
    ("AGD", "mosaic_learning_rate", _agd, optional(in_range(0, None)), is_a("AGD")),
    ("AGD", "momentum", _agd, in_range(0, 1, high_open=True), is_a("AGD")),
    ("AGD", "nesterov", _agd, boolean, is_a("AGD")),
    ("AGD", "decay_start_epoch", _agd, optional(int_at_least(0)), is_a("AGD")),
    ("AGD", "epoch_decay_rate", _agd, in_range(0, 1, low_open=True), is_a("AGD")),
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
    ("from_codebook", "levels", _from_codebook, int_at_least(1), schedule_ok),
    ("from_codebook", "kind", _from_codebook, one_of("exponential", "linear"), schedule_ok),
    # Curriculum
    ("Curriculum", "schedule", _curriculum, int_between(1, MAX_LEVELS), curriculum_ok),
    ("Curriculum", "codebook", _curriculum, only_none, curriculum_ok),
    ("Curriculum", "batch_size", _curriculum, optional(int_between(1, MAX_BATCH)), curriculum_ok),
    (
        "Curriculum",
        "mosaic_batch_size",
        _curriculum,
        optional(int_between(1, MAX_BATCH)),
        curriculum_ok,
    ),
    (
        "Curriculum",
        "mode",
        _curriculum,
        one_of("weighted", "proportional", "per_sample", "random_subset"),
        curriculum_ok,
    ),
    ("Curriculum", "criterion", _curriculum, one_of("mean", "max"), curriculum_ok),
    (
        "Curriculum",
        "steps_per_level",
        _curriculum,
        optional(int_between(1, MAX_STEPS_PER_LEVEL)),
        curriculum_ok,
    ),
    ("Curriculum", "seed", _curriculum, optional(int_between(0, 2**31 - 1)), curriculum_ok),
    ("Curriculum", "x_key", _curriculum, only_none, curriculum_ok),  # x is an array.
    ("Curriculum", "y_key", _curriculum, only_none, curriculum_ok),
    # Curriculum.dataset (= mosaic_dataset)
    ("dataset", "model", _dataset, lambda v: False, None),
    (
        "dataset",
        "steps_per_epoch",
        _dataset,
        optional(int_between(1, MAX_STEPS_PER_EPOCH)),
        is_dataset,
    ),
    ("dataset", "regular_dataset", _dataset, only_none, is_dataset),
    ("dataset", "augment", _dataset, only_none, is_dataset),
    ("dataset", "class_weight", _dataset, only_none, is_dataset),
    ("dataset", "input_context", _dataset, only_none, is_dataset),
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


def _case(entry, description, call, expect, isolate=False, slow=False, gap=None):
    """One case.

    Args:
        entry: The public entry point.
        description: What is passed, unique within `entry`.
        call: Runs the call; returns its result.
        expect: The argument (or phrase, or path) the error must name, or a check of a
            valid result.
        isolate: Whether the case may take the interpreter down (run it in its own).
        slow: Whether it takes seconds (a fit, a plan of thousands of levels).
        gap: Where and how the library falls short of `expect` today, else `None`.
    """
    return {
        "entry": entry,
        "case": description,
        "call": call,
        "expect": expect,
        "isolate": isolate,
        "slow": slow,
        "gap": gap,
    }


def _source(x, y=None, **kwargs):
    return keras_agd.Source(x, y, **kwargs)


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
        temporary = (".tmp", ".keras_agd-tmp")
        stray = [name for name in os.listdir(folder) if name.endswith(temporary)]
        stray += [n for n in os.listdir(os.path.dirname(folder)) if n.endswith(temporary)]
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


def agd_fit(curriculum=None, epochs=2, **kwargs):
    """A short AGD fit on `curriculum.dataset(model)`; returns the weights."""
    curriculum = curriculum or Fixtures.get("curriculum")
    keras.utils.set_random_seed(0)
    model = _compiled(keras_agd.AGD(curriculum, **kwargs))
    model.fit(curriculum.dataset(model), epochs=epochs, verbose=0, shuffle=False)
    return model.get_weights()


def all_finite(weights):
    return all(np.isfinite(w).all() for w in weights)


def _stream_fit(epochs=1, fit_kwargs=None, **dataset_kwargs):
    """Fits a fresh model on the fixture curriculum's stream; returns the weights."""
    curriculum = Fixtures.get("curriculum")
    keras.utils.set_random_seed(0)
    model = _compiled(keras_agd.AGD(curriculum, 0.05))
    train = curriculum.dataset(model, **dataset_kwargs)
    model.fit(train, epochs=epochs, verbose=0, shuffle=False, **(fit_kwargs or {}))
    return model.get_weights()


def _regular(x, y, *more, batch=64):
    """A `regular_dataset` of `(x, y, ...)` batches."""
    return tf.data.Dataset.from_tensor_slices((x, y, *more)).batch(batch)


def steps_schedule(epsilons, then=0.0):
    """A custom annealing schedule: `epsilons[i]` at level `i`, then `then` for ever."""

    class Steps(keras_agd.schedules.AnnealingSchedule):
        def __call__(self, step):
            step = int(step)
            return epsilons[step] if step < len(epsilons) else then

        def get_config(self):
            return {}

    return Steps()


def _recompiled_stream(same_curriculum):
    """A stream built for a model that is then compiled anew; its first batch size."""
    curriculum = Fixtures.get("curriculum")
    model = _compiled(keras_agd.AGD(curriculum, 0.05))
    train = curriculum.dataset(model)
    model.fit(train, epochs=1, verbose=0, shuffle=False)  # Past the mosaic phase.
    other = curriculum if same_curriculum else _curriculum(seed=1)
    model.compile(keras_agd.AGD(other, 0.05), keras.losses.SparseCategoricalCrossentropy(True))
    batch = next(iter(train))  # The new optimizer is at step 0: a mosaic batch.
    return int(batch[0].shape[0])


def _variables():
    return [keras.Variable(np.ones(2), name="kernel")]


_GAP_SCHEDULE_INT = None  # Fixed: `schedule` is checked as an integer in [1, MAX_LEVELS].
_GAP_STEP = None  # Fixed.
_GAP_REGULAR_SPEC = None  # Fixed.
_GAP_AUGMENT = None  # Fixed.
_GAP_Y_KEY = None  # Fixed.
_GAP_AGD_CONFIG = None  # Fixed.
_GAP_RECOMPILED = None  # Fixed.
_GAP_STREAM_START = (
    "keras_agd/mosaic_dataset.py _start_reader: a check when the stream starts runs in "
    "tf.data (a numpy_function), so its ValueError reaches the caller as TensorFlow's "
    "InvalidArgumentError, with the message in it."
)


def curriculum_cases(tmp):
    """Cases of Curriculum, its stream (`dataset` / `mosaic_dataset`), AGD and sources."""
    x, y = Fixtures.get("data")
    n = len(x)
    nan_x = x.copy()
    nan_x[3, 5] = np.nan
    big64 = x.astype(np.float64)
    big64[0, 0] = 1e300
    records = [{"image": x[i], "label": int(y[i])} for i in range(n)]
    float_records = [{"image": x[i], "label": float(y[i]) + 0.5} for i in range(n)]
    get = Fixtures.get
    other_data = keras_agd.HierarchicalCodebook(branching=4, random_state=0)
    never_ends = keras_agd.schedules.ExponentialAnnealing(5.0, 1.0)

    def batch(step):
        return get("curriculum").batch(step)

    def rows_ok(result):
        rows, weights = result
        return len(rows) == len(weights) == 64 and bool(((rows >= 0) & (rows < n)).all())

    cases = [
        # Curriculum: schedule
        _case("Curriculum", "schedule=0", lambda: _curriculum(schedule=0), "schedule"),
        _case("Curriculum", "schedule=-3", lambda: _curriculum(schedule=-3), "schedule"),
        _case("Curriculum", "schedule=2**70", lambda: _curriculum(schedule=2**70), "schedule"),
        _case("Curriculum", "schedule=2.0", lambda: _curriculum(schedule=2.0), "schedule"),
        _case("Curriculum", "schedule=None", lambda: _curriculum(schedule=None), "schedule"),
        _case("Curriculum", "schedule='6'", lambda: _curriculum(schedule="6"), "schedule"),
        _case(
            "Curriculum",
            "schedule=a function",
            lambda: _curriculum(schedule=lambda level: 1.0),
            "schedule",
        ),
        _case(
            "Curriculum",
            "schedule=the ExponentialAnnealing class",
            lambda: _curriculum(schedule=keras_agd.schedules.ExponentialAnnealing),
            "schedule",
        ),
        _case(
            "Curriculum",
            "schedule=np.int64(2)",
            lambda: _curriculum(schedule=np.int64(2)),
            lambda c: curriculum_ok(c) and len(c.levels) == 2,
        ),
        _case(
            "Curriculum",
            "schedule=1000 levels",
            lambda: _curriculum(schedule=1000, mosaic_batch_size=16),
            lambda c: curriculum_ok(c) and len(c.levels) == 1000,
        ),
        _case(
            "Curriculum",
            "a schedule that increases",
            lambda: _curriculum(schedule=steps_schedule([1.0, 2.0])),
            "annealing schedule",
        ),
        _case(
            "Curriculum",
            "a schedule that returns NaN later",
            lambda: _curriculum(schedule=steps_schedule([1.0, float("nan")])),
            "annealing schedule",
        ),
        _case(
            "Curriculum",
            "a schedule that returns NaN first",
            lambda: _curriculum(schedule=steps_schedule([float("nan")])),
            "annealing schedule",
        ),
        _case(
            "Curriculum",
            "a schedule that returns a negative ε",
            lambda: _curriculum(schedule=steps_schedule([1.0, -0.5])),
            "annealing schedule",
        ),
        _case(
            "Curriculum",
            "a schedule returning a string",
            lambda: _curriculum(schedule=steps_schedule(["abc"])),
            "annealing schedule",
        ),
        _case(
            "Curriculum",
            "a schedule returning two numbers",
            lambda: _curriculum(schedule=steps_schedule([np.ones(2)])),
            "annealing schedule",
        ),
        _case(
            # The plan reads the schedule up to its first 0 (the regular phase).
            "Curriculum",
            "a schedule back to codewords after 0",
            lambda: _curriculum(schedule=steps_schedule([1.0, 0.0, 1.0])),
            lambda c: curriculum_ok(c) and [level.epsilon for level in c.levels] == [1.0],
        ),
        _case(
            "Curriculum",
            "a schedule that is 0 at once (no mosaic phase)",
            lambda: _curriculum(schedule=steps_schedule([0.0])),
            lambda c: curriculum_ok(c) and c.mosaic_steps == 0,
        ),
        _case(
            "Curriculum",
            "a schedule that never reaches 0",
            lambda: _curriculum(schedule=never_ends, mosaic_batch_size=16),
            "annealing schedule",
            slow=True,
        ),
        # Curriculum: codebook
        _case("Curriculum", "codebook='abc'", lambda: _curriculum(codebook="abc"), "codebook"),
        _case(
            "Curriculum",
            "codebook=the HierarchicalCodebook class",
            lambda: _curriculum(codebook=keras_agd.HierarchicalCodebook),
            "codebook",
        ),
        _case(
            "Curriculum",
            "codebook fitted on other data",
            lambda: _curriculum(codebook=other_data.fit(x[:200], y[:200])),
            "codebook was fit on different training data",
        ),
        _case(
            "Curriculum",
            "codebook fitted on other labels",
            lambda: _curriculum(y=(y + 1) % 10, x=x),
            "codebook was fit on different training data",
        ),
        _case(
            "Curriculum",
            "an unfitted codebook with bad parameters",
            lambda: _curriculum(codebook=keras_agd.HierarchicalCodebook(branching=1)),
            "branching",
        ),
        _case(
            "Curriculum",
            "an unfitted codebook (fit on x)",
            lambda: _curriculum(codebook=keras_agd.HierarchicalCodebook(branching=4)),
            curriculum_ok,
        ),
        _case(
            "Curriculum",
            "a codebook loaded from a file",
            lambda: _curriculum(codebook=_load(_save(os.path.join(tmp, "curriculum.npz")))),
            curriculum_ok,
        ),
        # Curriculum: batch sizes, steps, seed, mode, criterion, keys
        _case(
            "Curriculum", "batch_size=2**24", lambda: _curriculum(batch_size=2**24), "batch_size"
        ),
        _case(
            "Curriculum", "batch_size=N", lambda: _curriculum(batch_size=MAX_BATCH), curriculum_ok
        ),
        *[
            _case(
                "Curriculum",
                f"{name}={label}",
                lambda name=name, value=value: _curriculum(**{name: value}),
                name,
            )
            for name in ("batch_size", "mosaic_batch_size", "steps_per_level")
            for label, value in (
                ("0", 0),
                ("2**24 + 1", 2**24 + 1),
                ("2**31", 2**31),
                ("2**63 - 1", 2**63 - 1),
                ("2**63", 2**63),
                ("2**64", 2**64),
                ("np.uint64(2**63)", np.uint64(2**63)),
                ("np.int64(-1)", np.int64(-1)),
                ("128.0", 128.0),
                ("True", True),
            )
        ],
        _case(
            "Curriculum",
            "mosaic_batch_size=np.int64(16)",
            lambda: _curriculum(mosaic_batch_size=np.int64(16)),
            lambda c: curriculum_ok(c) and c.mosaic_batch_size == 16,
        ),
        _case(
            "Curriculum",
            "steps_per_level past the mosaic phase's size",
            lambda: _curriculum(steps_per_level=MAX_STEPS_PER_LEVEL + 1),
            "steps_per_level",
            slow=True,  # Plans the first level's 2**24 items.
        ),
        _case(
            "Curriculum",
            "steps_per_level=3",
            lambda: _curriculum(steps_per_level=3),
            lambda c: [level.steps for level in c.levels] == [3, 3] and curriculum_ok(c),
        ),
        _case("Curriculum", "seed=2**31", lambda: _curriculum(seed=2**31), "seed"),
        _case("Curriculum", "seed=-1", lambda: _curriculum(seed=-1), "seed"),
        _case(
            "Curriculum",
            "seed=a Generator",
            lambda: _curriculum(seed=np.random.default_rng(0)),
            "seed",
        ),
        _case("Curriculum", "mode=['weighted']", lambda: _curriculum(mode=["weighted"]), "mode"),
        _case("Curriculum", "mode='Weighted'", lambda: _curriculum(mode="Weighted"), "mode"),
        _case("Curriculum", "criterion='MAX'", lambda: _curriculum(criterion="MAX"), "criterion"),
        _case(
            "Curriculum",
            "the old mosaic_batches",
            lambda: _curriculum(mosaic_batches=3),
            "mosaic_batches",
        ),
        _case(
            "Curriculum",
            "schedule as a third positional argument",
            lambda: keras_agd.Curriculum(x, y, 2),
            "positional arguments",
        ),
        _case("Curriculum", "x_key with an array", lambda: _curriculum(x_key="image"), "x_key"),
        # Curriculum: the samples and labels (its Source)
        _case("Curriculum", "x=None", lambda: _curriculum(x=None, y=y), "x"),
        _case("Curriculum", "y=None", lambda: _curriculum(x=x, y=None), "y"),
        _case("Curriculum", "y as a list", lambda: _curriculum(x=x, y=list(y)), curriculum_ok),
        _case("Curriculum", "dict x", lambda: _fresh_curriculum({"image": x}, y), "x"),
        _case(
            "Curriculum", "int64 x", lambda: _fresh_curriculum((x * 16).astype(np.int64), y), "x"
        ),
        _case(
            "Curriculum", "int32 x", lambda: _fresh_curriculum((x * 16).astype(np.int32), y), "x"
        ),
        _case(
            "Curriculum",
            "uint16 x",
            lambda: _fresh_curriculum((x * 16).astype(np.uint16), y),
            curriculum_ok,
        ),
        _case(
            "Curriculum",
            "float16 x",
            lambda: _fresh_curriculum(x.astype(np.float16), y),
            curriculum_ok,
        ),
        _case("Curriculum", "bool x", lambda: _fresh_curriculum(x > 0.5, y), "x"),
        _case("Curriculum", "complex x", lambda: _fresh_curriculum(x.astype(complex), y), "x"),
        _case("Curriculum", "x with a NaN", lambda: _curriculum(x=nan_x, y=y), "x"),
        _case("Curriculum", "float64 x beyond float32", lambda: _curriculum(x=big64, y=y), "x"),
        _case(
            "Curriculum",
            "a tf.data.Dataset x",
            lambda: _fresh_curriculum(tf.data.Dataset.from_tensor_slices(x), y),
            "x",
        ),
        _case("Curriculum", "float y (0.5)", lambda: _fresh_curriculum(x, y + 0.5), "y"),
        _case("Curriculum", "float y of integers", lambda: _fresh_curriculum(x, y * 1.0), "y"),
        _case("Curriculum", "bool y", lambda: _fresh_curriculum(x, y > 4), "y"),
        _case("Curriculum", "y shorter", lambda: _fresh_curriculum(x, y[:10]), "y"),
        _case(
            "Curriculum",
            "dict records with x_key and y_key",
            lambda: _fresh_curriculum(records, x_key="image", y_key="label"),
            curriculum_ok,
        ),
        _case(
            "Curriculum",
            "y_key labels that are floats",
            lambda: _fresh_curriculum(float_records, x_key="image", y_key="label"),
            "y_key",
        ),
        _case(
            "Curriculum",
            "a y_key the records lack",
            lambda: _fresh_curriculum(records, x_key="image", y_key="target"),
            "y_key",
            gap=_GAP_Y_KEY,
        ),
        _case(
            "Curriculum",
            "an x_key the records lack",
            lambda: _fresh_curriculum(records, x_key="img", y_key="label"),
            "x_key",
        ),
        _case(
            "Curriculum",
            "records without labels",
            lambda: _fresh_curriculum(records, x_key="image"),
            "y",
        ),
        _case(
            "Curriculum",
            "(x, y) pair records",
            lambda: _fresh_curriculum([(x[i], int(y[i])) for i in range(n)]),
            curriculum_ok,
        ),
        _case(
            "Curriculum",
            "a Source and y beside it",
            lambda: _curriculum(x=keras_agd.Source(x, y), y=y),
            "y",
        ),
        _case(
            "Curriculum",
            "a Source",
            lambda: _curriculum(x=keras_agd.Source(x, y), y=None),
            curriculum_ok,
        ),
        # Curriculum: the plan as a function of the step
        *[
            _case("Curriculum.batch", f"step={value!r}", lambda value=value: batch(value), "step")
            for value in (-1, 1.5, True, None, "3", [3])
        ],
        _case("Curriculum.batch", "step=np.uint64(9)", lambda: batch(np.uint64(9)), rows_ok),
        _case("Curriculum.batch", "step=2**40", lambda: batch(2**40), rows_ok),
        _case("Curriculum.batch", "step=2**63", lambda: batch(2**63), "step", gap=_GAP_STEP),
        _case("Curriculum.batch", "step=2**70", lambda: batch(2**70), "step", gap=_GAP_STEP),
        _case(
            "Curriculum.batch",
            "step=2**62 (overflows int64 rows)",
            lambda: batch(2**62),
            "step",
            gap=_GAP_STEP,
        ),
        *[
            _case(
                f"Curriculum.{method}",
                "step=-1",
                lambda method=method: getattr(get("curriculum"), method)(-1),
                "step",
            )
            for method in ("epsilon", "phase", "level_of", "frontier_size")
        ],
        _case(
            "Curriculum.epsilon",
            "step=2**70 (the regular phase)",
            lambda: get("curriculum").epsilon(2**70),
            "step",
        ),
        # Curriculum.dataset / mosaic_dataset
        _case(
            "mosaic_dataset",
            "curriculum=None",
            lambda: keras_agd.mosaic_dataset(None, get("model")),
            "curriculum",
        ),
        _case(
            "mosaic_dataset",
            "curriculum=an array",
            lambda: keras_agd.mosaic_dataset(x, get("model")),
            "curriculum",
        ),
        _case(
            "mosaic_dataset",
            "the curriculum and model",
            lambda: keras_agd.mosaic_dataset(get("curriculum"), get("model")),
            is_dataset,
        ),
        _case(
            "dataset",
            "an uncompiled model",
            lambda: _dataset(model=keras.Sequential([keras.Input((64,)), keras.layers.Dense(1)])),
            "model",
        ),
        _case(
            "dataset",
            "a model compiled with SGD (a control)",
            lambda: _dataset(model=_compiled(keras.optimizers.SGD(0.1))),
            "needs the model compiled with keras_agd.AGD",
        ),
        _case(
            "dataset",
            "the AGD optimizer for the model",
            lambda: _dataset(model=get("model").optimizer),
            is_dataset,
        ),
        _case(
            "dataset",
            "a model compiled for another curriculum",
            lambda: _curriculum(seed=1).dataset(get("model")),
            "other than the one the model's AGD optimizer",
        ),
        _case(
            "dataset",
            "a model compiled anew with another curriculum after the stream was built",
            lambda: _recompiled_stream(False),
            "other than the one the model's AGD optimizer",
            slow=True,
            gap=_GAP_STREAM_START,
        ),
        _case(
            "dataset",
            "a model compiled anew (step 0) after the stream was built",
            lambda: _recompiled_stream(True),
            lambda size: size == 128,  # The mosaic batch of the new optimizer's step 0.
            slow=True,
            gap=_GAP_RECOMPILED,
        ),
        _case(
            "dataset", "seed=1.5 (seeds belong to Curriculum)", lambda: _dataset(seed=1.5), "seed"
        ),
        _case(
            "dataset",
            "steps_per_epoch=2**40 + 1",
            lambda: _dataset(steps_per_epoch=2**40 + 1),
            "steps_per_epoch",
        ),
        _case(
            "dataset",
            "steps_per_epoch=2**63",
            lambda: _dataset(steps_per_epoch=2**63),
            "steps_per_epoch",
        ),
        _case(
            "dataset",
            "steps_per_epoch=np.int64(5)",
            lambda: _dataset(steps_per_epoch=np.int64(5)),
            is_dataset,
        ),
        # class_weight
        _case(
            "dataset",
            "class_weight=a list",
            lambda: _dataset(class_weight=[1.0] * 10),
            "class_weight",
        ),
        _case("dataset", "class_weight={}", lambda: _dataset(class_weight={}), is_dataset),
        *[
            _case(
                "dataset",
                f"class_weight key {label}",
                lambda key=key: _dataset(class_weight={key: 1.0}),
                "class_weight",
            )
            for label, key in (
                ("1.5", 1.5),
                ("10 (10 classes)", 10),
                ("-1", -1),
                ("True", True),
                ("'1'", "1"),
                ("None", None),
                ("2**70", 2**70),
            )
        ],
        *[
            _case(
                "dataset",
                f"class_weight value {label}",
                lambda value=value: _dataset(class_weight={1: value}),
                "class_weight",
            )
            for label, value in (
                ("nan", float("nan")),
                ("inf", float("inf")),
                ("-1", -1),
                ("1e39", 1e39),
                ("None", None),
                ("'2'", "2"),
                ("[1]", [1]),
                ("True", True),
            )
        ],
        _case(
            "dataset",
            "class_weight with numpy keys and values",
            lambda: _dataset(class_weight={np.int64(1): np.float32(2.0), 3: 0}),
            is_dataset,
        ),
        _case(
            "dataset",
            "class_weight of 0 for every class, fit",
            lambda: _stream_fit(class_weight=dict.fromkeys(range(10), 0.0)),
            all_finite,
            slow=True,
        ),
        # regular_dataset
        _case(
            "dataset",
            "regular_dataset=[1]",
            lambda: _dataset(regular_dataset=[1]),
            "regular_dataset",
        ),
        _case(
            "dataset",
            "regular_dataset of dicts",
            lambda: _dataset(regular_dataset=tf.data.Dataset.from_tensor_slices({"a": x}).batch(8)),
            "regular_dataset",
        ),
        _case(
            "dataset",
            "regular_dataset of x alone",
            lambda: _dataset(regular_dataset=tf.data.Dataset.from_tensor_slices(x).batch(8)),
            "regular_dataset",
        ),
        _case(
            "dataset",
            "regular_dataset not batched",
            lambda: _dataset(regular_dataset=tf.data.Dataset.from_tensor_slices((x, y))),
            "regular_dataset",
        ),
        _case(
            "dataset",
            "regular_dataset of other samples (shape)",
            lambda: _dataset(regular_dataset=_regular(x[:, :32], y)),
            "regular_dataset",
        ),
        _case(
            "dataset",
            "regular_dataset repeated for ever",
            lambda: _dataset(regular_dataset=_regular(x, y).repeat()),
            "regular_dataset",
        ),
        _case(
            "dataset",
            "regular_dataset of unknown length",
            lambda: _dataset(regular_dataset=_regular(x, y).filter(lambda a, b: True)),
            "regular_dataset",
        ),
        _case(
            "dataset",
            "regular_dataset of (x, y, weights), fit",
            lambda: _stream_fit(regular_dataset=_regular(x, y, np.ones(n, np.float32))),
            all_finite,
            slow=True,
        ),
        _case(
            "dataset",
            "regular_dataset of labels of shape (B, 1), fit",
            lambda: _stream_fit(regular_dataset=_regular(x, y[:, None])),
            all_finite,
            slow=True,
        ),
        _case(
            "dataset",
            "regular_dataset of float labels (0.5)",
            lambda: _stream_fit(regular_dataset=_regular(x, y + 0.5)),
            "regular_dataset",
            slow=True,
            gap=_GAP_REGULAR_SPEC,
        ),
        _case(
            "dataset",
            "regular_dataset of string labels",
            lambda: _stream_fit(regular_dataset=_regular(x, y.astype(str))),
            "regular_dataset",
            slow=True,
            gap=_GAP_REGULAR_SPEC,
        ),
        _case(
            "dataset",
            "regular_dataset of one-hot labels",
            lambda: _stream_fit(regular_dataset=_regular(x, np.eye(10)[y])),
            "regular_dataset",
            slow=True,
            gap=_GAP_REGULAR_SPEC,
        ),
        _case(
            "dataset",
            "regular_dataset of string inputs",
            lambda: _dataset(regular_dataset=_regular(np.full((n, 64), "a"), y)),
            "regular_dataset",
            gap=_GAP_REGULAR_SPEC,
        ),
        _case(
            "dataset",
            "regular_dataset of 2-D sample weights",
            lambda: _stream_fit(regular_dataset=_regular(x, y, np.ones((n, 3)))),
            "regular_dataset",
            slow=True,
            gap=_GAP_REGULAR_SPEC,
        ),
        # augment
        _case("dataset", "augment=3", lambda: _dataset(augment=3), "augment"),
        _case(
            "dataset", "augment of one argument", lambda: _dataset(augment=lambda x: x), "augment"
        ),
        _case(
            "dataset",
            "augment returning one tensor",
            lambda: _dataset(augment=lambda x, y: x),
            "augment",
        ),
        _case(
            "dataset",
            "augment that raises",
            lambda: _dataset(augment=lambda x, y: 1 / 0),
            "augment",
        ),
        _case(
            "dataset",
            "augment in NumPy (not TensorFlow ops)",
            lambda: _dataset(augment=lambda x, y: (x.numpy(), y)),
            "augment",
        ),
        _case(
            "dataset",
            "augment in TensorFlow ops, fit",
            lambda: _stream_fit(augment=lambda x, y: (x + tf.random.normal(tf.shape(x)), y)),
            all_finite,
            slow=True,
        ),
        _case(
            "dataset",
            "augment that changes the sample shape",
            lambda: _stream_fit(augment=lambda x, y: (x[:, :32], y)),
            "augment",
            slow=True,
            gap=_GAP_AUGMENT,
        ),
        _case(
            "dataset",
            "augment that changes the batch size",
            lambda: _stream_fit(augment=lambda x, y: (x[:3], y)),
            "augment",
            slow=True,
            gap=_GAP_AUGMENT,
        ),
        _case(
            "dataset",
            "augment returning float labels (mixup)",
            lambda: _stream_fit(augment=lambda x, y: (x, tf.cast(y, tf.float32) + 0.5)),
            "augment",
            slow=True,
            gap=_GAP_AUGMENT,
        ),
        _case("dataset", "input_context=3", lambda: _dataset(input_context=3), "input_context"),
        # fit: arguments Keras refuses for the stream (its own errors)
        _case(
            "fit",
            "class_weight with the stream",
            lambda: _stream_fit(fit_kwargs={"class_weight": {0: 2.0}}),
            "class_weight",
            slow=True,
        ),
        _case(
            "fit",
            "validation_split with the stream",
            lambda: _stream_fit(fit_kwargs={"validation_split": 0.1}),
            "validation_split",
            slow=True,
        ),
        _case(
            "fit",
            "y beside the stream",
            lambda: _stream_fit(fit_kwargs={"y": y}),
            "`y`",
            slow=True,
        ),
        # AGD: its curriculum
        _case("AGD", "no curriculum", lambda: keras_agd.AGD(learning_rate=0.1), "curriculum"),
        _case(
            "AGD",
            "curriculum=a Source",
            lambda: _agd(curriculum=keras_agd.Source(x, y)),
            "curriculum",
        ),
        _case(
            "AGD",
            "curriculum=the codebook",
            lambda: _agd(curriculum=get("codebook")),
            "curriculum",
        ),
        _case("AGD", "curriculum={}", lambda: _agd(curriculum={}), "curriculum"),
        _case(
            "AGD",
            "curriculum=[the curriculum]",
            lambda: _agd(curriculum=[get("curriculum")]),
            "curriculum",
        ),
        _case(
            "AGD",
            "curriculum=its config",
            lambda: _agd(curriculum=get("curriculum").get_config()),
            is_a("AGD"),
        ),
        _case(
            "AGD",
            "a config with mosaic_steps='abc'",
            lambda: _agd(curriculum={**get("curriculum").get_config(), "mosaic_steps": "abc"}),
            "curriculum",
            gap=_GAP_AGD_CONFIG,
        ),
        _case(
            "AGD",
            "a config with mosaic_steps=-5",
            lambda: _agd(curriculum={**get("curriculum").get_config(), "mosaic_steps": -5}),
            "curriculum",
            gap=_GAP_AGD_CONFIG,
        ),
        _case("AGD", "optimizer='adam'", lambda: _agd(optimizer="adam"), "optimizer"),
        _case(
            "AGD",
            "optimizer=another AGD",
            lambda: _agd(optimizer=_agd()),
            "optimizer",
        ),
        _case(
            "AGD",
            "momentum beside optimizer",
            lambda: _agd(optimizer=keras.optimizers.Adam(), momentum=0.9),
            "momentum",
        ),
        _case(
            "AGD", "an unknown keyword", lambda: _agd(nesterov_momentum=0.9), "nesterov_momentum"
        ),
        _case("AGD", "the old loss_threshold", lambda: _agd(loss_threshold=0.5), "loss_threshold"),
        _case(
            "AGD",
            "fit at learning_rate 0",
            lambda: agd_fit(learning_rate=0.0),
            all_finite,
            slow=True,
        ),
        _case(
            "AGD",
            "fit with numpy scalars",
            lambda: agd_fit(
                learning_rate=np.float32(0.1), momentum=np.float64(0.9), layer_adaptive=True
            ),
            all_finite,
            slow=True,
        ),
        _case(
            "AGD",
            "fit with Adam inside",
            lambda: agd_fit(optimizer=keras.optimizers.Adam(), mosaic_learning_rate=1e-3),
            all_finite,
            slow=True,
        ),
        _case(
            "AGD",
            "fit with decay from epoch 0",
            lambda: agd_fit(learning_rate=0.1, decay_start_epoch=0, epoch_decay_rate=1e-30),
            all_finite,
            slow=True,
        ),
    ]
    return cases


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
            "fit",
            "x of shape (N, 0)",
            lambda: _fit_codebook(np.ones((10, 0)), np.zeros(10, np.int64)),
            "x",
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
            "y as float integers (labels must be integers)",
            lambda: _fit_codebook(x, y.astype(float)),
            "y",
        ),
        _case("fit", "a single sample", lambda: _fit_codebook(x[:1], y[:1]), _codebook_finite),
        _case(
            "fit",
            "identical samples",
            lambda: _fit_codebook(np.ones((20, 3)), np.zeros(20, np.int64)),
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
            lambda: _from_codebook(codebook=None, levels=3),
            "codebook",
        ),
        _case(
            "from_codebook",
            "unfitted codebook",
            lambda: _from_codebook(codebook=keras_agd.HierarchicalCodebook(), levels=3),
            "codebook",
        ),
        _case(
            "from_codebook",
            "identical samples (error 0)",
            lambda: keras_agd.schedules.from_codebook(
                _fit_codebook(np.ones((20, 3)), np.zeros(20, np.int64)), 3
            ),
            "codebook",
        ),
        _case(
            "from_codebook",
            "the old mosaic_epochs",
            lambda: _from_codebook(mosaic_epochs=3),
            "mosaic_epochs",
        ),
        # Source
        _case("Source", "x with a NaN", lambda: _source(nan_x, y), "x"),
        _case("Source", "x with inf", lambda: _source(np.where(x > 0, np.inf, x), y), "x"),
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
            "exclude=''",
            lambda: keras_agd.variable_groups(_variables(), exclude=""),
            "exclude",
        ),
        _case(
            "variable_groups",
            "exclude matching every variable",
            lambda: keras_agd.variable_groups(_variables(), exclude="kernel"),
            "exclude",
        ),
        _case(
            "variable_groups",
            "exclude=re.compile(b'kernel')",
            lambda: keras_agd.variable_groups(_variables(), exclude=re.compile(b"kernel")),
            "exclude",
        ),
        _case(
            "variable_groups",
            "grouping returning 3",
            lambda: keras_agd.variable_groups(_variables(), lambda v: 3),
            "grouping",
        ),
        # LayerAdaptive
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
    return cases + curriculum_cases(tmp)


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


def all_cases(tmp):
    """Every case: the hand-written ones, then each parameter with each value of POOL."""
    return hand_written_cases(tmp) + parameter_cases()


def outcome(case):
    """Runs one case in this process: `(kind, detail)`, kind one of `clear_error`,
    `valid`, `unclear_error` (another exception type, a message that does not name
    the argument, or a valid input refused) and `silent_wrong` (an input the
    documentation rules out was accepted, or a result failed its check)."""
    expect = case["expect"]
    try:
        result = case["call"]()
    except CLEAR_ERRORS as error:
        message = f"{type(error).__name__}: {error}"
        if isinstance(expect, str) and names_argument(str(error), expect):
            return "clear_error", message[:300]
        return "unclear_error", message[:300]
    except Exception as error:  # Any other type is unclear by definition.
        return "unclear_error", f"{type(error).__name__}: {error}"[:300]
    if isinstance(expect, str):
        return "silent_wrong", f"accepted; returned {result!r}"[:300]
    try:
        ok = bool(expect(result))
    except Exception as error:
        return "silent_wrong", f"result failed its check: {error!r}"[:300]
    return ("valid", "") if ok else ("silent_wrong", f"bad result {result!r}"[:300])


def outcome_isolated(index, timeout=240):
    """`outcome` of case `index` of `all_cases`, run in a fresh interpreter.

    A crash or a hang then only ends that interpreter: `("crash_or_hang", detail)`.
    The child imports the same keras_agd as this process, not an installed copy.
    """
    import subprocess
    import sys

    root = str(Path(keras_agd.__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, __file__, str(index)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "crash_or_hang", f"no answer after {timeout} s"
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] or [""]
        return "crash_or_hang", f"exit status {done.returncode}: {tail[0]}"[:300]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["class"], result["detail"]


def case_id(case):
    return f"{case['entry']}: {case['case']}"


if __name__ == "__main__":  # Runs one case by index, for `outcome_isolated`.
    import sys

    with tempfile.TemporaryDirectory() as folder:
        kind, detail = outcome(all_cases(folder)[int(sys.argv[1])])
    print(json.dumps({"class": kind, "detail": detail}))
