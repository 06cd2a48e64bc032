"""The annealing data path: Annealing callback -> mosaic_dataset -> fit -> AGD."""

import importlib
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import keras_agd
from keras_agd import AGD, Annealing, HierarchicalCodebook, Source, mosaic_dataset, schedules


@pytest.fixture(scope="module")
def data():
    x, y = load_digits(return_X_y=True)
    return (x.reshape(-1, 8, 8) / 16.0).astype(np.float32), y


@pytest.fixture(scope="module")
def codebook(data):
    return HierarchicalCodebook(branching=4, random_state=0).fit(*data)


def annealing(codebook, mosaic_epochs=3, **kwargs):
    kwargs = {"batch_size": 64, "mosaic_batch_size": 256, "seed": 1, **kwargs}
    return Annealing(codebook, schedules.from_codebook(codebook, mosaic_epochs), **kwargs)


def agd(**kwargs):
    return AGD(learning_rate=0.05, mosaic_learning_rate=0.2, momentum=0.9, **kwargs)


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp():
    return keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def compiled(optimizer=None, jit_compile=False):
    keras.utils.set_random_seed(0)
    model = mlp()
    model.compile(optimizer or agd(), LOSS, metrics=["accuracy"], jit_compile=jit_compile)
    return model


def plan_epoch(codebook, epsilon, step, **kwargs):
    """`keras_agd.annealing.plan_epoch` with this module's defaults."""
    defaults = {"criterion": "mean", "batch_size": 64, "mosaic_batch_size": 256, "seed": 0}
    defaults["pad_batches"] = True
    return keras_agd.annealing.plan_epoch(codebook, epsilon, step, **{**defaults, **kwargs})


def read_epoch(writer, dataset, step):
    """Drives the callback by hand (as `fit` would) and reads epoch `step` of `dataset`."""
    model = compiled()
    writer.set_model(model)
    writer.on_train_begin()
    state = model.optimizer.annealing_state
    state.step.assign(step)
    state.epoch_start_iteration.assign(-1)
    writer.on_epoch_begin(step)
    try:
        batches = [tuple(t.numpy() for t in batch) for batch in dataset]
    finally:
        writer.on_train_end()
    xs, ys, ws = (np.concatenate(parts) for parts in zip(*batches))
    return xs, ys, ws, [len(b[0]) for b in batches]


def test_weighted_epoch_is_the_frontier_with_omega_weights(codebook, data):
    x, y = data
    writer = annealing(codebook, mosaic_batch_size=64, pad_batches=False)
    xs, ys, ws, batches = read_epoch(writer, mosaic_dataset(writer, x, y), step=0)
    frontier = codebook.frontier(writer.plan.epsilon)
    assert len(xs) == frontier.size == writer.plan.frontier_size and writer.plan.mosaic
    assert batches[0] == 64
    np.testing.assert_allclose(ws.mean(), 1.0, rtol=1e-5)
    codewords = codebook.codewords_[frontier.nodes].reshape(-1, 8, 8)
    order = np.lexsort(xs.reshape(len(xs), -1).T)
    expected_order = np.lexsort(codewords.reshape(len(codewords), -1).T)
    np.testing.assert_allclose(xs[order], codewords[expected_order], atol=1e-6)
    np.testing.assert_array_equal(ys[order], codebook.node_label_[frontier.nodes][expected_order])
    omega = frontier.node_weights[expected_order] * frontier.size / len(x)
    np.testing.assert_allclose(ws[order], omega, rtol=1e-5)


def test_per_sample_epoch_replaces_every_sample_by_its_codeword(codebook, data):
    x, y = data
    writer = annealing(codebook, mode="per_sample", mosaic_batch_size=500, pad_batches=False)
    xs, ys, ws, batches = read_epoch(writer, mosaic_dataset(writer, x, y), step=0)
    assert len(xs) == len(x) and batches == [500, 500, 500, 297]
    np.testing.assert_array_equal(ws, 1.0)
    chosen = codebook.quantize(np.arange(len(x)), writer.plan.epsilon)
    expected = np.where(chosen[:, None] >= 0, codebook.codewords_[chosen], x.reshape(len(x), -1))
    got = xs.reshape(len(xs), -1)
    np.testing.assert_allclose(got[np.lexsort(got.T)], expected[np.lexsort(expected.T)], atol=1e-6)
    np.testing.assert_array_equal(np.sort(ys), np.sort(y))


