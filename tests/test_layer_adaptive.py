"""LayerAdaptive: the factor of eq. (9), one step of each wrapped optimizer by hand, guards."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_agd.layer_adaptive import LayerAdaptive, LayerRates, layer_factors, variable_groups

EPSILON = 1e-7


def factor_np(*layer_grads, epsilon=EPSILON):
    """Eq. (9): the factor t_l / t from all gradients of one layer."""
    norm = np.sqrt(sum(np.sum(np.square(np.asarray(g, np.float64))) for g in layer_grads))
    return 1.0 + np.log(1.0 + 1.0 / max(norm, epsilon))


def two_layer_model():
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, name="hidden"), keras.layers.Dense(2, name="out")]
    )


def fixed_grads(seed):
    """Gradients of [hidden kernel, hidden bias, out kernel, out bias]: the shallow layer's are
    about 100 times smaller, as with vanishing gradients."""
    rng = np.random.default_rng(seed)
    shapes, scales = [(3, 4), (4,), (4, 2), (2,)], [0.01, 0.01, 1.0, 1.0]
    return [
        (rng.normal(size=s) * c).astype(np.float32) for s, c in zip(shapes, scales, strict=True)
    ]


def run_steps(optimizer, steps=2):
    model = two_layer_model()
    weights = [w.astype(np.float64) for w in model.get_weights()]
    grads = [fixed_grads(seed) for seed in range(steps)]
    for step_grads in grads:
        optimizer.apply([ops.convert_to_tensor(g) for g in step_grads], model.trainable_variables)
    return weights, grads, model.get_weights()


def layer_rates_np(grads, learning_rate):
    """Per-variable rates t_l: kernel and bias of a Dense layer share one."""
    hidden, out = factor_np(*grads[:2]), factor_np(*grads[2:])
    return [learning_rate * f for f in (hidden, hidden, out, out)]


# --- the factor on its own -------------------------------------------------------------------


def test_layer_factors_matches_eq_9_with_kernel_and_bias_together():
    grads = fixed_grads(0)
    factors = layer_factors(grads, ["hidden", "hidden", "out", "out"])
    assert list(factors) == ["hidden", "out"]
    np.testing.assert_allclose(float(factors["hidden"]), factor_np(*grads[:2]), rtol=1e-6)
    np.testing.assert_allclose(float(factors["out"]), factor_np(*grads[2:]), rtol=1e-6)
    assert float(factors["hidden"]) > float(factors["out"]) > 1.0


@pytest.mark.parametrize("jit_compile", [False, True])
def test_layer_factors_of_every_size_eager_and_under_xla(jit_compile):
    # The norm is summed in rows of 32, then 8 columns: sizes on either side of both
    # paddings, and a convolution kernel, must give the plain norm.
    rng = np.random.default_rng(0)
    shapes = [(1,), (7,), (31,), (32,), (33,), (255,), (257,), (5, 5, 3, 20), (784, 512)]
    grads = [rng.normal(size=shape).astype(np.float32) for shape in shapes]
    names = [str(shape) for shape in shapes]
    compute = tf.function(lambda gs: layer_factors(gs, names), jit_compile=jit_compile)
    factors = compute([tf.constant(g) for g in grads])
    for name, grad in zip(names, grads, strict=True):
        np.testing.assert_allclose(float(factors[name]), factor_np(grad), rtol=1e-6)


def test_layer_factors_leaves_out_excluded_gradients():
    grads = fixed_grads(0)
    factors = layer_factors(grads, ["hidden", None, None, "out"])
    np.testing.assert_allclose(float(factors["hidden"]), factor_np(grads[0]), rtol=1e-6)
    np.testing.assert_allclose(float(factors["out"]), factor_np(grads[3]), rtol=1e-6)


def test_zero_gradient_gives_the_documented_finite_factor():
    zeros = [np.zeros((3, 4), np.float32), np.zeros((4,), np.float32)]
    factor = float(layer_factors(zeros, ["a", "a"])["a"])
    np.testing.assert_allclose(factor, 1 + np.log1p(1 / EPSILON), rtol=1e-6)
    capped = layer_factors(zeros, ["a", "a"], epsilon=1e-3, max_factor=4.0)
    assert float(capped["a"]) == 4.0
    np.testing.assert_allclose(
        float(layer_factors(zeros, ["a", "a"], epsilon=1e-3)["a"]), 1 + np.log1p(1e3), rtol=1e-6
    )


def test_non_finite_gradients_give_factor_one():
    grads = [np.array([np.nan, 1.0], np.float32), np.array([np.inf], np.float32)]
    factors = layer_factors(grads, ["nan", "inf"])
    assert float(factors["nan"]) == 1.0
    assert float(factors["inf"]) == 1.0


def test_norm_is_taken_in_float32_for_float16_gradients():
    underflow = np.full((100,), 1e-4, np.float16)  # g**2 = 1e-8 is 0 in float16
    overflow = np.full((1000,), 300.0, np.float16)  # sum of g**2 = 9e7 > float16 max
    factors = layer_factors([underflow, overflow], ["under", "over"])
    np.testing.assert_allclose(float(factors["under"]), factor_np(underflow), rtol=1e-3)
    np.testing.assert_allclose(float(factors["over"]), factor_np(overflow), rtol=1e-7)
    assert all(f.dtype == "float32" for f in factors.values())


def test_repeated_embedding_rows_are_summed_before_the_norm():
    embedding = keras.layers.Embedding(10, 3)
    embedding.build((None,))
    with tf.GradientTape() as tape:
        loss = ops.sum(embedding(np.array([1, 1, 2])))
    (grad,) = tape.gradient(loss, embedding.trainable_variables)
    assert isinstance(grad, tf.IndexedSlices)
    dense = np.zeros((10, 3), np.float32)
    dense[1], dense[2] = 2.0, 1.0
    factor = layer_factors([grad], ["embedding"])["embedding"]
    np.testing.assert_allclose(float(factor), factor_np(dense), rtol=1e-6)


def test_variable_groups():
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, name="hidden"),
            keras.layers.BatchNormalization(name="batch_normalization"),
            keras.layers.Dense(2, name="out"),
        ]
    )
    variables = model.trainable_variables
    paths = [v.path for v in variables]
    layers = [p.rpartition("/")[0] for p in paths]
    assert variable_groups(variables) == layers
    assert variable_groups(variables, "variable") == paths
    excluded = variable_groups(variables, exclude="normalization")
    assert excluded == [None if "normalization" in g else g for g in layers]
    assert variable_groups(variables, lambda v: "all" if "kernel" in v.path else None) == [
        "all" if "kernel" in p else None for p in paths
    ]
    with pytest.raises(TypeError, match="must return a group name"):
        variable_groups(variables, lambda v: 3)


# --- one or two steps of each wrapped optimizer, by hand --------------------------------------


def test_sgd_step_is_eq_10_with_the_factor_once():
    weights, grads, result = run_steps(LayerAdaptive(keras.optimizers.SGD(0.1)), steps=1)
    rates = layer_rates_np(grads[0], 0.1)
    for w, g, rate, new in zip(weights, grads[0], rates, result, strict=True):
        np.testing.assert_allclose(new, w - rate * g, rtol=1e-5, atol=1e-7)


def test_sgd_follows_a_learning_rate_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    weights, grads, result = run_steps(LayerAdaptive(keras.optimizers.SGD(schedule)))
    for i, w in enumerate(weights):
        for step, t in enumerate([0.1, 0.05]):
            w = w - layer_rates_np(grads[step], t)[i] * grads[step][i]
        np.testing.assert_allclose(result[i], w, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_and_nesterov_two_steps(nesterov):
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov)
    weights, grads, result = run_steps(LayerAdaptive(optimizer))
    for i, w in enumerate(weights):
        velocity = np.zeros_like(w)
        for step_grads in grads:
            rate, g = layer_rates_np(step_grads, 0.1)[i], step_grads[i]
            velocity = 0.9 * velocity - rate * g
            w = w + (0.9 * velocity - rate * g if nesterov else velocity)
        np.testing.assert_allclose(result[i], w, rtol=1e-5, atol=1e-7)


def test_adagrad_two_steps_is_eq_12():
    optimizer = keras.optimizers.Adagrad(0.1, initial_accumulator_value=0.0, epsilon=1e-7)
    weights, grads, result = run_steps(LayerAdaptive(optimizer))
    for i, w in enumerate(weights):
        accumulator = np.zeros_like(w)
        for step_grads in grads:
            rate, g = layer_rates_np(step_grads, 0.1)[i], step_grads[i]
            accumulator = accumulator + g**2
            w = w - rate * g / np.sqrt(accumulator + 1e-7)
        np.testing.assert_allclose(result[i], w, rtol=1e-5, atol=1e-7)


def test_adam_two_steps_gets_the_rate_not_a_cancelled_gradient_scale():
    optimizer = keras.optimizers.Adam(0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    weights, grads, result = run_steps(LayerAdaptive(optimizer))
    for i, w in enumerate(weights):
        m, v = np.zeros_like(w), np.zeros_like(w)
        for k, step_grads in enumerate(grads, start=1):
            rate, g = layer_rates_np(step_grads, 0.01)[i], step_grads[i]
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
            alpha = rate * np.sqrt(1 - 0.999**k) / (1 - 0.9**k)
            w = w - alpha * m / (np.sqrt(v) + 1e-7)
        # Adam's steps are about t_l in size (0.03 to 0.14 here), its float32 error about 1e-6.
        np.testing.assert_allclose(result[i], w, rtol=1e-5, atol=1e-6)


def test_layer_factors_of_the_last_step_are_readable():
    optimizer = LayerAdaptive(keras.optimizers.SGD(0.1))
    assert optimizer.layer_factors == {}
    _, grads, _ = run_steps(optimizer)
    (hidden, out) = optimizer.layer_factors.items()
    assert hidden[0].endswith("hidden") and out[0].endswith("out")
    np.testing.assert_allclose(hidden[1], factor_np(*grads[1][:2]), rtol=1e-6)
    np.testing.assert_allclose(out[1], factor_np(*grads[1][2:]), rtol=1e-6)


def test_grouping_by_variable_and_exclusion():
    optimizer = LayerAdaptive(keras.optimizers.SGD(0.1), grouping="variable", exclude="out")
    weights, grads, result = run_steps(optimizer, steps=1)
    g = grads[0]
    rates = [0.1 * factor_np(g[0]), 0.1 * factor_np(g[1]), 0.1, 0.1]
    for w, gi, rate, new in zip(weights, g, rates, result, strict=True):
        np.testing.assert_allclose(new, w - rate * gi, rtol=1e-5, atol=1e-7)
    assert len(optimizer.layer_factors) == 2


# --- guards ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inner",
    [lambda: keras.optimizers.SGD(0.1, momentum=0.9), lambda: keras.optimizers.Adam(0.1)],
    ids=["sgd_momentum", "adam"],
)
def test_zero_gradient_layer_stays_finite(inner):
    optimizer = LayerAdaptive(inner())
    model = two_layer_model()
    grads = fixed_grads(0)
    optimizer.apply(grads, model.trainable_variables)
    # The hidden layer then stops receiving gradient (a frozen branch, dead ReLUs).
    zero_hidden = [np.zeros_like(grads[0]), np.zeros_like(grads[1])] + grads[2:]
    optimizer.apply(zero_hidden, model.trainable_variables)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    factors = list(optimizer.layer_factors.values())
    np.testing.assert_allclose(factors[0], 1 + np.log1p(1 / EPSILON), rtol=1e-6)


def test_max_factor_caps_the_rate():
    optimizer = LayerAdaptive(keras.optimizers.SGD(0.1), max_factor=2.0)
    weights, grads, result = run_steps(optimizer, steps=1)
    rates = [0.1 * min(r / 0.1, 2.0) for r in layer_rates_np(grads[0], 0.1)]
    assert rates[0] == pytest.approx(0.2)
    for w, g, rate, new in zip(weights, grads[0], rates, result, strict=True):
        np.testing.assert_allclose(new, w - rate * g, rtol=1e-5, atol=1e-7)


def test_nan_in_one_variable_does_not_spread_to_its_layer():
    model = two_layer_model()
    weights = model.get_weights()
    grads = fixed_grads(0)
    grads[1] = np.full_like(grads[1], np.nan)  # hidden bias; hidden kernel stays finite
    LayerAdaptive(keras.optimizers.SGD(0.1)).apply(grads, model.trainable_variables)
    # With factor 1 the finite kernel moves as under plain SGD instead of becoming NaN.
    np.testing.assert_allclose(model.get_weights()[0], weights[0] - 0.1 * grads[0], rtol=1e-6)


# --- the wrapped optimizer's own options ------------------------------------------------------


def test_factors_are_taken_after_gradient_accumulation():
    optimizer = LayerAdaptive(keras.optimizers.SGD(0.1, gradient_accumulation_steps=2))
    weights, grads, result = run_steps(optimizer)
    mean = [(a + b) / 2 for a, b in zip(*grads, strict=True)]
    for w, g, rate, new in zip(weights, mean, layer_rates_np(mean, 0.1), result, strict=True):
        np.testing.assert_allclose(new, w - rate * g, rtol=1e-5, atol=1e-7)
    assert int(optimizer.iterations) == 1


def test_factors_are_taken_after_global_clipping():
    optimizer = LayerAdaptive(keras.optimizers.SGD(0.1, global_clipnorm=0.5))
    weights, grads, result = run_steps(optimizer, steps=1)
    global_norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads[0]))
    clipped = [g * 0.5 / global_norm for g in grads[0]]
    for w, g, rate, new in zip(weights, clipped, layer_rates_np(clipped, 0.1), result, strict=True):
        np.testing.assert_allclose(new, w - rate * g, rtol=1e-5, atol=1e-7)


def test_factors_are_taken_after_loss_scale_unscaling():
    optimizer = LayerAdaptive(keras.optimizers.SGD(0.1, loss_scale_factor=128.0))
    assert float(optimizer.scale_loss(1.0)) == 128.0
    model = two_layer_model()
    weights, grads = model.get_weights(), fixed_grads(0)
    optimizer.apply([g * 128.0 for g in grads], model.trainable_variables)
    for w, g, rate, new in zip(
        weights, grads, layer_rates_np(grads, 0.1), model.get_weights(), strict=True
    ):
        np.testing.assert_allclose(new, w - rate * g, rtol=1e-5, atol=1e-7)


def regression_data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, (x @ rng.normal(size=(3, 2))).astype(np.float32)


def test_ema_of_the_wrapped_optimizer_keeps_working():
    model = two_layer_model()
    inner = keras.optimizers.SGD(0.05, momentum=0.9, use_ema=True, ema_momentum=0.5)
    model.compile(optimizer=LayerAdaptive(inner), loss="mse")
    model.fit(*regression_data(), batch_size=16, epochs=2, verbose=0)
    # fit() ends with finalize_variable_values: the model holds the moving averages.
    averages = inner._model_variables_moving_average
    for variable, average in zip(model.trainable_variables, averages, strict=True):
        np.testing.assert_array_equal(variable.numpy(), average.numpy())


def test_learning_rate_and_iterations_are_the_wrapped_optimizers():
    inner = keras.optimizers.SGD(0.1)
    optimizer = LayerAdaptive(inner)
    optimizer.learning_rate = 0.25
    assert float(inner.learning_rate) == 0.25
    run_steps(optimizer, steps=1)
    assert int(optimizer.iterations) == int(inner.iterations) == 1


# --- compiled training ------------------------------------------------------------------------


def embedding_model():
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(20, 4, name="embedding")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def train(jit_compile):
    keras.utils.set_random_seed(0)
    model = embedding_model()
    inner = keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
    model.compile(
        optimizer=LayerAdaptive(inner),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 12, size=(32, 5)), rng.integers(0, 3, size=(32,))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return model


def test_jit_compile_gives_the_same_steps():
    eager, jitted = train(jit_compile=False), train(jit_compile=True)
    for a, b in zip(eager.get_weights(), jitted.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        list(eager.optimizer.layer_factors.values()),
        list(jitted.optimizer.layer_factors.values()),
        rtol=1e-5,
    )
    # Unused embedding rows have zero gradient; the factor stays finite.
    assert all(np.isfinite(list(jitted.optimizer.layer_factors.values())))


@pytest.fixture
def mixed_float16():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


def test_mixed_precision_norms_are_taken_on_unscaled_gradients(mixed_float16):
    model = two_layer_model()
    model.compile(optimizer=LayerAdaptive(keras.optimizers.SGD(0.01)), loss="mse")
    x, y = regression_data(16)
    with tf.GradientTape() as tape:
        loss = keras.losses.mean_squared_error(y, ops.cast(model(x), "float32"))
        loss = ops.mean(loss)
    grads = [np.asarray(g, np.float32) for g in tape.gradient(loss, model.trainable_variables)]
    model.train_on_batch(x, y)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.optimizer.dynamic_scale.numpy() > 1000  # gradients really were scaled
    factors = list(model.optimizer.inner_optimizer.layer_factors.values())
    np.testing.assert_allclose(factors, [factor_np(*grads[:2]), factor_np(*grads[2:])], rtol=1e-2)


# --- saving ------------------------------------------------------------------------------------


def fitted_model(**options):
    model = two_layer_model()
    inner = keras.optimizers.SGD(0.05, momentum=0.9)
    model.compile(optimizer=LayerAdaptive(inner, **options), loss="mse")
    x, y = regression_data()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    return model, (x[:16], y[:16])


def test_model_save_and_load_round_trip(tmp_path):
    model, batch = fitted_model(exclude=["nothing"], epsilon=1e-6, max_factor=10.0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.optimizer, LayerAdaptive)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    model.train_on_batch(*batch)
    loaded.train_on_batch(*batch)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_tf_checkpoint_round_trip(tmp_path):
    model, _ = fitted_model()
    path = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(tmp_path / "ckpt")
    fresh = two_layer_model()
    optimizer = LayerAdaptive(keras.optimizers.SGD(0.05, momentum=0.9))
    optimizer.build(fresh.trainable_variables)
    tf.train.Checkpoint(model=fresh, optimizer=optimizer).restore(path).assert_consumed()
    for a, b in zip(model.optimizer.variables, optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert list(optimizer.layer_factors.values()) == list(model.optimizer.layer_factors.values())


def named_grouping(variable):
    return "kernels" if "kernel" in variable.path else None


def test_callable_grouping_is_serialized(tmp_path):
    keras.saving.register_keras_serializable(package="keras_agd_tests")(named_grouping)
    optimizer = LayerAdaptive(keras.optimizers.Adam(), grouping=named_grouping)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer))
    assert restored._rates.grouping is named_grouping
    assert restored.get_config() == optimizer.get_config()


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: LayerAdaptive("sgd"), TypeError, "`inner_optimizer` must be a `keras.optimizers"),
        (lambda: LayerAdaptive(keras.layers.Dense(2)), TypeError, "Received: inner_optimizer="),
        (
            lambda: LayerAdaptive(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())),
            ValueError,
            "cannot be a LossScaleOptimizer",
        ),
        (
            lambda: LayerAdaptive(LayerAdaptive(keras.optimizers.SGD())),
            ValueError,
            "one global learning rate",
        ),
        (
            lambda: LayerAdaptive(keras.optimizers.SGD(), grouping="block"),
            ValueError,
            "`grouping` must be one of 'layer', 'variable' or a callable.*grouping='block'",
        ),
        (
            lambda: LayerAdaptive(keras.optimizers.SGD(), epsilon=-1),
            ValueError,
            r"`epsilon` must be a finite number > 0. Received: epsilon=-1",
        ),
        (
            lambda: LayerAdaptive(keras.optimizers.SGD(), epsilon=0.0),
            ValueError,
            r"`epsilon` must be a finite number > 0. Received: epsilon=0.0",
        ),
        (
            lambda: LayerAdaptive(keras.optimizers.SGD(), epsilon="tiny"),
            ValueError,
            r"`epsilon` must be a finite number > 0. Received: epsilon='tiny'",
        ),
        (
            lambda: LayerAdaptive(keras.optimizers.SGD(), epsilon=1e-45),
            ValueError,
            r"`epsilon` must be >= 1.18e-38 \(the smallest normal float32",
        ),
        (
            lambda: LayerAdaptive(keras.optimizers.SGD(), max_factor=float("nan")),
            ValueError,
            r"`max_factor` must be >= 1 or None. Received: max_factor=nan",
        ),
        (
            lambda: LayerAdaptive(keras.optimizers.SGD(), max_factor=0.5),
            ValueError,
            r"`max_factor` must be >= 1 or None. Received: max_factor=0.5",
        ),
        (
            lambda: LayerAdaptive(keras.optimizers.SGD(), exclude="(unclosed"),
            ValueError,
            "`exclude` is not a valid regular expression",
        ),
        (
            lambda: LayerAdaptive(keras.optimizers.SGD(), exclude=3),
            ValueError,
            r"`exclude` must be a regular expression \(a string or a compiled re.Pattern of "
            r"str\) or a list of them. Received: exclude=3",
        ),
        (
            lambda: LayerAdaptive(keras.optimizers.SGD(), clipnorm=1.0),
            ValueError,
            "does not support `clipnorm`. Set such options on the wrapped",
        ),
        (
            lambda: LayerRates(epsilon=-1),
            ValueError,
            r"`epsilon` must be a finite number > 0. Received: epsilon=-1",
        ),
        (lambda: layer_factors(3, ["a"]), TypeError, "`gradients` must be a list"),
        (lambda: layer_factors([np.ones(2)], "a"), TypeError, "`groups` must be a list"),
        (lambda: variable_groups(None), TypeError, "`variables` must be a list"),
        (lambda: variable_groups([1, 2]), TypeError, "`variables` must be a list of keras"),
        (
            lambda: layer_factors([np.ones(2)], ["a", "b"]),
            ValueError,
            "must have the same length",
        ),
    ],
    ids=lambda value: None,
)
def test_bad_input_is_a_clear_error(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_one_optimizer_cannot_be_wrapped_twice():
    inner = keras.optimizers.SGD()
    LayerAdaptive(inner)
    with pytest.raises(ValueError, match="already wrapped by a LayerAdaptive"):
        LayerAdaptive(inner)


def test_config_holds_plain_json_values():
    optimizer = LayerAdaptive(keras.optimizers.SGD(), exclude=("norm", "bias"), max_factor=3)
    config = optimizer.get_config()
    assert config["exclude"] == ["norm", "bias"] and config["max_factor"] == 3
    assert LayerAdaptive.from_config(config).get_config() == config
