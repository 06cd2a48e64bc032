"""Annealing schedules: the quantization error ε of each AGD mosaic level (Pan & Jiang, §5)."""

import keras
from keras import ops

from keras_agd import _validation
from keras_agd.codebook import check_fitted

_register = keras.saving.register_keras_serializable(package="keras_agd")


@_register
class AnnealingSchedule:
    """Base class of annealing schedules: maps the mosaic level (0, 1, ...) to ε.

    A schedule returns the quantization error that selects the codebook frontier of
    each level. Once it returns `0.0`, training uses the real samples (the regular
    phase). Subclasses implement `__call__(step)` with `keras.ops` (no Python
    branching on tensors) and `get_config()`.

    Example:

    ```python
    @keras.saving.register_keras_serializable()
    class Halving(keras_agd.schedules.AnnealingSchedule):
        def __init__(self, initial_epsilon):
            self.initial_epsilon = initial_epsilon

        def __call__(self, step):
            return self.initial_epsilon * 0.5 ** ops.cast(step, "float32")

        def get_config(self):
            return {"initial_epsilon": self.initial_epsilon}
    ```
    """

    def __call__(self, step):
        raise NotImplementedError(f"{type(self).__name__} must implement `__call__(step)`.")

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__} must implement `get_config()`.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@_register
class ExponentialAnnealing(AnnealingSchedule):
    r"""Exponential annealing: ε is multiplied by `decay_rate` at every level.

    The ε of level $i$ is $\varepsilon_i = \varepsilon_0 \, r^i$, where
    $\varepsilon_0$ is `initial_epsilon` and $r$ is `decay_rate`; once
    $\varepsilon_i \le$ `final_epsilon`, it is 0 and training uses the real samples:

    ```python
    epsilon = initial_epsilon * decay_rate ** step
    epsilon = epsilon if epsilon > final_epsilon else 0.0
    ```

    With `final_epsilon=0` annealing never ends (the paper's MNIST run); a positive
    `final_epsilon` is the point where training switches to the real samples.

    Args:
        initial_epsilon: ε of the first level, > 0.
        decay_rate: Factor in (0, 1]. The paper uses `0.999`.
        final_epsilon: Floor below which ε becomes 0. Defaults to `0.0`.
        name: Defaults to `"ExponentialAnnealing"`.

    Example:

    >>> schedule = ExponentialAnnealing(6.0, 0.75, final_epsilon=2.0)
    >>> [float(schedule(i)) for i in range(5)]
    [6.0, 4.5, 3.375, 2.53125, 0.0]

    Reference:
        H. Pan and H. Jiang, "Annealed Gradient Descent for Deep Learning", UAI 2015.
    """

    def __init__(self, initial_epsilon, decay_rate, final_epsilon=0.0, name="ExponentialAnnealing"):
        self.initial_epsilon, self.final_epsilon = _check_epsilons(initial_epsilon, final_epsilon)
        # An annealing schedule must not increase; float32 must not round the rate to 0.
        self.decay_rate = _validation.check_number("decay_rate", decay_rate, 0, 1, low_open=True)
        _validation.check_float32_positive("decay_rate", decay_rate)
        self.name = _validation.check_string("name", name)

    def __call__(self, step):
        # In float64: a rate near 1 raised to thousands of levels loses whole levels
        # in float32 (ε reaches the floor a level early), then ε is float32 as always.
        step = ops.cast(step, "float64")
        rate = ops.convert_to_tensor(self.decay_rate, dtype="float64")
        epsilon = ops.convert_to_tensor(self.initial_epsilon, "float64") * ops.power(rate, step)
        return ops.cast(_floor(epsilon, self.final_epsilon), "float32")

    def get_config(self):
        return {
            "initial_epsilon": self.initial_epsilon,
            "decay_rate": self.decay_rate,
            "final_epsilon": self.final_epsilon,
            "name": self.name,
        }


