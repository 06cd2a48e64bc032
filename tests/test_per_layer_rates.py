"""PerLayerRates, LARS and the rate rules: hand-computed steps, exclusions, errors, configs,
saving, XLA parity and mixed precision. Backend-agnostic: CI runs this file under
KERAS_BACKEND=jax too."""

import math
import re

import keras
import numpy as np
import pytest

import keras_agd
from keras_agd import LARS, LayerwiseDecay, Multipliers, PerLayerRates, TrustRatio

BACKEND = keras.backend.backend()


def variables():
    rng = np.random.default_rng(0)
    kernel = keras.Variable(rng.normal(size=(4, 3)).astype("float32"), name="kernel")
    bias = keras.Variable(np.full(3, 0.1, "float32"), name="bias")
    return kernel, bias


def gradients(seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=3).astype("float32")]


def step(optimizer, variables, grads):
    optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], list(variables))


def norm(value):
    return float(np.sqrt(np.sum(np.square(np.asarray(value, np.float64)))))


# --- TrustRatio and LARS: hand-computed steps.


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_trust_ratio_step_by_hand(weight_decay):
    kernel, bias = variables()
    w, b = kernel.numpy(), bias.numpy()
    g, gb = gradients()
    rule = TrustRatio(trust_coefficient=0.02, weight_decay=weight_decay)
    optimizer = PerLayerRates(keras.optimizers.SGD(0.5), rules=[rule])
    step(optimizer, (kernel, bias), (g, gb))
    ratio = 0.02 * norm(w) / (norm(g) + weight_decay * norm(w))
    np.testing.assert_allclose(kernel.numpy(), w - 0.5 * ratio * (g + weight_decay * w), rtol=1e-5)
    # The bias (1-D) is excluded by default: plain rate, no weight decay.
    np.testing.assert_allclose(bias.numpy(), b - 0.5 * gb, rtol=1e-6)
    assert optimizer.layer_factors == pytest.approx({"kernel": ratio, "bias": 1.0}, rel=1e-5)


