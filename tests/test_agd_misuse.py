"""Each way to misuse the AGD data path: refused with a message naming the fix, or documented.

Some misuses are Keras' to refuse (its errors are kept here so that a Keras release that
changes them shows up); a few cannot be refused and are pinned down as they behave.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import keras_agd
from keras_agd import AGD, Curriculum, CurriculumLogger, HierarchicalCodebook, schedules

pytestmark = pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
OTHER_CURRICULUM = "other than the one the model's AGD optimizer was made with"


@pytest.fixture(scope="module")
def data():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


@pytest.fixture(scope="module")
def codebook(data):
    return HierarchicalCodebook(branching=3, random_state=0).fit(*data)


def make_curriculum(data, codebook, **kwargs):
    kwargs = {"schedule": 2, "batch_size": 32, "mosaic_batch_size": 128, "seed": 1, **kwargs}
    return Curriculum(*data, codebook=codebook, **kwargs)


@pytest.fixture(scope="module")
def curriculum(data, codebook):
    return make_curriculum(data, codebook)


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(16, "relu"), keras.layers.Dense(10)]
    )


def model(optimizer):
    net = mlp()
    net.compile(optimizer, LOSS, metrics=["accuracy"])
    return net


def agd(curriculum):
    return AGD(curriculum, 0.05, mosaic_learning_rate=0.2, momentum=0.9)


# --- Streams and optimizers of different curricula.


def test_a_stream_of_another_curriculum_is_refused(data, codebook, curriculum):
    net = model(agd(curriculum))
    other = make_curriculum(data, codebook, seed=2)
    with pytest.raises(ValueError, match=OTHER_CURRICULUM):
        other.dataset(net)
    with pytest.raises(ValueError, match=OTHER_CURRICULUM):
        keras_agd.mosaic_dataset(other, net.optimizer)


class Interrupt(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if batch == 3:
            raise RuntimeError("Interrupting training")


def test_a_backup_of_another_curriculums_run_is_refused_when_the_stream_starts(
    data, codebook, curriculum, tmp_path
):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), save_freq=1)
    first = model(agd(curriculum))
    with pytest.raises(RuntimeError, match="Interrupting"):
        first.fit(curriculum.dataset(first), epochs=2, verbose=0, callbacks=[backup, Interrupt()])
    # Another curriculum, its own AGD: the stream is built, then BackupAndRestore
    # restores the first run's digest with the weights, and the stream refuses to start.
    other = make_curriculum(data, codebook, seed=2)
    second = model(agd(other))
    with pytest.raises(Exception) as error:  # Raised inside tf.data, surfaced by it.
        second.fit(other.dataset(second), epochs=2, verbose=0, callbacks=[backup])
    assert OTHER_CURRICULUM in str(error.value)
    assert str(curriculum.digest) in str(error.value) and str(other.digest) in str(error.value)


def test_curriculum_logger_needs_agd(data):
    net = model(keras.optimizers.SGD(0.05))
    with pytest.raises(ValueError, match="CurriculumLogger needs a model compiled with"):
        net.fit(*data, epochs=1, verbose=0, callbacks=[CurriculumLogger()])


def test_fit_on_arrays_is_not_refused_but_warns_inside_the_mosaic_phase(data, curriculum):
    # AGD cannot tell the stream from other data: its rate follows the step counter,
    # and a fit that ends before the curriculum's mosaic phase does is told so.
    x, y = data
    net = model(agd(curriculum))
    assert 10 < curriculum.mosaic_steps
    with pytest.warns(UserWarning, match="inside AGD's mosaic phase"):
        net.fit(x[:320], y[:320], batch_size=32, epochs=1, verbose=0)
    assert int(net.optimizer.iterations) == 10


# --- What Keras refuses or does with the stream.


def test_fit_class_weight_is_refused_by_keras(curriculum):
    net = model(agd(curriculum))
    with pytest.raises(ValueError, match="You cannot `class_weight` and `sample_weight`"):
        net.fit(curriculum.dataset(net), class_weight={0: 2.0}, verbose=0)
    # The stream takes them instead.
    stream = curriculum.dataset(net, class_weight={0: 2.0}, steps_per_epoch=2)
    net.fit(stream, verbose=0, epochs=1)
    assert int(net.optimizer.iterations) == 2


def test_fit_validation_split_is_refused_by_keras(curriculum):
    net = model(agd(curriculum))
    with pytest.raises(ValueError, match="`validation_split` is only supported for tensors"):
        net.fit(curriculum.dataset(net), validation_split=0.1, verbose=0)


class CountTestBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_test_batch_end(self, batch, logs=None):
        self.batches += 1


def test_evaluate_on_the_stream_is_a_figure_of_training_batches(curriculum):
    # `evaluate(stream)` reads the next `steps_per_epoch` training batches (codewords in
    # the mosaic phase) without moving the step: a training-set figure, not a test one.
    net = model(agd(curriculum))
    counter = CountTestBatches()
    stream = curriculum.dataset(net, steps_per_epoch=3)
    result = net.evaluate(stream, verbose=0, callbacks=[counter], return_dict=True)
    assert counter.batches == 3 and int(net.optimizer.iterations) == 0
    x, y, weights = (np.concatenate(parts) for parts in zip(*stream.as_numpy_iterator()))
    same = net.evaluate(x, y, sample_weight=weights, batch_size=128, verbose=0, return_dict=True)
    assert result == pytest.approx(same, rel=1e-6)


class CustomStep(keras.Sequential):
    """A `train_step` of one's own, as in the Keras guide, that passes the weights on."""

    def train_step(self, data):
        x, y, sample_weight = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def test_a_custom_train_step_that_passes_the_weights_trains_like_the_default(curriculum, tmp_path):
    default = model(agd(curriculum))
    default.fit(curriculum.dataset(default, steps_per_epoch=10), epochs=2, verbose=0)
    custom = CustomStep(mlp().layers)
    custom.compile(agd(curriculum), LOSS, metrics=["accuracy"])
    callbacks = [
        CurriculumLogger(),  # Before CSVLogger, so that its columns are in the file.
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.weights.h5"), save_weights_only=True),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping("loss", patience=10),
    ]
    custom.fit(
        curriculum.dataset(custom, steps_per_epoch=10), epochs=2, verbose=0, callbacks=callbacks
    )
    for a, b in zip(default.get_weights(), custom.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    header = (tmp_path / "log.csv").read_text().splitlines()[0]
    assert "epsilon" in header and "frontier_size" in header and "mosaic_phase" in header


# --- Arguments of the stream.


def test_the_stream_needs_a_compiled_model(curriculum):
    with pytest.raises(TypeError, match="Call `model.compile"):
        curriculum.dataset(mlp())


@pytest.mark.parametrize("steps_per_epoch", [0, -1, 2.5, "3", True, np.float32(4)])
def test_bad_steps_per_epoch(curriculum, steps_per_epoch):
    net = model(agd(curriculum))
    with pytest.raises(ValueError, match="`steps_per_epoch` must be an integer >= 1"):
        curriculum.dataset(net, steps_per_epoch=steps_per_epoch)


def test_steps_per_epoch_as_a_numpy_integer(curriculum):
    net = model(agd(curriculum))
    assert int(curriculum.dataset(net, steps_per_epoch=np.int64(3)).cardinality()) == 3


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"augment": 3}, TypeError, "`augment` must be callable"),
        ({"augment": lambda x: x}, TypeError, "`augment` must be a function"),
        ({"augment": lambda x, y: x}, TypeError, "`augment` must return a pair"),
        ({"class_weight": [1.0, 2.0]}, TypeError, "`class_weight` must be a dict"),
        ({"class_weight": {12: 1.0}}, ValueError, "`class_weight` keys must be class indices"),
        ({"class_weight": {0: -1.0}}, ValueError, "class_weight\\[0\\]"),
        ({"input_context": 2}, TypeError, "`input_context` must be the tf.distribute"),
        ({"regular_dataset": [1, 2]}, TypeError, "`regular_dataset` must be a tf.data.Dataset"),
    ],
)
def test_bad_stream_arguments(curriculum, kwargs, error, message):
    net = model(agd(curriculum))
    with pytest.raises(error, match=message):
        curriculum.dataset(net, **kwargs)


