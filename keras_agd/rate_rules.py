"""Per-variable learning-rate rules: a trust ratio (LARS), fixed multipliers, layer-wise decay.

A rule gives each variable a factor on the learning rate, `t_v = t * factor_v`. The rules
hold no state of their own: `keras_agd.PerLayerRates` (any Keras optimizer) and
`keras_agd.LARS` plan them on the variables at build time and apply them in the
optimizer's `update_step`, so they run on every Keras backend.
"""

import re

import keras
from keras import ops

from keras_agd import _grouping, _validation

_PACKAGE = "keras_agd"


class _Rule:
    """The private protocol of a rule.

    `_plan(variables, paths)` returns one entry per variable, computed once at build
    time; `_apply(entry, gradient, variable)` returns the gradient the optimizer should
    use and the factor on its rate (a Python float for a fixed factor, a float32 scalar
    tensor for a factor computed from the step's gradient).
    """

    dynamic = False  # Whether `_apply` computes the factor from the gradient.

    def _plan(self, variables, paths):
        raise NotImplementedError

    def _apply(self, entry, gradient, variable):
        return gradient, entry

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TrustRatio(_Rule):
    """The trust ratio of LARS: each weight tensor's rate follows its own norm.

    For a variable `w` with gradient `g`:

    ```python
    factor = trust_coefficient * norm(w) / (norm(g) + weight_decay * norm(w) + epsilon)
    factor = 1 if norm(w) == 0 or norm(g) == 0  # zero-norm guard, as in optax
    factor = min(factor, clip)                   # only if `clip` is set (LARC's clipping)
    gradient = g + weight_decay * w               # weight decay coupled into the step
    ```

    and the optimizer steps with `t * factor` on `g + weight_decay * w`. On SGD with
    momentum this is LARS (You, Gitman & Ginsburg 2017); `keras_agd.LARS` is that
    optimizer. Excluded variables (by default those with fewer than 2 dimensions:
    biases and normalization scales and offsets) keep the plain rate and get no
    weight decay. Norms are taken in float32 whatever the variables' dtype; a factor
    that is not finite (a NaN or infinite gradient) is replaced by 1, so the rule never
    adds a NaN of its own.

    Args:
        trust_coefficient: Float > 0, the trust coefficient η. Defaults to `0.001`.
        weight_decay: Float >= 0, the weight decay β, added to the gradient of every
            variable the rule adapts and to the denominator. Defaults to `0.0`.
        epsilon: Float >= 0 added to the denominator. Defaults to `0.0`.
        clip: Optional float > 0, the largest factor. Defaults to `None` (no clipping).
        exclude: Which variables keep the plain rate: `None` for those with fewer than
            2 dimensions, a regular expression or list of them matched against the
            variable path (e.g. `"bias|normalization"`), or `[]` to adapt every
            variable. Defaults to `None`.

    Example:

    ```python
    optimizer = keras_agd.PerLayerRates(
        keras.optimizers.SGD(0.5, momentum=0.9),
        rules=[keras_agd.TrustRatio(trust_coefficient=0.001, weight_decay=5e-4)],
    )
    ```

    Reference:
        - You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks",
          2017 (arXiv:1708.03888), Algorithm 1.
    """

    dynamic = True

    def __init__(
        self, trust_coefficient=0.001, weight_decay=0.0, epsilon=0.0, clip=None, exclude=None
    ):
        self.trust_coefficient = _validation.check_number(
            "trust_coefficient", trust_coefficient, 0, None, low_open=True
        )
        self.weight_decay = _validation.check_number("weight_decay", weight_decay, 0)
        self.epsilon = _validation.check_number("epsilon", epsilon, 0)
        self.clip = None
        if clip is not None:
            self.clip = _validation.check_number("clip", clip, 0, None, low_open=True)
        # `[]` (adapt everything) is kept apart from `None` (the default by dimensions).
        self.exclude = None
        if exclude is not None:
            self.exclude = [] if _is_empty_list(exclude) else _grouping.check_exclude(exclude)

    def _plan(self, variables, paths):
        if self.exclude is None:
            adapted = [len(variable.shape) >= 2 for variable in variables]
        else:
            adapted = [not out for out in _grouping.excluded(paths, self.exclude, self.exclude)]
        if variables and not any(adapted):
            raise ValueError(
                "TrustRatio adapts no variable: all have fewer than 2 dimensions. Pass "
                "`exclude=[]` to adapt every variable, or a pattern for the ones to leave "
                f"out. Variables: {', '.join(map(repr, paths[:3]))}"
            )
        return adapted

    def _apply(self, adapted, gradient, variable):
        if not adapted:
            return gradient, 1.0
        weights = ops.cast(variable, "float32")
        gradient32 = ops.cast(gradient, "float32")
        weight_norm = ops.sqrt(ops.sum(ops.square(weights)))
        gradient_norm = ops.sqrt(ops.sum(ops.square(gradient32)))
        denominator = gradient_norm + self.weight_decay * weight_norm + self.epsilon
        ratio = self.trust_coefficient * weight_norm / ops.maximum(denominator, 1e-30)
        zero = ops.logical_or(ops.equal(weight_norm, 0.0), ops.equal(gradient_norm, 0.0))
        ratio = ops.where(ops.logical_or(zero, ops.logical_not(ops.isfinite(ratio))), 1.0, ratio)
        if self.clip is not None:
            ratio = ops.minimum(ratio, self.clip)
        if self.weight_decay:
            gradient = gradient + ops.cast(self.weight_decay, gradient.dtype) * ops.cast(
                variable, gradient.dtype
            )
        return gradient, ratio

    def get_config(self):
        return {
            "trust_coefficient": self.trust_coefficient,
            "weight_decay": self.weight_decay,
            "epsilon": self.epsilon,
            "clip": self.clip,
            "exclude": self.exclude,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Multipliers(_Rule):
    """Fixed factors on the learning rate of chosen variables (discriminative rates).

    Args:
        multipliers: Dict mapping a regular expression to a float >= 0: a variable whose
            path (e.g. `"functional/conv2d/kernel"`) matches a pattern gets its factor,
            the first matching pattern in the dict's order winning. Every pattern must
            match some variable (a typo is an error, not a silent factor of 1). Or a
            callable mapping a `keras.Variable` to a float >= 0. A factor of 0 freezes
            the variable (its decoupled weight decay, scaled by the same factor, too);
            its gradient is still computed, so for a part frozen for the whole run
            `layer.trainable = False` also saves that work.
        default: Float >= 0, the factor of the variables no pattern matches.
            Defaults to `1.0`.

    Example:

    ```python
    # The new head at the full rate, the pretrained backbone at a tenth of it.
    rule = keras_agd.Multipliers({"head": 1.0}, default=0.1)
    optimizer = keras_agd.PerLayerRates(keras.optimizers.Adam(1e-3), rules=[rule])
    ```
    """

    def __init__(self, multipliers, default=1.0):
        self.default = _check_factor("default", default)
        if callable(multipliers):
            self.multipliers = multipliers
        elif isinstance(multipliers, dict) and multipliers:
            self.multipliers = {}
            for pattern, factor in multipliers.items():
                text = _check_pattern("multipliers", pattern, multipliers)
                self.multipliers[text] = _check_factor(f"multipliers[{pattern!r}]", factor)
        else:
            raise TypeError(
                "`multipliers` must be a non-empty dict of regular expressions to floats, "
                "e.g. {'head': 1.0, 'conv': 0.1}, or a callable mapping a variable to a "
                f"float. Received: multipliers={multipliers!r}"
            )

    def _plan(self, variables, paths):
        if callable(self.multipliers):
            return [
                _check_factor(f"multipliers({path!r})", self.multipliers(variable))
                for variable, path in zip(variables, paths, strict=True)
            ]
        compiled = [(re.compile(p), factor) for p, factor in self.multipliers.items()]
        _check_all_match("multipliers", [p for p, _ in compiled], paths)
        factors = []
        for path in paths:
            factors.append(next((f for p, f in compiled if p.search(path)), self.default))
        return factors

    def get_config(self):
        multipliers = self.multipliers
        if callable(multipliers):
            multipliers = keras.saving.serialize_keras_object(multipliers)
        return {"multipliers": multipliers, "default": self.default}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["multipliers"], dict) and "class_name" in config["multipliers"]:
            config["multipliers"] = keras.saving.deserialize_keras_object(config["multipliers"])
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LayerwiseDecay(_Rule):
    """Layer-wise learning-rate decay: the factor `decay**k` for the k-th block from the head.

    The head (k = 0) keeps the full rate, each block below it `decay` times the rate of
    the block above.

    Blocks, by default, are the layers that own trainable variables, in the order of the
    variables the optimizer is built with: `model.trainable_variables`, which lists a
    model's layers in order (a `Sequential` model's stack; a Functional model's layers
    from its inputs to its outputs, as `model.layers` does). The last layer is the head.
    Layers side by side in a Functional model (two branches) are still counted one after
    the other; pass `blocks` to say what belongs together.

    Args:
        decay: Float in (0, 1], the factor between consecutive blocks.
        blocks: Optional list of regular expressions, one per block, from the input side
            to the head, matched against variable paths; a variable belongs to the first
            pattern it matches. Every variable must match one and every pattern some
            variable. E.g. `["embedding", "block_0/", "block_1/", "head"]`. Or a callable
            mapping a `keras.Variable` to its block's distance from the head (an int
            >= 0). Defaults to `None` (one block per layer).

    Example:

    ```python
    optimizer = keras_agd.PerLayerRates(
        keras.optimizers.Adam(1e-3), rules=[keras_agd.LayerwiseDecay(0.5)]
    )
    ```

    Reference:
        - Clark et al., "ELECTRA: Pre-training Text Encoders as Discriminators Rather
          Than Generators", ICLR 2020 (layer-wise learning-rate decay in fine-tuning).
    """

    def __init__(self, decay, blocks=None):
        self.decay = _validation.check_number("decay", decay, 0, 1, low_open=True)
        if blocks is None or callable(blocks):
            self.blocks = blocks
        elif isinstance(blocks, list | tuple) and blocks:
            self.blocks = [_check_pattern("blocks", pattern, blocks) for pattern in blocks]
        else:
            raise TypeError(
                "`blocks` must be None, a non-empty list of regular expressions (one per "
                "block, from the input side to the head) or a callable mapping a variable "
                f"to its distance from the head. Received: blocks={blocks!r}"
            )

    def _plan(self, variables, paths):
        if self.blocks is None:
            layers = _grouping.owner_groups(paths, "layer")
            order = list(dict.fromkeys(layers))
            depth = {layer: len(order) - 1 - i for i, layer in enumerate(order)}
            distances = [depth[layer] for layer in layers]
        elif callable(self.blocks):
            distances = []
            for variable, path in zip(variables, paths, strict=True):
                distance = self.blocks(variable)
                _validation.check_integer(f"blocks({path!r})", distance, 0)
                distances.append(int(distance))
        else:
            compiled = [re.compile(pattern) for pattern in self.blocks]
            _check_all_match("blocks", compiled, paths)
            distances = []
            for path in paths:
                index = next((i for i, p in enumerate(compiled) if p.search(path)), None)
                if index is None:
                    raise ValueError(
                        f"The variable {path!r} matches none of `blocks`; add a pattern "
                        f"for its block. Received: blocks={self.blocks!r}"
                    )
                distances.append(len(compiled) - 1 - index)
        return [self.decay**distance for distance in distances]

    def get_config(self):
        blocks = self.blocks
        if callable(blocks):
            blocks = keras.saving.serialize_keras_object(blocks)
        return {"decay": self.decay, "blocks": blocks}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["blocks"], dict):
            config["blocks"] = keras.saving.deserialize_keras_object(config["blocks"])
        return cls(**config)


