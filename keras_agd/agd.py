"""The annealed gradient descent optimizer (Pan & Jiang, UAI 2015)."""

import copy
import json
import warnings

import keras
import tensorflow as tf
from keras import ops

from keras_agd import _validation
from keras_agd._wrapper import WrapperOptimizer
from keras_agd.curriculum import Curriculum
from keras_agd.layer_adaptive import LayerAdaptive

_register = keras.saving.register_keras_serializable(package="keras_agd")
_LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


@_register
class _PhaseLearningRate(_LearningRateSchedule):
    """AGD's learning rate: the rate of the phase the step is in, with the decay rule."""

    def __init__(self, agd=None):
        self.agd = agd

    def __call__(self, step):
        agd = self.agd
        plan = agd.curriculum_identity
        mosaic_steps = plan["mosaic_steps"]
        step = ops.cast(step, "int64")
        mosaic = _evaluate(agd._mosaic_learning_rate, step)
        regular = _evaluate(agd._regular_learning_rate, ops.maximum(step - mosaic_steps, 0))
        rate = ops.where(step < mosaic_steps, mosaic, regular)
        if agd.decay_start_epoch is not None:
            epochs = ops.maximum(_annealing_epoch(plan, step) - agd.decay_start_epoch, 0)
            rate = rate * ops.power(agd.epoch_decay_rate, ops.cast(epochs, rate.dtype))
        return rate

    def get_config(self):
        # AGD rebuilds this schedule from its own config.
        return {}


def _annealing_epoch(plan, step):
    """The paper's epoch of `step`: its mosaic level, then one per pass over the samples."""
    firsts = [0]
    for _, _, steps in plan["levels"][:-1]:
        firsts.append(firsts[-1] + steps)
    levels = len(plan["levels"])
    level = ops.sum(ops.cast(ops.convert_to_tensor(firsts, "int64") <= step, "int64")) - 1
    regular = levels + (step - plan["mosaic_steps"]) // plan["steps_per_epoch"]
    return ops.where(step < plan["mosaic_steps"], level, regular)


