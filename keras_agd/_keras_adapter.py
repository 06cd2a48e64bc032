"""Every use of Keras private API in keras_agd, in one place.

tests/test_keras_adapter.py fails loudly when a Keras release changes any of them.
"""

import tensorflow as tf

# --- Optimizer internals (LayerAdaptive).

UPDATE_STEP = "_distributed_tf_update_step"


def hook_update_step(optimizer, update_step):
    """Reroutes the TF optimizer's per-variable update after the cross-replica sum.

    Keras' TF optimizer sums gradients across replicas inside `_backend_update_step`
    and then calls `_distributed_tf_update_step(distribution, grads_and_vars,
    learning_rate)`: the first point where the gradients are those the update uses.
    """
    if not hasattr(optimizer, UPDATE_STEP):
        raise RuntimeError(
            f"This Keras version has no `{UPDATE_STEP}` on {type(optimizer).__name__}; "
            "keras_agd.LayerAdaptive needs it (TensorFlow backend)."
        )
    setattr(optimizer, UPDATE_STEP, update_step)


def is_update_step_hooked(optimizer):
    return UPDATE_STEP in vars(optimizer)


def variable_key(optimizer, variable):
    """The key by which a Keras optimizer identifies one of its variables."""
    return optimizer._var_key(variable)


# --- `fit` under MultiWorkerMirroredStrategy (Keras 3.15, TensorFlow backend).

MULTI_WORKER_FIT = "_keras_agd_multi_worker_fit"


def enable_multi_worker_fit(model):
    """Makes `model.fit` run under `tf.distribute.MultiWorkerMirroredStrategy` with >1 worker.

    Keras 3.15's TensorFlow trainer fails there before the first step, in two places:

    - `_maybe_symbolic_build` averages the first input batch across workers with
      `strategy.reduce` on the whole `(x, y, sample_weight)` tuple, which collective
      reductions do not take. The batch is only needed for its shapes, so this
      worker's own replica batch is used instead.
    - The train and test steps average each scalar log over "axis 0" across workers,
      which scalars do not have. The logs are the values of synchronized metrics
      (identical on all replicas), so each is given one axis of size 1, which the
      average removes again.
    """
    strategy = model.distribute_strategy

    def symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, data_iterator in iterator:
                batch = next(data_iterator)
                break
            data_batch = tf.nest.map_structure(
                lambda value: strategy.experimental_local_results(value)[0], batch
            )
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    def with_axis(step):
        def step_with_axis(data):
            return tf.nest.map_structure(lambda log: tf.expand_dims(log, 0), step(data))

        return step_with_axis

    model._maybe_symbolic_build = symbolic_build
    model.train_step = with_axis(model.train_step)
    model.test_step = with_axis(model.test_step)
    setattr(model, MULTI_WORKER_FIT, True)
    # The steps are traced again with the wrappers.
    model.train_function = model.test_function = None


def is_multi_worker_fit_enabled(model):
    return getattr(model, MULTI_WORKER_FIT, False)
