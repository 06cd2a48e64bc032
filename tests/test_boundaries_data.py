"""Invariants where training data enters, stated as properties over generated inputs.

For any generated input, each public entry point either gives a result that keeps its
invariant, or raises a `ValueError` / `TypeError` whose message names the argument to
fix. Never another exception type, a signal, or a result that breaks the invariant.
The inputs vary in structure (record kinds, dtype mixes across records, key sets,
lengths that lie, sizes at the limits, files that change), not only in value.

| Boundary | Invariant | Checked in |
| --- | --- | --- |
| `Source` records | every sample read equals its record (shape, values) | `Source.read` |
| `Source` memory map | the file does not change while it is read | `Source._check_file` |
| `Curriculum` sizes | batches of at most N items, allocation bounded | `Curriculum.__init__` |
| schedule vs codebook | some level holds codewords below the class means | `_check_schedule_fits` |
| schedules | `from_codebook(cb, n)` has exactly n mosaic levels | `ExponentialAnnealing` |
| labels vs model | every label indexes an output | `mosaic_dataset._check_output_units` |
| regular dataset | batches of the same samples, same labels, same scale | `_check_same_samples` |
| update rule | one optimizer step per batch, one learning rate | `agd._check_update_rule` |
"""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_agd
from keras_agd import AGD, Curriculum, HierarchicalCodebook, Source, schedules

pytestmark = pytest.mark.boundary

PROPERTY = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Arguments an error may name, in the house style "`name` ...".
ARGUMENTS = ("x", "y", "x_key", "y_key", "batch_size", "mosaic_batch_size", "schedule")


def assert_names_an_argument(error, arguments=ARGUMENTS):
    message = str(error)
    named = [name for name in arguments if f"`{name}`" in message]
    assert named, f"the error names none of {arguments}: {message}"


class Records:
    """A random-access collection of records, as a user's own reader might be."""

    def __init__(self, records, length=None, batched=False):
        self.records = records
        self.length = len(records) if length is None else length
        if batched:
            self.__getitems__ = lambda indices: [self.records[i] for i in indices]

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return self.records[index]


DTYPES = [np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64]


@st.composite
def record_collections(draw):
    """Records of one kind (array, (x, y) pair, dict), each of a drawn dtype and shape."""
    n = draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["array", "pair", "dict"]))
    shape = draw(st.sampled_from([(3,), (2, 2)]))
    values = []
    for _ in range(n):
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        odd_shape = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
        low, high = (0, 300) if dtype.kind in "iu" else (0.0, 1.0)
        if dtype == np.uint8:
            high = 255
        raw = draw(
            st.lists(
                st.integers(0, 300) if dtype.kind in "iu" else st.floats(0, 1),
                min_size=int(np.prod(shape)),
                max_size=int(np.prod(shape)),
            )
        )
        value = np.clip(np.asarray(raw, np.float64), low, high).astype(dtype).reshape(shape)
        values.append(value[:1] if odd_shape else value)
    labels = [i % 2 for i in range(n)]
    drop_key = draw(st.none() | st.integers(0, n - 1)) if kind == "dict" else None
    records = []
    for i, (value, label) in enumerate(zip(values, labels)):
        if kind == "array":
            records.append(value)
        elif kind == "pair":
            records.append((value, label))
        else:
            records.append({"image": value} if i == drop_key else {"image": value, "label": label})
    length = n + draw(st.sampled_from([0, 0, 0, 1, 5]))
    return kind, values, Records(records, length, batched=draw(st.booleans()))


@PROPERTY
@given(record_collections())
def test_every_sample_read_is_its_record_or_the_error_names_x(collection):
    kind, values, records = collection
    keys = {"x_key": "image", "y_key": "label"} if kind == "dict" else {}
    try:
        source = Source(records, **keys)
        out = source.read(np.arange(source.n_samples))
    except (ValueError, TypeError) as error:
        assert_names_an_argument(error)
        return
    assert len(records) == len(values)  # A length that lies is never read past silently.
    for value, read in zip(values, out):
        assert read.shape == value.shape
        # Exactly the record's values: no cast that wraps integers or truncates floats.
        np.testing.assert_array_equal(read.astype(np.float64), value.astype(np.float64))


@pytest.mark.parametrize(
    "first, later, kept",
    [
        # Found by the property above: float32 values rounded into a float16 batch.
        (np.float16, np.float32(0.45288268), False),
        (np.uint8, np.int64(260), False),
        (np.uint8, np.float32(0.5), False),
        (np.float16, np.float64(0.5), True),  # Held exactly: read as it is.
        (np.float32, np.uint8(200), True),
    ],
)
def test_a_record_is_read_in_the_first_records_dtype_only_if_it_keeps_its_values(
    first, later, kept
):
    values = [np.zeros((2, 2), first), np.full((2, 2), later)]
    records = Records([{"image": value, "label": 0} for value in values])
    source = Source(records, x_key="image", y_key="label")
    if kept:
        np.testing.assert_array_equal(source.read([0, 1])[1], values[1])
    else:
        with pytest.raises(ValueError, match="Sample 1 of `x` holds .* cannot hold"):
            source.read([0, 1])


