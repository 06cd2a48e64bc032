"""The tf.data pipeline that reads each epoch's plan from the Annealing callback."""

import numpy as np
import tensorflow as tf

from keras_agd.callbacks import NOT_FED, Annealing
from keras_agd.sources import as_source


def mosaic_dataset(
    annealing,
    x,
    y=None,
    x_key=None,
    y_key=None,
    regular_dataset=None,
    augment=None,
    input_context=None,
):
    """A `tf.data.Dataset` of `(x, y, sample_weight)` batches for `model.fit` with AGD.

    Each epoch, the dataset reads the plan that the `annealing` callback made for it
    (which codewords and samples, in which order, with which weights and batch size)
    and yields it: codewords from a small in-memory table, samples read by index from
    `x`, all as float32. An array in memory of up to 256 MiB is gathered inside the
    graph, like `Dataset.from_tensor_slices`; anything else is read with NumPy per
    batch, so `x` can be a memory map or a tfds data source far larger than memory.
    The dataset imports nothing of the optimizer: the callback is the only link.

    Train on it with the callback in `fit` (`callbacks=[annealing]`), and apply any
    further transformation through `augment` rather than after this function: a
    transformation that changes the number of batches is refused at the end of the
    epoch. Outside `fit` the dataset gives one preview batch, then an error.

    Args:
        annealing: The `keras_agd.Annealing` callback passed to `fit`.
        x: The training samples the codebook was fit on, random-access: an array
            (kept in its own dtype, cast per batch), an `np.memmap`, a tfds
            `data_source`, any object with `__len__` and `__getitem__`, or a
            `keras_agd.Source`.
        y: Integer class labels, shape `(N,)`, unless `x` holds them (see
            `keras_agd.Source`). Defaults to `None`.
        x_key: Key of the input in dict records (tfds: `"image"`). Defaults to `None`.
        y_key: Key of the label in dict records (tfds: `"label"`). Defaults to `None`.
        regular_dataset: Optional `tf.data.Dataset` of `(x, y)` or
            `(x, y, sample_weight)` batches over the same samples, with a known number
            of batches, used as it is (decoding, augmentation, batch size) for the
            regular phase; the mosaic phase still reads `x`. Defaults to `None`.
        augment: Optional function `(x_batch, y_batch) -> (x_batch, y_batch)` in
            TensorFlow ops (e.g. random deformation), applied to the batches of the
            regular phase read from `x`. Defaults to `None`.
        input_context: The `tf.distribute.InputContext` that
            `strategy.distribute_datasets_from_function` passes to its function: the
            dataset then reads and yields only this worker's replicas' shares of each
            batch (the same shares as the default sharding, which reads every batch
            whole on every worker). Defaults to `None`.

    Returns:
        A `tf.data.Dataset` yielding `(x, y, sample_weight)`: x float32, y int64.

    Example:

    >>> annealing = keras_agd.Annealing(codebook, schedule)
    >>> train = keras_agd.mosaic_dataset(annealing, x_train, y_train)
    >>> model.fit(train, epochs=30, validation_data=(x_test, y_test), callbacks=[annealing])

    On several workers, each reading only its share:

    >>> train = strategy.distribute_datasets_from_function(
    ...     lambda context: keras_agd.mosaic_dataset(annealing, x_train, y_train,
    ...                                              input_context=context))
    """
    if not isinstance(annealing, Annealing):
        raise TypeError(
            "`annealing` must be the keras_agd.Annealing callback passed to `fit`. "
            f"Received: annealing={annealing!r}"
        )
    if augment is not None and not callable(augment):
        raise TypeError(f"`augment` must be callable. Received: augment={augment!r}")
    source = as_source(x, y, x_key=x_key, y_key=y_key)
    if source.labels is None:
        raise ValueError("keras_agd.mosaic_dataset needs class labels: pass `y` or `y_key`.")
    codebook = annealing.codebook
    codebook.verify(source)
    read_batch = _graph_reader(codebook, source) or _numpy_reader(codebook, source)
    x_shape = (None, *source.sample_shape)
    regular = None if regular_dataset is None else _regular_batches(regular_dataset, x_shape)
    if input_context is not None and not isinstance(input_context, tf.distribute.InputContext):
        raise TypeError(
            "`input_context` must be the tf.distribute.InputContext passed by "
            f"`distribute_datasets_from_function`. Received: input_context={input_context!r}"
        )
    annealing.attach(None if regular is None else int(regular.cardinality()), input_context)
    share = _all_shares if input_context is None else _replica_shares(input_context)

    def lookup(rows, weights, mosaic):
        batch_x, batch_y = read_batch(rows, mosaic)
        batch_x.set_shape(x_shape)
        batch_y.set_shape([None])
        if augment is not None:
            batch_x, batch_y = tf.cond(
                mosaic,
                lambda: (batch_x, batch_y),
                lambda: _augmented(augment, batch_x, batch_y),
            )
        return batch_x, batch_y, weights

    def epoch(_):
        # The plan arrives already without the batches a resume skips: a count fed
        # straight from a numpy_function into `Dataset.skip` crashes TensorFlow 2.21.
        rows, weights, batch_size, skip, mosaic, from_plan = tf.numpy_function(
            annealing.feed,
            [],
            [tf.int64, tf.float32, tf.int64, tf.int64, tf.bool, tf.bool],
            stateful=True,
            name="annealing_plan",
        )
        rows.set_shape([None])
        weights.set_shape([None])
        for scalar in (batch_size, skip, mosaic, from_plan):
            scalar.set_shape([])
        batches = share(tf.data.Dataset.from_tensor_slices((rows, weights)).batch(batch_size))
        batches = batches.map(
            lambda r, w: lookup(r, w, mosaic),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if regular is None:
            return batches
        # The regular phase comes from the user's own pipeline instead of the plan.
        none, every = tf.constant(0, tf.int64), tf.constant(-1, tf.int64)
        planned = batches.take(tf.where(from_plan, every, none))
        own = share(regular.skip(tf.where(from_plan, none, skip)))
        return planned.concatenate(own.take(tf.where(from_plan, none, every)))

    try:
        dataset = tf.data.Dataset.range(1).flat_map(epoch)
    except Exception as error:
        # Autograph wraps errors raised while tracing; report the user's own one.
        cause = error
        while cause is not None and not isinstance(cause, _AugmentError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise TypeError(str(cause)) from cause.__cause__
    # Under tf.distribute every worker computes the same plan and takes its share of
    # each batch (sharding by files would fail and fall back to this with a warning).
    # With an input context the shares are taken here already.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
        if input_context is None
        else tf.data.experimental.AutoShardPolicy.OFF
    )
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def _all_shares(batches):
    return batches


def _replica_shares(context):
    """Splits each global batch into one share per replica; keeps this worker's ones.

    The shares are consecutive slices in replica order, as `tf.distribute`'s own
    rebatching cuts them, and each of this worker's replicas gets one in turn.
    """
    replicas = context.num_replicas_in_sync
    local = replicas // context.num_input_pipelines
    first = context.input_pipeline_id * local

    def slices(*batch):
        def mine(tensor):
            shape = tf.concat([[replicas, -1], tf.shape(tensor)[1:]], 0)
            return tf.reshape(tensor, shape)[first : first + local]

        return tf.data.Dataset.from_tensor_slices(tuple(mine(t) for t in batch))

    return lambda batches: batches.flat_map(slices)


def _numpy_reader(codebook, source):
    """rows of an epoch plan, mosaic flag -> (float32 inputs, int64 labels), in NumPy."""
    n_samples = source.n_samples
    codewords = codebook.codewords_.reshape((-1, *source.sample_shape))
    node_labels = codebook.node_label_.astype(np.int64)
    labels = source.labels

    def read_batch(rows):
        if len(rows) and rows.min() < 0:
            raise ValueError(NOT_FED)
        is_codeword = rows >= n_samples
        if not is_codeword.any():  # The regular phase: one read, one cast.
            return source.read(rows).astype(np.float32), labels[rows]
        x = np.empty((len(rows), *source.sample_shape), np.float32)
        y = np.empty(len(rows), np.int64)
        nodes = rows[is_codeword] - n_samples
        x[is_codeword] = codewords[nodes]
        y[is_codeword] = node_labels[nodes]
        samples = rows[~is_codeword]
        if len(samples):
            x[~is_codeword] = source.read(samples)
            y[~is_codeword] = labels[samples]
        return x, y

    def read(rows, _mosaic):  # Codewords are told apart by their row numbers.
        return tf.numpy_function(
            read_batch, [rows], [tf.float32, tf.int64], stateful=False, name="read_batch"
        )

    return read


# In-memory arrays up to this size are gathered inside the graph: a NumPy call per batch
# costs about 0.6 ms more (benchmarks/regular_phase_pipeline.py). The graph holds a copy,
# so larger arrays, memory maps and records are read with NumPy instead.
IN_GRAPH_BYTES = 256 << 20


def _graph_reader(codebook, source):
    """A TensorFlow function: rows -> (float32 inputs, int64 labels), or `None`.

    Only for a NumPy array in memory of at most `IN_GRAPH_BYTES`, held as constants
    beside the codewords, as `Dataset.from_tensor_slices` would hold it.
    """
    array = source.array
    if not (source.in_memory and array.dtype.kind in "biuf" and array.nbytes <= IN_GRAPH_BYTES):
        return None
    n_samples = source.n_samples
    samples = tf.constant(array)
    codewords = tf.constant(
        codebook.codewords_.reshape((-1, *source.sample_shape)).astype(np.float32)
    )
    labels = tf.constant(source.labels.astype(np.int64))
    node_labels = tf.constant(codebook.node_label_.astype(np.int64))

    def read_batch(rows, mosaic):
        fed = tf.debugging.assert_non_negative(rows, message=NOT_FED)
        with tf.control_dependencies([fed]):  # No gather may run before the check.
            rows = tf.identity(rows)
        sample_rows = tf.minimum(rows, n_samples - 1)
        x = tf.cast(tf.gather(samples, sample_rows), tf.float32)
        y = tf.gather(labels, sample_rows)

        def with_codewords():
            is_codeword = rows >= n_samples
            node_rows = tf.maximum(rows - n_samples, 0)
            mask = tf.reshape(is_codeword, [-1] + [1] * len(source.sample_shape))
            return (
                tf.where(mask, tf.gather(codewords, node_rows), x),
                tf.where(is_codeword, tf.gather(node_labels, node_rows), y),
            )

        # Regular epochs hold no codeword: one gather, not two.
        return tf.cond(mosaic, with_codewords, lambda: (x, y))

    return read_batch


def _regular_batches(dataset, x_shape):
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            f"`regular_dataset` must be a tf.data.Dataset. Received: {type(dataset).__name__}"
        )
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(
            "`regular_dataset` must yield `(x, y)` or `(x, y, sample_weight)` batches. "
            f"Received element_spec={spec}"
        )
    if not spec[0].shape.is_compatible_with(x_shape):
        raise ValueError(
            f"`regular_dataset` yields inputs of shape {spec[0].shape}; the codewords have "
            f"shape {x_shape} (batches of the samples the codebook was fit on)."
        )
    batches = int(dataset.cardinality())
    if batches < 1:
        raise ValueError(
            "`regular_dataset` must have a known, finite number of batches (an epoch). "
            f"Received cardinality {batches} (-1: infinite, -2: unknown); if you know "
            "it, add `.apply(tf.data.experimental.assert_cardinality(n))`."
        )

    def standardize(x, y, weight=None):
        x = tf.cast(x, tf.float32)
        y = tf.cast(tf.reshape(y, [-1]), tf.int64)
        weight = tf.ones_like(y, tf.float32) if weight is None else tf.cast(weight, tf.float32)
        return x, y, weight

    return dataset.map(standardize)


class _AugmentError(TypeError):
    pass


def _augmented(augment, x, y):
    try:
        result = augment(x, y)
    except Exception as error:
        raise _AugmentError(
            "`augment` must be a function (x_batch, y_batch) -> (x_batch, y_batch) in "
            f"TensorFlow ops; calling it on a batch (x: {x.shape} {x.dtype.name}, "
            f"y: {y.shape} {y.dtype.name}) failed: {error}"
        ) from error
    if not (isinstance(result, tuple | list) and len(result) == 2):
        raise _AugmentError(
            f"`augment` must return a pair (x_batch, y_batch). Received: {type(result).__name__}"
        )
    return tf.cast(result[0], tf.float32), tf.cast(result[1], tf.int64)
