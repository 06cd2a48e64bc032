"""Canary tests: each Keras private API that keras_agd uses still exists and still works.

If one of these fails after a Keras upgrade, keras_agd/_keras_adapter.py needs a fix.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_agd import _keras_adapter

pytestmark = pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")


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
