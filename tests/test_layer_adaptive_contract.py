"""The shared contract, for every supported wrapped optimizer: config round trip, loss
decreases in `fit`, save and reload, `jit_compile` parity."""

import keras
import numpy as np
import pytest

from keras_agd import LayerAdaptive

# Learning rates small enough for 3 * 8 steps on the toy problem below to be stable with
# factors of up to about 4.
OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.02),
    "sgd_momentum": lambda: keras.optimizers.SGD(0.01, momentum=0.9),
    "sgd_nesterov": lambda: keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
    "adagrad": lambda: keras.optimizers.Adagrad(0.05),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.003),
    "adam": lambda: keras.optimizers.Adam(0.005),
    "adamw": lambda: keras.optimizers.AdamW(0.005, weight_decay=0.01),
    "nadam": lambda: keras.optimizers.Nadam(0.005),
    "adamax": lambda: keras.optimizers.Adamax(0.01),
    "lion": lambda: keras.optimizers.Lion(0.001),
    "adam_schedule": lambda: keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(0.005, decay_steps=100)
    ),
}


def make_model():
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6)).astype(np.float32)
    y = np.sin(x[:, :1]) + 0.5 * x[:, 1:2] * x[:, 2:3]
    return x, y.astype(np.float32)


def fit(name, jit_compile):
    keras.utils.set_random_seed(0)
    model = make_model()
    model.compile(optimizer=LayerAdaptive(OPTIMIZERS[name]()), loss="mse", jit_compile=jit_compile)
    x, y = data()
    initial_loss = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    return model, initial_loss


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_config_round_trip(name):
    optimizer = LayerAdaptive(OPTIMIZERS[name](), exclude=["bias"], max_factor=8.0)
    config = optimizer.get_config()
    assert LayerAdaptive.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer))
    assert isinstance(restored, LayerAdaptive)
    assert type(restored.inner_optimizer) is type(optimizer.inner_optimizer)
    assert restored.get_config() == config


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fit_save_reload_and_jit_parity(name, tmp_path):
    model, initial_loss = fit(name, jit_compile=False)
    x, y = data()
    assert model.evaluate(x, y, verbose=0) < 0.9 * initial_loss
    factors = model.optimizer.layer_factors
    assert len(factors) == 3 and all(np.isfinite(f) and f > 1 for f in factors.values())

    jitted, _ = fit(name, jit_compile=True)
    for a, b in zip(model.get_weights(), jitted.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)

    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(b.numpy(), a.numpy())
    model.train_on_batch(x[:16], y[:16])
    loaded.train_on_batch(x[:16], y[:16])
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
