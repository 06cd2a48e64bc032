"""The annealed gradient descent optimizer (Pan & Jiang, UAI 2015)."""

import keras
from keras import ops

from keras_agd import _validation
from keras_agd._wrapper import WrapperOptimizer
from keras_agd.annealing import AnnealingState
from keras_agd.layer_adaptive import LayerAdaptive

_register = keras.saving.register_keras_serializable(package="keras_agd")
_LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule

NOT_ANNEALING = (
    "AGD is training outside its annealing schedule: pass the `keras_agd.Annealing` "
    "callback to `model.fit` and train on `keras_agd.mosaic_dataset(annealing, ...)`. "
    "(To train at one learning rate on other data, compile with the wrapped optimizer.)"
)


@_register
class _PhaseLearningRate(_LearningRateSchedule):
    """AGD's learning rate: the rate of the current phase, with the paper's decay rules."""

    def __init__(self, agd=None):
        self.agd = agd

    def __call__(self, step):
        agd = self.agd
        state = agd.annealing_state
        iterations = ops.cast(step, "int64")
        since_phase = iterations - state.phase_start_iteration
        mosaic = _evaluate(agd._mosaic_learning_rate, since_phase)
        regular = _evaluate(agd._regular_learning_rate, since_phase)
        rate = ops.where(state.mosaic > 0, mosaic, regular)
        if agd.decay_start_epoch is not None:
            epochs = ops.maximum(state.step - agd.decay_start_epoch, 0)
            rate = rate * ops.power(agd.epoch_decay_rate, ops.cast(epochs, rate.dtype))
        if agd.loss_threshold is not None:
            since = ops.cast(iterations - state.decay_start_iteration, rate.dtype)
            p = float(agd.loss_decay_steps)
            rate = ops.where(state.decay_start_iteration >= 0, rate * p / (p + since), rate)
        return rate

    def get_config(self):
        # AGD rebuilds this schedule from its own config.
        return {}


