"""Layer-specific adaptive learning rates (eq. 9 of the paper) for any Keras optimizer.

The public pieces are the `LayerAdaptive` optimizer wrapper and three helpers that an
optimizer of its own (such as `keras_agd.AGD(layer_adaptive=True)`) reuses:
`variable_groups` (which layer each variable belongs to), `layer_factors` (the factor
`1 + log(1 + 1/||g_l||)` of each layer) and `LayerRates` (both, plus the
`tf.distribute`-aware update that feeds each variable its layer's rate).
"""

import collections.abc
import copy
import functools

import keras
import tensorflow as tf
from keras import ops

from keras_agd import _grouping, _validation
from keras_agd._keras_adapter import hook_update_step, is_update_step_hooked, variable_key
from keras_agd._wrapper import WrapperOptimizer


def variable_groups(variables, grouping="layer", exclude=None):
    """Names the group (layer) whose gradient norm sets each variable's rate.

    Args:
        variables: List of `keras.Variable`s, e.g. `model.trainable_variables`.
        grouping: `"layer"` (all variables of one layer, e.g. a Dense kernel and
            its bias, share one group), `"variable"` (each variable is its own
            group), or a callable mapping a variable to a group name (a string),
            or to `None` to exclude it. Defaults to `"layer"`.
        exclude: Optional regular expression (a string, or a `re.Pattern` compiled
            from one) or list of them. Variables whose path (e.g.
            `"model/batch_normalization/gamma"`) matches any of them are excluded
            and keep the wrapped optimizer's plain learning rate. Patterns must be
            non-empty and leave at least one variable. Defaults to `None`.

    Returns:
        List with one entry per variable: its group name, or `None` if excluded.
        Two layers of the same name (possible in a subclassed model) have the same
        variable paths; with `"layer"` or `"variable"` grouping the second one's
        group is named `"model/name#2"` (the third's `"#3"`, ...), telling layers
        apart by the order of `variables`, in which each layer's variables come
        together as in `model.trainable_variables`. A `grouping` callable is
        called on each variable not excluded and names the groups alone.

    Example:

    >>> model = keras.Sequential(
    ...     [keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization()]
    ... )
    >>> variable_groups(model.trainable_variables, exclude="normalization")
    ['sequential/dense', 'sequential/dense', None, None]
    """
    grouping = _grouping.check_grouping(grouping)
    patterns = _grouping.check_exclude(exclude)
    variables = _check_list("variables", variables)
    paths = [_grouping.variable_path(variable) for variable in variables]
    excluded = _grouping.excluded(paths, patterns, exclude)
    kept = [i for i, out in enumerate(excluded) if not out]
    groups = [None] * len(variables)
    if callable(grouping):
        for i in kept:
            groups[i] = _checked_group(grouping(variables[i]), paths[i])
    else:
        names = _grouping.owner_groups([paths[i] for i in kept], grouping)
        for i, name in zip(kept, names, strict=True):
            groups[i] = name
    return groups


def _checked_group(group, path):
    if group is not None and not isinstance(group, str):
        raise TypeError(
            "The `grouping` callable must return a group name (str) or None. "
            f"Received: {group!r} for variable {path!r}"
        )
    return group