def test_lars_two_momentum_steps_by_hand():
    kernel, bias = variables()
    w, b = kernel.numpy().astype(np.float64), bias.numpy().astype(np.float64)
    optimizer = LARS(0.5, momentum=0.9, weight_decay=1e-3, trust_coefficient=0.01)
    velocity, velocity_b = np.zeros_like(w), np.zeros_like(b)
    for seed in (1, 2):
        g, gb = (x.astype(np.float64) for x in gradients(seed))
        step(optimizer, (kernel, bias), gradients(seed))
        ratio = 0.01 * norm(w) / (norm(g) + 1e-3 * norm(w))
        velocity = 0.9 * velocity - 0.5 * ratio * (g + 1e-3 * w)
        velocity_b = 0.9 * velocity_b - 0.5 * gb
        w, b = w + velocity, b + velocity_b
    np.testing.assert_allclose(kernel.numpy(), w, rtol=1e-5)
    np.testing.assert_allclose(bias.numpy(), b, rtol=1e-5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_lars_matches_optax(nesterov):
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    kernel, bias = variables()
    params = {"k": jnp.asarray(kernel.numpy()), "b": jnp.asarray(bias.numpy())}
    masks = lambda params: {"k": True, "b": False}  # noqa: E731 (optax's mask signature)
    transform = optax.lars(0.5, 0.0, masks, 0.01, 0.0, masks, momentum=0.9, nesterov=nesterov)
    state = transform.init(params)
    optimizer = LARS(0.5, momentum=0.9, nesterov=nesterov, trust_coefficient=0.01)
    for seed in range(1, 5):
        g, gb = gradients(seed)
        updates, state = transform.update(
            {"k": jnp.asarray(g), "b": jnp.asarray(gb)}, state, params
        )
        params = optax.apply_updates(params, updates)
        step(optimizer, (kernel, bias), (g, gb))
    np.testing.assert_allclose(kernel.numpy(), np.asarray(params["k"]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bias.numpy(), np.asarray(params["b"]), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "case, factor",
    [("zero_weights", 1.0), ("zero_gradient", 1.0), ("clipped", 2.0), ("nan_gradient", 1.0)],
)
def test_trust_ratio_guards(case, factor):
    kernel, bias = variables()
    g, gb = gradients()
    if case == "zero_weights":
        kernel.assign(np.zeros((4, 3), "float32"))
    elif case == "zero_gradient":
        g = np.zeros_like(g)
    elif case == "nan_gradient":
        g[0, 0] = np.nan
    rule = TrustRatio(trust_coefficient=100.0, clip=2.0 if case == "clipped" else None)
    optimizer = PerLayerRates(keras.optimizers.SGD(0.1), rules=[rule])
    step(optimizer, (kernel, bias), (g, gb))
    assert optimizer.layer_factors["kernel"] == pytest.approx(factor)


def test_trust_ratio_exclude_patterns():
    kernel, bias = variables()
    # Nothing excluded: the bias gets a ratio too.
    everything = PerLayerRates(keras.optimizers.SGD(0.1), TrustRatio(exclude=[]))
    step(everything, (kernel, bias), gradients())
    assert everything.layer_factors["bias"] != 1.0
    # A pattern replaces the default rule by dimensions.
    kernel, bias = variables()
    by_name = PerLayerRates(keras.optimizers.SGD(0.1), TrustRatio(exclude="kern"))
    step(by_name, (kernel, bias), gradients())
    assert by_name.layer_factors["kernel"] == 1.0 and by_name.layer_factors["bias"] != 1.0


def test_trust_ratio_refuses_a_model_with_only_vectors():
    bias = keras.Variable(np.ones(3, "float32"), name="bias")
    optimizer = PerLayerRates(keras.optimizers.SGD(0.1), TrustRatio())
    with pytest.raises(ValueError, match="adapts no variable.*exclude=\\[\\]"):
        optimizer.build([bias])


# --- Multipliers and LayerwiseDecay: fixed factors.


def model(name="net"):
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(4, activation="tanh", name="stem"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.Dense(4, activation="tanh", name="body"),
            keras.layers.Dense(2, name="head"),
        ],
        name=name,
    )


def built_factors(rules, net=None):
    net = net or model()
    optimizer = PerLayerRates(keras.optimizers.SGD(0.1), rules=rules)
    optimizer.build(net.trainable_variables)
    return optimizer.layer_factors


def test_multipliers_first_match_wins_and_default():
    factors = built_factors([Multipliers({"head": 1.0, "body|stem/kernel": 0.5}, default=0.1)])
    assert factors == {
        "net/stem/kernel": 0.5,
        "net/stem/bias": 0.1,
        "net/norm/gamma": 0.1,
        "net/norm/beta": 0.1,
        "net/body/kernel": 0.5,
        "net/body/bias": 0.5,
        "net/head/kernel": 1.0,
        "net/head/bias": 1.0,
    }


def test_multipliers_callable():
    rule = Multipliers(lambda variable: 2.0 if len(variable.shape) == 2 else 0.0)
    factors = built_factors([rule])
    assert factors["net/head/kernel"] == 2.0 and factors["net/head/bias"] == 0.0


def test_layerwise_decay_follows_the_sequential_order():
    factors = built_factors([LayerwiseDecay(0.5)])
    assert factors["net/head/kernel"] == factors["net/head/bias"] == 1.0
    assert factors["net/body/kernel"] == 0.5
    assert factors["net/norm/gamma"] == 0.25
    assert factors["net/stem/bias"] == 0.125


def test_layerwise_decay_on_a_functional_model_with_branches():
    inputs = keras.Input((5,))
    left = keras.layers.Dense(3, name="left")(inputs)
    right = keras.layers.Dense(3, name="right")(inputs)
    merged = keras.layers.Concatenate()([left, right])
    outputs = keras.layers.Dense(1, name="out")(keras.layers.Dense(4, name="mix")(merged))
    net = keras.Model(inputs, outputs, name="f")
    factors = built_factors([LayerwiseDecay(0.5)], net)
    # Functional layers' variable paths do not start with the model's name.
    assert [factors[f"{layer}/kernel"] for layer in ("left", "right", "mix", "out")] == [
        0.125,
        0.25,
        0.5,
        1.0,
    ]
    # Blocks name what belongs together: both branches one block.
    blocks = LayerwiseDecay(0.5, blocks=["left|right", "mix", "out"])
    factors = built_factors([blocks], net)
    assert factors["left/kernel"] == factors["right/bias"] == 0.25
    by_callable = LayerwiseDecay(0.5, blocks=lambda v: 0 if "out" in v.path else 3)
    assert built_factors([by_callable], net)["mix/kernel"] == 0.125


def test_rules_multiply():
    rules = [LayerwiseDecay(0.5), Multipliers({"norm": 0.0}), Multipliers({"head": 3.0})]
    factors = built_factors(rules)
    assert factors["net/head/kernel"] == 3.0
    assert factors["net/norm/beta"] == 0.0
    assert factors["net/body/bias"] == 0.5


def test_trust_ratio_combines_with_fixed_factors():
    kernel, bias = variables()
    w = kernel.numpy()
    g, gb = gradients()
    rules = [TrustRatio(0.02), Multipliers({"kernel": 0.5})]
    optimizer = PerLayerRates(keras.optimizers.SGD(0.5), rules=rules)
    step(optimizer, (kernel, bias), (g, gb))
    ratio = 0.02 * norm(w) / norm(g)
    np.testing.assert_allclose(kernel.numpy(), w - 0.5 * 0.5 * ratio * g, rtol=1e-5)
    assert optimizer.layer_factors["kernel"] == pytest.approx(0.5 * ratio, rel=1e-5)


def test_zero_factor_freezes_even_with_decoupled_weight_decay():
    kernel, bias = variables()
    w, b = kernel.numpy(), bias.numpy()
    g, gb = gradients()
    inner = keras.optimizers.AdamW(0.1, weight_decay=0.5)
    optimizer = PerLayerRates(inner, Multipliers({"kernel": 0.0, "bias": 0.5}))
    step(optimizer, (kernel, bias), (g, gb))
    np.testing.assert_array_equal(kernel.numpy(), w)
    # The bias: decay at the scaled rate, then Adam's first step (size ~ rate) at it.
    rate = 0.05
    decayed = b - b * 0.5 * rate
    np.testing.assert_allclose(bias.numpy(), decayed - rate * np.sign(gb), rtol=1e-4)
    assert optimizer.weight_decay == 0.5
    config = optimizer.get_config()["inner_optimizer"]["config"]
    assert config["weight_decay"] == 0.5


def test_excluded_from_weight_decay_is_honoured():
    kernel, bias = variables()
    b = bias.numpy()
    inner = keras.optimizers.AdamW(0.1, weight_decay=0.5)
    inner.exclude_from_weight_decay(var_names=["bias"])
    optimizer = PerLayerRates(inner, Multipliers({"kernel": 2.0}))
    g, gb = gradients()
    step(optimizer, (kernel, bias), (g, gb))
    np.testing.assert_allclose(bias.numpy(), b - 0.1 * np.sign(gb), rtol=1e-4)


# --- Bad arguments: errors that name the argument.


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: TrustRatio(trust_coefficient=0), ValueError, "trust_coefficient"),
        (lambda: TrustRatio(weight_decay=-1), ValueError, "weight_decay"),
        (lambda: TrustRatio(clip=0), ValueError, "clip"),
        (lambda: TrustRatio(exclude="("), ValueError, "not a valid regular expression"),
        (lambda: TrustRatio(exclude=""), ValueError, "non-empty"),
        (lambda: Multipliers({}), TypeError, "non-empty dict"),
        (lambda: Multipliers([0.1]), TypeError, "non-empty dict"),
        (lambda: Multipliers({"head": "fast"}), TypeError, r"multipliers\['head'\]"),
        (lambda: Multipliers({"head": -1.0}), ValueError, r"multipliers\['head'\]"),
        (lambda: Multipliers({"head": math.nan}), ValueError, r"multipliers\['head'\]"),
        (lambda: Multipliers({"head": True}), TypeError, r"multipliers\['head'\]"),
        (lambda: Multipliers({"[": 1.0}), ValueError, "not a valid regular expression"),
        (lambda: Multipliers({3: 1.0}), TypeError, "patterns must be regular expressions"),
        (lambda: Multipliers({"head": 1.0}, default=None), TypeError, "default"),
        (lambda: LayerwiseDecay(0), ValueError, "decay"),
        (lambda: LayerwiseDecay(1.5), ValueError, "decay"),
        (lambda: LayerwiseDecay(0.5, blocks=[]), TypeError, "blocks"),
        (lambda: LayerwiseDecay(0.5, blocks="head"), TypeError, "blocks"),
        (lambda: PerLayerRates(keras.optimizers.SGD(), []), ValueError, "at least one rule"),
        (lambda: PerLayerRates(keras.optimizers.SGD(), ["lars"]), TypeError, "rules"),
        (
            lambda: PerLayerRates(keras.optimizers.SGD(), [TrustRatio(), TrustRatio()]),
            ValueError,
            "one TrustRatio",
        ),
        (lambda: PerLayerRates("sgd", [TrustRatio()]), TypeError, "inner_optimizer"),
        (
            lambda: PerLayerRates(
                PerLayerRates(keras.optimizers.SGD(), TrustRatio()), TrustRatio()
            ),
            ValueError,
            "one PerLayerRates",
        ),
        (
            lambda: PerLayerRates(keras.optimizers.SGD(), TrustRatio(), clipnorm=1.0),
            ValueError,
            "clipnorm",
        ),
        (lambda: LARS(trust_coefficient=-1.0), ValueError, "trust_coefficient"),
        (
            lambda: keras_agd.LayerAdaptive(PerLayerRates(keras.optimizers.SGD(), TrustRatio())),
            ValueError,
            "not another wrapper",
        ),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "rule, match",
    [
        (Multipliers({"haed": 1.0}), "pattern 'haed' matches no variable"),
        (LayerwiseDecay(0.5, blocks=["stem", "haed"]), "pattern 'haed' matches no variable"),
        (LayerwiseDecay(0.5, blocks=["stem", "head"]), "'net/norm/gamma' matches none of"),
        (LayerwiseDecay(0.5, blocks=lambda v: -1), "blocks"),
        (Multipliers(lambda v: "x"), "multipliers"),
    ],
)
def test_unknown_groups_are_errors_at_build(rule, match):
    with pytest.raises((ValueError, TypeError), match=match):
        built_factors([rule])