def _is_empty_list(value):
    return isinstance(value, list | tuple) and not value


def _check_factor(name, value):
    if not _validation.is_number(value):
        raise TypeError(f"`{name}` must be a float >= 0. Received: {name}={value!r}")
    return _validation.check_number(name, value, 0)


def _check_pattern(name, pattern, received):
    if not isinstance(pattern, str | re.Pattern):
        raise TypeError(
            f"`{name}` patterns must be regular expressions (strings). "
            f"Received: {name}={received!r}"
        )
    return _grouping.check_exclude(pattern, name)[0]


def _check_all_match(name, patterns, paths):
    """Raises `ValueError` naming the first compiled pattern that matches no path."""
    for pattern in patterns:
        if not any(pattern.search(path) for path in paths):
            shown = ", ".join(map(repr, paths[:4])) + (", ..." if len(paths) > 4 else "")
            raise ValueError(
                f"The `{name}` pattern {pattern.pattern!r} matches no variable; the "
                f"variable paths are {shown}. Fix the pattern or leave it out."
            )


def plan(rules, variables, paths):
    """Each variable's fixed factor and dynamic entries, for `PerLayerRates` and `LARS`.

    Returns:
        `(fixed, dynamic)`: `fixed[i]` is the product of the fixed factors of variable
        `i`; `dynamic` is a list of `(rule, entries)` for the rules whose factor depends
        on the step's gradient.
    """
    fixed = [1.0] * len(variables)
    dynamic = []
    for rule in rules:
        entries = rule._plan(variables, paths)
        if rule.dynamic:
            dynamic.append((rule, entries))
        else:
            fixed = [f * e for f, e in zip(fixed, entries, strict=True)]
    return fixed, dynamic
