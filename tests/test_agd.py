import keras
import numpy as np
import pytest

from keras_agd import AGD, schedules

SCHEDULE = schedules.ExponentialAnnealing(4.0, 0.5, final_epsilon=1.0)


def one_step(optimizer, variable=None, gradient=(0.5, -1.0)):
    if variable is None:
        variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    optimizer.apply([np.array(gradient, np.float32)], [variable])
    return variable.numpy()


def test_one_step_uses_the_mosaic_learning_rate_then_the_regular_one():
    optimizer = AGD(learning_rate=0.1, mosaic_learning_rate=0.8, schedule=SCHEDULE)
    variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    np.testing.assert_allclose(one_step(optimizer, variable), [0.6, 2.8], rtol=1e-6)
    optimizer.record_frontier(False, 10)
    assert optimizer.phase == "regular" and optimizer.frontier_size == 10
    np.testing.assert_allclose(one_step(optimizer, variable), [0.55, 2.9], rtol=1e-6)


def test_momentum_matches_a_hand_computation():
    optimizer = AGD(learning_rate=0.1, momentum=0.9, nesterov=True, schedule=SCHEDULE)
    variable = keras.Variable(np.array([1.0], np.float32))
    velocity, value = 0.0, 1.0
    for gradient in [0.5, -0.25, 1.0]:
        optimizer.apply([np.array([gradient], np.float32)], [variable])
        velocity = 0.9 * velocity - 0.1 * gradient
        value = value + 0.9 * velocity - 0.1 * gradient  # Keras' Nesterov form.
    np.testing.assert_allclose(variable.numpy(), [value], rtol=1e-6)


def test_epoch_decay_rule():
    optimizer = AGD(learning_rate=1.0, schedule=SCHEDULE, decay_start_epoch=2, epoch_decay_rate=0.8)
    rates = []
    for step in range(5):
        optimizer._annealing_step.assign(step)
        rates.append(float(optimizer.learning_rate))
    np.testing.assert_allclose(rates, [1.0, 1.0, 1.0, 0.8, 0.64], rtol=1e-6)


def test_loss_threshold_rule_starts_inverse_time_decay():
    optimizer = AGD(learning_rate=1.0, schedule=SCHEDULE, loss_threshold=0.5, loss_decay_steps=10)
    variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    optimizer.scale_loss(2.0)
    one_step(optimizer, variable)
    assert float(optimizer.learning_rate) == 1.0  # Loss above the threshold: no decay yet.
    optimizer._loss_average.assign(float("inf"))
    optimizer.scale_loss(0.1)  # Crosses at iteration 1.
    for _ in range(5):
        one_step(optimizer, variable)
    assert float(optimizer.learning_rate) == pytest.approx(10 / (10 + 5))


def test_wraps_any_keras_optimizer():
    optimizer = AGD(learning_rate=0.01, optimizer=keras.optimizers.Adam(), schedule=SCHEDULE)
    np.testing.assert_allclose(one_step(optimizer), [1.0 - 0.01, 2.0 + 0.01], rtol=1e-4)


def test_layer_adaptive_flag_wraps_the_update_rule():
    from keras_agd import LayerAdaptive

    optimizer = AGD(learning_rate=0.1, layer_adaptive=True, schedule=SCHEDULE)
    assert isinstance(optimizer.inner_optimizer, LayerAdaptive)
    # One variable, so one group: the step is t · (1 + log(1 + 1/‖g‖)) · g.
    gradient = np.array([0.5, -1.0], np.float32)
    factor = 1 + np.log(1 + 1 / np.linalg.norm(gradient))
    expected = np.array([1.0, 2.0]) - 0.1 * factor * gradient
    np.testing.assert_allclose(one_step(optimizer), expected, rtol=1e-5)
    restored = AGD.from_config(optimizer.get_config())
    assert isinstance(restored.inner_optimizer, LayerAdaptive)
    assert not isinstance(restored.inner_optimizer.inner_optimizer, LayerAdaptive)


def make_model():
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(1)]
    )


OPTIMIZERS = {
    "sgd": lambda: AGD(learning_rate=0.05, momentum=0.9, schedule=SCHEDULE),
    "adam": lambda: AGD(learning_rate=0.01, optimizer=keras.optimizers.Adam(), schedule=SCHEDULE),
    "layer_adaptive": lambda: AGD(learning_rate=0.05, layer_adaptive=True, schedule=SCHEDULE),
    "clipped": lambda: AGD(learning_rate=0.05, schedule=SCHEDULE, global_clipnorm=1.0),
    "scheduled": lambda: AGD(
        learning_rate=keras.optimizers.schedules.InverseTimeDecay(0.05, 100, 1.0),
        schedule=schedules.LinearAnnealing(3.0, 1.0, 1.0),
    ),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_contract(name, tmp_path):
    optimizer = OPTIMIZERS[name]()
    # Config round trip, directly and through Keras serialization.
    restored = AGD.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, AGD) and clone.get_config() == optimizer.get_config()
    # Loss decreases in fit (plain arrays: AGD outside the mosaic pipeline is its mosaic rate).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 0.0], np.float32)
    model = make_model()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=True)
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0]
    # Save and reload: weights and optimizer state survive, training continues.
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    loaded.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"optimizer": "adam"}, TypeError, "must be a Keras optimizer"),
        ({"optimizer": keras.optimizers.Adam(), "clipnorm": 1.0}, ValueError, "to the wrapped"),
        ({"schedule": 7.5}, TypeError, "AnnealingSchedule"),
        ({"learning_rate": -0.1}, ValueError, "learning rate must be a float >= 0"),
        ({"mosaic_learning_rate": "fast"}, ValueError, "mosaic learning rate"),
        ({"decay_start_epoch": -1}, ValueError, "`decay_start_epoch`"),
        ({"epoch_decay_rate": 1.5}, ValueError, "`epoch_decay_rate`"),
        ({"loss_decay_steps": 0}, ValueError, "`loss_decay_steps`"),
        ({"nesterov_momentum": 0.9}, ValueError, "nesterov_momentum"),
    ],
)
def test_bad_arguments_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        AGD(**kwargs)
