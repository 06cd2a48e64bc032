"""`PerLayerRates`: per-variable learning-rate rules on any Keras optimizer, on any backend."""

import copy

import keras
from keras import ops

from keras_agd import _grouping, _validation, rate_rules
from keras_agd._keras_adapter import uses_weight_decay, variable_index
from keras_agd._wrapper import WrapperOptimizer

# The keys of a built optimizer's plan in its config.
PLAN = ("fixed", "adapted")


class RuleSet:
    """The rules of one optimizer, planned on its variables: each variable's factor.

    Shared by `PerLayerRates` and `keras_agd.LARS`. `build` plans the rules and adds one
    float32 scalar to `owner` per variable whose factor changes with the gradient (a
    trust ratio), where the last step's factor is kept for `result()` and the logs.

    The plan (each variable's fixed factor, and whether the trust ratio adapts it) goes
    into the optimizer's config once built, and a restored optimizer takes it by position,
    as Keras restores optimizer variables: a loaded model keeps the factors it trained
    with, although Keras may give its variables other paths (a reloaded `Sequential`
    model's lose the model's name, which patterns could have named).
    """

    def __init__(self, rules):
        self.rules = _check_rules(rules)
        self.names = None
        self.restored = None

    def restore(self, plan):
        """Takes the plan of `plan_config()` from a saved config, checked."""
        if plan is None:
            return
        fixed, adapted = (plan.get(key) if isinstance(plan, dict) else None for key in PLAN)
        dynamic = any(rule.dynamic for rule in self.rules)
        ok = isinstance(fixed, list) and all(
            _validation.is_number(f) and 0 <= f <= _validation.FLOAT32_MAX for f in fixed
        )
        ok = ok and (
            adapted is None
            if not dynamic
            else isinstance(adapted, list)
            and len(adapted) == len(fixed)
            and all(isinstance(a, bool) for a in adapted)
        )
        if not ok:
            raise ValueError(
                "The optimizer config's `plan` must be {'fixed': [a float >= 0 per variable], "
                "'adapted': [a bool per variable] with a TrustRatio, else None}, as "
                f"`get_config()` writes it. Received: plan={plan!r}"
            )
        self.restored = {"fixed": [float(f) for f in fixed], "adapted": adapted}

    def plan_config(self):
        """The plan of the built optimizer, for its config (before `build`: the restored one)."""
        if self.names is None:
            return self.restored
        adapted = [entries for _, entries in self.dynamic]
        return {"fixed": list(self.fixed), "adapted": list(adapted[0]) if adapted else None}

    def build(self, owner, variables):
        paths = [_grouping.variable_path(variable) for variable in variables]
        restored = self.restored
        if restored is not None and len(restored["fixed"]) == len(variables):
            self.fixed = restored["fixed"]
            self.dynamic = [(r, restored["adapted"]) for r in self.rules if r.dynamic]
        else:  # A fresh optimizer, or a model with other variables than the saved one.
            self.fixed, self.dynamic = rate_rules.plan(self.rules, variables, paths)
        self.names = _grouping.owner_groups(paths, "variable")
        self.recorded = {}
        for _rule, entries in self.dynamic:
            for i, adapted in enumerate(entries):
                if adapted:
                    self.recorded[i] = owner.add_variable(
                        shape=(),
                        initializer="ones",
                        dtype="float32",
                        name=f"{paths[i].replace('/', '_')}_rate_factor",
                    )

    def apply(self, owner, index, gradient, variable):
        """`(gradient, factor)` for variable `index` in this step; records dynamic factors."""
        factor = self.fixed[index]
        for rule, entries in self.dynamic:
            gradient, ratio = rule._apply(entries[index], gradient, variable)
            if index in self.recorded:
                owner.assign(self.recorded[index], ratio)
                factor = ratio * factor
        return gradient, factor

    def result(self):
        """Dict mapping each variable's name to its factor in the last step."""
        if self.names is None:
            return {}
        factors = {}
        for i, name in enumerate(self.names):
            factor = self.fixed[i]
            if i in self.recorded:
                factor *= float(self.recorded[i].numpy())
            factors[name] = float(factor)
        return factors

    def get_config(self):
        return [keras.saving.serialize_keras_object(rule) for rule in self.rules]


def scaled_rate(learning_rate, factor):
    """`learning_rate * factor`, in the rate's dtype; the rate itself if the factor is 1."""
    if isinstance(factor, float) and factor == 1.0:
        return learning_rate
    learning_rate = ops.convert_to_tensor(learning_rate)
    return learning_rate * ops.cast(factor, learning_rate.dtype)


