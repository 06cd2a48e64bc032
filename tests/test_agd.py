"""The AGD optimizer: its rate as a function of the step, its config, and its use in Keras."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import keras_agd
from keras_agd import AGD, Curriculum, CurriculumLogger, HierarchicalCodebook, LayerAdaptive

pytestmark = pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


@pytest.fixture(scope="module")
def curriculum(digits):
    codebook = HierarchicalCodebook(branching=3, random_state=0)
    return Curriculum(
        *digits, schedule=3, codebook=codebook, batch_size=32, mosaic_batch_size=128, seed=1
    )


def at_step(optimizer, step):
    """The optimizer's learning rate with its step counter at `step`."""
    optimizer.iterations.assign(step)
    return float(optimizer.learning_rate)


def one_step(optimizer, variable, gradient=(0.5, -1.0)):
    optimizer.apply([np.array(gradient, np.float32)], [variable])
    return variable.numpy()


def make_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(16, "tanh"), keras.layers.Dense(10)]
    )


def read(dataset):
    return [tuple(tensor.numpy() for tensor in batch) for batch in dataset]


# --- The rate of each step.


def test_one_step_uses_the_mosaic_rate_then_the_regular_one(curriculum):
    optimizer = AGD(curriculum, learning_rate=0.1, mosaic_learning_rate=0.8)
    variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    assert optimizer.phase == "mosaic" and optimizer.mosaic_steps == curriculum.mosaic_steps
    np.testing.assert_allclose(one_step(optimizer, variable), [0.6, 2.8], rtol=1e-6)
    assert at_step(optimizer, curriculum.mosaic_steps - 1) == pytest.approx(0.8)
    assert at_step(optimizer, curriculum.mosaic_steps) == pytest.approx(0.1)
    assert optimizer.phase == "regular"
    np.testing.assert_allclose(one_step(optimizer, variable), [0.55, 2.9], rtol=1e-6)
    assert int(optimizer.iterations) == curriculum.mosaic_steps + 1
    same = AGD(curriculum, learning_rate=0.1)  # No mosaic rate: the regular one throughout.
    assert at_step(same, 0) == at_step(same, curriculum.mosaic_steps) == pytest.approx(0.1)


def test_schedules_of_each_phase_count_from_the_phase_start(curriculum):
    schedules = keras.optimizers.schedules
    optimizer = AGD(
        curriculum,
        learning_rate=schedules.InverseTimeDecay(0.1, decay_steps=1, decay_rate=1.0),
        mosaic_learning_rate=schedules.ExponentialDecay(0.8, decay_steps=1, decay_rate=0.5),
    )
    mosaic = curriculum.mosaic_steps
    for step in (0, 3, mosaic - 1):
        assert at_step(optimizer, step) == pytest.approx(0.8 * 0.5**step, rel=1e-5)
    for step in (mosaic, mosaic + 4, mosaic + 100):
        assert at_step(optimizer, step) == pytest.approx(0.1 / (1 + step - mosaic), rel=1e-5)


def annealing_epoch(curriculum, step):
    """The paper's epoch: the mosaic level, then one per pass over the samples."""
    if step < curriculum.mosaic_steps:
        return curriculum.level_of(step)
    regular = (step - curriculum.mosaic_steps) // curriculum.steps_per_epoch
    return len(curriculum.levels) + regular


@pytest.mark.parametrize("decay_start_epoch", [0, 1, 4])
def test_epoch_decay_follows_the_annealing_epoch_of_the_step(curriculum, decay_start_epoch):
    optimizer = AGD(
        curriculum,
        learning_rate=1.0,
        mosaic_learning_rate=2.0,
        decay_start_epoch=decay_start_epoch,
        epoch_decay_rate=0.5,
    )
    mosaic, epoch = curriculum.mosaic_steps, curriculum.steps_per_epoch
    firsts = [level.first_step for level in curriculum.levels]
    steps = sorted({0, *firsts, *(s - 1 for s in firsts[1:]), mosaic - 1, mosaic})
    steps += [mosaic + epoch - 1, mosaic + epoch, mosaic + 3 * epoch + 5]
    for step in steps:
        base = 2.0 if step < mosaic else 1.0
        decays = max(annealing_epoch(curriculum, step) - decay_start_epoch, 0)
        assert at_step(optimizer, step) == pytest.approx(base * 0.5**decays, rel=1e-6), step