@_register
class AGD(WrapperOptimizer):
    r"""Annealed gradient descent: the mosaic rate on codewords, then the regular rate.

    AGD is the optimizer of a `keras_agd.Curriculum`: while the global step is in the
    curriculum's mosaic phase (`step < curriculum.mosaic_steps`), it updates with
    `mosaic_learning_rate` (the large batches of codewords), then with
    `learning_rate` on the real samples. Its learning rate is a function of
    `iterations` alone, so it steps the same way in `fit`, `train_on_batch` and a
    custom loop, and `model.save`, checkpoints and `keras.callbacks.BackupAndRestore`
    resume it exactly. Train on `curriculum.dataset(model)`, which follows the same
    step. The update rule is SGD with momentum / Nesterov, as in the paper, or any
    Keras optimizer passed as `optimizer`:

    ```python
    phase_rate = mosaic_learning_rate if step < mosaic_steps else learning_rate
    variable = inner_optimizer_update(variable, gradient, phase_rate * decay)
    ```

    The curriculum's identity (a digest of its data, codebook, schedule, batch sizes,
    mode, steps and seed) is saved with the optimizer: a stream of another curriculum
    is refused, also after a resume. Learning-rate schedules of either phase count
    steps from the start of that phase.

    Args:
        curriculum: The `keras_agd.Curriculum` to train on (or its `get_config()`).
        learning_rate: Float or `LearningRateSchedule` of the regular phase.
            Defaults to `0.01`.
        mosaic_learning_rate: Float or `LearningRateSchedule` of the mosaic phase;
            `None` means `learning_rate`. The paper uses 0.8 (vs 0.4, no momentum,
            batch 4,500 vs 10) on MNIST; with momentum 0.9, our method study found
            that codewords (averages) diverge at rates real samples take, and chose
            mosaic rates between 1/16x (a CNN) and 4x the regular rate, never the
            linear batch scaling ([Benchmarks](benchmarks.md)). Defaults to `None`.
        momentum: Momentum of the default SGD update, in [0, 1). Defaults to `0.0`.
        nesterov: Whether the default SGD update uses Nesterov momentum.
            Defaults to `False`.
        optimizer: A Keras optimizer whose update rule AGD uses instead of SGD
            (e.g. `keras.optimizers.Adam()`); its own learning rate is replaced by
            AGD's. Defaults to `None`.
        decay_start_epoch: If set, the learning rate is multiplied by
            `epoch_decay_rate` every annealing epoch after this one (the paper's
            Switchboard rule), where an annealing epoch is a mosaic level, then a
            pass over the real samples (`curriculum.steps_per_epoch` steps).
            Defaults to `None`.
        epoch_decay_rate: See `decay_start_epoch`. Defaults to `0.8`.
        layer_adaptive: Whether each layer's learning rate is scaled by
            $1 + \log(1 + 1/\lVert g_l \rVert_2)$ (`keras_agd.LayerAdaptive` around
            the update rule). Defaults to `False`.
        name: Defaults to `"agd"`.
        **kwargs: Base optimizer arguments (`clipnorm`, `weight_decay`, `use_ema`, ...)
            for the default SGD update; pass them to `optimizer` instead when given.

    Example:

    >>> curriculum = keras_agd.Curriculum(x_train, y_train, schedule=6)
    >>> model.compile(optimizer=keras_agd.AGD(curriculum, learning_rate=0.1, momentum=0.9),
    ...               loss="sparse_categorical_crossentropy")
    >>> model.fit(curriculum.dataset(model), epochs=3)

    Reference:
        H. Pan and H. Jiang, "Annealed Gradient Descent for Deep Learning", UAI 2015.
    """

    def __init__(
        self,
        curriculum,
        learning_rate=0.01,
        mosaic_learning_rate=None,
        momentum=0.0,
        nesterov=False,
        optimizer=None,
        decay_start_epoch=None,
        epoch_decay_rate=0.8,
        layer_adaptive=False,
        name="agd",
        **kwargs,
    ):
        identity = _identity(curriculum)
        nesterov = _validation.check_bool("nesterov", nesterov)
        layer_adaptive = _validation.check_bool("layer_adaptive", layer_adaptive)
        if optimizer is None:
            # Keras' SGD takes only a Python float (not 0, not np.float32(0.9)).
            momentum = _validation.check_number("momentum", momentum, 0, 1, high_open=True)
            _check_base_arguments(kwargs)
            optimizer = keras.optimizers.SGD(momentum=momentum, nesterov=nesterov, **kwargs)
        elif momentum != 0.0 or nesterov:
            raise ValueError(
                "`momentum` and `nesterov` are options of the default SGD update; set them on "
                f"the wrapped `optimizer` instead. Received: momentum={momentum!r}, "
                f"nesterov={nesterov!r}, optimizer={optimizer.__class__.__name__}"
            )
        elif kwargs:
            raise ValueError(
                f"Pass {sorted(kwargs)} to the wrapped `optimizer`, not to AGD. "
                f"Received: optimizer={optimizer.__class__.__name__}"
            )
        _validation.check_optimizer("optimizer", optimizer)
        if isinstance(optimizer, AGD):
            raise ValueError("`optimizer` cannot be another AGD.")
        _check_update_rule(optimizer)
        if layer_adaptive and not isinstance(optimizer, LayerAdaptive):
            optimizer = LayerAdaptive(optimizer)
        if decay_start_epoch is not None:
            decay_start_epoch = _validation.check_integer("decay_start_epoch", decay_start_epoch, 0)
        epoch_decay_rate = _validation.check_number(
            "epoch_decay_rate", epoch_decay_rate, 0, 1, low_open=True
        )
        super().__init__(optimizer, name=name)
        # A JSON copy: Keras' attribute tracking would wrap (and change in place) the
        # lists of a dict kept as it is, among them the codebook's own fingerprint.
        self._curriculum_json = json.dumps(identity)
        self.decay_start_epoch = decay_start_epoch
        self.epoch_decay_rate = epoch_decay_rate
        self.layer_adaptive = isinstance(optimizer, LayerAdaptive)
        self._regular_learning_rate = self._rate_variable(learning_rate, "learning_rate")
        self._mosaic_learning_rate = self._rate_variable(
            learning_rate if mosaic_learning_rate is None else mosaic_learning_rate,
            "mosaic_learning_rate",
        )
        # Saved with the optimizer's variables, so that a backup of another
        # curriculum's run is refused when the stream starts.
        self.curriculum_digest = self.add_variable(
            (),
            initializer=keras.initializers.Constant(identity["digest"]),
            dtype="int64",
            aggregation="only_first_replica",
            name="curriculum_digest",
        )
        self.inner_optimizer.learning_rate = _PhaseLearningRate(self)

    def _rate_variable(self, value, name):
        if isinstance(value, _LearningRateSchedule):
            return value
        if not (_validation.is_number(value) and 0 <= value <= _validation.FLOAT32_MAX):
            raise ValueError(
                f"`{name}` must be a finite float >= 0 (within float32) or a "
                f"LearningRateSchedule. Received: {name}={value!r}"
            )
        return self.add_variable(
            (),
            initializer=keras.initializers.Constant(float(value)),
            dtype=keras.backend.floatx(),
            aggregation="only_first_replica",
            name=name,
        )

    def apply(self, grads, trainable_variables=None):
        # The stream reads `iterations` when an epoch's first batch is made (lazily, in
        # a tf.data thread). A traced step orders its ops only by the resources they
        # touch, so without this the step counter may be incremented before that read
        # and the epoch would start one batch ahead of the optimizer.
        grads = list(grads)
        if not self.built and trainable_variables is not None:
            # Variables are made outside the control dependencies, where XLA can lift them.
            with keras.name_scope(self.name, caller=self):
                self.build(list(trainable_variables))
            self.built = True
        with tf.control_dependencies(tf.nest.flatten(grads, expand_composites=True)):
            super().apply(grads, trainable_variables)

    @property
    def curriculum_identity(self):
        """The `get_config()` of the curriculum AGD trains on (a new dict each time)."""
        return json.loads(self._curriculum_json)

    @property
    def mosaic_steps(self):
        """Steps of the curriculum's mosaic phase."""
        return self.curriculum_identity["mosaic_steps"]

    @property
    def phase(self):
        """`"mosaic"` while the next step trains on codewords, else `"regular"`."""
        return "mosaic" if int(self.iterations.numpy()) < self.mosaic_steps else "regular"

    def finalize_variable_values(self, var_list):
        # Keras calls this at the end of every `fit`: the one point where a run that
        # stopped on codewords can be told apart from one that reached the samples.
        step = int(self.iterations.numpy())
        if step < self.mosaic_steps:
            warnings.warn(
                f"Training stopped at step {step}, inside AGD's mosaic phase (it ends at step "
                f"{self.mosaic_steps}): the model has been trained on codewords only. Fit for "
                "more epochs; the next `fit` continues the curriculum from this step.",
                stacklevel=2,
            )
        super().finalize_variable_values(var_list)

    def learning_rate_at(self, step):
        """The learning rate of global step `step` (a function of the step alone)."""
        return _PhaseLearningRate(self)(step)

    @property
    def learning_rate(self):
        return self.learning_rate_at(self.iterations)

    @learning_rate.setter
    def learning_rate(self, value):
        # The base class sets its own (unused) rate during __init__.
        if not hasattr(self, "_regular_learning_rate"):
            return
        if isinstance(self._regular_learning_rate, _LearningRateSchedule):
            raise TypeError(
                "AGD's regular learning rate is a LearningRateSchedule and cannot be set."
            )
        self._regular_learning_rate.assign(value)

    def get_config(self):
        return {
            "name": self.name,
            "curriculum": self.curriculum_identity,
            "learning_rate": _serialize(self._regular_learning_rate),
            "mosaic_learning_rate": _serialize(self._mosaic_learning_rate),
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "decay_start_epoch": self.decay_start_epoch,
            "epoch_decay_rate": self.epoch_decay_rate,
            "layer_adaptive": self.layer_adaptive,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Keras' optimizers deserialize nested configs in place: work on a copy.
        config = copy.deepcopy(config)
        for key in ("learning_rate", "mosaic_learning_rate", "optimizer"):
            if isinstance(config[key], dict):
                config[key] = keras.saving.deserialize_keras_object(
                    config[key], custom_objects=custom_objects
                )
        return cls(**config)


_PLAN_KEYS = ("digest", "mosaic_steps", "steps_per_epoch", "levels")


def _identity(curriculum):
    """The curriculum's config: of a `Curriculum`, or as saved in AGD's own config."""
    if isinstance(curriculum, Curriculum):
        return curriculum.get_config()
    if isinstance(curriculum, dict) and all(key in curriculum for key in _PLAN_KEYS):
        if not _is_plan(curriculum):
            raise ValueError(
                "`curriculum` is a config whose plan does not add up (integer `digest`, "
                "`mosaic_steps` >= 0 the sum of the levels' steps, `steps_per_epoch` >= 1, "
                "`levels` as [epsilon, frontier_size, steps]): pass the `get_config()` of a "
                f"keras_agd.Curriculum. Received: curriculum={curriculum!r}"
            )
        return dict(curriculum)
    raise TypeError(
        "`curriculum` must be the keras_agd.Curriculum that AGD trains on (AGD follows its "
        f"phases). Received: curriculum={curriculum!r}"
    )


def _is_plan(config):
    integer = _validation.is_integer
    levels = config["levels"]
    if not (isinstance(levels, list | tuple) and all(isinstance(v, list | tuple) for v in levels)):
        return False
    if not all(len(level) == 3 and integer(level[2]) and level[2] >= 1 for level in levels):
        return False
    return (
        integer(config["digest"])
        and integer(config["mosaic_steps"])
        and config["mosaic_steps"] == sum(level[2] for level in levels)
        and integer(config["steps_per_epoch"])
        and config["steps_per_epoch"] >= 1
    )


def _evaluate(rate, step):
    if isinstance(rate, _LearningRateSchedule):
        return ops.cast(rate(step), keras.backend.floatx())
    return ops.convert_to_tensor(rate)


def _serialize(rate):
    if isinstance(rate, _LearningRateSchedule):
        return keras.saving.serialize_keras_object(rate)
    return float(rate.numpy())


# Base optimizer arguments that scale or clip every step: NaN or inf in any makes
# every weight NaN, which Keras does not check.
_BASE_NUMBERS = ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay", "ema_momentum")


def _check_update_rule(optimizer):
    """Refuses update rules whose step counter is not one step per batch, or one rate."""
    if isinstance(optimizer, getattr(keras.optimizers, "MultiOptimizer", ())):
        raise TypeError(
            "`optimizer` cannot be a keras.optimizers.MultiOptimizer: AGD sets one learning "
            "rate (the phase's) on its update rule, and a MultiOptimizer keeps one per "
            "sub-optimizer. Pass one optimizer; for per-layer rates wrap it in "
            "keras_agd.LayerAdaptive."
        )
    inner = optimizer
    while inner is not None:
        if getattr(inner, "gradient_accumulation_steps", None):
            raise ValueError(
                "AGD's curriculum advances one batch per optimizer step, and gradient "
                "accumulation counts one step per "
                f"{inner.gradient_accumulation_steps} batches, so batches would be replayed. "
                "For a larger effective batch, raise the curriculum's batch sizes instead. "
                "Received: gradient_accumulation_steps="
                f"{inner.gradient_accumulation_steps} on {type(inner).__name__}"
            )
        inner = getattr(inner, "inner_optimizer", None)


def _check_base_arguments(kwargs):
    for name in _BASE_NUMBERS:
        if kwargs.get(name) is not None:
            kwargs[name] = _validation.check_number(name, kwargs[name], 0)