def test_proportional_epoch_draws_frontier_items_by_omega(codebook, data):
    x, y = data
    writer = annealing(codebook, mode="proportional", pad_batches=False)
    xs, ys, ws, _ = read_epoch(writer, mosaic_dataset(writer, x, y), step=0)
    frontier = codebook.frontier(writer.plan.epsilon)
    assert len(xs) == frontier.size == writer.plan.frontier_size and writer.plan.mosaic
    np.testing.assert_array_equal(ws, 1.0)
    items = np.concatenate(
        [codebook.codewords_[frontier.nodes], x[frontier.samples].reshape(-1, 64)]
    )
    matches = np.isclose(xs.reshape(len(xs), 1, -1), items[None], atol=1e-6).all(axis=2)
    assert matches.any(axis=1).all()  # Every item is a codeword or a sample of the frontier.


def test_proportional_mode_is_unbiased_for_the_mosaic_risk(codebook, data):
    # Over many epochs, the mean loss of the drawn items is eq. (6)'s omega-weighted mean.
    x, _ = data
    epsilon = float(schedules.from_codebook(codebook, 3)(0))
    frontier = codebook.frontier(epsilon)
    n = len(x)
    loss = np.random.default_rng(0).random(n + len(codebook.codewords_))
    items = np.concatenate([n + frontier.nodes, frontier.samples])
    omega = np.concatenate([frontier.node_weights, np.ones(len(frontier.samples))])
    exact = float(np.sum(omega * loss[items]) / np.sum(omega))
    estimates = []
    for step in range(300):
        plan = plan_epoch(codebook, epsilon, step, mode="proportional", pad_batches=False)
        estimates.append(np.mean(loss[plan.rows]))
    standard_error = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates) - exact) < 4 * standard_error
    # ... and uniform draws over the frontier (ignoring omega) would not be.
    assert abs(np.mean(loss[items]) - exact) > 4 * standard_error


def test_random_subset_control_has_the_frontier_size_of_real_samples(codebook, data):
    x, y = data
    writer = annealing(codebook, mode="random_subset", pad_batches=False)
    xs, _, ws, _ = read_epoch(writer, mosaic_dataset(writer, x, y), step=0)
    assert len(xs) == codebook.frontier(writer.plan.epsilon).size and writer.plan.mosaic
    matches = (xs.reshape(len(xs), 1, -1) == x.reshape(1, len(x), -1)).all(axis=2)
    assert matches.any(axis=1).all()  # Every item is a real sample...
    assert len(np.unique(matches.argmax(axis=1))) == len(xs)  # ...drawn without replacement.
    np.testing.assert_array_equal(ws, 1.0)