def test_an_optimizer_wraps_once():
    inner = keras.optimizers.SGD()
    PerLayerRates(inner, TrustRatio())
    with pytest.raises(ValueError, match="already wrapped"):
        PerLayerRates(inner, TrustRatio())


# --- Keras: fit, configs, saving, XLA, logs, mixed precision.


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x[:, :1] * x[:, 1:2] > 0).astype("int32")[:, 0]
    return x, y


OPTIMIZERS = {
    "lars": lambda: LARS(0.2, weight_decay=1e-4, trust_coefficient=0.1),
    "lars_nesterov": lambda: LARS(0.2, nesterov=True, trust_coefficient=0.1, clip=5.0),
    "trust_adam": lambda: PerLayerRates(keras.optimizers.Adam(0.02), TrustRatio(1.0, clip=3.0)),
    "decay_adamw": lambda: PerLayerRates(
        keras.optimizers.AdamW(0.02, weight_decay=0.01),
        [LayerwiseDecay(0.5), Multipliers({"norm": 0.0})],
    ),
    "multipliers_sgd": lambda: PerLayerRates(
        keras.optimizers.SGD(0.2, momentum=0.9), Multipliers({"head": 2.0}, default=0.5)
    ),
}


def fit(optimizer, jit_compile=False, epochs=3):
    keras.utils.set_random_seed(0)
    net = model()
    net.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    x, y = data()
    initial = net.evaluate(x, y, verbose=0)
    history = net.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
    return net, initial, history


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_loss_decreases_in_fit(name):
    _, initial, history = fit(OPTIMIZERS[name]())
    assert history.history["loss"][-1] < initial


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_config_round_trip(name):
    optimizer = OPTIMIZERS[name]()
    config = optimizer.get_config()
    for restored in (
        type(optimizer).from_config(config),
        keras.optimizers.deserialize(keras.optimizers.serialize(optimizer)),
    ):
        assert type(restored) is type(optimizer)
        assert restored.get_config() == config


