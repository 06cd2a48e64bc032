"""The private base of optimizers that wrap another Keras optimizer (AGD, LayerAdaptive)."""

import keras

from keras_agd import _validation


class WrapperOptimizer(keras.optimizers.Optimizer):
    """Delegates the update to `inner_optimizer`, as `keras.optimizers.LossScaleOptimizer` does.

    Subclasses add their own variables with `add_variable` and their own maths around
    `apply`; the step counter, the learning rate, the slots and `finalize_variable_values`
    are the inner optimizer's. Subclasses that hook into the TensorFlow optimizer's
    distributed update set `requires_tensorflow`.
    """

    requires_tensorflow = True

    def __init__(self, inner_optimizer, name=None):
        if self.requires_tensorflow and keras.backend.backend() != "tensorflow":
            raise ValueError(
                f"{type(self).__name__} requires the TensorFlow backend. "
                f"Received: backend={keras.backend.backend()!r}"
            )
        _validation.check_optimizer("inner_optimizer", inner_optimizer)
        if isinstance(inner_optimizer, keras.optimizers.LossScaleOptimizer):
            raise ValueError(
                "The wrapped optimizer cannot be a LossScaleOptimizer: loss scaling must be "
                f"outside, `LossScaleOptimizer({type(self).__name__}(optimizer))` (what "
                "`compile` does under a mixed_float16 policy)."
            )
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer

    def build(self, var_list):
        if self.built:
            return
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    def apply(self, grads, trainable_variables=None):
        if not self.built and trainable_variables is not None:
            with keras.name_scope(self.name, caller=self):
                self.build(list(trainable_variables))
            self.built = True
        self.inner_optimizer.apply(grads, trainable_variables)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        # The base class sets its own (unused) rate before `inner_optimizer` exists.
        inner = getattr(self, "inner_optimizer", None)
        if inner is not None:
            inner.learning_rate = learning_rate

    @property
    def loss_scale_factor(self):
        inner = getattr(self, "inner_optimizer", None)
        return None if inner is None else inner.loss_scale_factor

    @loss_scale_factor.setter
    def loss_scale_factor(self, value):
        # A LossScaleOptimizer around the wrapper resets the factor to None so that
        # the wrapped optimizer does not unscale a second time.
        inner = getattr(self, "inner_optimizer", None)
        if inner is not None:
            inner.loss_scale_factor = value

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self):
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
        }


def find_in_chain(optimizer, kind):
    """The first optimizer of type `kind` in the `inner_optimizer` chain, else `None`."""
    while optimizer is not None:
        if isinstance(optimizer, kind):
            return optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return None
