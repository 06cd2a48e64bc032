"""Canary tests: each Keras private API that keras_agd uses still exists and still works.

If one of these fails after a Keras upgrade, keras_agd/_keras_adapter.py needs a fix.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_agd import _keras_adapter


def test_the_fit_loop_is_found_and_sets_each_epochs_length():
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.loop = _keras_adapter.FitLoop.find()
            assert self.loop is not None and self.loop.steps_per_epoch is None
            assert self.loop.dataset.options() == data.repeat().options()

        def on_epoch_begin(self, epoch, logs=None):
            self.loop.set_epoch_length(epoch + 1)  # 1 batch, then 2, then 3.

        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    x = np.zeros((80, 2), np.float32)
    # Unknown cardinality: Keras would fix the length after the first epoch by itself.
    data = tf.data.Dataset.from_tensor_slices((x, x[:, 0])).filter(lambda a, b: True).batch(8)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(data.repeat(), epochs=3, verbose=0, callbacks=[Probe()])
    assert seen == [0, 0, 1, 0, 1, 2]


def test_the_fit_loop_is_not_found_outside_fit():
    assert _keras_adapter.FitLoop.find() is None


def test_the_progress_bar_total_follows_the_epoch_length():
    progbar = keras.callbacks.ProgbarLogger()

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            _keras_adapter.FitLoop.find().set_epoch_length(2)

        def on_epoch_end(self, epoch, logs=None):
            assert progbar.target == 2 and self.params["steps"] == 2

    x = np.zeros((80, 2), np.float32)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    data = tf.data.Dataset.from_tensor_slices((x, x[:, 0])).batch(8).repeat()
    model.fit(data, epochs=1, steps_per_epoch=None, verbose=0, callbacks=[Probe(), progbar])


def test_the_update_step_hook_and_variable_keys():
    optimizer = keras.optimizers.SGD(0.1)
    variable = keras.Variable(np.ones(2, np.float32))
    optimizer.build([variable])
    assert isinstance(_keras_adapter.variable_key(optimizer, variable), str | int)
    calls = []
    original = getattr(optimizer, _keras_adapter.UPDATE_STEP)

    def update_step(distribution, grads_and_vars, learning_rate):
        calls.append(learning_rate)
        return original(distribution, grads_and_vars, learning_rate)

    _keras_adapter.hook_update_step(optimizer, update_step)
    assert _keras_adapter.is_update_step_hooked(optimizer)
    optimizer.apply([np.ones(2, np.float32)], [variable])
    assert calls and np.allclose(variable.numpy(), 0.9)


def test_forgetting_the_train_function_makes_fit_trace_again():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.zeros((8, 2), np.float32)
    model.fit(x, x[:, 0], verbose=0)
    first = model.train_function
    _keras_adapter.forget_train_function(model)
    model.fit(x, x[:, 0], verbose=0)
    assert model.train_function is not first


def test_the_multi_worker_fit_workaround_builds_and_trains():
    # Under one worker Keras would not need it; its pieces (the symbolic build from a
    # batch, the steps' logs with a leading axis) must still work with this Keras.
    x = np.arange(32, dtype=np.float32).reshape(16, 2) / 32
    model = keras.Sequential([keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    _keras_adapter.enable_multi_worker_fit(model)
    assert _keras_adapter.is_multi_worker_fit_enabled(model)
    data = tf.data.Dataset.from_tensor_slices((x, x[:, 0])).batch(8)
    history = model.fit(data, epochs=2, verbose=0)
    assert model.built and history.history["loss"][1] < history.history["loss"][0]
    assert np.shape(model.test_step((x, x[:, 0]))["loss"]) == (1,)


def test_keras_still_fails_a_multi_worker_fit_without_the_workaround():
    # When this fails, Keras has fixed its multi-worker `fit`: drop the workaround.
    import inspect

    from keras.src.backend.tensorflow import trainer

    assert 'strategy.reduce("MEAN", v, axis=0)' in inspect.getsource(trainer.reduce_per_replica)
    assert "self.distribute_strategy.reduce(" in inspect.getsource(
        trainer.TensorFlowTrainer._maybe_symbolic_build
    )