@PROPERTY
@given(st.sampled_from(["shrink", "grow", "rewrite", "remove"]), st.integers(1, 200))
def test_a_memmap_whose_file_changes_is_refused_before_it_is_read(tmp_path_factory, change, n):
    folder = tmp_path_factory.mktemp("memmap")
    path = os.path.join(folder, "x.npy")
    np.save(path, np.arange(n * 4, dtype=np.float32).reshape(n, 4))
    source = Source(np.load(path, mmap_mode="r"), np.zeros(n, np.int64))
    source.read(np.arange(n))
    if change == "shrink":
        os.truncate(path, 128)  # The header only: reading a row would be SIGBUS.
    elif change == "grow":
        with open(path, "ab") as file:
            file.write(b"\0" * 64)
    elif change == "rewrite":
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    else:
        os.remove(path)
    with pytest.raises(ValueError, match="The file behind `x`"):
        source.read(np.arange(n))
    with pytest.raises(ValueError, match="The file behind `x`"):
        next(source.batches(7))


@pytest.mark.parametrize("shape", [(8,), ()])
def test_one_dimensional_or_scalar_samples_are_refused(shape):
    x = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match="`x` must"):
        HierarchicalCodebook().fit(x if shape else [x, x])


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(4 * c, 1.0, (40, 5)) for c in range(3)]).astype(np.float32)
    return x, np.repeat(np.arange(3), 40)


@pytest.fixture(scope="module")
def codebook(blobs):
    return HierarchicalCodebook(branching=2, random_state=0, backend="sklearn").fit(*blobs)


SIZES = st.sampled_from([1, 2, 119, 120, 121, 2**24, 2**24 + 1, 2**40, 0, -1])


@PROPERTY
@given(SIZES, SIZES, st.none() | st.integers(1, 3))
def test_batch_sizes_are_bounded_by_the_data(blobs, codebook, batch, mosaic, steps_per_level):
    try:
        curriculum = Curriculum(
            *blobs,
            codebook=codebook,
            schedule=2,
            batch_size=batch,
            mosaic_batch_size=mosaic,
            steps_per_level=steps_per_level,
            seed=0,
        )
    except ValueError as error:
        assert_names_an_argument(error)
        assert batch > 120 or mosaic > 120 or min(batch, mosaic) < 1
        return
    assert curriculum.batch_size == batch <= 120 and curriculum.mosaic_batch_size == mosaic <= 120
    for step in (0, curriculum.mosaic_steps - 1, curriculum.mosaic_steps):
        rows, weights = curriculum.batch(step)
        size = mosaic if step < curriculum.mosaic_steps else batch
        assert len(rows) == len(weights) == size


def test_default_batch_sizes_fit_small_data(blobs, codebook):
    curriculum = Curriculum(*blobs, codebook=codebook, schedule=2, seed=0)
    assert curriculum.batch_size == curriculum.mosaic_batch_size == 120


@PROPERTY
@given(st.integers(1, 10**6), st.sampled_from(["exponential", "linear"]))
def test_from_codebook_gives_exactly_the_levels_asked_for(codebook, levels, kind):
    schedule = schedules.from_codebook(codebook, levels, kind)
    assert float(schedule(levels - 1)) > 0
    assert float(schedule(levels)) == 0.0


@PROPERTY
@given(st.sampled_from([1e-3, 0.1, 0.5, 1.0, 2.0, 16.0, 255.0]), st.integers(1, 6))
def test_a_schedule_of_another_scale_is_named(blobs, codebook, scale, levels):
    x, y = blobs
    other = HierarchicalCodebook(branching=2, random_state=0, backend="sklearn").fit(x * scale, y)
    schedule = schedules.from_codebook(other, levels)
    try:
        curriculum = Curriculum(x, y, codebook=codebook, schedule=schedule, seed=0)
    except ValueError as error:
        assert_names_an_argument(error, ("schedule",))
        assert scale != 1.0
        return
    # Some level trains on codewords below the class means (or on real samples).
    roots = int((codebook.node_level_ == 0).sum())
    assert curriculum.levels and min(level.frontier_size for level in curriculum.levels) > 0
    assert any(level.frontier_size > roots for level in curriculum.levels)


