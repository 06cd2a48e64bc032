"""The tf.data pipeline that feeds AGD one codebook frontier per epoch."""

import warnings

import numpy as np
import tensorflow as tf

from keras_agd.agd import AGD

MODES = ("weighted", "per_sample", "random_subset")


def mosaic_dataset(
    codebook,
    x,
    y,
    optimizer,
    batch_size=128,
    mosaic_batch_size=4096,
    mode="weighted",
    criterion="mean",
    augment=None,
    pad_batches=True,
    seed=None,
):
    """A `tf.data.Dataset` of `(x, y, sample_weight)` for `model.fit` with `AGD`.

    Each time Keras starts an epoch, the dataset advances the optimizer's annealing
    schedule, reads ε and yields that epoch's data, all in TensorFlow graph ops
    (no Python per batch):

    - `mode="weighted"`: the codebook frontier at ε, each codeword weighted by the
      number of samples it stands for (ω, normalized to a mean weight of 1) and each
      remaining sample with weight 1: the exact mosaic risk of eq. (6). An epoch
      costs the frontier size, not N.
    - `mode="per_sample"`: Algorithm 1 literally: every sample is replaced by its
      codeword at ε (N items per epoch, weight 1).
    - `mode="random_subset"`: a control for benchmarks, not a method: each epoch is a
      uniformly random subset of the real samples of the frontier's size (weight 1),
      with the same batch sizes and phases. It tells "codewords help" apart from
      "few samples early help".

    Batches hold `mosaic_batch_size` items while the frontier has codewords and
    `batch_size` once ε has reached the real samples; `augment` runs only then.
    Items are shuffled every epoch with a seed derived from `seed` and the
    annealing step, so a resumed run sees the same batches as an uninterrupted one.

    Epochs change length as ε moves. Keras fixes an epoch's length after the first
    one for datasets of unknown size, so this dataset reports the longest possible
    epoch as its cardinality and ends shorter ones early; do not pass
    `steps_per_epoch`, and apply further transformations before, not after, this
    function (they would hide that cardinality).

    Args:
        codebook: A `HierarchicalCodebook` fitted on exactly `x` and `y`.
        x: Training inputs, shape `(N, ...)`, as given to `codebook.fit`.
        y: Integer class labels, shape `(N,)`.
        optimizer: The `AGD` optimizer the model is compiled with.
        batch_size: Batch size of the regular phase. Defaults to `128`.
        mosaic_batch_size: Batch size while training on codewords. Defaults to `4096`.
        mode: `"weighted"`, `"per_sample"` or `"random_subset"`.
            Defaults to `"weighted"`.
        criterion: Node error compared with ε: `"mean"` or `"max"`.
            Defaults to `"mean"`.
        augment: Optional function `(x_batch, y_batch) -> (x_batch, y_batch)` in
            TensorFlow ops (e.g. random deformation), applied in the regular phase.
            Defaults to `None`.
        pad_batches: Pads each epoch's last batch with zero-weight items so that
            all batches of a phase have one shape: with `jit_compile=True`, XLA then
            compiles once per phase instead of once per epoch. Keras averages the
            loss over the padded batch, so that batch's step is scaled by its share
            of real items. Defaults to `True`.
        seed: Integer shuffling seed; `None` draws one from NumPy's global RNG
            (which `keras.utils.set_random_seed` sets). Defaults to `None`.

    Returns:
        A `tf.data.Dataset` yielding `(x, y, sample_weight)` batches, x in float32.

    Example:

    >>> train = keras_agd.mosaic_dataset(codebook, x_train, y_train, optimizer,
    ...                                  batch_size=128, mosaic_batch_size=4096)
    >>> model.fit(train, epochs=30, validation_data=(x_test, y_test))
    """
    _check_arguments(optimizer, batch_size, mosaic_batch_size, mode, augment)
    codebook.verify(x, y)
    codebook._node_errors(criterion)  # Validates `criterion` now rather than mid-training.
    x = np.asarray(x)
    n_samples = len(x)
    # One lookup table: rows [0, N) are the samples, rows N + node are the codewords.
    table_x = tf.constant(
        np.concatenate(
            [
                x.astype(np.float32, copy=False),
                codebook.codewords_.reshape((-1, *x.shape[1:])),
            ]
        )
    )
    table_y = tf.constant(np.concatenate([np.asarray(y).reshape(-1), codebook.node_label_]))
    paths = tf.constant(codebook.sample_paths_)
    errors = tf.constant(codebook._node_errors(criterion))
    if seed is None:
        # The legacy global RNG is the one `keras.utils.set_random_seed` seeds.
        seed = int(np.random.randint(2**31 - 1))  # noqa: NPY002

    def frontier(epsilon):
        """Per sample: the uppermost node with error below ε, else -1 (eq. 6)."""
        below = (paths >= 0) & (tf.gather(errors, tf.maximum(paths, 0)) < epsilon)
        first = tf.argmax(tf.cast(below, tf.int32), axis=1, output_type=tf.int64)
        chosen = tf.gather(paths, first, batch_dims=1)
        return tf.where(tf.reduce_any(below, axis=1), chosen, -1)

    def epoch(_):
        epsilon = optimizer.begin_annealing_epoch()
        chosen = frontier(epsilon)
        is_codeword = chosen >= 0
        mosaic = tf.reduce_any(is_codeword)
        samples = tf.range(n_samples, dtype=tf.int64)
        if mode == "weighted":
            nodes, _, counts = tf.unique_with_counts(tf.boolean_mask(chosen, is_codeword))
            raw = tf.boolean_mask(samples, ~is_codeword)
            rows = tf.concat([n_samples + nodes, raw], axis=0)
            omega = tf.concat([tf.cast(counts, tf.float32), tf.ones_like(raw, tf.float32)], 0)
            # Mean weight 1 keeps the loss scale, hence the learning rate, comparable.
            weights = omega * tf.cast(tf.size(rows), tf.float32) / n_samples
        elif mode == "per_sample":
            rows = tf.where(is_codeword, n_samples + chosen, samples)
            weights = tf.ones([n_samples], tf.float32)
        else:
            size = tf.size(tf.unique(tf.where(is_codeword, n_samples + chosen, samples))[0])
            subset_seed = tf.stack(
                [tf.constant(seed + 1, tf.int64), optimizer._annealing_step.value]
            )
            rows = tf.random.experimental.stateless_shuffle(samples, seed=subset_seed)[:size]
            weights = tf.ones([size], tf.float32)
        optimizer.record_frontier(mosaic, tf.size(rows))
        step_seed = tf.stack([tf.constant(seed, tf.int64), optimizer._annealing_step.value])
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.size(rows)), seed=step_seed)
        rows, weights = tf.gather(rows, order), tf.gather(weights, order)
        size = tf.cast(tf.where(mosaic, mosaic_batch_size, batch_size), tf.int64)
        if pad_batches:
            padding = tf.math.floormod(-tf.size(rows, out_type=tf.int64), size)
            rows = tf.concat([rows, tf.zeros([padding], tf.int64)], axis=0)
            weights = tf.concat([weights, tf.zeros([padding], tf.float32)], axis=0)
        items = tf.data.Dataset.from_tensor_slices((rows, weights))
        return items.batch(size).map(
            lambda row, weight: _lookup(row, weight, mosaic),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def _lookup(row, weight, mosaic):
        batch_x, batch_y = tf.gather(table_x, row), tf.gather(table_y, row)
        if augment is not None:
            batch_x, batch_y = tf.cond(
                mosaic, lambda: (batch_x, batch_y), lambda: augment(batch_x, batch_y)
            )
        return batch_x, batch_y, weight

    dataset = tf.data.Dataset.range(1).flat_map(epoch).prefetch(tf.data.AUTOTUNE)
    longest = -(-n_samples // min(batch_size, mosaic_batch_size))
    # Keras reads this once per fit: every epoch then runs until its data ends.
    dataset.cardinality = lambda: tf.constant(longest, tf.int64)
    # ...and warns each time a (deliberately) shorter epoch ends.
    warnings.filterwarnings(
        "ignore",
        message="Your input ran out of data",
        module="keras.src.trainers.epoch_iterator",
    )
    return dataset


def _check_arguments(optimizer, batch_size, mosaic_batch_size, mode, augment):
    if not isinstance(optimizer, AGD):
        raise TypeError(
            "`optimizer` must be the keras_agd.AGD optimizer the model is compiled with. "
            f"Received: optimizer={optimizer!r}"
        )
    if optimizer.schedule is None:
        raise ValueError(
            "The AGD optimizer has no annealing schedule. Pass e.g. "
            "`schedule=keras_agd.schedules.from_codebook(codebook, mosaic_epochs=10)`."
        )
    for name, value in (("batch_size", batch_size), ("mosaic_batch_size", mosaic_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    if augment is not None and not callable(augment):
        raise TypeError(f"`augment` must be callable. Received: augment={augment!r}")
