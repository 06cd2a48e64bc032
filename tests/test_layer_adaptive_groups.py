"""LayerAdaptive's groups: layers of the same name, `exclude` patterns, a property test."""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from keras import ops

from keras_agd.layer_adaptive import LayerAdaptive, LayerRates, variable_groups


def factor_np(*layer_grads, epsilon=1e-7):
    """Eq. (9): the factor t_l / t from all gradients of one layer."""
    norm = np.sqrt(sum(np.sum(np.square(np.asarray(g, np.float64))) for g in layer_grads))
    return 1.0 + np.log(1.0 + 1.0 / max(norm, epsilon))


@keras.saving.register_keras_serializable(package="keras_agd_tests")
class TwoProjections(keras.Model):
    """Two Dense layers both named "proj": Keras gives their variables the same paths."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = keras.layers.Dense(4, name="proj")
        self.b = keras.layers.Dense(2, name="proj")

    def call(self, x):
        return self.b(self.a(x))


class Block(keras.layers.Layer):
    """A layer with a weight of its own and a Dense sub-layer, as in a residual block."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(3, name="d")

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(1,), initializer="ones", name="scale")
        self.inner.build(input_shape)

    def call(self, x):
        return self.inner(x) * self.scale


class Layers(keras.Model):
    """A subclassed model applying `layers` in turn; their names may repeat."""

    def __init__(self, layers, **kwargs):
        super().__init__(**kwargs)
        self.stack = layers

    def call(self, x):
        for layer in self.stack:
            x = layer(x)
        return x


def two_projections():
    model = TwoProjections(name="m")
    model(np.zeros((1, 3), np.float32))
    return model


def batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    return x, (x @ rng.normal(size=(3, 2))).astype(np.float32)


# --- layers of the same name --------------------------------------------------------------------


def test_same_named_layers_get_a_group_and_a_factor_each(tmp_path):
    model = two_projections()
    model.compile(optimizer=LayerAdaptive(keras.optimizers.SGD(0.1)), loss="mse")
    x, y = batch()
    with tf.GradientTape() as tape:
        loss = ops.mean(keras.losses.mean_squared_error(y, model(x)))
    grads = tape.gradient(loss, model.trainable_variables)
    model.train_on_batch(x, y)

    factors = model.optimizer.layer_factors
    assert list(factors) == ["m/proj", "m/proj#2"]
    np.testing.assert_allclose(factors["m/proj"], factor_np(*grads[:2]), rtol=1e-6)
    np.testing.assert_allclose(factors["m/proj#2"], factor_np(*grads[2:]), rtol=1e-6)
    assert abs(factors["m/proj"] - factors["m/proj#2"]) > 0.01

    # The factors are a vector in group order: the reloaded model's groups line up with it.
    # (Reloaded variable paths lack the model's name, as documented.)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.optimizer.layer_factors == {
        "proj": factors["m/proj"],
        "proj#2": factors["m/proj#2"],
    }
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    after = model.optimizer.layer_factors
    assert list(loaded.optimizer.layer_factors.values()) == pytest.approx(list(after.values()))


def test_suffixes_skip_the_names_of_real_layers_and_nest():
    # Built one by one: inside a model's call, Keras 3.15 leaks the name scope of a layer
    # whose name TensorFlow refuses as a scope ("blk#2").
    layers = [Block(name="blk"), Block(name="blk"), keras.layers.Dense(3, name="blk#2")]
    for layer in layers:
        layer.build((None, 3))
    variables = [v for layer in layers for v in layer.trainable_variables]
    assert variable_groups(variables) == [
        "blk",  # scale
        "blk/d",  # kernel
        "blk/d",  # bias
        "blk#3",  # "blk#2" is the Dense layer's own name
        "blk/d#2",
        "blk/d#2",
        "blk#2",
        "blk#2",
    ]
    paths = [v.path for v in variables]
    assert variable_groups(variables, "variable") == [
        *paths[:3],
        *(path + "#2" for path in paths[3:6]),
        *paths[6:],
    ]


def test_a_grouping_callable_names_the_groups_itself():
    variables = two_projections().trainable_variables
    by_path = variable_groups(variables, lambda v: v.path.rpartition("/")[0])
    assert by_path == ["m/proj"] * 4


# --- exclude ------------------------------------------------------------------------------------