@keras.saving.register_keras_serializable(package="keras_agd")
class PerLayerRates(WrapperOptimizer):
    """Per-variable learning-rate rules on any Keras optimizer with a global learning rate.

    Each rule gives each variable a factor on the wrapped optimizer's learning rate; the
    factors of several rules multiply. The wrapped optimizer then takes its own step
    (momentum, Adam's moments, clipping, EMA, gradient accumulation) with the rate
    `t_v = t * factor_v` for each variable. Its decoupled weight decay (`AdamW`, or any
    optimizer's `weight_decay`) is scaled by the same factor, so a variable with a
    factor of 0 is frozen. Works on the TensorFlow and JAX backends, with
    `jit_compile`, `tf.distribute` (factors from the summed gradients), mixed precision
    and `model.save`.

    Rules:
        - `keras_agd.TrustRatio`: LARS's trust ratio (at most one per optimizer).
        - `keras_agd.Multipliers`: fixed factors chosen by variable path.
        - `keras_agd.LayerwiseDecay`: `decay**k` for the k-th block from the head.

    The wrapper takes over the wrapped optimizer's update step: use the wrapped
    instance through the wrapper only.

    Args:
        inner_optimizer: The `keras.optimizers.Optimizer` to wrap (SGD, Adam, AdamW,
            RMSprop, Lion, ...).
        rules: A rule or a non-empty list of rules.
        name: String, the name of the optimizer. Defaults to `None`.

    Attributes:
        layer_factors: Dict mapping each variable's path to its factor `t_v / t` in
            the last update step: empty until the optimizer is built (at the first step,
            or by `optimizer.build(model.trainable_variables)`), then fixed factors at
            once and trust ratios 1.0 until the first step.
            `keras_agd.LayerFactorLogger` puts them in the logs.

    Example:

    ```python
    # Fine-tuning: the head at 1e-3, each layer below at half the rate of the one above.
    optimizer = keras_agd.PerLayerRates(
        keras.optimizers.Adam(1e-3), rules=[keras_agd.LayerwiseDecay(0.5)]
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    ```
    """

    requires_tensorflow = False

    def __init__(self, inner_optimizer, rules, name=None, **kwargs):
        if kwargs:
            raise ValueError(
                f"PerLayerRates does not support `{'`, `'.join(kwargs)}`. "
                "Set such options on the wrapped `inner_optimizer` instead."
            )
        _check_inner_optimizer(inner_optimizer)
        rule_set = RuleSet(rules)
        super().__init__(inner_optimizer, name=name)
        self._rules = rule_set
        # The wrapped optimizer's decoupled weight decay is applied here, at each
        # variable's own rate; Keras would apply it at the global rate. (Taken over for
        # good: `apply` may run in several replica threads at once under tf.distribute.)
        self._weight_decay = inner_optimizer.weight_decay
        inner_optimizer.weight_decay = None
        self._uses_weight_decay = None
        self._inner_update_step = inner_optimizer.update_step
        # The public per-variable step of the optimizer contract: every backend's
        # apply calls `optimizer.update_step(gradient, variable, learning_rate)`.
        inner_optimizer.update_step = self._update_step

    @property
    def rules(self):
        return list(self._rules.rules)

    def build(self, var_list):
        if self.built:
            return
        self._rules.build(self, var_list)
        super().build(var_list)
        self._uses_weight_decay = [
            uses_weight_decay(self.inner_optimizer, variable) for variable in var_list
        ]

    @property
    def weight_decay(self):
        """The wrapped optimizer's decoupled weight decay, applied at each variable's rate."""
        return self._weight_decay

    @weight_decay.setter
    def weight_decay(self, value):
        # The base class sets its own (None) before `__init__` takes the inner one's.
        if getattr(self, "inner_optimizer", None) is not None:
            self._weight_decay = value

    def _update_step(self, gradient, variable, learning_rate):
        index = variable_index(self.inner_optimizer, variable)
        gradient, factor = self._rules.apply(self, index, gradient, variable)
        rate = scaled_rate(learning_rate, factor)
        if self._weight_decay is not None and self._uses_weight_decay[index]:
            decay = ops.cast(self._weight_decay, variable.dtype) * ops.cast(rate, variable.dtype)
            variable.assign(variable - variable * decay)
        self._inner_update_step(gradient, variable, rate)

    @property
    def layer_factors(self):
        return self._rules.result()

    def get_config(self):
        config = super().get_config()
        config["inner_optimizer"]["config"]["weight_decay"] = self._weight_decay
        return {**config, "rules": self._rules.get_config(), "plan": self._rules.plan_config()}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = copy.deepcopy(config)
        plan = config.pop("plan", None)
        config["inner_optimizer"] = keras.saving.deserialize_keras_object(
            config["inner_optimizer"], custom_objects=custom_objects
        )
        config["rules"] = [
            keras.saving.deserialize_keras_object(rule, custom_objects=custom_objects)
            for rule in config["rules"]
        ]
        optimizer = cls(**config)
        optimizer._rules.restore(plan)
        return optimizer


def _check_inner_optimizer(optimizer):
    _validation.check_optimizer("inner_optimizer", optimizer)
    # A wrapper (AGD, LayerAdaptive, another PerLayerRates) delegates its update.
    if isinstance(optimizer, WrapperOptimizer | keras.optimizers.MultiOptimizer):
        raise ValueError(
            "`inner_optimizer` must be an optimizer with one global learning rate, not "
            f"another wrapper. Received: inner_optimizer={type(optimizer).__name__}. "
            "Put all rules in one PerLayerRates: rules=[rule_1, rule_2]."
        )
    if "update_step" in vars(optimizer):
        raise ValueError(
            f"The optimizer {optimizer.name!r} is already wrapped by a PerLayerRates. "
            "Wrap a fresh optimizer instance."
        )


def _check_rules(rules):
    items = list(rules) if isinstance(rules, list | tuple) else [rules]
    if not items:
        raise ValueError(
            "`rules` must hold at least one rule, e.g. rules=[keras_agd.LayerwiseDecay(0.5)]. "
            "Received: rules=[]"
        )
    for rule in items:
        if not isinstance(rule, rate_rules._Rule):
            raise TypeError(
                "`rules` must be keras_agd.TrustRatio, keras_agd.Multipliers or "
                f"keras_agd.LayerwiseDecay instances. Received an item: {rule!r}"
            )
    if sum(rule.dynamic for rule in items) > 1:
        raise ValueError(f"`rules` may hold one TrustRatio at most. Received: rules={items!r}")
    return items