def layer_factors(gradients, groups, epsilon=1e-7, max_factor=None):
    """Computes the per-layer learning-rate factor of eq. (9) for each group.

    For the gradient `g_l` of all the variables of group `l` taken together:

    ```python
    factor_l = 1 + log(1 + 1 / max(norm(g_l), epsilon))
    factor_l = min(factor_l, max_factor)  # only if `max_factor` is set
    ```

    The layer's learning rate is then `t_l = t * factor_l`. Norms are computed in
    float32 whatever the gradients' dtype, so float16 gradients cannot overflow.
    Guards: a zero gradient (frozen branch, dead ReLUs) gives the finite factor
    `1 + log(1 + 1/epsilon)` (about 17.1 for the default `epsilon`) instead of
    infinity; an infinite norm gives 1 (the limit of eq. 9); a NaN norm gives 1,
    so that the factor never adds NaN to a step the wrapped optimizer takes.

    Args:
        gradients: List of gradient tensors (`tf.IndexedSlices` allowed; rows
            that repeat are summed first, as in the dense gradient).
        groups: List of the same length as `gradients`: the group name of each
            gradient (see `variable_groups`), or `None` to leave it out.
        epsilon: Float > 0. Lower bound on the norm. Defaults to `1e-7`.
        max_factor: Optional float >= 1. Upper bound on the factor.
            Defaults to `None`.

    Returns:
        Dict mapping each group name, in order of first appearance, to a float32
        scalar tensor.

    Example:

    >>> factors = layer_factors([ops.ones((3,)), ops.zeros((1,))], ["dense", "dense"])
    >>> float(factors["dense"])  # 1 + log(1 + 1/sqrt(3))
    1.4557...
    """
    _check_guard(epsilon, max_factor)
    gradients = _check_list("gradients", gradients)
    groups = _check_list("groups", groups)
    if len(gradients) != len(groups):
        raise ValueError(
            "`gradients` and `groups` must have the same length. "
            f"Received: len(gradients)={len(gradients)}, len(groups)={len(groups)}"
        )
    names = list(dict.fromkeys(g for g, grad in zip(groups, gradients) if _has(g, grad)))
    index = {name: i for i, name in enumerate(names)}
    group_index = [index[g] if _has(g, grad) else None for g, grad in zip(groups, gradients)]
    factors = _factor_vector(gradients, group_index, len(names), epsilon, max_factor)
    return {name: factors[i] for i, name in enumerate(names)}


def _has(group, gradient):
    return group is not None and gradient is not None


def _factor_vector(gradients, group_index, num_groups, epsilon, max_factor):
    """The factors of eq. (9) as one float32 vector of `num_groups` entries.

    `group_index[i]` is the position of gradient `i`'s group, or `None` to leave
    it out. Each gradient is summed down to 8 partial sums of squares (one read
    of it, the method's only cost that grows with the model); all the
    partial sums then add up per group, and the factors follow, in a fixed number
    of small vector operations whatever the number of layers.
    """
    partials, partial_groups = [], []
    for gradient, group in zip(gradients, group_index, strict=True):
        if group is None:
            continue
        partials.append(_partial_squared_sums(gradient))
        partial_groups.append(group)
    if not partials:
        return _factor(ops.zeros((num_groups,), "float32"), epsilon, max_factor)
    per_gradient = ops.sum(ops.stack(partials), axis=1)
    squared_norms = tf.math.unsorted_segment_sum(
        per_gradient, tf.constant(partial_groups, tf.int32), num_groups
    )
    return _factor(ops.sqrt(squared_norms), epsilon, max_factor)


def _partial_squared_sums(gradient):
    """The sum of squares of `gradient` in float32, as 8 partial sums."""
    if isinstance(gradient, tf.IndexedSlices):
        # Keras ops keep IndexedSlices sparse and would count a repeated row's
        # slices separately; the norm the update sees is that of the dense sum.
        gradient = tf.convert_to_tensor(gradient)
    gradient = ops.reshape(ops.cast(gradient, "float32"), (-1,))
    if gradient.shape[0] is None:
        return ops.pad(ops.sum(ops.square(gradient))[None], [(0, 7)])
    # Two stages, so that XLA's CPU backend reads the gradient once. Rows of 32
    # fuse with the squaring into one pass; a longer reduction (to a scalar, or
    # down columns) is split by XLA's tree-reduction pass, which then writes the
    # squares to memory first and reads them back. The row sums, 32 times fewer,
    # are folded into 8 partial sums down the columns, a form XLA does not merge
    # back into the first reduction.
    row_sums = ops.sum(ops.square(_rows(gradient, 32)), axis=1)
    return ops.sum(_rows(row_sums, 8), axis=0)


def _rows(vector, width):
    """`vector` zero-padded to a multiple of `width` and cut into rows of it."""
    size = vector.shape[0]
    if size % width:
        vector = ops.pad(vector, [(0, -size % width)])
    return ops.reshape(vector, (-1, width))