@_register
class LinearAnnealing(AnnealingSchedule):
    r"""Linear annealing: ε decreases by `delta` at every level.

    The ε of level $i$ is $\varepsilon_i = \varepsilon_0 - i \, \Delta$, where
    $\varepsilon_0$ is `initial_epsilon` and $\Delta$ is `delta`; once
    $\varepsilon_i \le$ `final_epsilon`, it is 0 and training uses the real samples:

    ```python
    epsilon = initial_epsilon - delta * step
    epsilon = epsilon if epsilon > final_epsilon else 0.0
    ```

    Args:
        initial_epsilon: ε of the first level, > 0.
        delta: Decrease per level, > 0. The paper uses 1.0, 0.9 or 0.8 (Switchboard).
        final_epsilon: Floor at which annealing ends and ε becomes 0.
        name: Defaults to `"LinearAnnealing"`.

    Example:

    >>> schedule = LinearAnnealing(5.5, delta=0.5, final_epsilon=2.5)
    >>> [float(schedule(i)) for i in (0, 5, 6)]
    [5.5, 3.0, 0.0]
    """

    def __init__(self, initial_epsilon, delta, final_epsilon, name="LinearAnnealing"):
        self.initial_epsilon, self.final_epsilon = _check_epsilons(initial_epsilon, final_epsilon)
        # An annealing schedule must not increase, nor stand still in float32.
        self.delta = _validation.check_float32_positive("delta", delta)
        self.name = _validation.check_string("name", name)

    def __call__(self, step):
        # In float64 for the same reason as `ExponentialAnnealing`.
        delta = ops.convert_to_tensor(self.delta, dtype="float64")
        epsilon = self.initial_epsilon - delta * ops.cast(step, "float64")
        return ops.cast(_floor(epsilon, self.final_epsilon), "float32")

    def get_config(self):
        return {
            "initial_epsilon": self.initial_epsilon,
            "delta": self.delta,
            "final_epsilon": self.final_epsilon,
            "name": self.name,
        }


def from_codebook(codebook, levels, kind="exponential"):
    """A schedule that anneals through a codebook's tree in `levels` mosaic levels.

    It starts at the mean quantization error of level 1 (as the paper starts from
    "the average quantization error in the first layer of the codebook") and ends at
    the error of the deepest tree level that still covers half of the samples; mosaic
    level `levels` is the first one on the real samples.

    Args:
        codebook: A fitted `HierarchicalCodebook`.
        levels: Number of mosaic levels (values of ε > 0), >= 1.
        kind: `"exponential"` or `"linear"`. Defaults to `"exponential"`.

    Returns:
        An `ExponentialAnnealing` or `LinearAnnealing`.

    Example:

    >>> schedule = keras_agd.schedules.from_codebook(codebook, levels=6)  # MNIST in [0, 1]
    >>> [round(float(schedule(i)), 1) for i in range(7)]  # level 6: the real samples
    [5.5, 4.8, 4.1, 3.6, 3.1, 2.7, 0.0]
    """
    check_fitted("codebook", codebook)
    levels = _validation.check_integer("levels", levels, 1)
    if kind not in ("exponential", "linear"):
        raise ValueError(f"`kind` must be 'exponential' or 'linear'. Received: kind={kind!r}")
    tree = codebook.level_summary()
    if len(tree) < 2:
        raise ValueError(
            "`codebook` has a single level (no node was split), so there is nothing to "
            "anneal: refit it with a larger `max_depth` or on data with more than one "
            "distinct sample per class."
        )
    half = len(codebook.sample_node_) / 2
    start = tree[1]["mean_error"]
    if not start > 0:
        raise ValueError(
            "The codebook's level 1 has a mean error of 0 (its classes hold identical "
            "samples), so there is nothing to anneal: `codebook` must have a level-1 error > 0."
        )
    # A level of error 0 is the samples themselves: annealing ends above it.
    end = min(
        (row["mean_error"] for row in tree[1:] if row["samples"] >= half and row["mean_error"]),
        default=start,
    )
    end = min(end, start * (1 - 1e-6))  # A one-level codebook still gets a decreasing schedule.
    # Aim half a level past the floor so rounding cannot add or drop a mosaic level.
    if kind == "exponential":
        rate = (end / start) ** (1.0 / (levels - 0.5))
        return ExponentialAnnealing(start, rate, final_epsilon=end)
    return LinearAnnealing(start, (start - end) / (levels - 0.5), final_epsilon=end)


def _check_epsilons(initial_epsilon, final_epsilon):
    """Both as floats; ε is computed in float32, which must hold them (1e39 would be inf)."""
    initial_epsilon = _validation.check_float32_positive("initial_epsilon", initial_epsilon)
    final_epsilon = _validation.check_number("final_epsilon", final_epsilon, 0)
    if final_epsilon > initial_epsilon:
        raise ValueError(
            "`final_epsilon` must be in [0, initial_epsilon]. Received: "
            f"final_epsilon={final_epsilon}, initial_epsilon={initial_epsilon}"
        )
    return initial_epsilon, final_epsilon


def _floor(epsilon, final_epsilon):
    """ε while above the floor, 0 (the real samples) from then on."""
    return ops.where(epsilon > final_epsilon, epsilon, ops.zeros_like(epsilon))
