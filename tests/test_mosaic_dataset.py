"""The AGD stream in `fit`: what each step reads, what Keras logs, and every way to resume.

Curriculum -> `curriculum.dataset(model)` -> `model.fit` -> AGD, on scikit-learn's digits.
The stream yields the batch of `optimizer.iterations`, so every check compares with
`Curriculum.batch(step)` or with an uninterrupted run of the same number of steps.
"""

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import keras_agd
from keras_agd import AGD, Curriculum, CurriculumLogger, HierarchicalCodebook, Source

pytestmark = [
    # Keras warns on every `fit` of a tf.data.Dataset that `shuffle` is ignored.
    pytest.mark.filterwarnings("ignore:`shuffle=True` was passed"),
    # Short fits that stop on codewords on purpose (the warning is tested in test_agd.py).
    pytest.mark.filterwarnings("ignore:Training stopped at step"),
]

# The module (`keras_agd.mosaic_dataset` is the function of the same name).
stream_module = importlib.import_module("keras_agd.mosaic_dataset")
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
STEPS = 10  # Keras-epoch length of the fits below: the mosaic phase ends inside epoch 2.


@pytest.fixture(scope="module")
def data():
    x, y = load_digits(return_X_y=True)
    return (x.reshape(-1, 8, 8) / 16.0).astype(np.float32), y


@pytest.fixture(scope="module")
def codebook(data):
    return HierarchicalCodebook(branching=3, random_state=0).fit(*data)


def make_curriculum(x, y, codebook, **kwargs):
    kwargs = {"schedule": 3, "batch_size": 32, "mosaic_batch_size": 128, "seed": 1, **kwargs}
    return Curriculum(x, y, codebook=codebook, **kwargs)


@pytest.fixture(scope="module")
def curriculum(data, codebook):
    return make_curriculum(*data, codebook)


def mlp():
    return keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def compiled(curriculum, *, jit_compile=False, learning_rate=0.05, mosaic_learning_rate=0.2):
    keras.utils.set_random_seed(0)
    model = mlp()
    optimizer = AGD(curriculum, learning_rate, mosaic_learning_rate, momentum=0.9)
    model.compile(optimizer, LOSS, metrics=["accuracy"], jit_compile=jit_compile)
    return model


def items(x, y, codebook):
    """Inputs and labels of every row: samples, then codewords (row N + node)."""
    codewords = codebook.codewords_.reshape((-1, *x.shape[1:]))
    return (
        np.concatenate([np.asarray(x, np.float32), codewords.astype(np.float32)]),
        np.concatenate([y, codebook.node_label_]).astype(np.int64),
    )


def expected_batch(curriculum, step, table):
    rows, weights = curriculum.batch(step)
    return table[0][rows], table[1][rows], weights


def read(dataset):
    return [tuple(tensor.numpy() for tensor in batch) for batch in dataset]


