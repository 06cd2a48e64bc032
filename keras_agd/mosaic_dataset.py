"""The tf.data stream of a curriculum, starting at the optimizer's step."""

import numpy as np
import tensorflow as tf

from keras_agd import _collective, _validation, multi_worker
from keras_agd.curriculum import Curriculum, regular_rows


def mosaic_dataset(
    curriculum,
    model,
    *,
    steps_per_epoch=None,
    regular_dataset=None,
    augment=None,
    class_weight=None,
    input_context=None,
):
    """A `tf.data.Dataset` of a curriculum's batches, from the step `model` is at.

    Each time Keras starts reading the dataset (every epoch of `fit`), it reads the
    optimizer's step counter `s` (`model.optimizer.iterations`) and yields the
    batches of steps `s, s + 1, ...`: codewords and samples of the mosaic phase, then
    shuffled passes over the real samples (each pass a stateless permutation of the
    pass number and the curriculum's seed). So a second `fit`, `initial_epoch`, a
    model restored by `load_model` or `keras.callbacks.BackupAndRestore` all continue
    the curriculum where the optimizer stands, and every batch is full. A Keras epoch
    is `steps_per_epoch` steps: a window for the logs, not a pass of the curriculum.

    Codewords come from a small in-memory table and samples are read by index from
    the curriculum's source: an array in memory of up to 256 MiB is gathered inside
    the graph, like `Dataset.from_tensor_slices`; anything else (memory maps, tfds
    data sources, records) is read with NumPy per batch.

    Batches are `(x, y, sample_weight)`: x float32, y int64, sample_weight float32
    (ω-based in `"weighted"` mode, else 1, times `class_weight`). A custom
    `train_step` must pass the weights on, e.g.
    `x, y, sample_weight = data; ...; self.compute_loss(x, y, y_pred, sample_weight)`.
    Pass class weights here, not to `fit`: Keras refuses `class_weight` for a
    dataset that yields sample weights.

    Args:
        curriculum: The `keras_agd.Curriculum` to stream.
        model: The `keras.Model` compiled with `keras_agd.AGD(curriculum, ...)` (or
            that optimizer), whose step counter the stream follows. For a control at
            one learning rate, `AGD(curriculum, learning_rate=r)`.
        steps_per_epoch: Batches of each Keras epoch. `None` means one pass over the
            real samples, `curriculum.steps_per_epoch`. Pass it here, not to `fit`.
            Defaults to `None`.
        regular_dataset: Optional `tf.data.Dataset` of `(x, y)` or
            `(x, y, sample_weight)` batches over the same samples, with a known
            number of batches, used as it is (decoding, augmentation, batch size) and
            repeated for the regular phase; the mosaic phase still reads the
            curriculum's source. It resumes by skipping batches, so its order is as
            reproducible as its own shuffling. Its first batch is read once here, to
            check that it batches the same samples on the same scale. Defaults to `None`.
        augment: Optional function `(x_batch, y_batch) -> (x_batch, y_batch)` in
            TensorFlow ops (e.g. random deformation), applied to the batches of the
            regular phase read from the source. Defaults to `None`.
        class_weight: Optional dict from class index to a weight >= 0, multiplied
            into every item's sample weight (missing classes: 1). Defaults to `None`.
        input_context: The `tf.distribute.InputContext` that
            `strategy.distribute_datasets_from_function` passes to its function: the
            dataset then yields only this worker's replicas' shares of each batch.
            Defaults to `None`.

    Returns:
        A `tf.data.Dataset` of `steps_per_epoch` batches each time it is iterated.

    Example:

    >>> train = keras_agd.mosaic_dataset(curriculum, model)  # or curriculum.dataset(model)
    >>> model.fit(train, epochs=3, validation_data=(x_test, y_test))
    """
    if not isinstance(curriculum, Curriculum):
        raise TypeError(
            f"`curriculum` must be a keras_agd.Curriculum. Received: curriculum={curriculum!r}"
        )
    optimizer = _optimizer_of(model)
    if steps_per_epoch is None:
        steps_per_epoch = curriculum.steps_per_epoch
    steps_per_epoch = _validation.check_integer("steps_per_epoch", steps_per_epoch, 1, 1 << 40)
    if augment is not None and not callable(augment):
        raise TypeError(f"`augment` must be callable. Received: augment={augment!r}")
    if input_context is not None and not isinstance(input_context, tf.distribute.InputContext):
        raise TypeError(
            "`input_context` must be the tf.distribute.InputContext passed by "
            f"`distribute_datasets_from_function`. Received: input_context={input_context!r}"
        )
    source = curriculum.source
    weight_table = _class_weights(class_weight, curriculum.codebook.node_label_, source.labels)
    read_batch = _graph_reader(curriculum, source) or _numpy_reader(curriculum, source)
    x_shape = (None, *source.sample_shape)
    regular = (
        None if regular_dataset is None else _regular_batches(regular_dataset, x_shape, curriculum)
    )
    n_classes = _check_classes(model, curriculum)
    share = _all_shares if input_context is None else _replica_shares(input_context)
    mosaic_steps = curriculum.mosaic_steps
    size = curriculum.mosaic_batch_size
    mosaic_rows = tf.constant(curriculum.mosaic_rows)
    mosaic_weights = tf.constant(curriculum.mosaic_weights)
    _check_replicas(model, curriculum, input_context)
    # The collective first: a worker that raised before it would leave its peers
    # waiting in it, and their next collectives would meet this worker's other ones.
    _check_workers_agree(model, curriculum)
    _check_identity(optimizer, curriculum.digest)

    reader = _StartReader(model, curriculum.digest, n_classes, steps_per_epoch)

    def with_weights(x, y, weights):
        if weight_table is not None:
            weights = weights * tf.gather(weight_table, y)
        return x, y, weights

    def mosaic_batch(step):
        rows = mosaic_rows[step * size : (step + 1) * size]
        x, y = read_batch(rows, True)
        return with_weights(x, y, mosaic_weights[step * size : (step + 1) * size])

    def regular_batch(step):
        x, y = read_batch(regular_rows(curriculum, step), False)
        if augment is not None:
            x, y = _augmented(augment, x, y)
        return with_weights(x, y, tf.ones_like(y, tf.float32))

    def window(_):
        # Read when an iterator starts (each epoch of `fit`), after callbacks such as
        # BackupAndRestore have restored the optimizer.
        start = tf.numpy_function(reader.start, [], tf.int64, stateful=True)
        start.set_shape([])
        mosaic = tf.data.Dataset.range(tf.minimum(start, mosaic_steps), mosaic_steps)
        mosaic = mosaic.map(mosaic_batch, num_parallel_calls=tf.data.AUTOTUNE)
        first_regular = tf.maximum(start, mosaic_steps)
        if regular is None:
            steps = tf.data.Dataset.range(first_regular, tf.int64.max)
            own = steps.map(regular_batch, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            skip = (first_regular - mosaic_steps) % regular.cardinality()
            own = regular.repeat().skip(skip).map(with_weights)
        return mosaic.concatenate(own).take(steps_per_epoch).enumerate().map(reader.mark_end)

    try:
        dataset = tf.data.Dataset.range(1).flat_map(window)
    except Exception as error:
        # Autograph wraps errors raised while tracing; report the user's own one.
        cause = error
        while cause is not None and not isinstance(cause, _AugmentError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise TypeError(str(cause)) from cause.__cause__
    dataset = share(dataset.apply(tf.data.experimental.assert_cardinality(steps_per_epoch)))
    # Under tf.distribute every worker computes the same batches and takes its share
    # of each (sharding by files would fail and fall back to this with a warning).
    # With an input context the shares are taken here already.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
        if input_context is None
        else tf.data.experimental.AutoShardPolicy.OFF
    )
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def _other_curriculum(digest, saved):
    return (
        f"This stream is of a curriculum (digest {digest}) other than the one the model's AGD "
        f"optimizer was made with or resumed from (digest {saved}): it would train on other "
        "batches than the saved run. Build the curriculum with the same data, codebook, "
        "schedule, batch sizes, mode, steps_per_level and seed, or start a new run."
    )


def _optimizer_of(model):
    optimizer = getattr(model, "optimizer", model)
    if optimizer is None or not hasattr(optimizer, "iterations"):
        raise TypeError(
            "`model` must be a compiled keras.Model (or a Keras optimizer): the stream "
            "starts at its optimizer's step. Call `model.compile(optimizer=keras_agd.AGD("
            f"curriculum, ...))` first. Received: model={model!r}"
        )
    return optimizer


def _agd_in_chain(optimizer):
    """The AGD optimizer in the `inner_optimizer` chain (found by its curriculum), else `None`."""
    while optimizer is not None:
        if getattr(optimizer, "curriculum_identity", None) is not None:
            return optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return None


def _check_identity(optimizer, digest, restored=False):
    """Raises unless `optimizer` holds an AGD of the curriculum with this digest."""
    agd = _agd_in_chain(optimizer)
    if agd is None:
        # AGD orders its step counter after the batch it trains on; another optimizer's
        # counter may move first in a traced step, and the stream would start a step late.
        raise TypeError(
            "The curriculum's stream needs the model compiled with keras_agd.AGD(curriculum, "
            "...): its step follows AGD's. For one learning rate in both phases leave "
            "`mosaic_learning_rate=None`; for another update rule pass `optimizer=` to AGD. "
            f"Received: optimizer={optimizer!r}"
        )
    saved = int(agd.curriculum_digest.numpy()) if restored else agd.curriculum_identity["digest"]
    if saved != digest:
        raise ValueError(_other_curriculum(digest, saved))
    return agd


class _StartReader:
    """What runs when an iterator of the stream starts, and when it yields its last batch.

    Invariant: the stream is read by training. When an iterator began exactly where a
    trained window ended, was read to its end, and the optimizer did not step since,
    it was an evaluation inside `fit` (`validation_data=stream`, or `evaluate` between
    two fits): its losses were the training plan's, so the next start refuses it.
    Reading the stream to inspect it, even whole, is not refused.
    """

    def __init__(self, model, digest, n_classes, steps_per_epoch):
        self.model, self.digest = model, digest
        self.n_classes, self.steps_per_epoch = n_classes, steps_per_epoch
        # (first step, read to its end) of the last two iterators, newest last.
        self.windows = []

    def start(self):
        # The model's optimizer now (it may have been compiled again), and the digest its
        # variables hold now (BackupAndRestore may have restored another run's).
        optimizer = _optimizer_of(self.model)
        _check_identity(optimizer, self.digest)
        _check_identity(optimizer, self.digest, restored=True)
        _check_output_units(self.model, self.n_classes)
        step = int(optimizer.iterations.numpy())
        if len(self.windows) == 2:
            (trained, _), (evaluated, read_to_end) = self.windows
            if read_to_end and evaluated == step == trained + self.steps_per_epoch:
                raise ValueError(
                    f"The curriculum's stream was read to its end ({self.steps_per_epoch} "
                    f"batches from step {step}) right after a training epoch, without a "
                    "training step: it was used for evaluation (`validation_data=` or "
                    "`evaluate`). It holds the training plan (codewords, weights); pass "
                    "held-out data as `validation_data=(x_val, y_val)`."
                )
        self.windows = [*self.windows[-1:], [step, False]]
        return np.int64(step)

    def mark_end(self, index, batch):
        def mark():
            self.windows[-1][1] = True
            return np.int64(0)

        ended = tf.cond(
            tf.equal(index, self.steps_per_epoch - 1),
            lambda: tf.numpy_function(mark, [], tf.int64, stateful=True),
            lambda: tf.constant(0, tf.int64),
        )
        with tf.control_dependencies([ended]):
            return tuple(tf.identity(part) for part in batch)


def _check_classes(model, curriculum):
    """The number of classes; refuses a model whose output cannot score all of them."""
    labels = curriculum.source.labels
    n_classes = int(max(labels.max(), curriculum.codebook.node_label_.max())) + 1
    _check_output_units(model, n_classes)
    return n_classes


def _check_output_units(model, n_classes):
    """Labels must index the model's outputs (under XLA an out-of-range one gives NaN)."""
    outputs = getattr(model, "outputs", None) if hasattr(model, "optimizer") else None
    try:
        shapes = [tuple(output.shape) for output in outputs or ()]
    except (AttributeError, TypeError, ValueError):
        return
    if len(shapes) != 1 or len(shapes[0]) != 2 or shapes[0][-1] is None:
        return  # Not known before the model is built, or not a classifier's shape.
    units = int(shapes[0][-1])
    if units == 1 and n_classes <= 2:
        return  # One sigmoid output for two classes.
    if n_classes > units:
        raise ValueError(
            f"`y` holds class labels up to {n_classes - 1}, but the model has {units} "
            f"outputs: every label must be below the number of outputs. Give the last "
            f"layer {n_classes} units, or check the labels."
        )


def _check_replicas(model, curriculum, input_context):
    """Refuses batches that the replicas cannot split into equal shares."""
    if input_context is not None:
        replicas = input_context.num_replicas_in_sync
    else:
        strategy = getattr(model, "distribute_strategy", None)
        replicas = 1 if strategy is None else strategy.num_replicas_in_sync
    sizes = {"batch_size": curriculum.batch_size, "mosaic_batch_size": curriculum.mosaic_batch_size}
    if any(size % replicas for size in sizes.values()):
        raise ValueError(
            f"On {replicas} replicas, each batch is split into {replicas} shares, which Keras "
            f"weighs equally: both batch sizes of the curriculum must be multiples of {replicas} "
            f"for the step to be one machine's. Received: {sizes}"
        )


def _check_workers_agree(model, curriculum):
    """On several workers, refuses workers whose curricula differ (one collective).

    With an input context this runs inside `distribute_datasets_from_function`, which
    calls the function once per worker, at the same point on every worker.
    """
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None or multi_worker.worker_count(strategy) < 2:
        return
    _collective.check_workers_agree(
        strategy, "the curriculum", {"digest": curriculum.digest, "seed": curriculum.seed}
    )


def _class_weights(class_weight, node_labels, labels):
    """A float32 table from class to weight, or `None`."""
    if class_weight is None:
        return None
    if not isinstance(class_weight, dict):
        raise TypeError(
            "`class_weight` must be a dict from class index to weight. "
            f"Received: class_weight={class_weight!r}"
        )
    classes = int(max(labels.max(), node_labels.max())) + 1
    table = np.ones(classes, np.float32)
    for key, value in class_weight.items():
        if not (_validation.is_integer(key) and 0 <= key < classes):
            raise ValueError(
                f"`class_weight` keys must be class indices in [0, {classes}). "
                f"Received key: {key!r}"
            )
        table[int(key)] = _validation.check_number(f"class_weight[{key}]", value, 0)
    return tf.constant(table)


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


def _numpy_reader(curriculum, source):
    """rows -> (float32 inputs, int64 labels), read with NumPy."""
    n_samples = source.n_samples
    codewords = curriculum.codebook.codewords_.reshape((-1, *source.sample_shape))
    node_labels = curriculum.codebook.node_label_.astype(np.int64)
    labels = source.labels

    def read_batch(rows):
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

    def read(rows, _mosaic):
        x, y = tf.numpy_function(
            read_batch, [rows], [tf.float32, tf.int64], stateful=False, name="read_batch"
        )
        x.set_shape((None, *source.sample_shape))
        y.set_shape([None])
        return x, y

    return read


# In-memory arrays up to this size are gathered inside the graph: a NumPy call per batch
# costs about 0.6 ms more (benchmarks/regular_phase_pipeline.py). The graph holds a copy,
# so larger arrays, memory maps and records are read with NumPy instead.
IN_GRAPH_BYTES = 256 << 20


def _graph_reader(curriculum, source):
    """A TensorFlow function: rows -> (float32 inputs, int64 labels), or `None`.

    Only for a NumPy array in memory of at most `IN_GRAPH_BYTES` (float64 counted and
    held as float32), held as constants beside the codewords, as
    `Dataset.from_tensor_slices` would hold it.
    """
    array = source.array
    if not (source.in_memory and array.dtype.kind in "biuf"):
        return None
    if array.dtype.itemsize > 4:  # Batches are float32 anyway: hold float64 as float32.
        array = array.astype(np.float32) if array.size * 4 <= IN_GRAPH_BYTES else None
    if array is None or array.nbytes > IN_GRAPH_BYTES:
        return None
    n_samples = source.n_samples
    samples = tf.constant(array)
    codebook = curriculum.codebook
    codewords = tf.constant(
        codebook.codewords_.reshape((-1, *source.sample_shape)).astype(np.float32)
    )
    labels = tf.constant(source.labels.astype(np.int64))
    node_labels = tf.constant(codebook.node_label_.astype(np.int64))

    def read_batch(rows, mosaic):
        if not mosaic:  # Regular batches hold no codeword: one gather.
            return tf.cast(tf.gather(samples, rows), tf.float32), tf.gather(labels, rows)
        is_codeword = rows >= n_samples
        sample_rows = tf.minimum(rows, n_samples - 1)
        node_rows = tf.maximum(rows - n_samples, 0)
        mask = tf.reshape(is_codeword, [-1] + [1] * len(source.sample_shape))
        x = tf.where(
            mask,
            tf.gather(codewords, node_rows),
            tf.cast(tf.gather(samples, sample_rows), "float32"),
        )
        y = tf.where(is_codeword, tf.gather(node_labels, node_rows), tf.gather(labels, sample_rows))
        return x, y

    return read_batch


def _regular_batches(dataset, x_shape, curriculum):
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
    x_spec, y_spec = spec[0], spec[1]
    if not all(isinstance(part, tf.TensorSpec) for part in spec):
        raise ValueError(
            "`regular_dataset` must yield tensors `(x, y)` or `(x, y, sample_weight)`, not "
            f"nested structures (one input only). Received element_spec={spec}"
        )
    if not _is_numeric(x_spec.dtype):
        raise ValueError(
            f"`regular_dataset` must yield numeric inputs. Received x of dtype {x_spec.dtype.name}"
        )
    if not (
        y_spec.dtype.is_integer
        and (y_spec.shape.is_compatible_with([None]) or y_spec.shape.is_compatible_with([None, 1]))
    ):
        raise ValueError(
            "`regular_dataset` must yield integer class labels of shape (batch,) (not one-hot, "
            f"not floats). Received y: {y_spec.shape} {y_spec.dtype.name}"
        )
    if len(spec) == 3 and not (
        _is_numeric(spec[2].dtype) and spec[2].shape.is_compatible_with([None])
    ):
        raise ValueError(
            "`regular_dataset` must yield sample weights of shape (batch,). Received: "
            f"{spec[2].shape} {spec[2].dtype.name}"
        )
    if not x_spec.shape.is_compatible_with(x_shape):
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

    _check_same_samples(dataset, batches, curriculum)

    def standardize(x, y, weight=None):
        x = tf.cast(x, tf.float32)
        y = tf.cast(tf.reshape(y, [-1]), tf.int64)
        weight = tf.ones_like(y, tf.float32) if weight is None else tf.cast(weight, tf.float32)
        return x, y, weight

    return dataset.map(standardize)


def _check_same_samples(dataset, batches, curriculum):
    """Refuses a regular dataset that is not batches of the curriculum's samples.

    Reads its first batch: its batch count must be a pass over the N samples at that
    batch size, its labels classes of the codebook, its inputs on the scale of the
    codewords (a codeword is a mean of samples, so samples of the same data lie
    within their range, give or take the spread of a leaf).
    """
    n_samples = curriculum.source.n_samples
    first = next(iter(dataset.take(1)), None)
    if first is None:
        raise ValueError("`regular_dataset` yields no batch.")
    x, y = (np.asarray(part) for part in first[:2])
    size = len(x)
    if size < 1 or batches not in (n_samples // size, -(-n_samples // size)):
        raise ValueError(
            f"`regular_dataset` must be batches of the curriculum's {n_samples} samples: its "
            f"first batch holds {size} and it has {batches} batches, not "
            f"{-(-n_samples // max(size, 1))}. Batch the same samples the codebook was fit on."
        )
    labels = set(np.unique(curriculum.codebook.node_label_).tolist())
    unknown = sorted(set(np.unique(y.reshape(-1)).tolist()) - labels)
    if unknown:
        raise ValueError(
            f"`regular_dataset` yields labels {unknown[:5]} that no class of the codebook has "
            f"(classes: {sorted(labels)[:10]}...). Use the same labels as the curriculum."
        )
    codewords = curriculum.codebook.codewords_
    low, high = float(codewords.min()), float(codewords.max())
    margin = max(high - low, 1e-6)
    x_low, x_high = float(x.min()), float(x.max())
    if x_low < low - margin or x_high > high + margin:
        raise ValueError(
            f"`regular_dataset` yields inputs in [{x_low:.4g}, {x_high:.4g}], but the "
            f"codewords lie in [{low:.4g}, {high:.4g}]: the two are on different scales. "
            "Scale the regular dataset's inputs as the samples the codebook was fit on "
            "(e.g. both divided by 255)."
        )


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
    new_x, new_y = (tf.convert_to_tensor(value) for value in result)
    # Same shapes and kinds as the batch given, or XLA and the loss fail far from here.
    if not (_is_numeric(new_x.dtype) and new_x.shape.is_compatible_with(x.shape)):
        raise _AugmentError(
            f"`augment` must return x_batch of a numeric dtype and the shape it was given "
            f"({x.shape}). Received: {new_x.shape} {new_x.dtype.name}"
        )
    if not (new_y.dtype.is_integer and new_y.shape.is_compatible_with(y.shape)):
        raise _AugmentError(
            f"`augment` must return y_batch of integer class labels of the shape it was given "
            f"({y.shape}; mixed or soft labels are not supported). Received: {new_y.shape} "
            f"{new_y.dtype.name}"
        )
    return tf.cast(new_x, tf.float32), tf.cast(new_y, tf.int64)


def _is_numeric(dtype):
    return dtype.is_floating or dtype.is_integer