@_register
class AGD(WrapperOptimizer):
    """Annealed gradient descent: mosaic epochs on codewords, then regular epochs.

    AGD trains on a sequence of codebook frontiers of decreasing quantization error
    ε: mosaic gradient descent (MGD) with large batches and `mosaic_learning_rate`
    while the epoch holds codewords, then ordinary mini-batch training with
    `learning_rate` once ε has reached the real samples. The epochs come from
    `keras_agd.mosaic_dataset`, the phase from the `keras_agd.Annealing` callback;
    AGD only follows the phase. The update rule is SGD with momentum / Nesterov, as
    in the paper, or any Keras optimizer passed as `optimizer`:

    ```python
    lr = mosaic_learning_rate if phase == "mosaic" else learning_rate
    variable = inner_optimizer_update(variable, gradient, lr * decay)
    ```

    The annealing state (`annealing_state`: step, ε, phase, frontier size) is kept
    in this optimizer's variables, so `model.save`, checkpoints and
    `keras.callbacks.BackupAndRestore` carry it and a resumed run continues at the
    same ε. Learning-rate schedules of either phase count steps from the start of
    that phase.

    Args:
        learning_rate: Float or `LearningRateSchedule` of the regular phase.
            Defaults to `0.01`.
        mosaic_learning_rate: Float or `LearningRateSchedule` of the mosaic phase;
            `None` means `learning_rate`. The paper uses 0.8 (vs 0.4, no momentum,
            batch 4,500 vs 10) on MNIST; with momentum 0.9, our method study found
            that codewords (averages) diverge at rates real samples take, and chose
            mosaic rates between 1/16x (a CNN) and 4x the regular rate, never the
            linear batch scaling (docs/benchmarks.md). Defaults to `None`.
        momentum: Momentum of the default SGD update, in [0, 1). Defaults to `0.0`.
        nesterov: Whether the default SGD update uses Nesterov momentum.
            Defaults to `False`.
        optimizer: A Keras optimizer whose update rule AGD uses instead of SGD
            (e.g. `keras.optimizers.Adam()`); its own learning rate is replaced by
            AGD's. Defaults to `None`.
        decay_start_epoch: If set, the learning rate is multiplied by
            `epoch_decay_rate` every annealing epoch after this one (the paper's
            Switchboard rule). Defaults to `None`.
        epoch_decay_rate: See `decay_start_epoch`. Defaults to `0.8`.
        loss_threshold: If set, once the training loss (the running mean of the
            epoch that Keras reports as `loss`) falls below it, the learning rate
            follows `lr · p / (p + t)`, with `t` the steps since then (the paper's
            MNIST rule, r = 0.17). Defaults to `None`.
        loss_decay_steps: `p` of that rule. Defaults to `10000`.
        layer_adaptive: Whether each layer's learning rate is scaled by
            `1 + log(1 + 1/‖g_l‖₂)` (`keras_agd.LayerAdaptive` around the update
            rule). Defaults to `False`.
        name: Defaults to `"agd"`.
        **kwargs: Base optimizer arguments (`clipnorm`, `weight_decay`, `use_ema`, ...)
            for the default SGD update; pass them to `optimizer` instead when given.

    Example:

    >>> codebook = keras_agd.HierarchicalCodebook().fit(x_train, y_train)
    >>> annealing = keras_agd.Annealing(
    ...     codebook, keras_agd.schedules.from_codebook(codebook, mosaic_epochs=10))
    >>> model.compile(optimizer=keras_agd.AGD(learning_rate=0.1, momentum=0.9),
    ...               loss="sparse_categorical_crossentropy")
    >>> train = keras_agd.mosaic_dataset(annealing, x_train, y_train)
    >>> model.fit(train, epochs=20, callbacks=[annealing])

    Reference:
        H. Pan and H. Jiang, "Annealed Gradient Descent for Deep Learning", UAI 2015.
    """

    def __init__(
        self,
        learning_rate=0.01,
        mosaic_learning_rate=None,
        momentum=0.0,
        nesterov=False,
        optimizer=None,
        decay_start_epoch=None,
        epoch_decay_rate=0.8,
        loss_threshold=None,
        loss_decay_steps=10000,
        layer_adaptive=False,
        name="agd",
        **kwargs,
    ):
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
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                f"`optimizer` must be a Keras optimizer. Received: optimizer={optimizer!r}"
            )
        if isinstance(optimizer, AGD):
            raise ValueError("`optimizer` cannot be another AGD.")
        if layer_adaptive and not isinstance(optimizer, LayerAdaptive):
            optimizer = LayerAdaptive(optimizer)
        if decay_start_epoch is not None:
            decay_start_epoch = _validation.check_integer("decay_start_epoch", decay_start_epoch, 0)
        epoch_decay_rate = _validation.check_number(
            "epoch_decay_rate", epoch_decay_rate, 0, 1, low_open=True
        )
        if loss_threshold is not None:
            loss_threshold = _validation.check_number("loss_threshold", loss_threshold)
        _validation.check_number("loss_decay_steps", loss_decay_steps, 0, None, low_open=True)
        if _validation.is_integer(loss_decay_steps):
            loss_decay_steps = int(loss_decay_steps)
        else:
            loss_decay_steps = float(loss_decay_steps)
        super().__init__(optimizer, name=name)
        self.decay_start_epoch = decay_start_epoch
        self.epoch_decay_rate = epoch_decay_rate
        self.loss_threshold = loss_threshold
        self.loss_decay_steps = loss_decay_steps
        self.layer_adaptive = isinstance(optimizer, LayerAdaptive)
        self._regular_learning_rate = self._rate_variable(learning_rate, "learning_rate")
        self._mosaic_learning_rate = self._rate_variable(
            learning_rate if mosaic_learning_rate is None else mosaic_learning_rate,
            "mosaic_learning_rate",
        )
        # Created here rather than in `build`: the Annealing callback writes it
        # before the first training step.
        self.annealing_state = AnnealingState(self)
        # The training loss that `loss_threshold` compares; the Annealing callback
        # hands over the model's `loss` metric.
        self.loss_metric = None
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

    @property
    def epsilon(self):
        """The quantization error ε of the current epoch (inf before training)."""
        return self.annealing_state.read()["epsilon"]

    @property
    def phase(self):
        """`"mosaic"` while training on codewords, `"regular"` on the real samples."""
        return "mosaic" if self.annealing_state.read()["mosaic"] else "regular"

    def apply(self, grads, trainable_variables=None):
        # Runs when the train step is traced: an AGD step outside the annealing
        # flow would silently train at the mosaic rate on whatever data it gets.
        if self.annealing_state.writer is None:
            raise ValueError(NOT_ANNEALING)
        if self.loss_threshold is not None:
            self._start_decay_below_threshold()
        super().apply(grads, trainable_variables)

    def _start_decay_below_threshold(self):
        if self.loss_metric is None:
            raise ValueError(
                "`loss_threshold` needs the model's `loss` metric, which this model does "
                "not track (a custom `train_step` without `compute_loss`?)."
            )
        state = self.annealing_state
        loss = ops.cast(self.loss_metric.result(), "float32")
        crossed = ops.logical_and(state.decay_start_iteration < 0, loss < self.loss_threshold)
        iterations = ops.cast(self.iterations, "int64")
        state.decay_start_iteration.assign(
            ops.where(crossed, iterations, state.decay_start_iteration)
        )

    @property
    def learning_rate(self):
        return _PhaseLearningRate(self)(self.iterations)

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
            "learning_rate": _serialize(self._regular_learning_rate),
            "mosaic_learning_rate": _serialize(self._mosaic_learning_rate),
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "decay_start_epoch": self.decay_start_epoch,
            "epoch_decay_rate": self.epoch_decay_rate,
            "loss_threshold": self.loss_threshold,
            "loss_decay_steps": self.loss_decay_steps,
            "layer_adaptive": self.layer_adaptive,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("learning_rate", "mosaic_learning_rate", "optimizer"):
            if isinstance(config[key], dict):
                config[key] = keras.saving.deserialize_keras_object(
                    config[key], custom_objects=custom_objects
                )
        return cls(**config)


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


def _check_base_arguments(kwargs):
    for name in _BASE_NUMBERS:
        if kwargs.get(name) is not None:
            kwargs[name] = _validation.check_number(name, kwargs[name], 0)
