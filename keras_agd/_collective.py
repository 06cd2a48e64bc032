"""Small collectives across the workers of a `MultiWorkerMirroredStrategy`."""

import hashlib
import weakref

import numpy as np
import tensorflow as tf


def check_workers_agree(strategy, what, values):
    """Raises `ValueError` unless every replica passes the same `values`.

    A collective: every worker must call it at the same point of its program.

    Args:
        strategy: The `MultiWorkerMirroredStrategy` of `fit`.
        what: What the values describe, for the error message.
        values: Dict of names to integers (below 2**53) or floats.
    """
    local = tf.constant([float(value) for value in values.values()], tf.float64)
    distributed = strategy.experimental_distribute_values_from_function(lambda _: local)
    gathered = _gather(strategy)(distributed).numpy().reshape(-1, len(values))
    if (gathered == gathered[0]).all():
        return
    rows = [
        f"replica {index}: " + ", ".join(f"{name}={value:.15g}" for name, value in zip(values, row))
        for index, row in enumerate(gathered)
    ]
    raise ValueError(
        f"The workers disagree on {what}: " + "; ".join(rows) + ". Every worker must "
        "train on the same data with the same codebook, `seed` and schedule, and resume "
        "from the same backup (keras_agd.multi_worker.backup_and_restore)."
    )


def barrier(strategy):
    """Returns once every worker has called it."""
    check_workers_agree(strategy, "a barrier", {"arrived": 1})


def digest(*arrays):
    """An integer below 2**48 identifying the dtypes, shapes and bytes of `arrays`."""
    hasher = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        hasher.update(f"{array.dtype.str}{array.shape}".encode())
        hasher.update(array.data)
    return int.from_bytes(hasher.digest()[:6], "big")


# One traced function per strategy: `strategy.gather` in eager mode traces a new one
# at every call (and TensorFlow warns after five).
_GATHERS = weakref.WeakKeyDictionary()


def _gather(strategy):
    function = _GATHERS.get(strategy)
    if function is None:
        function = tf.function(lambda values: strategy.gather(values, axis=0))
        _GATHERS[strategy] = function
    return function