def assert_batches_equal(got, expected):
    assert len(got) == len(expected)
    for got_batch, expected_batch_ in zip(got, expected, strict=True):
        for a, b in zip(got_batch, expected_batch_, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def run(curriculum, epochs, model=None, steps=STEPS, **kwargs):
    """Fits `model` (a fresh one by default) on the stream for `epochs` Keras epochs."""
    model = model or compiled(curriculum)
    model.fit(curriculum.dataset(model, steps_per_epoch=steps), epochs=epochs, verbose=0, **kwargs)
    return model


# --- The stream: shapes, contents, options.


def test_element_spec_and_full_batches(curriculum):
    model = compiled(curriculum)
    dataset = curriculum.dataset(model)
    x_spec, y_spec, w_spec = dataset.element_spec
    assert (x_spec.dtype, y_spec.dtype, w_spec.dtype) == (tf.float32, tf.int64, tf.float32)
    assert x_spec.shape.as_list() == [None, 8, 8]
    assert y_spec.shape.as_list() == w_spec.shape.as_list() == [None]
    assert int(dataset.cardinality()) == curriculum.steps_per_epoch == -(-1797 // 32)
    sizes = [{len(t) for t in batch} for batch in read(dataset)]
    mosaic = curriculum.mosaic_steps
    assert 0 < mosaic < curriculum.steps_per_epoch
    assert sizes == [{128}] * mosaic + [{32}] * (curriculum.steps_per_epoch - mosaic)


@pytest.mark.parametrize("mode", ["weighted", "proportional", "per_sample", "random_subset"])
def test_every_mode_yields_the_batches_of_the_curriculum(data, codebook, mode):
    x, y = data
    curriculum = make_curriculum(x, y, codebook, mode=mode)
    steps = curriculum.mosaic_steps + 3
    got = read(curriculum.dataset(compiled(curriculum), steps_per_epoch=steps))
    table = items(x, y, codebook)
    assert_batches_equal(got, [expected_batch(curriculum, s, table) for s in range(steps)])
    codewords_read = (curriculum.mosaic_rows >= len(x)).any()
    assert codewords_read == (mode != "random_subset")


def level_rows(curriculum, index):
    level = curriculum.levels[index]
    size = curriculum.mosaic_batch_size
    items_ = slice(level.first_step * size, (level.first_step + level.steps) * size)
    return curriculum.mosaic_rows[items_], curriculum.mosaic_weights[items_]


@pytest.mark.parametrize("mode", ["weighted", "random_subset"])
def test_steps_per_level_repeats_whole_passes_over_the_items(data, codebook, mode):
    # Every frontier item (or subset sample) comes up floor or ceil(draws / items) times,
    # with its eq. (6) weight: the expected loss is the mosaic risk, however many steps.
    x, y = data
    curriculum = make_curriculum(
        x, y, codebook, mode=mode, mosaic_batch_size=100, steps_per_level=7
    )
    level = curriculum.levels[0]
    rows, weights = level_rows(curriculum, 0)
    assert len(rows) == 700 and level.steps == 7
    items_, counts = np.unique(rows, return_counts=True)
    assert len(items_) == level.frontier_size and counts.max() - counts.min() <= 1
    if mode == "random_subset":
        assert (rows < len(x)).all() and (weights == 1).all()
        return
    frontier = codebook.frontier(level.epsilon)
    expected = dict(zip(len(x) + frontier.nodes, frontier.node_weights))
    expected.update(dict.fromkeys(frontier.samples, 1.0))
    omega = np.array([expected[row] for row in rows])
    np.testing.assert_allclose(weights, omega * level.frontier_size / len(x), rtol=1e-6)


def test_proportional_mode_draws_frontier_items_by_omega(data, codebook):
    x, y = data
    curriculum = make_curriculum(
        x, y, codebook, mode="proportional", mosaic_batch_size=1000, steps_per_level=40
    )
    rows, weights = level_rows(curriculum, 0)
    assert (weights == 1).all()
    frontier = codebook.frontier(curriculum.levels[0].epsilon)
    items_ = np.concatenate([len(x) + frontier.nodes, frontier.samples])
    omega = np.concatenate([frontier.node_weights, np.ones(len(frontier.samples))])
    share = np.array([(rows == item).mean() for item in items_])
    np.testing.assert_allclose(share, omega / omega.sum(), atol=0.01)
    # So the mean loss of the drawn items is eq. (6)'s omega-weighted mean, which
    # uniform draws over the frontier would miss.
    loss = np.random.default_rng(0).random(len(x) + len(codebook.codewords_))
    exact = np.sum(omega * loss[items_]) / np.sum(omega)
    assert abs(loss[rows].mean() - exact) < 0.01 < abs(loss[items_].mean() - exact)


def test_graph_and_numpy_readers_give_identical_batches(data, codebook, tmp_path):
    x, y = data
    np.save(tmp_path / "x.npy", x)
    memmap = np.load(tmp_path / "x.npy", mmap_mode="r")
    records = [{"image": image, "label": label} for image, label in zip(x, y, strict=True)]
    in_memory = make_curriculum(x, y, codebook)
    on_disk = make_curriculum(memmap, y, codebook)
    as_records = make_curriculum(Source(records, x_key="image", y_key="label"), None, codebook)
    assert stream_module._graph_reader(in_memory, in_memory.source) is not None
    for other in (on_disk, as_records):
        assert stream_module._graph_reader(other, other.source) is None
        assert other.digest == in_memory.digest  # Same samples: the same curriculum.
    model = compiled(in_memory)
    steps = in_memory.mosaic_steps + 4
    expected = read(in_memory.dataset(model, steps_per_epoch=steps))
    table = items(x, y, codebook)
    assert_batches_equal(expected, [expected_batch(in_memory, s, table) for s in range(steps)])
    for other in (on_disk, as_records):
        assert_batches_equal(read(other.dataset(model, steps_per_epoch=steps)), expected)


def test_samples_keep_their_dtype_and_are_cast_per_batch(data):
    x, y = data
    raw = np.round(x * 16).astype(np.uint8)
    unfitted = HierarchicalCodebook(branching=3, random_state=0)
    curriculum = make_curriculum(raw, y, unfitted, schedule=2)
    assert curriculum.source.dtype == np.uint8
    steps = curriculum.mosaic_steps + 2
    got = read(curriculum.dataset(compiled(curriculum), steps_per_epoch=steps))
    table = items(raw.astype(np.float32), y, curriculum.codebook)
    assert_batches_equal(got, [expected_batch(curriculum, s, table) for s in range(steps)])


def test_each_iteration_starts_at_the_optimizers_step(data, codebook, curriculum):
    model = compiled(curriculum)
    dataset = curriculum.dataset(model, steps_per_epoch=4)
    table = items(*data, codebook)
    for start in (0, curriculum.mosaic_steps - 2, curriculum.mosaic_steps + 40):
        model.optimizer.iterations.assign(start)
        expected = [expected_batch(curriculum, s, table) for s in range(start, start + 4)]
        assert_batches_equal(read(dataset), expected)
        assert_batches_equal(read(dataset), expected)  # The same step, the same batch.


def test_the_stream_needs_agd_whose_step_waits_for_the_batch(data, codebook, curriculum):
    # A plain optimizer's traced step may increment its counter before its batch is read,
    # so the stream would start a step late: it is refused. AGD with one rate is the control.
    control = mlp()
    control.compile(keras.optimizers.SGD(0.05), LOSS)
    with pytest.raises(TypeError, match="needs the model compiled with keras_agd.AGD"):
        curriculum.dataset(control)
    keras.utils.set_random_seed(0)
    model = compiled(curriculum, learning_rate=0.0, mosaic_learning_rate=0.0)
    loss = model.fit(curriculum.dataset(model, steps_per_epoch=1), epochs=1, verbose=0)
    x, y, weights = expected_batch(curriculum, 0, items(*data, codebook))
    losses = keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
    expected = float(np.sum(weights * np.asarray(losses)) / len(y))
    assert loss.history["loss"][0] == pytest.approx(expected, rel=1e-5)


class EpochRecorder(keras.callbacks.Callback):
    """Records the batches run and the progress bar's total of each epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self.batches = 0
        self.total = self.params["steps"]

    def on_train_batch_begin(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        logs["batches"], logs["steps_shown"] = self.batches, self.total


def test_steps_per_level_and_the_curriculum_in_the_logs(data, codebook):
    x, y = data
    curriculum = make_curriculum(x, y, codebook, steps_per_level=2)
    assert [level.steps for level in curriculum.levels] == [2, 2, 2]
    assert curriculum.mosaic_steps == 6
    model = compiled(curriculum)
    history = model.fit(
        curriculum.dataset(model, steps_per_epoch=2),
        epochs=4,
        verbose=0,
        callbacks=[CurriculumLogger(), EpochRecorder()],
    ).history
    assert history["batches"] == history["steps_shown"] == [2, 2, 2, 2]
    assert history["step"] == [2, 4, 6, 8]
    assert history["annealing_level"] == [0, 1, 2, 3]
    assert history["mosaic_phase"] == [1.0, 1.0, 1.0, 0.0]
    levels = curriculum.levels
    assert history["frontier_size"] == [level.frontier_size for level in levels] + [len(x)]
    assert history["epsilon"] == pytest.approx([level.epsilon for level in levels] + [0.0])
    assert history["learning_rate"] == pytest.approx([0.2, 0.2, 0.2, 0.05])


def test_regular_phase_from_the_users_own_dataset(data, codebook, curriculum):
    x, y = data
    users = tf.data.Dataset.from_tensor_slices((x, y)).batch(100)  # 18 batches, the last 97.
    own = read(users)
    mosaic = curriculum.mosaic_steps
    model = compiled(curriculum)
    steps = mosaic + 20
    got = read(curriculum.dataset(model, regular_dataset=users, steps_per_epoch=steps))
    table = items(x, y, codebook)
    assert_batches_equal(
        got[:mosaic], [expected_batch(curriculum, s, table) for s in range(mosaic)]
    )
    for index, (batch_x, batch_y, batch_w) in enumerate(got[mosaic:]):
        user_x, user_y = own[index % len(own)]  # Used as it is, then repeated.
        np.testing.assert_array_equal(batch_x, user_x)
        np.testing.assert_array_equal(batch_y, user_y)
        np.testing.assert_array_equal(batch_w, np.ones(len(user_y), np.float32))
    # A resumed run skips the batches already trained; weights of (x, y, w) batches are kept.
    weighted = tf.data.Dataset.from_tensor_slices((x, y, np.linspace(0, 1, len(y)))).batch(100)
    model.optimizer.iterations.assign(mosaic + 5)
    got = read(curriculum.dataset(model, regular_dataset=weighted, steps_per_epoch=2))
    expected = [tuple(t.numpy() for t in b) for b in weighted.skip(5).take(2)]
    for (batch_x, batch_y, batch_w), (user_x, user_y, user_w) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(batch_x, user_x)
        np.testing.assert_array_equal(batch_y, user_y)
        np.testing.assert_array_equal(batch_w, user_w.astype(np.float32))
    # And `fit` trains on it through the switch.
    model.optimizer.iterations.assign(0)
    model.fit(curriculum.dataset(model, regular_dataset=users), epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == curriculum.steps_per_epoch


def test_augment_is_applied_only_to_regular_batches(data, codebook, curriculum):
    steps = curriculum.mosaic_steps + 3
    dataset = curriculum.dataset(
        compiled(curriculum), augment=lambda x, y: (x + 100.0, y), steps_per_epoch=steps
    )
    table = items(*data, codebook)
    for step, batch in enumerate(read(dataset)):
        x, y, weights = expected_batch(curriculum, step, table)
        shift = np.float32(100.0 if step >= curriculum.mosaic_steps else 0.0)
        assert_batches_equal([batch], [(x + shift, y, weights)])


def test_class_weight_multiplies_the_weights(data, codebook, curriculum):
    class_weight = {0: 2.0, 3: 0.0, 9: 0.5}
    factors = np.ones(10, np.float32)
    for label, factor in class_weight.items():
        factors[label] = factor
    steps = curriculum.mosaic_steps + 3
    dataset = curriculum.dataset(
        compiled(curriculum), class_weight=class_weight, steps_per_epoch=steps
    )
    table = items(*data, codebook)
    for step, batch in enumerate(read(dataset)):
        x, y, weights = expected_batch(curriculum, step, table)
        assert_batches_equal([batch], [(x, y, weights * factors[y])])


def test_input_context_shares_concatenate_to_the_global_batch(curriculum):
    model = compiled(curriculum)
    steps = curriculum.mosaic_steps + 3
    whole = read(curriculum.dataset(model, steps_per_epoch=steps))
    shares = [
        read(
            curriculum.dataset(
                model,
                steps_per_epoch=steps,
                input_context=tf.distribute.InputContext(
                    num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2
                ),
            )
        )
        for worker in (0, 1)
    ]
    assert len(shares[0]) == len(shares[1]) == len(whole)
    for first, second, batch in zip(*shares, whole, strict=True):
        assert len(first[0]) == len(second[0]) == len(batch[0]) // 2
        for a, b, c in zip(first, second, batch, strict=True):
            np.testing.assert_array_equal(np.concatenate([a, b]), c)


def test_a_mosaic_dataset_call_is_the_curriculums_dataset(curriculum):
    model = compiled(curriculum)
    assert_batches_equal(
        read(keras_agd.mosaic_dataset(curriculum, model, steps_per_epoch=3)),
        read(curriculum.dataset(model, steps_per_epoch=3)),
    )


# --- The logs are those of the items trained on.


def test_logged_loss_and_accuracy_are_those_of_the_real_items(data, codebook, curriculum):
    # With both rates 0 the model does not move, so every step can be recomputed by hand.
    keras.utils.set_random_seed(0)
    model = mlp()
    model.compile(
        AGD(curriculum, learning_rate=0.0, mosaic_learning_rate=0.0),
        LOSS,
        metrics=["accuracy"],
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="weighted_accuracy")],
    )
    before = model.get_weights()
    steps, epochs = 12, 3  # Epoch 0 on codewords, 1 across the switch, 2 on samples.
    assert steps < curriculum.mosaic_steps < 2 * steps
    history = model.fit(
        curriculum.dataset(model, steps_per_epoch=steps), epochs=epochs, verbose=0
    ).history
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    table = items(*data, codebook)
    for epoch in range(epochs):
        loss = hits = weighted_hits = weight_sum = count = 0.0
        for step in range(epoch * steps, (epoch + 1) * steps):
            x, y, weights = expected_batch(curriculum, step, table)
            logits = model.predict_on_batch(x)
            losses = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            # Keras' default reduction: sum(w * l) / batch size. Its loss tracker then
            # averages the batches, each counted by its number of items.
            loss += float(np.sum(weights * np.asarray(losses)) / len(y)) * len(y)
            correct = np.argmax(logits, axis=1) == y
            hits += float(np.sum(correct))
            weighted_hits += float(np.sum(weights * correct))
            weight_sum += float(np.sum(weights))
            count += len(y)
        assert history["loss"][epoch] == pytest.approx(loss / count, rel=1e-5)
        # `metrics` ignore sample weights: the share of hits among the items trained on.
        assert history["accuracy"][epoch] == pytest.approx(hits / count, rel=1e-6)
        # `weighted_metrics` weigh each codeword by the samples it stands for (eq. 6).
        assert history["weighted_accuracy"][epoch] == pytest.approx(
            weighted_hits / weight_sum, rel=1e-5
        )


# --- Continuation and resume: bit-identical to an uninterrupted run.


def state(model):
    """The step, the weights and the optimizer's variables (its slots, rates, digest)."""
    return (
        int(model.optimizer.iterations),
        model.get_weights(),
        [v.numpy() for v in model.optimizer.variables],
    )


def assert_state(model, expected):
    step, weights, variables = state(model)
    assert step == expected[0]
    for a, b in zip(weights, expected[1], strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(variables, expected[2], strict=True):
        assert np.array_equal(a, b)


class States(dict):
    """Step -> state, with room for the model that made them."""


class Snapshots(keras.callbacks.Callback):
    """Keeps the state after every step (it only reads the model)."""

    def __init__(self):
        super().__init__()
        self.states = States()

    def on_train_batch_end(self, batch, logs=None):
        current = state(self.model)
        self.states[current[0]] = current


class CountingTraces(keras.Sequential):
    """A model whose `train_step` counts the times TensorFlow traces it."""

    traces = 0

    def train_step(self, data):
        CountingTraces.traces += 1
        return super().train_step(data)


@pytest.fixture(scope="module")
def uninterrupted(curriculum):
    """`uninterrupted(jit_compile)[s]`: the state after step s of one fit of 5 epochs.

    `uninterrupted(jit_compile).model` is that model, `.traces` its traces of `train_step`.
    """
    runs = {}

    def states(jit_compile=False):
        if jit_compile not in runs:
            snapshots = Snapshots()
            keras.utils.set_random_seed(0)
            model = CountingTraces([keras.Input((8, 8)), *mlp().layers])
            model.compile(AGD(curriculum, 0.05, 0.2, momentum=0.9), LOSS, jit_compile=jit_compile)
            CountingTraces.traces = 0
            run(curriculum, epochs=5, model=model, callbacks=[snapshots])
            snapshots.states.model, snapshots.states.traces = model, CountingTraces.traces
            runs[jit_compile] = snapshots.states
        return runs[jit_compile]

    return states


def test_a_second_fit_continues_the_curriculum(curriculum, uninterrupted):
    model = compiled(curriculum)
    stream = curriculum.dataset(model, steps_per_epoch=STEPS)
    model.fit(stream, epochs=1, verbose=0)
    assert_state(model, uninterrupted()[STEPS])
    model.fit(stream, epochs=1, verbose=0)  # The same stream, read again from the step.
    assert_state(model, uninterrupted()[2 * STEPS])
    run(curriculum, epochs=1, model=model)  # A new stream of the same curriculum.
    assert_state(model, uninterrupted()[3 * STEPS])


def test_initial_epoch_does_not_move_the_curriculum(curriculum, uninterrupted):
    # The curriculum follows the optimizer's steps, not Keras' epoch numbers.
    model = compiled(curriculum)
    history = model.fit(
        curriculum.dataset(model, steps_per_epoch=1),
        epochs=3,
        initial_epoch=2,
        verbose=0,
        callbacks=[CurriculumLogger()],
    ).history
    assert history["step"] == [1] and history["annealing_level"] == [0]
    assert history["epsilon"] == [pytest.approx(curriculum.levels[0].epsilon)]
    assert_state(model, uninterrupted()[1])
    run(curriculum, epochs=5, model=model, initial_epoch=4, steps=STEPS - 1)
    assert_state(model, uninterrupted()[STEPS])


def test_save_load_then_fit_continues(curriculum, uninterrupted, tmp_path):
    model = run(curriculum, epochs=1)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.optimizer, AGD)
    assert loaded.optimizer.curriculum_identity["digest"] == curriculum.digest
    assert_state(loaded, uninterrupted()[STEPS])
    run(curriculum, epochs=1, model=loaded)
    assert_state(loaded, uninterrupted()[2 * STEPS])


def test_transformations_after_the_stream_keep_it_in_step(curriculum, uninterrupted):
    model = compiled(curriculum)
    stream = curriculum.dataset(model, steps_per_epoch=STEPS)
    # A map keeps every batch; a take shortens every epoch, which still starts at the step.
    model.fit(stream.map(lambda x, y, w: (x, y, w)).take(3), epochs=2, verbose=0)
    assert_state(model, uninterrupted()[6])


def test_training_from_a_memory_map_is_that_from_the_array(data, codebook, uninterrupted, tmp_path):
    x, y = data
    np.save(tmp_path / "x.npy", x)
    memmap = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert_state(run(make_curriculum(memmap, y, codebook), epochs=2), uninterrupted()[20])


class Interrupt(keras.callbacks.Callback):
    """Raises at the start of batch `batch` of epoch `epoch`."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch = epoch, batch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            raise RuntimeError("Interrupting training")


@pytest.mark.parametrize(
    "save_freq, jit_compile",
    [("epoch", False), (1, False), (1, True)],
    ids=["epoch", "batch", "batch-jit"],
)
def test_backup_and_restore_resumes_bit_identically(
    curriculum, uninterrupted, tmp_path, save_freq, jit_compile
):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), save_freq=save_freq)
    interrupt = Interrupt(2, 5) if save_freq == "epoch" else Interrupt(1, 5)  # Mid-epoch.
    model = compiled(curriculum, jit_compile=jit_compile)
    with pytest.raises(RuntimeError, match="Interrupting"):
        run(curriculum, epochs=4, model=model, callbacks=[backup, interrupt])
    resumed = compiled(curriculum, jit_compile=jit_compile)
    run(curriculum, epochs=4, model=resumed, callbacks=[backup])
    # An epoch-level backup resumes at the start of epoch 2, the 5 steps done in it lost.
    # Keras re-runs an epoch interrupted after a batch-level backup in full: 5 steps more
    # than 4 epochs, each step on its own batch.
    steps = 4 * STEPS + (0 if save_freq == "epoch" else 5)
    assert_state(resumed, uninterrupted(jit_compile)[steps])


# --- XLA.


def test_jit_compile_trains_like_the_graph(uninterrupted):
    graph, xla = uninterrupted(False)[40], uninterrupted(True)[40]
    for a, b in zip(graph[1], xla[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_second_fit_does_not_retrace_the_train_step(curriculum, uninterrupted):
    reference = uninterrupted(True)  # Both batch sizes: codewords, then samples.
    model, traces, train_function = (
        reference.model,
        reference.traces,
        reference.model.train_function,
    )
    assert 1 <= traces <= 2
    CountingTraces.traces = traces
    run(curriculum, epochs=2, model=model)
    run(curriculum, epochs=1, model=model, steps=7)
    assert CountingTraces.traces == traces and model.train_function is train_function
    assert int(model.optimizer.iterations) == 7 * STEPS + 7


@pytest.mark.slow
def test_a_tfds_data_source_feeds_codebook_and_training(mnist_path, tmp_path):
    pytest.importorskip("tensorflow_datasets")
    # MNIST written once as a local tfds ArrayRecord dataset, read back by index.
    records = keras_agd.datasets.mnist_data_source(tmp_path, path=mnist_path, num_examples=2000)
    curriculum = Curriculum(
        records, x_key="image", y_key="label", schedule=2, mosaic_batch_size=256, seed=0
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten()]
        + [keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile(AGD(curriculum, 0.05, 0.2, momentum=0.9), LOSS, metrics=["accuracy"])
    history = model.fit(
        curriculum.dataset(model), epochs=3, verbose=0, callbacks=[CurriculumLogger()]
    ).history
    assert curriculum.mosaic_steps < curriculum.steps_per_epoch
    assert history["mosaic_phase"] == [0.0, 0.0, 0.0] and history["frontier_size"][-1] == 2000
    assert history["accuracy"][-1] > 0.8
