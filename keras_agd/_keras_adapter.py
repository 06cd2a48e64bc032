"""Every use of Keras private API in keras_agd, in one place.

tests/test_keras_adapter.py fails loudly when a Keras release changes any of them.
"""

import json
import os
import shutil
import warnings

import keras
import tensorflow as tf

from keras_agd import _atomic_file

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


# --- Optimizer internals every backend shares (PerLayerRates, LARS).


def variable_index(optimizer, variable):
    """The position of `variable` in the list `optimizer` was built with.

    What Keras' own optimizers call in `update_step` to find a variable's slots (the
    base class's documented example does too), on every backend.
    """
    return optimizer._get_variable_index(variable)


def uses_weight_decay(optimizer, variable):
    """Whether `optimizer` applies its decoupled weight decay to `variable`.

    Honours `optimizer.exclude_from_weight_decay(...)`, which keeps its state private.
    """
    return optimizer._use_weight_decay(variable)


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


# --- `keras.callbacks.BackupAndRestore`'s files (Keras 3.15).

BACKUP_METHODS = ("_save_model", "_load_model")
BACKUP_PATHS = (
    "_weights_path",
    "_training_metadata_path",
    "_prev_weights_path",
    "_prev_training_metadata_path",
)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' callback whose backups a kill at any moment cannot tear.

    Keras 3.15 writes `latest.weights.h5` and `training_metadata.json` in place, so a
    kill during the write leaves a torn file; its restore falls back to the previous
    backup only on `OSError`, while a torn file can also raise `RuntimeError` (HDF5) or
    `JSONDecodeError` (an emptied metadata file). Here each file is written beside its
    target and renamed over it, so `latest` is always a complete backup; the previous
    one is copied aside first (`double_checkpoint=True`) and restored on any error.
    Same files, same names: Keras' own callback restores what this one writes.
    """

    # Whether this process may put the previous backup in place of a torn latest one
    # (with several workers sharing the folder, only the one that writes it).
    writes_files = True

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint:
            for path, previous in (
                (self._weights_path, self._prev_weights_path),
                (self._training_metadata_path, self._prev_training_metadata_path),
            ):
                if os.path.exists(path):
                    _replace_with_copy(path, previous)
        # save_weights wants a name ending in `.weights.h5`.
        next_weights = self._weights_path[: -len(".weights.h5")] + ".next.weights.h5"
        self.model.save_weights(next_weights, overwrite=True)
        os.replace(next_weights, self._weights_path)
        # After the weights: a kill between the two renames resumes at the earlier epoch
        # with the later weights, which Keras' batch-level backups do anyway.
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        with _atomic_file.replacing(self._training_metadata_path) as file:
            file.write(json.dumps(metadata).encode())

    def _load_model(self):
        try:
            super()._load_model()
        except Exception as error:  # A torn file raises what its reader raises.
            if not (self.writes_files and os.path.exists(self._prev_weights_path)):
                raise
            warnings.warn(
                f"The latest backup in {self.backup_dir!r} could not be restored "
                f"({error!r}); restoring the previous one.",
                stacklevel=2,
            )
            _replace_with_copy(self._prev_weights_path, self._weights_path)
            if os.path.exists(self._prev_training_metadata_path):
                _replace_with_copy(self._prev_training_metadata_path, self._training_metadata_path)
            elif os.path.exists(self._training_metadata_path):
                os.remove(self._training_metadata_path)
            super()._load_model()


def _replace_with_copy(source, target):
    with open(source, "rb") as original, _atomic_file.replacing(target) as copy:
        shutil.copyfileobj(original, copy)
