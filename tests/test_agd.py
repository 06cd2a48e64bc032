import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from keras_agd import AGD, Annealing, HierarchicalCodebook, mosaic_dataset, schedules


def annealed(optimizer):
    """Marks `optimizer` as driven by an Annealing callback, as `fit` does."""
    optimizer.annealing_state.writer = "test"
    return optimizer


def one_step(optimizer, variable=None, gradient=(0.5, -1.0)):
    if variable is None:
        variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    annealed(optimizer).apply([np.array(gradient, np.float32)], [variable])
    return variable.numpy()


def test_one_step_uses_the_mosaic_learning_rate_then_the_regular_one():
    optimizer = AGD(learning_rate=0.1, mosaic_learning_rate=0.8)
    variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    np.testing.assert_allclose(one_step(optimizer, variable), [0.6, 2.8], rtol=1e-6)
    optimizer.annealing_state.mosaic.assign(0)
    assert optimizer.phase == "regular"
    np.testing.assert_allclose(one_step(optimizer, variable), [0.55, 2.9], rtol=1e-6)


def test_a_step_outside_annealing_is_refused():
    optimizer = AGD(learning_rate=0.1)
    variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    with pytest.raises(ValueError, match="outside its annealing schedule"):
        optimizer.apply([np.array([0.5, -1.0], np.float32)], [variable])


def test_momentum_matches_a_hand_computation():
    optimizer = annealed(AGD(learning_rate=0.1, momentum=0.9, nesterov=True))
    variable = keras.Variable(np.array([1.0], np.float32))
    velocity, value = 0.0, 1.0
    for gradient in [0.5, -0.25, 1.0]:
        optimizer.apply([np.array([gradient], np.float32)], [variable])
        velocity = 0.9 * velocity - 0.1 * gradient
        value = value + 0.9 * velocity - 0.1 * gradient  # Keras' Nesterov form.
    np.testing.assert_allclose(variable.numpy(), [value], rtol=1e-6)


def test_epoch_decay_rule():
    optimizer = AGD(learning_rate=1.0, decay_start_epoch=2, epoch_decay_rate=0.8)
    rates = []
    for step in range(5):
        optimizer.annealing_state.step.assign(step)
        rates.append(float(optimizer.learning_rate))
    np.testing.assert_allclose(rates, [1.0, 1.0, 1.0, 0.8, 0.64], rtol=1e-6)


def test_loss_threshold_rule_starts_inverse_time_decay():
    optimizer = AGD(learning_rate=1.0, loss_threshold=0.5, loss_decay_steps=10)
    optimizer.loss_metric = keras.metrics.Mean(name="loss")
    variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    optimizer.loss_metric.update_state(2.0)
    one_step(optimizer, variable)
    assert float(optimizer.learning_rate) == 1.0  # Loss above the threshold: no decay yet.
    optimizer.loss_metric.reset_state()
    optimizer.loss_metric.update_state(0.1)  # Crosses at iteration 1.
    for _ in range(5):
        one_step(optimizer, variable)
    assert float(optimizer.learning_rate) == pytest.approx(10 / (10 + 5))


def test_wraps_any_keras_optimizer():
    optimizer = AGD(learning_rate=0.01, optimizer=keras.optimizers.Adam())
    np.testing.assert_allclose(one_step(optimizer), [1.0 - 0.01, 2.0 + 0.01], rtol=1e-4)


def test_layer_adaptive_flag_wraps_the_update_rule():
    from keras_agd import LayerAdaptive

    optimizer = AGD(learning_rate=0.1, layer_adaptive=True)
    assert isinstance(optimizer.inner_optimizer, LayerAdaptive)
    # One variable, so one group: the step is t · (1 + log(1 + 1/‖g‖)) · g.
    gradient = np.array([0.5, -1.0], np.float32)
    factor = 1 + np.log(1 + 1 / np.linalg.norm(gradient))
    expected = np.array([1.0, 2.0]) - 0.1 * factor * gradient
    np.testing.assert_allclose(one_step(optimizer), expected, rtol=1e-5)
    restored = AGD.from_config(optimizer.get_config())
    assert isinstance(restored.inner_optimizer, LayerAdaptive)
    assert not isinstance(restored.inner_optimizer.inner_optimizer, LayerAdaptive)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return x, y, HierarchicalCodebook(branching=4, random_state=0).fit(x, y)


def make_model():
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(16, "tanh"), keras.layers.Dense(10)]
    )