def classifier(units, optimizer, jit_compile=False):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(units)])
    model.compile(
        optimizer,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


@PROPERTY
@given(st.integers(1, 5))
def test_every_label_indexes_a_model_output(blobs, codebook, units):
    curriculum = Curriculum(*blobs, codebook=codebook, schedule=1, seed=0)
    model = classifier(units, AGD(curriculum, 0.05))
    if units < 3 and units != 1:
        with pytest.raises(ValueError, match="`y` holds class labels up to 2"):
            curriculum.dataset(model)
    elif units == 1:
        with pytest.raises(ValueError, match="the model has 1 outputs"):
            curriculum.dataset(model)
    else:
        curriculum.dataset(model)


def test_labels_beyond_the_outputs_are_refused_under_xla_too(blobs, codebook):
    # Without the check, XLA's gather clamps nothing: the loss is NaN from the first step.
    curriculum = Curriculum(*blobs, codebook=codebook, schedule=1, seed=0)
    model = classifier(2, AGD(curriculum, 0.05), jit_compile=True)
    with pytest.raises(ValueError, match="Give the last layer 3 units"):
        curriculum.dataset(model)


REGULAR_VARIANTS = ["same", "scaled", "subset", "other_labels", "other_batch", "one_hot"]


@PROPERTY
@given(st.sampled_from(REGULAR_VARIANTS), st.sampled_from([8, 30, 64]))
def test_a_regular_dataset_of_other_samples_is_named(blobs, codebook, variant, batch):
    x, y = blobs
    curriculum = Curriculum(x, y, codebook=codebook, schedule=1, seed=0)
    model = classifier(3, AGD(curriculum, 0.05))
    if variant == "scaled":
        x = x * 255
    elif variant == "subset":
        x, y = x[: len(x) // 2], y[: len(y) // 2]
    elif variant == "other_labels":
        y = y + 3
    elif variant == "one_hot":
        y = np.eye(3)[y]
    regular = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(200, seed=0).batch(batch)
    if variant == "other_batch":
        regular = regular.unbatch().batch(batch).take(1)
    try:
        curriculum.dataset(model, regular_dataset=regular)
    except (ValueError, TypeError) as error:
        assert_names_an_argument(error, ("regular_dataset",))
        assert variant != "same"
        return
    assert variant == "same"


def test_gradient_accumulation_and_multi_optimizers_are_refused(blobs, codebook):
    curriculum = Curriculum(*blobs, codebook=codebook, schedule=1, seed=0)
    accumulating = keras.optimizers.SGD(0.1, gradient_accumulation_steps=3)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=3"):
        AGD(curriculum, optimizer=accumulating)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=2"):
        AGD(curriculum, gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=4"):
        AGD(
            curriculum,
            optimizer=keras_agd.LayerAdaptive(keras.optimizers.Adam(gradient_accumulation_steps=4)),
        )
    if hasattr(keras.optimizers, "MultiOptimizer"):
        multi = keras.optimizers.MultiOptimizer([keras.optimizers.SGD(0.1)])
        with pytest.raises(
            TypeError, match=re.escape("cannot be a keras.optimizers.MultiOptimizer")
        ):
            AGD(curriculum, optimizer=multi)


@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")
@pytest.mark.filterwarnings("ignore:Training stopped at step")
def test_the_stream_as_validation_data_is_refused(blobs, codebook):
    curriculum = Curriculum(*blobs, codebook=codebook, schedule=1, batch_size=40, seed=0)
    model = classifier(3, AGD(curriculum, 0.05))
    stream = curriculum.dataset(model)
    with pytest.raises(Exception, match="it was used for evaluation") as caught:
        model.fit(stream, epochs=2, validation_data=stream, verbose=0)
    assert isinstance(caught.value, ValueError | tf.errors.InvalidArgumentError)
    # The documented limit (docs/troubleshooting.md, pitfalls): in the last epoch nothing
    # tells the stream that an evaluation reads it, so a one-epoch fit is not refused.
    single = classifier(3, AGD(curriculum, 0.05))
    stream = curriculum.dataset(single)
    history = single.fit(stream, epochs=1, validation_data=stream, verbose=0)
    assert "val_loss" in history.history
    # Reading it whole to inspect it, then training, is fine.
    fresh = classifier(3, AGD(curriculum, 0.05))
    stream = curriculum.dataset(fresh)
    assert len(list(stream)) == curriculum.steps_per_epoch
    fresh.fit(stream, epochs=2, verbose=0)
    assert int(fresh.optimizer.iterations) == 2 * curriculum.steps_per_epoch


def test_a_codebook_refit_after_the_curriculum_does_not_change_its_plan(blobs):
    codebook = HierarchicalCodebook(branching=2, random_state=0, backend="sklearn").fit(*blobs)
    curriculum = Curriculum(*blobs, codebook=codebook, schedule=2, seed=0)
    config = curriculum.get_config()
    codebook.set_params(branching=3).fit(*blobs)
    assert curriculum.get_config() == config
    assert curriculum.codebook is not codebook


def test_a_schedule_far_above_every_error_keeps_the_class_means_on_purpose(blobs, codebook):
    # ε = 1e30, 5e29, 2.5e29: the coarsest frontier (one codeword a class) asked for.
    schedule = schedules.ExponentialAnnealing(1e30, 0.5, final_epsilon=2e29)
    curriculum = Curriculum(*blobs, codebook=codebook, schedule=schedule, seed=0)
    assert [level.frontier_size for level in curriculum.levels] == [3, 3, 3]