def _factor(norm, epsilon, max_factor):
    norm = ops.convert_to_tensor(norm, "float32")
    factor = 1.0 + ops.log1p(1.0 / ops.maximum(norm, epsilon))
    if max_factor is not None:
        factor = ops.minimum(factor, max_factor)
    return ops.where(ops.isnan(norm), ops.ones_like(factor), factor)


class LayerRates:
    """Per-layer learning rates for the update step of a Keras optimizer.

    The piece shared by `LayerAdaptive` and optimizers that offer layer-adaptive
    rates themselves: it groups the variables at build time, keeps the factors of
    the last step in an optimizer variable, and runs an optimizer's
    `update_step(gradient, variable, learning_rate * factor_l)` for each variable.

    An optimizer creates one in its constructor
    (`self._layer_rates = LayerRates(...)`) and uses it in two methods
    (TensorFlow backend):

    ```python
    def build(self, variables):
        ...
        self._layer_rates.build(self, variables)

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        # Keras' TF optimizer sums gradients across replicas inside
        # `_backend_update_step` and then calls this method: the first place
        # where the gradients are the ones the update uses.
        self._layer_rates.distributed_update_step(
            self, distribution, grads_and_vars, learning_rate
        )
    ```

    Args:
        grouping: See `variable_groups`. Defaults to `"layer"`.
        exclude: See `variable_groups`. Defaults to `None`.
        epsilon: See `layer_factors`. Defaults to `1e-7`.
        max_factor: See `layer_factors`. Defaults to `None`.
    """

    def __init__(self, grouping="layer", exclude=None, epsilon=1e-7, max_factor=None):
        self.grouping = _grouping.check_grouping(grouping)
        # Kept as strings (compiled patterns with their flags inline), for the config.
        self.exclude = _grouping.check_exclude(exclude)
        _check_guard(epsilon, max_factor)
        self.epsilon = epsilon
        self.max_factor = max_factor
        self.group_names = None
        self.factors = None

    def build(self, owner, variables):
        """Groups `variables`; adds the `layer_factors` variable to `owner`."""
        groups = variable_groups(variables, self.grouping, self.exclude)
        self._group_of = {variable_key(owner, v): g for v, g in zip(variables, groups, strict=True)}
        self.group_names = list(dict.fromkeys(g for g in groups if g is not None))
        self.factors = owner.add_variable(
            shape=(len(self.group_names),),
            initializer="ones",
            dtype="float32",
            name="layer_factors",
        )

    def distributed_update_step(self, optimizer, distribution, grads_and_vars, learning_rate):
        """Runs `optimizer.update_step` with each variable's per-layer rate.

        Same contract as the TF optimizer's distributed update step (see
        `keras_agd._keras_adapter.hook_update_step`): called
        with the all-reduced gradients, in cross-replica context under a strategy
        that uses `merge_call` and in replica context otherwise.
        """
        grads_and_vars = list(grads_and_vars)
        position = {name: i for i, name in enumerate(self.group_names)}
        groups = [self._group_of[variable_key(optimizer, v)] for _, v in grads_and_vars]
        group_index = [
            None if g is None or grad is None else position[g]
            for g, (grad, _) in zip(groups, grads_and_vars, strict=True)
        ]
        # A group none of whose variables has a gradient in this step keeps rate t.
        missing = sorted(set(range(len(self.group_names))) - set(group_index))

        def factors_fn(grads):
            factors = _factor_vector(
                grads, group_index, len(self.group_names), self.epsilon, self.max_factor
            )
            if missing:
                factors = tf.tensor_scatter_nd_update(
                    factors, [[i] for i in missing], ops.ones((len(missing),), "float32")
                )
            one = ops.ones((), "float32")
            per_variable = [one if i is None else factors[i] for i in group_index]
            return per_variable, factors

        grads = [g for g, _ in grads_and_vars]
        if tf.distribute.in_cross_replica_context():
            # Gradients are per-replica values here; each replica takes the norms
            # of its own (identical, all-reduced) copy on its own device.
            per_variable, last = distribution.extended.call_for_each_replica(
                factors_fn, args=(grads,)
            )
        else:
            per_variable, last = factors_fn(grads)

        distribution.extended.update(self.factors.value, _assign, args=(last,), group=False)
        apply_fn = functools.partial(_update_with_factor, optimizer)
        for (grad, var), factor in zip(grads_and_vars, per_variable, strict=True):
            distribution.extended.update(
                var, apply_fn, args=(grad, learning_rate, factor), group=False
            )

    def result(self):
        """Dict mapping each group name to its factor in the last step."""
        if self.factors is None:
            return {}
        values = self.factors.numpy()
        return {name: float(value) for name, value in zip(self.group_names, values, strict=True)}

    def get_config(self):
        grouping = self.grouping
        if callable(grouping):
            grouping = keras.saving.serialize_keras_object(grouping)
        return {
            "grouping": grouping,
            "exclude": self.exclude,
            "epsilon": self.epsilon,
            "max_factor": self.max_factor,
        }