def test_momentum_matches_a_hand_computation(curriculum):
    optimizer = AGD(curriculum, learning_rate=0.1, momentum=0.9, nesterov=True)
    variable = keras.Variable(np.array([1.0], np.float32))
    velocity, value = 0.0, 1.0
    for gradient in [0.5, -0.25, 1.0]:
        optimizer.apply([np.array([gradient], np.float32)], [variable])
        velocity = 0.9 * velocity - 0.1 * gradient
        value = value + 0.9 * velocity - 0.1 * gradient  # Keras' Nesterov form.
    np.testing.assert_allclose(variable.numpy(), [value], rtol=1e-6)


def test_wraps_any_keras_optimizer(curriculum):
    optimizer = AGD(curriculum, learning_rate=0.01, optimizer=keras.optimizers.Adam())
    variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    np.testing.assert_allclose(one_step(optimizer, variable), [0.99, 2.01], rtol=1e-4)


def test_layer_adaptive_flag_wraps_the_update_rule(curriculum):
    optimizer = AGD(curriculum, learning_rate=0.1, layer_adaptive=True)
    assert isinstance(optimizer.inner_optimizer, LayerAdaptive)
    # One variable, so one group: the step is t · (1 + log(1 + 1/‖g‖)) · g.
    gradient = np.array([0.5, -1.0], np.float32)
    factor = 1 + np.log(1 + 1 / np.linalg.norm(gradient))
    expected = np.array([1.0, 2.0]) - 0.1 * factor * gradient
    variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    np.testing.assert_allclose(one_step(optimizer, variable), expected, rtol=1e-5)
    restored = AGD.from_config(optimizer.get_config())
    assert isinstance(restored.inner_optimizer, LayerAdaptive)
    assert not isinstance(restored.inner_optimizer.inner_optimizer, LayerAdaptive)


# --- Config and training, for each kind of update rule.

OPTIMIZERS = {
    "sgd": lambda c: AGD(c, learning_rate=0.05, mosaic_learning_rate=0.1, momentum=0.9),
    "adam": lambda c: AGD(c, learning_rate=0.01, optimizer=keras.optimizers.Adam()),
    "layer_adaptive": lambda c: AGD(c, learning_rate=0.1, layer_adaptive=True),
    "clipped": lambda c: AGD(c, learning_rate=0.05, momentum=0.9, global_clipnorm=1.0),
    "lars": lambda c: AGD(c, learning_rate=0.5, optimizer=keras_agd.LARS(trust_coefficient=0.02)),
    "layerwise_decay": lambda c: AGD(
        c,
        learning_rate=0.01,
        optimizer=keras_agd.PerLayerRates(keras.optimizers.Adam(), keras_agd.LayerwiseDecay(0.5)),
    ),
    "scheduled": lambda c: AGD(
        c,
        learning_rate=keras.optimizers.schedules.InverseTimeDecay(0.1, 100, 1.0),
        mosaic_learning_rate=keras.optimizers.schedules.CosineDecay(0.1, 50),
        momentum=0.5,
        decay_start_epoch=2,
    ),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_contract(name, curriculum, tmp_path):
    optimizer = OPTIMIZERS[name](curriculum)
    # Config round trip, directly and through Keras serialization.
    config = optimizer.get_config()
    assert AGD.from_config(config).get_config() == config
    for clone in (
        keras.optimizers.deserialize(keras.optimizers.serialize(optimizer)),
        keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer)),
    ):
        assert isinstance(clone, AGD) and clone.get_config() == config
    # The loss falls in fit, through both phases (with XLA for the wrapped update rule).
    model = make_model()
    model.compile(optimizer, LOSS, jit_compile=name == "layer_adaptive")
    mosaic = curriculum.mosaic_steps
    history = model.fit(
        curriculum.dataset(model, steps_per_epoch=mosaic),
        epochs=4,
        verbose=0,
        callbacks=[CurriculumLogger()],
    ).history
    assert history["mosaic_phase"] == [1.0, 0.0, 0.0, 0.0]
    assert history["loss"][-1] < min(history["loss"][1], 0.6 * np.log(10))  # Below chance.
    # Save and reload: weights and the optimizer's state survive, and training goes on.
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    loaded.fit(curriculum.dataset(loaded, steps_per_epoch=2), epochs=1, verbose=0)
    assert int(loaded.optimizer.iterations) == 4 * mosaic + 2