def test_a_regular_dataset_of_unknown_length_or_other_shape(data, curriculum):
    net = model(agd(curriculum))
    users = tf.data.Dataset.from_tensor_slices(data).filter(lambda x, y: y >= 0).batch(32)
    with pytest.raises(ValueError, match="known, finite number of batches"):
        curriculum.dataset(net, regular_dataset=users)
    x, y = data
    images = tf.data.Dataset.from_tensor_slices((x.reshape(-1, 8, 8), y)).batch(32)
    with pytest.raises(ValueError, match="the codewords have shape"):
        curriculum.dataset(net, regular_dataset=images)
    with pytest.raises(ValueError, match=r"`\(x, y\)` or `\(x, y, sample_weight\)` batches"):
        curriculum.dataset(net, regular_dataset=tf.data.Dataset.range(3))


def test_the_stream_needs_a_curriculum(curriculum):
    net = model(agd(curriculum))
    with pytest.raises(TypeError, match="`curriculum` must be a keras_agd.Curriculum"):
        keras_agd.mosaic_dataset(net.optimizer, net)


# --- Data a codebook cannot average.


def test_a_tf_data_dataset_as_x(data):
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(32)
    with pytest.raises(TypeError, match="pass it as `regular_dataset=`"):
        Curriculum(dataset, data[1])