def _assign(variable, value):
    variable.assign(value)


def _update_with_factor(optimizer, variable, gradient, learning_rate, factor):
    learning_rate = ops.convert_to_tensor(learning_rate)
    layer_rate = ops.multiply(learning_rate, ops.cast(factor, learning_rate.dtype))
    optimizer.update_step(gradient, variable, layer_rate)


def _check_list(name, value):
    if isinstance(value, str | bytes) or not isinstance(value, collections.abc.Sequence):
        raise TypeError(f"`{name}` must be a list. Received: {name}={value!r}")
    return list(value)


def _check_guard(epsilon, max_factor):
    # Norms are float32: below its smallest normal number, 1/epsilon overflows to inf.
    _validation.check_float32_positive("epsilon", epsilon)
    if max_factor is not None and not (_validation.is_number(max_factor) and max_factor >= 1):
        raise ValueError(f"`max_factor` must be >= 1 or None. Received: max_factor={max_factor!r}")


@keras.saving.register_keras_serializable(package="keras_agd")
class LayerAdaptive(WrapperOptimizer):
    r"""Wraps a Keras optimizer to give every layer its own adaptive learning rate.

    At every step, the variables of layer `l` are updated by the wrapped
    optimizer with the learning rate of eq. (9) of the paper instead of the
    global rate `t` (a float or a schedule):

    ```python
    t_l = t * (1 + log(1 + 1 / norm(g_l)))
    ```

    where `g_l` is the gradient of all of the layer's trainable variables taken
    together. Layers with small gradients (shallow layers, flat regions near
    saddle points) take larger steps; layers with large gradients keep about the
    rate `t`. The rate is scaled, not the gradient, so adaptive optimizers get
    the per-layer rate: with Adagrad the step is eq. (12),
    $\Delta w = -t_l \, g^{(k)} / \sqrt{\sum_{i=1}^{k} (g^{(i)})^2}$ at step $k$, and
    SGD's is eq. (10) with the factor applied once (the paper prints it twice).

    The norms are those of the gradients the update really uses: after the
    wrapped optimizer's loss-scale unscaling, gradient accumulation and
    clipping, and after the sum across replicas under `tf.distribute`. The
    wrapped optimizer's own options (`clipnorm`, `global_clipnorm`, `clipvalue`,
    `use_ema`, `gradient_accumulation_steps`, `loss_scale_factor`) keep working;
    its `weight_decay` uses the global rate `t`. Under a `mixed_float16` policy
    `compile` wraps this optimizer in a `LossScaleOptimizer`, which is the right
    order (`LayerAdaptive` inside, seeing unscaled gradients).

    The wrapper takes over the wrapped optimizer: it reroutes that optimizer's
    per-variable update, so use the wrapped instance through the wrapper only.
    The TensorFlow backend is required.

    Args:
        inner_optimizer: The `keras.optimizers.Optimizer` to wrap. Any optimizer
            with a global learning rate: SGD (with momentum or Nesterov),
            Adagrad, RMSprop, Adam, AdamW, Nadam, ...
        grouping: Which variables share a rate: `"layer"`, `"variable"`, or a
            callable mapping a variable to a group name (or to `None` to keep its
            plain rate). Layers of the same name in a subclassed model get groups
            of their own (`"model/proj"`, `"model/proj#2"`); see `variable_groups`.
            Defaults to `"layer"`.
        exclude: Optional regular expression (a string or a compiled `re.Pattern`)
            or list of them; variables whose path matches keep the plain rate `t`,
            e.g. `"normalization"`. Patterns must be non-empty, and `build` raises
            a `ValueError` if they match every variable. The config keeps compiled
            patterns as strings with their flags inline (`"(?i)norm"`).
            Defaults to `None`.
        epsilon: Float > 0, the smallest norm used in eq. (9). An all-zero
            gradient gets the factor `1 + log(1 + 1/epsilon)` (about 17.1)
            instead of infinity. Defaults to `1e-7`.
        max_factor: Optional float >= 1 capping the factor. Defaults to `None`.
        name: String, the name of the optimizer. Defaults to `None`.

    Attributes:
        layer_factors: Dict mapping each group name to the factor `t_l / t`
            used in the last update step (all 1.0 before the first step).

    Example:

    ```python
    optimizer = keras_agd.LayerAdaptive(
        keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True)
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.fit(x, y, callbacks=[keras_agd.LayerFactorLogger()])
    optimizer.layer_factors  # {"sequential/dense": 3.2, ...}
    ```

    Reference:
        - Singh et al., "Layer-Specific Adaptive Learning Rates for Deep
          Networks", ICMLA 2015 (arXiv:1510.04609), Section III (eqs. 9, 10
          and 12).
    """

    def __init__(
        self,
        inner_optimizer,
        grouping="layer",
        exclude=None,
        epsilon=1e-7,
        max_factor=None,
        name=None,
        **kwargs,
    ):
        _check_inner_optimizer(inner_optimizer)
        if kwargs:
            raise ValueError(
                f"LayerAdaptive does not support `{'`, `'.join(kwargs)}`. "
                "Set such options on the wrapped `inner_optimizer` instead."
            )
        rates = LayerRates(grouping, exclude, epsilon, max_factor)
        super().__init__(inner_optimizer, name=name)
        self._rates = rates
        # Keras' TF optimizer sums gradients across replicas inside
        # `_backend_update_step` and hands them to this method: the first point
        # where they are the gradients the update uses (Nadam's and other
        # optimizers' own `_backend_update_step` still run before it).
        hook_update_step(
            inner_optimizer, functools.partial(rates.distributed_update_step, inner_optimizer)
        )

    def build(self, var_list):
        if self.built:
            return
        self._rates.build(self, var_list)
        super().build(var_list)

    @property
    def layer_factors(self):
        return self._rates.result()

    def get_config(self):
        return {**super().get_config(), **self._rates.get_config()}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Keras' Optimizer.from_config deserializes a schedule in place.
        config = copy.deepcopy(config)
        config["inner_optimizer"] = keras.saving.deserialize_keras_object(
            config["inner_optimizer"], custom_objects=custom_objects
        )
        if isinstance(config.get("grouping"), dict):
            config["grouping"] = keras.saving.deserialize_keras_object(
                config["grouping"], custom_objects=custom_objects
            )
        return cls(**config)


def _check_inner_optimizer(optimizer):
    _validation.check_optimizer("inner_optimizer", optimizer)
    # Another wrapper (PerLayerRates, AGD) delegates its update: the hook would never run.
    if isinstance(optimizer, (WrapperOptimizer, keras.optimizers.MultiOptimizer)):
        raise ValueError(
            "`inner_optimizer` must be an optimizer with one global learning rate, not "
            f"another wrapper. Received: inner_optimizer={type(optimizer).__name__}"
        )
    if is_update_step_hooked(optimizer):
        raise ValueError(
            f"The optimizer {optimizer.name!r} is already wrapped by a LayerAdaptive. "
            "Wrap a fresh optimizer instance."
        )