def test_config_keeps_the_curriculum_and_leaves_it_as_it_was(curriculum):
    before = curriculum.get_config()
    optimizer = AGD(curriculum, learning_rate=0.05)
    assert curriculum.get_config() == before
    assert optimizer.curriculum_identity == before
    restored = AGD.from_config(optimizer.get_config())
    assert restored.curriculum_identity == before and restored.mosaic_steps == (
        curriculum.mosaic_steps
    )
    # A model compiled with the restored optimizer takes the curriculum's stream.
    model = make_model()
    model.compile(restored, LOSS)
    assert len(read(curriculum.dataset(model, steps_per_epoch=2))) == 2


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"curriculum": None}, TypeError, "`curriculum` must be the keras_agd.Curriculum"),
        ({"curriculum": {"digest": 1}}, TypeError, "`curriculum` must be the keras_agd"),
        ({"optimizer": "adam"}, TypeError, "`optimizer` must be a `keras.optimizers.Optimizer`"),
        ({"optimizer": keras.optimizers.Adam(), "clipnorm": 1.0}, ValueError, "to the wrapped"),
        ({"learning_rate": -0.1}, ValueError, "`learning_rate` must be a finite float >= 0"),
        ({"learning_rate": float("nan")}, ValueError, "`learning_rate`"),
        ({"learning_rate": 1e39}, ValueError, "`learning_rate` must be a finite float >= 0"),
        ({"mosaic_learning_rate": float("inf")}, ValueError, "`mosaic_learning_rate`"),
        ({"mosaic_learning_rate": "fast"}, ValueError, "`mosaic_learning_rate`"),
        ({"momentum": float("nan")}, ValueError, "`momentum` must be in"),
        ({"momentum": 1.0}, ValueError, "`momentum` must be in"),
        ({"nesterov": "yes"}, ValueError, "`nesterov` must be True or False"),
        ({"layer_adaptive": 1}, ValueError, "`layer_adaptive` must be True or False"),
        ({"decay_start_epoch": -1}, ValueError, "`decay_start_epoch`"),
        ({"decay_start_epoch": 1.5}, ValueError, "`decay_start_epoch` must be an integer"),
        ({"epoch_decay_rate": 1.5}, ValueError, "`epoch_decay_rate`"),
        ({"epoch_decay_rate": 0.0}, ValueError, "`epoch_decay_rate`"),
        ({"nesterov_momentum": 0.9}, ValueError, "nesterov_momentum"),
        ({"loss_threshold": 0.5}, ValueError, "loss_threshold"),  # Removed: refused.
        ({"clipnorm": float("nan")}, ValueError, "`clipnorm` must be a finite number"),
        ({"weight_decay": float("inf")}, ValueError, "`weight_decay` must be a finite number"),
        ({"optimizer": keras.optimizers.Adam(), "momentum": 0.9}, ValueError, "`momentum`"),
    ],
)
def test_bad_arguments_raise(curriculum, kwargs, error, message):
    with pytest.raises(error, match=message):
        AGD(**{"curriculum": curriculum, **kwargs})


def test_an_agd_cannot_wrap_another(curriculum):
    with pytest.raises(ValueError, match="cannot be another AGD"):
        AGD(curriculum, optimizer=AGD(curriculum))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"momentum": 0},  # Keras' SGD itself takes only a Python float.
        {"momentum": np.float32(0.9), "learning_rate": np.float32(0.1)},
        {"decay_start_epoch": np.int64(3), "epoch_decay_rate": np.float32(0.5)},
    ],
)
def test_numbers_as_keras_accepts_them(curriculum, kwargs):
    config = AGD(curriculum, **kwargs).get_config()
    restored = AGD.from_config(config).get_config()
    assert (
        restored.pop("optimizer")["config"]["momentum"]
        == config.pop("optimizer")["config"]["momentum"]
    )
    assert restored == config


# --- The rate as Keras callbacks set it.


def test_the_learning_rate_setter_sets_the_regular_rate(curriculum):
    optimizer = AGD(curriculum, learning_rate=0.05, mosaic_learning_rate=0.2)
    optimizer.learning_rate = 0.01
    assert at_step(optimizer, curriculum.mosaic_steps) == pytest.approx(0.01)
    assert at_step(optimizer, 0) == pytest.approx(0.2)
    scheduled = AGD(curriculum, learning_rate=keras.optimizers.schedules.CosineDecay(0.1, 9))
    with pytest.raises(TypeError, match="cannot be set"):
        scheduled.learning_rate = 0.01


