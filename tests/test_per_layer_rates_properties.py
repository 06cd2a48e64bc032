"""The per-layer rules' boundaries, over generated inputs.

Invariants:
- `Multipliers(m, default)`: accepted exactly when `m` is a non-empty dict of valid,
  non-empty regular-expression strings to numbers >= 0 (not bools) within float32 (or a
  callable), and `default` is such a number; then each variable's factor is the first
  matching pattern's, else `default`, and a pattern that matches no variable is an error
  at build. Anything else raises `TypeError` or `ValueError` naming `multipliers` or
  `default`.
- `LayerwiseDecay(decay)` on any stack of layers: the factor of the k-th layer from the
  head is `decay**k`, every variable of one layer has the same factor, the head's is 1.
- `TrustRatio`: for any weights and gradient (zeros, infinities, NaNs, float16 or
  float32, any shape of two or more dimensions) the factor is finite and >= 0, and it is
  `η‖w‖ / (‖g‖ + β‖w‖)` whenever both norms are finite and positive.
"""

import math
import re

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_agd import LayerwiseDecay, Multipliers, PerLayerRates, TrustRatio

pytestmark = pytest.mark.boundary

FLOAT32_MAX = float(np.finfo(np.float32).max)
LAYER_NAMES = ["stem", "body", "head", "norm", "proj"]

patterns = st.one_of(
    st.sampled_from(LAYER_NAMES + ["kernel", "bias", "b.*y", "^x", "(", "[", ""]),
    st.text(alphabet="abdehmnorstxy()[]*.|^", max_size=4),
    st.integers(),
    st.none(),
    st.binary(max_size=2),
)
factors = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.text(max_size=2),
    st.just(np.float32(0.5)),
    st.just(np.int64(2)),
    st.lists(st.floats(0, 1), max_size=1),
)


def valid_pattern(pattern):
    if not isinstance(pattern, str) or not pattern:
        return False
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def valid_factor(value):
    return (
        isinstance(value, int | float | np.floating | np.integer)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= FLOAT32_MAX
    )


def stack(names, units=2):
    layers = [keras.layers.Dense(units, name=name) for name in names]
    return keras.Sequential([keras.Input((3,)), *layers], name="net")


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    multipliers=st.one_of(
        st.dictionaries(patterns, factors, max_size=3),
        st.lists(st.floats(0, 1), max_size=2),
        st.none(),
        st.text(max_size=3),
    ),
    default=factors,
)
def test_multipliers_accept_exactly_the_valid_mappings(multipliers, default):
    valid = (
        isinstance(multipliers, dict)
        and bool(multipliers)
        and all(valid_pattern(p) and valid_factor(f) for p, f in multipliers.items())
        and valid_factor(default)
    )
    if not valid:
        with pytest.raises((TypeError, ValueError), match=r"^`(multipliers|default)"):
            Multipliers(multipliers, default=default)
        return
    rule = Multipliers(multipliers, default=default)
    model = stack(LAYER_NAMES)
    optimizer = PerLayerRates(keras.optimizers.SGD(), rule)
    paths = [v.path for v in model.trainable_variables]
    unmatched = [p for p in multipliers if not any(re.search(p, path) for path in paths)]
    if unmatched:
        with pytest.raises(ValueError, match="matches no variable"):
            optimizer.build(model.trainable_variables)
        return
    optimizer.build(model.trainable_variables)
    for path, factor in optimizer.layer_factors.items():
        expected = next((f for p, f in multipliers.items() if re.search(p, path)), default)
        assert factor == float(expected)


@settings(derandomize=True, max_examples=25, deadline=None)
@given(
    layers=st.integers(1, 6),
    decay=st.floats(0.0, 1.0, exclude_min=True),
    bias=st.booleans(),
)
def test_layerwise_decay_counts_layers_from_the_head(layers, decay, bias):
    names = [f"layer{i}" for i in range(layers)]
    model = keras.Sequential(
        [keras.Input((3,))] + [keras.layers.Dense(2, use_bias=bias, name=name) for name in names],
        name="net",
    )
    optimizer = PerLayerRates(keras.optimizers.SGD(), LayerwiseDecay(decay))
    optimizer.build(model.trainable_variables)
    for path, factor in optimizer.layer_factors.items():
        k = layers - 1 - names.index(path.split("/")[1])
        assert factor == pytest.approx(decay**k, rel=1e-12)
        assert 0 <= factor <= 1
    assert optimizer.layer_factors[f"net/layer{layers - 1}/kernel"] == 1.0


special = st.sampled_from([0.0, -0.0, 1e-30, 1e30, math.inf, -math.inf, math.nan, 3.0])


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=3),
    dtype=st.sampled_from(["float32", "float16"]),
    weight_scale=special,
    gradient_scale=special,
    weight_decay=st.sampled_from([0.0, 0.01]),
    seed=st.integers(0, 3),
)
def test_trust_ratio_factor_is_finite(
    shape, dtype, weight_scale, gradient_scale, weight_decay, seed
):
    rng = np.random.default_rng(seed)
    with np.errstate(all="ignore"):
        weights = (rng.normal(size=shape) * weight_scale).astype(dtype)
        gradient = (rng.normal(size=shape) * gradient_scale).astype(dtype)
    variable = keras.Variable(weights, dtype=dtype, name="kernel")
    rule = TrustRatio(trust_coefficient=0.01, weight_decay=weight_decay)
    _, factor = rule._apply(True, keras.ops.convert_to_tensor(gradient), variable)
    factor = float(keras.ops.convert_to_numpy(factor))
    assert math.isfinite(factor) and factor >= 0
    with np.errstate(all="ignore"):
        w_norm = float(np.linalg.norm(weights.astype(np.float64)))
        g_norm = float(np.linalg.norm(gradient.astype(np.float64)))
    finite = all(map(math.isfinite, (w_norm, g_norm))) and w_norm > 0 and g_norm > 0
    # float32 norms of float64-finite values may still overflow (1e30 squared).
    if finite and max(w_norm, g_norm) < 1e18 and min(w_norm, g_norm) > 1e-18:
        expected = 0.01 * w_norm / (g_norm + weight_decay * w_norm)
        assert factor == pytest.approx(expected, rel=1e-3)
    elif not finite:
        assert factor == 1.0
