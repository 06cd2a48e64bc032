"""The annealed gradient descent optimizer (Pan & Jiang, UAI 2015)."""

import keras
import tensorflow as tf
from keras import ops

from keras_agd.layer_adaptive import LayerAdaptive
from keras_agd.schedules import AnnealingSchedule

_register = keras.saving.register_keras_serializable(package="keras_agd")
_LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


@_register
class _PhaseLearningRate(_LearningRateSchedule):
    """Placeholder learning rate of AGD's inner optimizer: AGD supplies the value."""

    def __init__(self, agd=None):
        self.agd = agd

    def __call__(self, step):
        return self.agd._step_learning_rate

    def get_config(self):
        return {}


@_register
class AGD(keras.optimizers.Optimizer):
    """Annealed gradient descent: mosaic epochs on codewords, then regular epochs.

    AGD trains on a sequence of codebook frontiers of decreasing quantization error
    ε (the `schedule`), fed by `keras_agd.mosaic_dataset`: mosaic gradient descent
    (MGD) with large batches and `mosaic_learning_rate` while the frontier holds
    codewords, then ordinary mini-batch training with `learning_rate` once ε has
    reached the real samples. The update rule is SGD with momentum / Nesterov, as in
    the paper, or any Keras optimizer passed as `optimizer`:

    ```python
    lr = mosaic_learning_rate if phase == "mosaic" else learning_rate
    variable = inner_optimizer_update(variable, gradient, lr * decay)
    ```

    The annealing state (`annealing_step`, `epsilon`, `phase`, `frontier_size`) is
    kept in optimizer variables, so `model.save`, checkpoints and
    `keras.callbacks.BackupAndRestore` carry it: a resumed run continues at the same
    ε. Learning-rate schedules of either phase count steps from the start of that
    phase.

    Args:
        learning_rate: Float or `LearningRateSchedule` of the regular phase.
            Defaults to `0.01`.
        mosaic_learning_rate: Float or `LearningRateSchedule` of the mosaic phase;
            `None` means `learning_rate`. The paper uses 0.8 (vs 0.4) on MNIST.
            Defaults to `None`.
        momentum: Momentum of the default SGD update. Defaults to `0.0`.
        nesterov: Whether the default SGD update uses Nesterov momentum.
            Defaults to `False`.
        schedule: An `AnnealingSchedule` (see `keras_agd.schedules`). Required by
            `mosaic_dataset`. Defaults to `None`.
        optimizer: A Keras optimizer whose update rule AGD uses instead of SGD
            (e.g. `keras.optimizers.Adam()`); its own learning rate is replaced by
            AGD's. Defaults to `None`.
        decay_start_epoch: If set, the learning rate is multiplied by
            `epoch_decay_rate` every epoch after this one (the paper's Switchboard
            rule). Defaults to `None`.
        epoch_decay_rate: See `decay_start_epoch`. Defaults to `0.8`.
        loss_threshold: If set, once the training loss (a moving average of the
            batch losses) falls below it, the learning rate follows
            `lr · p / (p + t)`, with `t` the steps since then (the paper's MNIST rule,
            r = 0.17). Defaults to `None`.
        loss_decay_steps: `p` of that rule. Defaults to `10000`.
        layer_adaptive: Whether each layer's learning rate is scaled by
            `1 + log(1 + 1/‖g_l‖₂)` (`keras_agd.LayerAdaptive` around the update
            rule). Defaults to `False`.
        name: Defaults to `"agd"`.
        **kwargs: Base optimizer arguments (`clipnorm`, `weight_decay`, `use_ema`, ...)
            for the default SGD update; pass them to `optimizer` instead when given.

    Example:

    >>> codebook = keras_agd.HierarchicalCodebook().fit(x_train, y_train)
    >>> optimizer = keras_agd.AGD(
    ...     learning_rate=0.1, mosaic_learning_rate=0.8, momentum=0.9,
    ...     schedule=keras_agd.schedules.from_codebook(codebook, mosaic_epochs=10))
    >>> model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    >>> train = keras_agd.mosaic_dataset(codebook, x_train, y_train, optimizer)
    >>> model.fit(train, epochs=20)

    Reference:
        H. Pan and H. Jiang, "Annealed Gradient Descent for Deep Learning", UAI 2015.
    """

    def __init__(
        self,
        learning_rate=0.01,
        mosaic_learning_rate=None,
        momentum=0.0,
        nesterov=False,
        schedule=None,
        optimizer=None,
        decay_start_epoch=None,
        epoch_decay_rate=0.8,
        loss_threshold=None,
        loss_decay_steps=10000,
        layer_adaptive=False,
        name="agd",
        **kwargs,
    ):
        super().__init__(learning_rate=0.0, name=name)
        if optimizer is None:
            optimizer = keras.optimizers.SGD(momentum=momentum, nesterov=nesterov, **kwargs)
        elif kwargs:
            raise ValueError(
                f"Pass {sorted(kwargs)} to the wrapped `optimizer`, not to AGD. "
                f"Received: optimizer={optimizer.__class__.__name__}"
            )
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                f"`optimizer` must be a Keras optimizer. Received: optimizer={optimizer!r}"
            )
        if layer_adaptive and not isinstance(optimizer, LayerAdaptive):
            optimizer = LayerAdaptive(optimizer)
        if schedule is not None and not isinstance(schedule, AnnealingSchedule):
            raise TypeError(
                "`schedule` must be a keras_agd.schedules.AnnealingSchedule. "
                f"Received: schedule={schedule!r}"
            )
        if decay_start_epoch is not None and decay_start_epoch < 0:
            raise ValueError(
                f"`decay_start_epoch` must be >= 0. Received: decay_start_epoch={decay_start_epoch}"
            )
        if not 0 < epoch_decay_rate <= 1:
            raise ValueError(
                "`epoch_decay_rate` must be in (0, 1]. "
                f"Received: epoch_decay_rate={epoch_decay_rate}"
            )
        if not loss_decay_steps > 0:
            raise ValueError(
                f"`loss_decay_steps` must be > 0. Received: loss_decay_steps={loss_decay_steps}"
            )
        self.inner_optimizer = optimizer
        self.inner_optimizer.learning_rate = _PhaseLearningRate(self)
        self.schedule = schedule
        self.decay_start_epoch = decay_start_epoch
        self.epoch_decay_rate = epoch_decay_rate
        self.loss_threshold = loss_threshold
        self.loss_decay_steps = loss_decay_steps
        self.layer_adaptive = isinstance(optimizer, LayerAdaptive)
        self._regular_learning_rate = self._learning_rate_variable(learning_rate, "regular")
        self._mosaic_learning_rate = self._learning_rate_variable(
            learning_rate if mosaic_learning_rate is None else mosaic_learning_rate, "mosaic"
        )

        # Created here rather than in `build` because `mosaic_dataset` reads them
        # before the first training step.
        def state(name, value, dtype="int64"):
            return self.add_variable(
                (),
                initializer=keras.initializers.Constant(value),
                dtype=dtype,
                aggregation="only_first_replica",
                name=name,
            )

        self._annealing_step = state("annealing_step", 0)
        self._epsilon = state("epsilon", float("inf"), dtype="float32")
        self._mosaic_phase = state("mosaic_phase", 1)
        self._frontier_size = state("frontier_size", 0)
        self._epoch_start_iteration = state("epoch_start_iteration", -1)
        self._phase_start_iteration = state("phase_start_iteration", 0)
        self._loss_average = state("loss_average", float("inf"), dtype="float32")
        self._decay_start_iteration = state("decay_start_iteration", -1)
        self._step_learning_rate = state("step_learning_rate", 0.0, dtype=keras.backend.floatx())

    def _learning_rate_variable(self, value, phase):
        if isinstance(value, _LearningRateSchedule):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(
                f"The {phase} learning rate must be a float >= 0 or a LearningRateSchedule. "
                f"Received: {value!r}"
            )
        return self.add_variable(
            (),
            initializer=keras.initializers.Constant(float(value)),
            dtype=keras.backend.floatx(),
            aggregation="only_first_replica",
            name=f"{phase}_learning_rate",
        )

    # --- The annealing state, read-only for users.

    @property
    def annealing_step(self):
        """The current epoch of the annealing schedule (0-based)."""
        return int(ops.convert_to_numpy(self._annealing_step))

    @property
    def epsilon(self):
        """The quantization error ε of the current epoch (inf before training)."""
        return float(ops.convert_to_numpy(self._epsilon))

    @property
    def phase(self):
        """`"mosaic"` while training on codewords, `"regular"` on the real samples."""
        return "mosaic" if int(ops.convert_to_numpy(self._mosaic_phase)) else "regular"

    @property
    def frontier_size(self):
        """Number of distinct training items (codewords plus samples) this epoch."""
        return int(ops.convert_to_numpy(self._frontier_size))

    def begin_annealing_epoch(self):
        """Advances the annealing step if the last epoch trained; returns ε (graph-safe).

        Called by `mosaic_dataset` each time an epoch's data is made. A step is only
        taken once optimizer steps happened since the previous epoch began, so that
        Keras peeking at the dataset, or resuming from a backup, does not skip an ε.
        """
        iterations = ops.cast(self.iterations, "int64")
        started = self._epoch_start_iteration >= 0
        trained = ops.logical_and(started, iterations > self._epoch_start_iteration)
        step = self._annealing_step + ops.cast(trained, "int64")
        self._annealing_step.assign(step)
        self._epoch_start_iteration.assign(iterations)
        epsilon = ops.cast(self.schedule(step), "float32")
        self._epsilon.assign(epsilon)
        return epsilon

    def record_frontier(self, mosaic, size):
        """Stores the epoch's phase and frontier size (graph-safe)."""
        mosaic = ops.cast(mosaic, "int64")
        changed = ops.not_equal(mosaic, self._mosaic_phase)
        iterations = ops.cast(self.iterations, "int64")
        self._phase_start_iteration.assign(
            ops.where(changed, iterations, self._phase_start_iteration)
        )
        self._mosaic_phase.assign(mosaic)
        self._frontier_size.assign(ops.cast(size, "int64"))

    def current_learning_rate(self):
        """The learning rate of the current phase, with the decay rules applied."""
        step = ops.cast(self.iterations, "int64") - self._phase_start_iteration
        mosaic = _evaluate(self._mosaic_learning_rate, step)
        regular = _evaluate(self._regular_learning_rate, step)
        rate = ops.where(self._mosaic_phase > 0, mosaic, regular)
        if self.decay_start_epoch is not None:
            epochs = ops.maximum(self._annealing_step - self.decay_start_epoch, 0)
            rate = rate * ops.power(self.epoch_decay_rate, ops.cast(epochs, rate.dtype))
        if self.loss_threshold is not None:
            since = ops.cast(self.iterations, "int64") - self._decay_start_iteration
            p = float(self.loss_decay_steps)
            factor = p / (p + ops.cast(since, rate.dtype))
            rate = ops.where(self._decay_start_iteration >= 0, rate * factor, rate)
        return rate

    # --- Delegation to the inner optimizer, as in keras.optimizers.LossScaleOptimizer.

    def build(self, var_list):
        if self.built:
            return
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    def apply(self, grads, trainable_variables=None):
        if not self.built and trainable_variables is not None:
            self.build(list(trainable_variables))
            self.built = True
        # The tf.data thread writes the phase when an epoch's data starts. Without XLA,
        # TensorFlow may read it before this step's batch arrives (an old phase);
        # depending on the gradients orders the read after the batch.
        with tf.control_dependencies([g for g in grads if g is not None]):
            self._step_learning_rate.assign(self.current_learning_rate())
        self.inner_optimizer.apply(grads, trainable_variables)

    def scale_loss(self, loss):
        if self.loss_threshold is not None:
            # The train step hands every batch loss to `scale_loss`: the one place an
            # optimizer sees the loss without a callback.
            value = ops.cast(ops.convert_to_tensor(loss), "float32")
            average = ops.where(
                ops.isfinite(self._loss_average),
                0.98 * self._loss_average + 0.02 * value,
                value,
            )
            self._loss_average.assign(average)
            crossed = ops.logical_and(
                self._decay_start_iteration < 0, average < self.loss_threshold
            )
            iterations = ops.cast(self.iterations, "int64")
            self._decay_start_iteration.assign(
                ops.where(crossed, iterations, self._decay_start_iteration)
            )
        return self.inner_optimizer.scale_loss(loss)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @property
    def learning_rate(self):
        return self.current_learning_rate()

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

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self):
        return {
            "name": self.name,
            "learning_rate": _serialize(self._regular_learning_rate),
            "mosaic_learning_rate": _serialize(self._mosaic_learning_rate),
            "schedule": keras.saving.serialize_keras_object(self.schedule),
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
        for key in ("learning_rate", "mosaic_learning_rate", "schedule", "optimizer"):
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
    return float(ops.convert_to_numpy(rate))