def test_reduce_lr_on_plateau_lowers_the_regular_rate(curriculum, digits):
    model = make_model()
    model.compile(AGD(curriculum, learning_rate=0.05, mosaic_learning_rate=0.2), LOSS)
    mosaic = curriculum.mosaic_steps
    model.fit(curriculum.dataset(model, steps_per_epoch=mosaic), epochs=1, verbose=0)
    # mode="max" on a falling loss: a "plateau" after every epoch but the first.
    plateau = keras.callbacks.ReduceLROnPlateau("loss", factor=0.5, patience=0, mode="max")
    history = model.fit(
        curriculum.dataset(model, steps_per_epoch=10), epochs=3, verbose=0, callbacks=[plateau]
    ).history
    # The callback logs the rate of each epoch, then halves it from the second epoch on.
    assert history["learning_rate"] == pytest.approx([0.05, 0.05, 0.025])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0125)
    assert at_step(model.optimizer, 0) == pytest.approx(0.2)  # The mosaic rate is its own.


# --- Any training loop: the rate follows the step counter alone.


def test_train_on_batch_and_a_custom_loop_step_like_fit(curriculum):
    mosaic, steps = curriculum.mosaic_steps, curriculum.mosaic_steps + 4

    def agd():
        return AGD(curriculum, learning_rate=0.05, mosaic_learning_rate=0.2, momentum=0.9)

    fitted = make_model()
    fitted.compile(agd(), LOSS)
    batches = read(curriculum.dataset(fitted, steps_per_epoch=steps))
    assert len(batches[mosaic - 1][0]) == 128 and len(batches[mosaic][0]) == 32
    fitted.fit(curriculum.dataset(fitted, steps_per_epoch=steps), epochs=1, verbose=0)

    on_batch = make_model()
    on_batch.compile(agd(), LOSS)
    for x, y, weights in batches:
        on_batch.train_on_batch(x, y, sample_weight=weights)

    looped, optimizer = make_model(), agd()
    for x, y, weights in batches:
        with tf.GradientTape() as tape:
            loss = LOSS(y, looped(x, training=True), sample_weight=weights)
        grads = tape.gradient(loss, looped.trainable_variables)
        optimizer.apply(grads, looped.trainable_variables)

    assert int(fitted.optimizer.iterations) == int(on_batch.optimizer.iterations) == steps
    assert int(optimizer.iterations) == steps
    for a, b, c in zip(
        fitted.get_weights(), on_batch.get_weights(), looped.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)  # The same traced step.
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)  # Eager, same maths.


def test_mixed_precision_keeps_the_phases(curriculum):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = make_model()
        model.compile(AGD(curriculum, 0.05, mosaic_learning_rate=0.2, momentum=0.9), LOSS)
        mosaic = curriculum.mosaic_steps
        history = model.fit(
            curriculum.dataset(model, steps_per_epoch=mosaic),
            epochs=2,
            verbose=0,
            callbacks=[CurriculumLogger()],
        ).history
        other = Curriculum(
            curriculum.source, codebook=curriculum.codebook, schedule=3, seed=2
        )  # Refused through the LossScaleOptimizer too.
        with pytest.raises(ValueError, match="other than the one the model's AGD"):
            other.dataset(model)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, AGD)
    assert history["mosaic_phase"] == [1.0, 0.0]
    assert history["learning_rate"] == pytest.approx([0.2, 0.05])
    assert history["step"] == [mosaic, 2 * mosaic]
    assert np.isfinite(history["loss"]).all() and history["loss"][1] < history["loss"][0]


# --- The end of a fit.


def test_a_fit_that_stops_inside_the_mosaic_phase_warns(curriculum):
    model = make_model()
    model.compile(AGD(curriculum, 0.05), LOSS)
    mosaic = curriculum.mosaic_steps
    with pytest.warns(UserWarning, match="inside AGD's mosaic phase") as record:
        model.fit(curriculum.dataset(model, steps_per_epoch=5), epochs=1, verbose=0)
    message = str(next(w.message for w in record if "mosaic phase" in str(w.message)))
    assert "step 5," in message and f"ends at step {mosaic})" in message
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(curriculum.dataset(model, steps_per_epoch=mosaic - 5), epochs=1, verbose=0)
        model.fit(curriculum.dataset(model, steps_per_epoch=3), epochs=1, verbose=0)
    assert not [w for w in caught if "mosaic phase" in str(w.message)]
    assert model.optimizer.phase == "regular"