@pytest.mark.parametrize("exclude", ["", [""], ("bias", "")])
def test_an_empty_pattern_is_refused(exclude):
    with pytest.raises(ValueError, match="`exclude` patterns must be non-empty"):
        LayerAdaptive(keras.optimizers.SGD(), exclude=exclude)
    with pytest.raises(ValueError, match="`exclude` patterns must be non-empty"):
        variable_groups(two_projections().trainable_variables, exclude=exclude)


@pytest.mark.parametrize(
    "exclude, matched",
    [
        (".*", "'.*' matches 4 of the 4 paths"),
        ("proj", "'proj' matches 4 of the 4 paths"),
        (["kernel", "bias"], "'kernel' matches 2, 'bias' matches 2 of the 4 paths"),
        (re.compile("^M/", re.I), r"'\(\?i\)\^M/' matches 4"),
    ],
)
def test_excluding_every_variable_is_refused_at_build(exclude, matched):
    model = two_projections()
    optimizer = LayerAdaptive(keras.optimizers.SGD(), exclude=exclude)
    message = f"`exclude` excludes every variable \\({matched}.*Received: exclude="
    with pytest.raises(ValueError, match=message):
        optimizer.build(model.trainable_variables)
    with pytest.raises(ValueError, match=message):
        variable_groups(model.trainable_variables, exclude=optimizer.get_config()["exclude"])


def test_compiled_patterns_are_accepted_and_saved_as_strings():
    variables = two_projections().trainable_variables
    assert variable_groups(variables, exclude=re.compile("bias")) == variable_groups(
        variables, exclude="bias"
    )
    assert variable_groups(variables, exclude=(re.compile("BIAS", re.I), "nothing")) == [
        "m/proj",
        None,
        "m/proj#2",
        None,
    ]
    optimizer = LayerAdaptive(
        keras.optimizers.SGD(), exclude=[re.compile("BIAS", re.I | re.X), re.compile("x")]
    )
    config = optimizer.get_config()
    assert config["exclude"] == ["(?ix)BIAS", "x"]
    assert json.loads(json.dumps(config)) == config
    restored = LayerAdaptive.from_config(config)
    assert restored.get_config() == config
    restored.build(variables)
    assert restored.layer_factors == {"m/proj": 1.0, "m/proj#2": 1.0}
    serialized = keras.saving.serialize_keras_object(optimizer)
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config


@pytest.mark.parametrize(
    "exclude, message",
    [
        (re.compile(b"bias"), "`exclude` must be a regular expression .* Received: exclude="),
        ([re.compile("bias", re.DEBUG)], "compiled with no flags other than re.IGNORECASE"),
        ({"bias"}, "`exclude` must be a regular expression .* Received: exclude={'bias'}"),
        (["bias", None], r"Received: exclude=\['bias', None\]"),
        ("(?i", r"`exclude` is not a valid regular expression \('\(\?i'"),
        (["(?a)(?u)x"], "`exclude` is not a valid regular expression"),
    ],
)
def test_bad_patterns_are_refused_by_every_entry_point(exclude, message):
    variables = two_projections().trainable_variables
    with pytest.raises(ValueError, match=message):
        LayerAdaptive(keras.optimizers.SGD(), exclude=exclude)
    with pytest.raises(ValueError, match=message):
        LayerRates(exclude=exclude)
    with pytest.raises(ValueError, match=message):
        variable_groups(variables, exclude=exclude)


def test_patterns_with_global_inline_flags_are_valid_in_a_list():
    variables = two_projections().trainable_variables
    assert variable_groups(variables, exclude=["(?i)KERNEL", "nothing"]) == [
        None,
        "m/proj",
        None,
        "m/proj#2",
    ]


# --- property: every variable in one group of its own layer, or a clear error ------------------

# Layer names (repeated only in the subclassed models: Sequential and Functional refuse
# that). "blk" names a Block, the others a Dense layer: grouping tells same-named layers
# apart by their repeated variable paths, so layers of one name are of one kind here.
NAMES = ["proj", "proj", "proj", "blk", "dense"]
NOT_PATTERNS = [3, None, b"bias", re.compile(b"bias"), {"a"}, ["bias", 1], [[".*"]]]
INVALID = ["(", "[a-", "*x", "(?P<1>x)"]