def test_compiled_patterns_survive_the_config():
    rule = TrustRatio(exclude=re.compile("BIAS", re.IGNORECASE))
    assert rule.get_config()["exclude"] == ["(?i)BIAS"]
    assert TrustRatio.from_config(rule.get_config()).exclude == ["(?i)BIAS"]


@pytest.mark.parametrize("name", ["lars", "decay_adamw"])
def test_save_and_load_continue_the_same_training(name, tmp_path):
    x, y = data()
    net, _, _ = fit(OPTIMIZERS[name](), epochs=1)
    net.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded.optimizer) is type(net.optimizer)
    # A loaded Sequential model's variable paths lose the model's name: compare in order.
    factors = list(net.optimizer.layer_factors.values())
    assert list(loaded.optimizer.layer_factors.values()) == pytest.approx(factors)
    net.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(net.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer_class", [PerLayerRates, LARS])
def test_a_loaded_model_keeps_the_factors_its_patterns_gave(optimizer_class, tmp_path):
    # Patterns that name the model: a reloaded Sequential model's paths lose its name.
    if optimizer_class is LARS:
        optimizer = LARS(0.2, trust_coefficient=0.1, exclude="^net/(stem|norm)")
    else:
        rules = [TrustRatio(0.1, exclude="^net/stem"), Multipliers({"^net/head": 2.0}, default=0.5)]
        optimizer = PerLayerRates(keras.optimizers.SGD(0.1, momentum=0.9), rules)
    net, _, _ = fit(optimizer, epochs=1)
    net.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert list(loaded.optimizer.layer_factors.values()) == pytest.approx(
        list(optimizer.layer_factors.values())
    )
    assert loaded.optimizer.get_config() == optimizer.get_config()
    x, y = data()
    for model in (net, loaded):
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(net.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "plan", [{"fixed": [1.0, "x"], "adapted": None}, {"fixed": [1.0]}, [1.0], {"fixed": [-1.0]}]
)
def test_a_config_with_a_broken_plan_is_refused(plan):
    config = PerLayerRates(keras.optimizers.SGD(), TrustRatio()).get_config()
    with pytest.raises(ValueError, match="config's `plan`"):
        PerLayerRates.from_config({**config, "plan": plan})


@pytest.mark.parametrize("name", ["lars", "decay_adamw"])
def test_jit_compile_parity(name):
    eager, _, _ = fit(OPTIMIZERS[name](), jit_compile=False)
    compiled, _, _ = fit(OPTIMIZERS[name](), jit_compile=True)
    for a, b in zip(eager.get_weights(), compiled.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_factors_in_the_logs():
    optimizer = OPTIMIZERS["trust_adam"]()
    keras.utils.set_random_seed(0)
    net = model()
    net.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, y = data()
    logger = keras_agd.LayerFactorLogger()
    history = net.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[logger])
    values = history.history["layer_factor/net/head/kernel"]
    assert len(values) == 2 and values[-1] == optimizer.layer_factors["net/head/kernel"] != 1.0
    assert history.history["layer_factor/net/head/bias"] == [1.0, 1.0]


def test_mixed_precision_uses_unscaled_gradients():
    float32, _, _ = fit(OPTIMIZERS["lars"](), epochs=1)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed, _, history = fit(OPTIMIZERS["lars"](), epochs=1)
    finally:
        keras.config.set_dtype_policy(policy)
    assert isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer)
    factors = mixed.optimizer.inner_optimizer.layer_factors
    # The loss scale (2**15) would show in the ratios if the scaled gradients were used.
    assert factors == pytest.approx(float32.optimizer.layer_factors, rel=0.05)
    assert np.isfinite(history.history["loss"]).all()