def test_dict_x_is_refused(data):
    x, y = data
    with pytest.raises(TypeError, match="`x` must be one array of samples"):
        Curriculum({"pixels": x, "extra": x[:, :3]}, y)


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_token_ids_for_an_embedding_model_are_refused(dtype):
    # Averages of token ids mean nothing: a codeword of ids 3 and 9 is not token 6.
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, size=(200, 12)).astype(dtype)
    labels = rng.integers(0, 2, size=200)
    embedding_model = keras.Sequential(
        [
            keras.Input((12,), dtype="int32"),
            keras.layers.Embedding(1000, 8),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2),
        ]
    )
    assert embedding_model(ids[:2]).shape == (2, 2)  # The model itself takes them.
    with pytest.raises(ValueError, match=f"`x` holds {np.dtype(dtype)} values.*Embedding"):
        Curriculum(ids, labels)


def test_float_labels_are_refused(data):
    x, y = data
    with pytest.raises(ValueError, match="`y` must hold integer class labels"):
        Curriculum(x, y.astype(np.float32))


def test_missing_or_short_labels(data):
    x, y = data
    with pytest.raises(ValueError, match="needs class labels"):
        Curriculum(x)
    with pytest.raises(ValueError, match="`x` and `y` must have the same length"):
        Curriculum(x, y[:-1])


# --- Schedules that misbehave fail when the curriculum is planned, before any training.


class _Steps(schedules.AnnealingSchedule):
    """A custom schedule giving the listed ε, then the last one."""

    def __init__(self, epsilons):
        self.epsilons = epsilons

    def __call__(self, step):
        return self.epsilons[min(int(step), len(self.epsilons) - 1)]

    def get_config(self):
        return {"epsilons": self.epsilons}


@pytest.mark.parametrize(
    "epsilons, message",
    [
        ([1.0, 2.0], "_Steps gave ε=2.0 at level 1, above ε=1.0 at level 0: ε must never"),
        ([1.0, float("nan")], "_Steps gave ε=nan at level 1; ε must be >= 0"),
        ([-1.0], "_Steps gave ε=-1.0 at level 0; ε must be >= 0"),
        (["abc"], "The annealing schedule _Steps must return one number per level"),
    ],
)
def test_a_schedule_that_misbehaves_fails_at_planning(data, codebook, epsilons, message):
    with pytest.raises(ValueError, match=message):
        make_curriculum(data, codebook, schedule=_Steps(epsilons))
