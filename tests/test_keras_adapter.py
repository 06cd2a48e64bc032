"""Canary tests: each Keras private API that keras_agd uses still exists and still works.

If one of these fails after a Keras upgrade, keras_agd/_keras_adapter.py needs a fix.
"""

import os

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


def test_variable_indices_and_weight_decay_exclusion():
    optimizer = keras.optimizers.AdamW(0.1, weight_decay=0.1)
    kernel = keras.Variable(np.ones((2, 2), np.float32), name="kernel")
    bias = keras.Variable(np.ones(2, np.float32), name="bias")
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    optimizer.build([kernel, bias])
    assert [_keras_adapter.variable_index(optimizer, v) for v in (kernel, bias)] == [0, 1]
    # Under tf.distribute and in the TF optimizer's update, `update_step` receives the
    # tf.Variable behind the keras.Variable: the index must be found from it too.
    assert _keras_adapter.variable_index(optimizer, bias.value) == 1
    assert _keras_adapter.uses_weight_decay(optimizer, kernel)
    assert not _keras_adapter.uses_weight_decay(optimizer, bias)


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


def _backed_up_model(backup_dir, epochs):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.arange(16, dtype=np.float32).reshape(8, 2) / 16
    backup = _keras_adapter.AtomicBackupAndRestore(
        str(backup_dir), save_freq=1, double_checkpoint=True, delete_checkpoint=False
    )
    model.fit(x, x[:, 0], batch_size=4, epochs=epochs, verbose=0, callbacks=[backup])
    return model, backup


def test_backup_and_restore_keeps_its_private_file_layout(tmp_path, monkeypatch):
    # The atomic backup overrides these; Keras' restore must still read its files.
    callback = keras.callbacks.BackupAndRestore(str(tmp_path))
    for name in (*_keras_adapter.BACKUP_METHODS, *_keras_adapter.BACKUP_PATHS):
        assert hasattr(callback, name), name
    # Keras must still write and read every backup through these two methods: were it
    # to call others, the atomic writes would be bypassed without a word.
    calls = []
    for name in _keras_adapter.BACKUP_METHODS:
        original = getattr(_keras_adapter.AtomicBackupAndRestore, name)

        def counted(self, original=original, name=name):
            calls.append(name)
            return original(self)

        monkeypatch.setattr(_keras_adapter.AtomicBackupAndRestore, name, counted)
    model, backup = _backed_up_model(tmp_path, epochs=2)
    monkeypatch.undo()
    assert calls == ["_load_model"] + ["_save_model"] * 4  # 2 epochs of 2 batches.
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(getattr(backup, name)) for name in _keras_adapter.BACKUP_PATHS
    )
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plain.compile(keras.optimizers.SGD(0.1), "mse")
    restore = keras.callbacks.BackupAndRestore(str(tmp_path))
    restore.set_model(plain)
    restore.on_train_begin()
    assert int(plain.optimizer.iterations) == int(model.optimizer.iterations) == 4


@pytest.mark.parametrize("torn", ["weights", "metadata"])
def test_a_torn_latest_backup_restores_the_previous_one(tmp_path, torn):
    model, backup = _backed_up_model(tmp_path, epochs=2)
    path = backup._weights_path if torn == "weights" else backup._training_metadata_path
    with open(path, "r+b") as file:  # As a kill in the middle of an in-place write leaves it.
        file.truncate(os.path.getsize(path) // 2)
    again = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    again.compile(keras.optimizers.SGD(0.1), "mse")
    restore = _keras_adapter.AtomicBackupAndRestore(str(tmp_path), double_checkpoint=True)
    restore.set_model(again)
    with pytest.warns(UserWarning, match="restoring the previous one"):
        restore.on_train_begin()
    assert int(again.optimizer.iterations) == 3  # The backup before the last step's.