def build_model(kind, specs):
    """`specs`: (name, use_bias) of each layer. The model and each variable's layer."""
    layers = [
        Block(name=name) if name == "blk" else keras.layers.Dense(2, use_bias=bias, name=name)
        for name, bias in specs
    ]
    if kind != "subclassed":
        for i, layer in enumerate(layers):
            layer.name = f"{layer.name}_{i}"
    if kind == "sequential":
        model = keras.Sequential([keras.Input((3,)), *layers], name="s")
    elif kind == "functional":
        inputs = x = keras.Input((3,))
        for layer in layers:
            x = layer(x)
        model = keras.Model(inputs, x, name="f")
    else:
        model = Layers(layers, name="m")
        model(np.zeros((1, 3), np.float32))
    owners = {}
    for layer in layers:
        inner = layer.inner.trainable_variables if isinstance(layer, Block) else []
        for variable in layer.trainable_variables:
            owners[id(variable)] = (
                id(layer.inner) if any(v is variable for v in inner) else id(layer)
            )
    return model, owners


def expected_patterns(exclude):
    """The oracle: the compiled patterns `exclude` stands for, or `None` if it is invalid."""
    if exclude is None:
        return []
    patterns = []
    for item in exclude if isinstance(exclude, list | tuple) else [exclude]:
        if isinstance(item, re.Pattern) and isinstance(item.pattern, str) and item.pattern:
            patterns.append(item)
        elif isinstance(item, str) and item and _compiles(item):
            patterns.append(re.compile(item))
        else:
            return None
    return patterns


def _compiles(text):
    try:
        return re.compile(text)
    except (re.error, ValueError):
        return None


# Pieces of the paths these models have ("m/proj/kernel", "s/dense_1/bias", "f/blk_0/d/bias").
PIECES = ["proj", "blk", "dense_1", "kernel", "bias", "scale", "/d/", "m/", "^s/", "_0/", "$"]
PATTERN = st.one_of(
    st.sampled_from(PIECES),
    st.sampled_from(PIECES).map(lambda p: re.compile(p.upper(), re.I)),
    st.sampled_from(["", ".*", "^", *INVALID]),
)
EXCLUDES = st.one_of(
    st.none(),
    PATTERN,
    st.lists(PATTERN, max_size=3),
    st.lists(PATTERN, max_size=2).map(tuple),
    st.sampled_from(NOT_PATTERNS),
)


# 8 examples for each of the 3 kinds of model: 24 in all, about 2 s.
@pytest.mark.boundary
@pytest.mark.parametrize("kind", ["subclassed", "sequential", "functional"])
@settings(derandomize=True, max_examples=8, deadline=None)
@given(
    specs=st.lists(st.tuples(st.sampled_from(NAMES), st.booleans()), min_size=2, max_size=4),
    grouping=st.sampled_from(["layer"] * 4 + ["variable"] * 2 + ["block", None]),
    exclude=EXCLUDES,
)
@example(
    specs=[("proj", False), ("proj", True), ("blk", True), ("proj", False), ("blk", True)],
    grouping="layer",
    exclude=None,
)
@example(
    specs=[("proj", True), ("proj", True), ("blk", True)],
    grouping="variable",
    exclude=[re.compile("BIAS", re.I)],
)
def test_groups_follow_layers_and_exclude_exactly(kind, specs, grouping, exclude):
    model, owners = build_model(kind, specs)
    variables = model.trainable_variables
    paths = [v.path for v in variables]
    patterns = expected_patterns(exclude)
    if grouping not in ("layer", "variable"):
        wrong = "grouping"
    elif patterns is None:
        wrong = "exclude"
    else:
        matched = [any(p.search(path) for p in patterns) for path in paths]
        wrong = "exclude" if all(matched) else None
    event(f"{kind}, {'error: ' + wrong if wrong else 'grouped'}")
    if wrong:
        with pytest.raises((ValueError, TypeError), match=f"`{wrong}`"):
            variable_groups(variables, grouping, exclude)
        return

    groups = variable_groups(variables, grouping, exclude)
    event(f"same-named layers: {len(set(paths)) < len(paths)}, excluded: {any(matched)}")
    assert len(groups) == len(variables)
    assert [group is None for group in groups] == matched
    # Distinct layers (grouping by variable: distinct variables) never share a group.
    owner_of = {}
    for variable, group in zip(variables, groups, strict=True):
        if group is None:
            continue
        assert isinstance(group, str)
        owner = owners[id(variable)] if grouping == "layer" else id(variable)
        assert owner_of.setdefault(group, owner) == owner, f"two owners share {group!r}"
    # And a layer's variables stay together in one group.
    group_of = {}
    for variable, group in zip(variables, groups, strict=True):
        if group is not None and grouping == "layer":
            assert group_of.setdefault(owners[id(variable)], group) == group
