"""Each way to misuse the annealing data path fails loudly, naming the missing piece."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from keras_agd import AGD, Annealing, HierarchicalCodebook, mosaic_dataset, schedules


@pytest.fixture(scope="module")
def data():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


@pytest.fixture(scope="module")
def codebook(data):
    return HierarchicalCodebook(branching=4, random_state=0).fit(*data)


def writer(codebook):
    return Annealing(
        codebook, schedules.from_codebook(codebook, 2), batch_size=64, mosaic_batch_size=128
    )


def model(optimizer=None):
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, "relu")])
    net.add(keras.layers.Dense(10))
    net.compile(
        optimizer or AGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return net


def test_agd_without_the_annealing_callback(data):
    with pytest.raises(ValueError, match="AGD is training outside its annealing schedule"):
        model().fit(*data, epochs=1, verbose=0)


def test_agd_fit_again_without_the_callback_after_an_annealed_fit(codebook, data):
    annealing, net = writer(codebook), model()
    net.fit(mosaic_dataset(annealing, *data), epochs=1, verbose=0, callbacks=[annealing])
    with pytest.raises(ValueError, match="AGD is training outside its annealing schedule"):
        net.fit(*data, epochs=1, verbose=0)


class Interrupt(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if batch == 1:
            raise KeyboardInterrupt


def test_agd_fit_without_the_callback_after_an_interrupted_annealed_fit(codebook, data):
    # No `on_train_end` runs after an exception: the next `fit` reuses the traced step.
    annealing, net = writer(codebook), model()
    with pytest.raises(KeyboardInterrupt):
        net.fit(
            mosaic_dataset(annealing, *data),
            epochs=2,
            verbose=0,
            callbacks=[annealing, Interrupt()],
        )
    with pytest.raises(ValueError, match="AGD is training outside its annealing schedule"):
        net.fit(*data, epochs=1, verbose=0)
    # A new callback picks up where the interrupted epoch (step 1, one batch done) stopped.
    again = writer(codebook)
    history = net.fit(mosaic_dataset(again, *data), epochs=2, verbose=0, callbacks=[again])
    assert history.history["annealing_step"] == [1, 2]


def test_pipeline_without_its_callback(codebook, data):
    annealing = writer(codebook)
    with pytest.raises(tf.errors.InvalidArgumentError, match="without its `Annealing` callback"):
        model(keras.optimizers.SGD(0.05)).fit(mosaic_dataset(annealing, *data), verbose=0)


def test_reading_the_pipeline_outside_fit_gives_one_preview_batch(codebook, data):
    iterator = iter(mosaic_dataset(writer(codebook), *data))
    x, y, w = next(iterator)
    assert x.shape == (128, 64) and y.shape == (128,) and w.shape == (128,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one preview batch"):
        next(iterator)


def test_callback_without_its_pipeline(codebook, data):
    annealing = writer(codebook)
    mosaic_dataset(annealing, *data)  # Built, but fit gets arrays instead.
    with pytest.raises(ValueError, match="trained without reading keras_agd.mosaic_dataset"):
        model().fit(*data, batch_size=64, epochs=1, verbose=0, callbacks=[annealing])


def test_callback_that_no_pipeline_reads(codebook, data):
    with pytest.raises(ValueError, match="No keras_agd.mosaic_dataset"):
        model().fit(*data, epochs=1, verbose=0, callbacks=[writer(codebook)])


def test_callback_with_another_optimizer(codebook, data):
    annealing = writer(codebook)
    dataset = mosaic_dataset(annealing, *data)
    with pytest.raises(ValueError, match="needs the model compiled with keras_agd.AGD"):
        model(keras.optimizers.SGD(0.05)).fit(dataset, verbose=0, callbacks=[annealing])


def test_steps_per_epoch(codebook, data):
    annealing = writer(codebook)
    dataset = mosaic_dataset(annealing, *data)
    with pytest.raises(ValueError, match="`steps_per_epoch` cannot be used"):
        model().fit(dataset, steps_per_epoch=3, verbose=0, callbacks=[annealing])


def test_a_tf_data_dataset_as_x(codebook, data):
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(32)
    with pytest.raises(TypeError, match="pass it as `regular_dataset=`"):
        mosaic_dataset(writer(codebook), dataset)


def test_a_regular_dataset_of_unknown_length(codebook, data):
    users = tf.data.Dataset.from_tensor_slices(data).filter(lambda x, y: y >= 0).batch(32)
    with pytest.raises(ValueError, match="known, finite number of batches"):
        mosaic_dataset(writer(codebook), *data, regular_dataset=users)


def test_an_augment_with_the_wrong_signature(codebook, data):
    with pytest.raises(TypeError, match="`augment` must be a function"):
        mosaic_dataset(writer(codebook), *data, augment=lambda x: x)


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda d: {**d, "x": d["x"] * 2}, ValueError, "different training data"),
        (lambda d: {**d, "y": d["y"][:-1]}, ValueError, "same length"),
        (lambda d: {**d, "augment": 3}, TypeError, "`augment` must be callable"),
        (lambda d: {**d, "annealing": AGD()}, TypeError, "must be the keras_agd.Annealing"),
        (lambda d: {**d, "y": None}, ValueError, "needs class labels"),
    ],
)
def test_bad_pipeline_arguments(codebook, data, change, error, message):
    x, y = data
    arguments = {"annealing": writer(codebook), "x": x, "y": y}
    with pytest.raises(error, match=message):
        mosaic_dataset(**change(arguments))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"schedule": 7.5}, TypeError, "AnnealingSchedule"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be an integer >= 1"),
        ({"mosaic_batch_size": -1}, ValueError, "`mosaic_batch_size`"),
        ({"mode": "random"}, ValueError, "`mode` must be one of"),
        ({"criterion": "median"}, ValueError, "`criterion`"),
        ({"seed": 1.5}, ValueError, "`seed` must be an integer"),
        ({"pad_batches": "no"}, ValueError, "`pad_batches` must be True or False"),
        ({"batch_size": np.float32(64)}, ValueError, "`batch_size` must be an integer"),
        ({"codebook": HierarchicalCodebook()}, ValueError, "must be a fitted"),
        ({"mosaic_batches": 0}, ValueError, "`mosaic_batches` must be an integer >= 1"),
        ({"mosaic_batches": 2.5}, ValueError, "`mosaic_batches` must be an integer"),
        (
            {"mosaic_batches": 4, "mode": "per_sample"},
            ValueError,
            "`mosaic_batches` cannot be used with mode='per_sample'",
        ),
    ],
)
def test_bad_callback_arguments(codebook, kwargs, error, message):
    arguments = {"codebook": codebook, "schedule": schedules.from_codebook(codebook, 2), **kwargs}
    with pytest.raises(error, match=message):
        Annealing(**arguments)


class _Steps(schedules.AnnealingSchedule):
    """A custom schedule giving the listed ε, then the last one."""

    def __init__(self, epsilons):
        self.epsilons = epsilons

    def __call__(self, step):
        return self.epsilons[min(int(step), len(self.epsilons) - 1)]

    def get_config(self):
        return {"epsilons": self.epsilons}


@pytest.mark.parametrize(
    "epsilons, step",
    [
        ([1.0, 2.0], 1),  # Coarse-ward.
        ([1.0, 0.5, 0.0, 0.5], 3),  # Back to codewords after the mosaic phase ended.
    ],
)
def test_a_schedule_whose_epsilon_increases(codebook, data, epsilons, step):
    annealing = Annealing(codebook, _Steps(epsilons), batch_size=64, mosaic_batch_size=128)
    message = f"_Steps gave ε=.* at step {step}, above ε=.* at step {step - 1}: ε must never"
    with pytest.raises(ValueError, match=message):
        model().fit(mosaic_dataset(annealing, *data), epochs=5, verbose=0, callbacks=[annealing])


@pytest.mark.parametrize("epsilon", [float("nan"), -1.0, "abc"])
def test_a_schedule_with_a_bad_first_epsilon_fails_at_construction(codebook, epsilon):
    with pytest.raises(ValueError, match="The annealing schedule _Steps"):
        Annealing(codebook, _Steps([epsilon]))


def test_a_schedule_that_turns_nan_later(codebook, data):
    annealing = Annealing(codebook, _Steps([1.0, float("nan")]), batch_size=64)
    with pytest.raises(ValueError, match=r"_Steps gave ε=nan at step 1; ε must be >= 0"):
        model().fit(mosaic_dataset(annealing, *data), epochs=3, verbose=0, callbacks=[annealing])