OPTIMIZERS = {
    "sgd": lambda: AGD(learning_rate=0.05, mosaic_learning_rate=0.1, momentum=0.9),
    "adam": lambda: AGD(learning_rate=0.01, optimizer=keras.optimizers.Adam()),
    "layer_adaptive": lambda: AGD(learning_rate=0.05, layer_adaptive=True),
    "clipped": lambda: AGD(learning_rate=0.05, momentum=0.9, global_clipnorm=1.0),
    "scheduled": lambda: AGD(
        learning_rate=keras.optimizers.schedules.InverseTimeDecay(0.05, 100, 1.0),
        mosaic_learning_rate=keras.optimizers.schedules.CosineDecay(0.1, 50),
        momentum=0.5,
    ),
}


def fit(model, digits, epochs):
    x, y, codebook = digits
    annealing = Annealing(codebook, schedules.from_codebook(codebook, 2), batch_size=32, seed=0)
    return model.fit(
        mosaic_dataset(annealing, x, y), epochs=epochs, verbose=0, callbacks=[annealing]
    )


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_contract(name, digits, tmp_path):
    optimizer = OPTIMIZERS[name]()
    # Config round trip, directly and through Keras serialization.
    restored = AGD.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, AGD) and clone.get_config() == optimizer.get_config()
    # Loss decreases in fit, through both phases.
    model = make_model()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss, jit_compile=True)
    history = fit(model, digits, epochs=4).history
    assert history["mosaic_phase"] == [1.0, 1.0, 0.0, 0.0]
    assert history["loss"][-1] < min(history["loss"][2], 0.6 * np.log(10))  # Below chance.
    # Save and reload: weights, optimizer state and the annealing state survive.
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert fit(loaded, digits, epochs=1).history["annealing_step"] == [4]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"optimizer": "adam"}, TypeError, "must be a Keras optimizer"),
        ({"optimizer": keras.optimizers.Adam(), "clipnorm": 1.0}, ValueError, "to the wrapped"),
        ({"learning_rate": -0.1}, ValueError, "`learning_rate` must be a finite float >= 0"),
        ({"learning_rate": float("nan")}, ValueError, "`learning_rate`"),
        ({"mosaic_learning_rate": float("inf")}, ValueError, "`mosaic_learning_rate`"),
        ({"mosaic_learning_rate": "fast"}, ValueError, "`mosaic_learning_rate`"),
        ({"momentum": float("nan")}, ValueError, "`momentum` must be in"),
        ({"loss_threshold": "abc"}, ValueError, "`loss_threshold`"),
        ({"decay_start_epoch": -1}, ValueError, "`decay_start_epoch`"),
        ({"epoch_decay_rate": 1.5}, ValueError, "`epoch_decay_rate`"),
        ({"loss_decay_steps": 0}, ValueError, "`loss_decay_steps`"),
        ({"nesterov_momentum": 0.9}, ValueError, "nesterov_momentum"),
        # Issue 10: non-finite and wrongly typed hyperparameters, options that would be lost.
        ({"learning_rate": 1e39}, ValueError, "`learning_rate` must be a finite float >= 0"),
        ({"momentum": 1.0}, ValueError, "`momentum` must be in"),
        ({"nesterov": "yes"}, ValueError, "`nesterov` must be True or False"),
        ({"layer_adaptive": 1}, ValueError, "`layer_adaptive` must be True or False"),
        ({"decay_start_epoch": 1.5}, ValueError, "`decay_start_epoch` must be an integer"),
        ({"loss_decay_steps": float("inf")}, ValueError, "`loss_decay_steps`"),
        ({"clipnorm": float("nan")}, ValueError, "`clipnorm` must be a finite number"),
        ({"weight_decay": float("inf")}, ValueError, "`weight_decay` must be a finite number"),
        ({"optimizer": keras.optimizers.Adam(), "momentum": 0.9}, ValueError, "`momentum`"),
    ],
)
def test_bad_arguments_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        AGD(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"momentum": 0},  # Keras' SGD itself takes only a Python float.
        {"momentum": np.float32(0.9), "learning_rate": np.float32(0.1)},
        {"decay_start_epoch": np.int64(3), "loss_decay_steps": np.int64(100)},
        {"loss_threshold": np.float64(0.17), "epoch_decay_rate": np.float32(0.5)},
    ],
)
def test_numbers_as_keras_accepts_them(kwargs):
    config = AGD(**kwargs).get_config()
    restored = AGD.from_config(config).get_config()
    assert (
        restored.pop("optimizer")["config"]["momentum"]
        == config.pop("optimizer")["config"]["momentum"]
    )
    assert restored == config