@pytest.mark.parametrize("mode", ["weighted", "proportional", "random_subset"])
def test_mosaic_batches_fix_the_steps_of_every_mosaic_epoch(codebook, data, mode):
    model, history = fit(codebook, data, epochs=5, mode=mode, mosaic_batches=3)
    assert history["batches"] == history["steps_shown"] == [3, 3, 3] + [-(-len(data[0]) // 64)] * 2
    assert history["mosaic_phase"] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert model.optimizer.annealing_state.read()["epoch_batches"] == -(-len(data[0]) // 64)


@pytest.mark.parametrize("mode", ["weighted", "random_subset"])
def test_mosaic_batches_repeat_whole_passes_over_the_items(codebook, data, mode):
    # Every frontier item (or subset sample) comes up floor or ceil(draws / items) times,
    # with its eq. (6) weight: the expected loss is the mosaic risk, however many steps.
    epsilon = float(schedules.from_codebook(codebook, 3)(0))
    frontier = codebook.frontier(epsilon)
    plan = plan_epoch(codebook, epsilon, 0, mode=mode, mosaic_batch_size=100, mosaic_batches=7)
    assert len(plan.rows) == 700 and plan.total_batches == 7 and plan.frontier_size == frontier.size
    _, counts = np.unique(plan.rows, return_counts=True)
    assert len(counts) == frontier.size and counts.max() - counts.min() <= 1
    if mode == "weighted":
        expected = frontier.node_weights * frontier.size / len(data[0])
        order = np.argsort(plan.rows)
        rows, weights = plan.rows[order], plan.weights[order]
        n = len(data[0])
        for node, weight in zip(frontier.nodes, expected, strict=True):
            np.testing.assert_allclose(weights[rows == n + node], weight, rtol=1e-6)
    else:
        assert (plan.rows < len(data[0])).all()


def test_mosaic_batches_draw_proportional_items_by_omega(codebook, data):
    epsilon = float(schedules.from_codebook(codebook, 3)(0))
    frontier = codebook.frontier(epsilon)
    n = len(data[0])
    plan = plan_epoch(
        codebook, epsilon, 0, mode="proportional", mosaic_batch_size=1000, mosaic_batches=40
    )
    items = np.concatenate([n + frontier.nodes, frontier.samples])
    omega = np.concatenate([frontier.node_weights, np.ones(len(frontier.samples))])
    share = np.array([(plan.rows == item).mean() for item in items])
    np.testing.assert_allclose(share, omega / omega.sum(), atol=0.01)


@pytest.mark.parametrize("step", [0, 5], ids=["mosaic", "regular"])
def test_in_graph_and_numpy_reads_give_the_same_batches(codebook, data, monkeypatch, step):
    # Arrays in memory are gathered in the graph, larger ones with NumPy: same batches.
    x, y = data
    writer = annealing(codebook)
    in_graph = read_epoch(writer, mosaic_dataset(writer, x, y), step)
    monkeypatch.setattr(importlib.import_module("keras_agd.mosaic_dataset"), "IN_GRAPH_BYTES", 0)
    writer = annealing(codebook)
    with_numpy = read_epoch(writer, mosaic_dataset(writer, x, y), step)
    assert writer.plan.mosaic == (step == 0)
    for a, b in zip(in_graph[:3], with_numpy[:3], strict=True):
        np.testing.assert_array_equal(a, b)


def test_padding_gives_equal_batches_of_zero_weight_filler(codebook, data):
    x, y = data
    padded_writer = annealing(codebook, mosaic_batch_size=64)
    padded = read_epoch(padded_writer, mosaic_dataset(padded_writer, x, y), step=0)
    plain_writer = annealing(codebook, mosaic_batch_size=64, pad_batches=False)
    plain = read_epoch(plain_writer, mosaic_dataset(plain_writer, x, y), step=0)
    assert set(padded[3]) == {64} and len(padded[0]) == -(-len(plain[0]) // 64) * 64
    np.testing.assert_array_equal(padded[2][: len(plain[2])], plain[2])
    assert (padded[2][len(plain[2]) :] == 0).all()


def test_samples_keep_their_dtype_and_are_cast_per_batch(codebook, data):
    x, y = data
    raw = np.round(x * 16).astype(np.uint8)
    raw_codebook = HierarchicalCodebook(branching=4, random_state=0).fit(raw, y)
    writer = Annealing(raw_codebook, schedules.LinearAnnealing(1.0, 1.0, 0.5), seed=0)
    xs, ys, _, _ = read_epoch(writer, mosaic_dataset(writer, raw, y), step=1)
    assert xs.dtype == np.float32 and not writer.plan.mosaic
    order = np.argsort(writer.plan.rows[: len(x)])
    np.testing.assert_array_equal(xs[: len(x)][order], raw.astype(np.float32))
    np.testing.assert_array_equal(ys[: len(x)][order], y)


class EpochRecorder(keras.callbacks.Callback):
    """Records the batches run and the progress bar's total of each epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self.batches = 0
        self.total = self.params["steps"]

    def on_train_batch_begin(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        logs["batches"], logs["steps_shown"] = self.batches, self.total


def fit(codebook, data, epochs, *, jit_compile=False, callbacks=(), transform=None, **kwargs):
    writer = annealing(codebook, **kwargs)
    model = compiled(jit_compile=jit_compile)
    dataset = mosaic_dataset(writer, *data)
    if transform is not None:
        dataset = transform(dataset)
    history = model.fit(
        dataset, epochs=epochs, verbose=0, callbacks=[writer, EpochRecorder(), *callbacks]
    )
    return model, history.history


def test_epochs_follow_the_plan_and_the_progress_bar_shows_each_length(codebook, data):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Your input ran out of data")
        model, history = fit(codebook, data, epochs=5)
    assert history["mosaic_phase"] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert history["annealing_step"] == [0, 1, 2, 3, 4]
    sizes = history["frontier_size"]
    assert sizes == sorted(sizes) and sizes[0] < sizes[2] < sizes[3] == len(data[0])
    expected = [-(-s // 256) for s in sizes[:3]] + [-(-len(data[0]) // 64)] * 2
    assert history["batches"] == history["steps_shown"] == expected
    assert history["learning_rate"] == pytest.approx([0.2, 0.2, 0.2, 0.05, 0.05])


def test_a_map_after_the_pipeline_keeps_every_epoch_whole(codebook, data):
    # Keras reads an unknown-size dataset's epoch length once; the callback sets it.
    _, plain = fit(codebook, data, epochs=5)
    _, mapped = fit(codebook, data, epochs=5, transform=lambda d: d.map(lambda x, y, w: (x, y, w)))
    assert mapped["batches"] == plain["batches"]
    assert mapped["loss"] == pytest.approx(plain["loss"], rel=1e-6)


@pytest.mark.parametrize(
    "transform",
    [lambda d: d.take(1), lambda d: d.filter(lambda x, y, w: tf.reduce_sum(w) > 100.0)],
    ids=["take", "filter"],
)
def test_a_transformation_that_drops_batches_is_refused(codebook, data, transform):
    with pytest.raises(ValueError, match="transformation after keras_agd.mosaic_dataset"):
        fit(codebook, data, epochs=4, transform=transform)


def test_jit_compile_gives_the_same_results(codebook, data):
    # Five epochs cross the mosaic-to-regular switch.
    eager, eager_history = fit(codebook, data, epochs=5)
    compiled_model, compiled_history = fit(codebook, data, epochs=5, jit_compile=True)
    for a, b in zip(eager.get_weights(), compiled_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(eager_history["loss"], compiled_history["loss"], rtol=1e-5)


class StopAt(keras.callbacks.Callback):
    def __init__(self, epoch, batch=None):
        super().__init__()
        self.epoch, self.batch = epoch, batch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch
        if epoch == self.epoch and self.batch is None:
            raise RuntimeError("Interrupting training")

    def on_train_batch_begin(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise RuntimeError("Interrupting training")


@pytest.mark.parametrize(
    "save_freq, stop",
    [("epoch", (2, None)), (1, (1, 1)), (2, (3, 5)), (3, (4, 10))],
    ids=["epoch", "batch-mosaic", "batch-regular", "batch-regular-skip"],
)
def test_backup_and_restore_resumes_the_same_epsilons_and_batches(
    codebook, data, tmp_path, save_freq, stop
):
    full, full_history = fit(codebook, data, epochs=5)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), save_freq=save_freq)
    with pytest.raises(RuntimeError, match="Interrupting"):
        fit(codebook, data, epochs=5, callbacks=[backup, StopAt(*stop)])
    resumed, history = fit(codebook, data, epochs=5, callbacks=[backup])
    steps = history["annealing_step"]
    assert steps == full_history["annealing_step"][-len(steps) :]
    assert resumed.optimizer.annealing_state.read() == full.optimizer.annealing_state.read()
    for a, b in zip(full.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_save_load_then_more_training(codebook, data, tmp_path):
    model, _ = fit(codebook, data, epochs=2)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.optimizer, AGD)
    assert loaded.optimizer.annealing_state.read() == model.optimizer.annealing_state.read()
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    writer = annealing(codebook)
    history = loaded.fit(mosaic_dataset(writer, *data), epochs=2, verbose=0, callbacks=[writer])
    assert history.history["annealing_step"] == [2, 3]


def test_augment_runs_only_in_the_regular_phase(codebook, data):
    x, y = data

    def augment(x, y):
        return x + 100.0, y

    writer = annealing(codebook, mosaic_epochs=1)
    dataset = mosaic_dataset(writer, x, y, augment=augment)
    xs, *_ = read_epoch(writer, dataset, step=0)
    assert xs.max() <= 1.0  # Mosaic epoch: not augmented.
    xs, *_ = read_epoch(writer, dataset, step=1)
    assert xs.min() >= 100.0


def test_memmap_and_record_sources_train_like_the_array(codebook, data, tmp_path):
    x, y = data
    memmap = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", x.dtype, x.shape)
    memmap[:] = x
    memmap.flush()
    memmap = np.load(tmp_path / "x.npy", mmap_mode="r")
    records = [{"image": image, "label": label} for image, label in zip(x, y, strict=True)]
    array_model, _ = fit(codebook, data, epochs=5)
    for source in (Source(memmap, y), Source(records, x_key="image", y_key="label")):
        writer = annealing(codebook)
        model = compiled()
        model.fit(mosaic_dataset(writer, source), epochs=5, verbose=0, callbacks=[writer])
        for a, b in zip(array_model.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_regular_phase_can_come_from_the_users_own_dataset(codebook, data):
    x, y = data
    users = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(100)
    writer = annealing(codebook, mosaic_epochs=2)
    model = compiled()
    history = model.fit(
        mosaic_dataset(writer, x, y, regular_dataset=users),
        epochs=4,
        verbose=0,
        callbacks=[writer, EpochRecorder()],
    ).history
    assert history["mosaic_phase"] == [1.0, 1.0, 0.0, 0.0]
    assert history["batches"][2:] == [-(-len(x) // 100)] * 2
    assert history["batches"][:2] == [-(-s // 256) for s in history["frontier_size"][:2]]


def test_mixed_precision_keeps_the_annealing_and_the_loss_rule():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    codebook = HierarchicalCodebook(branching=4, random_state=0).fit(x, y)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(32, "relu"), keras.layers.Dense(10)]
        )
        optimizer = agd(loss_threshold=1.5, loss_decay_steps=10)
        model.compile(optimizer, LOSS)
        writer = annealing(codebook, mosaic_epochs=2)
        history = model.fit(mosaic_dataset(writer, x, y), epochs=4, verbose=0, callbacks=[writer])
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert history.history["annealing_step"] == [0, 1, 2, 3]
    assert optimizer.annealing_state.read()["decay_start_iteration"] >= 0
    assert history.history["learning_rate"][-1] < 0.05


class CustomStep(keras.Model):
    """A model with its own `train_step`, as in the Keras guide."""

    def __init__(self):
        super().__init__()
        self.net = mlp()

    def call(self, x):
        return self.net(x)

    def train_step(self, data):
        x, y, weight = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True), sample_weight=weight)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self.compute_metrics(x, y, self(x), sample_weight=weight)


def test_custom_train_step_and_stock_callbacks(codebook, data, tmp_path):
    keras.utils.set_random_seed(0)
    model = CustomStep()
    model.compile(agd(), LOSS, metrics=["accuracy"])
    writer = annealing(codebook)
    callbacks = [
        writer,
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.weights.h5"), save_weights_only=True),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping("loss", patience=10),
    ]
    history = model.fit(mosaic_dataset(writer, *data), epochs=5, verbose=0, callbacks=callbacks)
    assert history.history["annealing_step"] == [0, 1, 2, 3, 4]
    header = (tmp_path / "log.csv").read_text().splitlines()[0]
    assert "epsilon" in header and "frontier_size" in header
    assert history.history["accuracy"][-1] > 0.5


@pytest.mark.slow
def test_a_tfds_data_source_feeds_codebook_and_training(mnist_path, tmp_path):
    # MNIST written once as a local tfds ArrayRecord dataset, read back by index.
    records = keras_agd.datasets.mnist_data_source(tmp_path, path=mnist_path, num_examples=2000)
    source = Source(records, x_key="image", y_key="label")
    codebook = HierarchicalCodebook(random_state=0).fit(source)
    writer = Annealing(codebook, schedules.from_codebook(codebook, 2), mosaic_batch_size=256)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten()]
        + [keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile(agd(), LOSS, metrics=["accuracy"])
    history = model.fit(mosaic_dataset(writer, source), epochs=4, verbose=0, callbacks=[writer])
    assert history.history["mosaic_phase"] == [1.0, 1.0, 0.0, 0.0]
    assert history.history["frontier_size"][-1] == 2000
    assert history.history["accuracy"][-1] > 0.8
