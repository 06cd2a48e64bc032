"""`LARS`: SGD with momentum and a per-layer trust ratio, for large-batch training."""

import keras

from keras_agd._keras_adapter import variable_index
from keras_agd.per_layer_rates import RuleSet, scaled_rate
from keras_agd.rate_rules import TrustRatio


@keras.saving.register_keras_serializable(package="keras_agd")
class LARS(keras.optimizers.SGD):
    """Layer-wise Adaptive Rate Scaling: SGD with momentum and a trust ratio per layer.

    Each weight tensor `w` (each layer's kernel) steps with its own rate:

    ```python
    local_rate = learning_rate * trust_coefficient * norm(w) / (
        norm(g) + weight_decay * norm(w) + epsilon
    )  # 1 * learning_rate if norm(w) or norm(g) is 0; at most `clip` * learning_rate
    velocity = momentum * velocity - local_rate * (g + weight_decay * w)
    w = w + velocity  # (Nesterov: w + momentum * velocity - local_rate * (g + ...))
    ```

    Variables left out by `exclude` (by default those with fewer than 2 dimensions:
    biases and normalization scales and offsets) take plain SGD-with-momentum steps at
    `learning_rate`, with no weight decay. The rate of each layer depends on the ratio of
    its weights' norm to its gradient's, so that one global `learning_rate` (with warmup)
    serves batch sizes in the thousands. With `weight_decay=0` the step is optax's
    `lars` with the same arguments. Everything else is `keras.optimizers.SGD`: learning
    rate schedules, clipping, EMA, gradient accumulation, the TensorFlow and JAX backends.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or
            a callable. The global rate, before the trust ratio. Defaults to `0.1`.
        momentum: Float >= 0. Defaults to `0.9`.
        nesterov: Boolean, whether to apply Nesterov momentum. Defaults to `False`.
        weight_decay: Float >= 0, the coupled weight decay β of LARS (added to the
            gradient and to the trust ratio's denominator). Not Keras' decoupled
            `weight_decay`. Defaults to `0.0`.
        trust_coefficient: Float > 0, η. Defaults to `0.001`.
        epsilon: Float >= 0 added to the trust ratio's denominator. Defaults to `0.0`.
        clip: Optional float > 0, the largest trust ratio. Defaults to `None`.
        exclude: Which variables take plain steps: `None` (fewer than 2 dimensions),
            a regular expression or list of them matched against variable paths, or
            `[]` for none. Defaults to `None`.
        name: String. Defaults to `"lars"`.
        **kwargs: The base optimizer arguments (`clipnorm`, `use_ema`,
            `gradient_accumulation_steps`, ...), except `weight_decay`.

    Attributes:
        layer_factors: Dict mapping each variable's path to its trust ratio in the last
            step (1.0 for excluded variables).

    Example:

    ```python
    steps = 10 * -(-len(x) // 4096)  # 10 epochs at batch 4,096
    schedule = keras.optimizers.schedules.CosineDecay(  # warmup, then cosine decay
        0.0, decay_steps=steps - steps // 10, warmup_target=10.0, warmup_steps=steps // 10
    )
    model.compile(optimizer=keras_agd.LARS(schedule, momentum=0.9), loss=...)
    model.fit(x, y, batch_size=4096, epochs=10)
    ```

    Reference:
        - You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks",
          2017 (arXiv:1708.03888).
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        nesterov=False,
        weight_decay=0.0,
        trust_coefficient=0.001,
        epsilon=0.0,
        clip=None,
        exclude=None,
        name="lars",
        **kwargs,
    ):
        rule = TrustRatio(trust_coefficient, weight_decay, epsilon, clip, exclude)
        super().__init__(
            learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs
        )
        self._rules = RuleSet([rule])

    @property
    def trust_ratio(self):
        """The `keras_agd.TrustRatio` rule this optimizer applies."""
        return self._rules.rules[0]

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._rules.build(self, var_list)

    def update_step(self, gradient, variable, learning_rate):
        index = variable_index(self, variable)
        gradient, factor = self._rules.apply(self, index, gradient, variable)
        super().update_step(gradient, variable, scaled_rate(learning_rate, factor))

    @property
    def layer_factors(self):
        return self._rules.result()

    def get_config(self):
        config = super().get_config()
        config.update(self.trust_ratio.get_config())
        config["plan"] = self._rules.plan_config()
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        plan = config.pop("plan", None)
        optimizer = super().from_config(config, custom_objects=custom_objects)
        optimizer._rules.restore(plan)
        return optimizer
