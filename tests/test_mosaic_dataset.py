import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import keras_agd
from keras_agd import AGD, HierarchicalCodebook, mosaic_dataset, schedules


@pytest.fixture(scope="module")
def data():
    x, y = load_digits(return_X_y=True)
    return (x.reshape(-1, 8, 8) / 16.0).astype(np.float32), y


@pytest.fixture(scope="module")
def codebook(data):
    return HierarchicalCodebook(branching=4, random_state=0).fit(*data)


def agd(codebook, mosaic_epochs=3, **kwargs):
    schedule = schedules.from_codebook(codebook, mosaic_epochs)
    return AGD(
        learning_rate=0.05, mosaic_learning_rate=0.2, momentum=0.9, schedule=schedule, **kwargs
    )


def first_epoch(dataset):
    xs, ys, ws = zip(*[(x.numpy(), y.numpy(), w.numpy()) for x, y, w in dataset])
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws), [len(x) for x in xs]


def test_weighted_epoch_is_the_frontier_with_omega_weights(codebook, data):
    x, y = data
    optimizer = agd(codebook)
    xs, ys, ws, batches = first_epoch(
        mosaic_dataset(codebook, x, y, optimizer, mosaic_batch_size=64, pad_batches=False)
    )
    frontier = codebook.frontier(optimizer.epsilon)
    assert len(xs) == frontier.size == optimizer.frontier_size
    assert optimizer.phase == "mosaic" and optimizer.annealing_step == 0
    assert batches[0] == 64
    # Mean weight 1; relative weights are the ω counts, and every item is a codeword.
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
    optimizer = agd(codebook)
    dataset = mosaic_dataset(
        codebook, x, y, optimizer, mode="per_sample", mosaic_batch_size=500, pad_batches=False
    )
    xs, ys, ws, batches = first_epoch(dataset)
    assert len(xs) == len(x) and batches == [500, 500, 500, 297]
    np.testing.assert_array_equal(ws, 1.0)
    chosen = codebook.quantize(np.arange(len(x)), optimizer.epsilon)
    expected = np.where(chosen[:, None] >= 0, codebook.codewords_[chosen], x.reshape(len(x), -1))
    got = xs.reshape(len(xs), -1)
    np.testing.assert_allclose(got[np.lexsort(got.T)], expected[np.lexsort(expected.T)], atol=1e-6)
    np.testing.assert_array_equal(np.sort(ys), np.sort(y))


def test_random_subset_control_has_the_frontier_size_of_real_samples(codebook, data):
    x, y = data
    optimizer = agd(codebook)
    dataset = mosaic_dataset(codebook, x, y, optimizer, mode="random_subset", pad_batches=False)
    xs, ys, ws, _ = first_epoch(dataset)
    assert len(xs) == codebook.frontier(optimizer.epsilon).size == optimizer.frontier_size
    assert optimizer.phase == "mosaic"
    flat = x.reshape(len(x), -1)
    matches = (xs.reshape(len(xs), 1, -1) == flat[None]).all(axis=2)
    assert matches.any(axis=1).all()  # Every item is a real sample...
    assert len(np.unique(matches.argmax(axis=1))) == len(xs)  # ...drawn without replacement.
    np.testing.assert_array_equal(ws, 1.0)


def test_padding_gives_equal_batches_of_zero_weight_filler(codebook, data):
    x, y = data
    padded = first_epoch(
        mosaic_dataset(codebook, x, y, agd(codebook), mosaic_batch_size=64, seed=3)
    )
    plain = first_epoch(
        mosaic_dataset(
            codebook, x, y, agd(codebook), mosaic_batch_size=64, pad_batches=False, seed=3
        )
    )
    assert set(padded[3]) == {64} and len(padded[0]) == -(-len(plain[0]) // 64) * 64
    np.testing.assert_array_equal(padded[2][: len(plain[2])], plain[2])
    assert (padded[2][len(plain[2]) :] == 0).all()


def test_reading_the_dataset_without_training_does_not_advance_annealing(codebook, data):
    optimizer = agd(codebook)
    dataset = mosaic_dataset(codebook, *data, optimizer)
    first_epoch(dataset)
    first_epoch(dataset)
    assert optimizer.annealing_step == 0


def mlp():
    return keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class BatchCounter(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        logs["batches"] = self.batches


def fit_agd(codebook, data, epochs, jit_compile=False, seed=1, callbacks=(), **kwargs):
    keras.utils.set_random_seed(0)
    model = mlp()
    optimizer = agd(codebook, **kwargs)
    model.compile(optimizer=optimizer, loss=LOSS, metrics=["accuracy"], jit_compile=jit_compile)
    dataset = mosaic_dataset(
        codebook, *data, optimizer, batch_size=64, mosaic_batch_size=256, seed=seed
    )
    history = model.fit(
        dataset,
        epochs=epochs,
        verbose=0,
        callbacks=[keras_agd.AnnealingLogger(), BatchCounter(), *callbacks],
    )
    return model, optimizer, history.history


def test_epochs_shrink_and_grow_with_epsilon(codebook, data):
    _, optimizer, history = fit_agd(codebook, data, epochs=5)
    assert history["mosaic_phase"] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert history["annealing_step"] == [0, 1, 2, 3, 4]
    sizes = history["frontier_size"]
    assert sizes == sorted(sizes) and sizes[0] < sizes[2] < sizes[3] == len(data[0])
    expected_batches = [-(-s // 256) for s in sizes[:3]] + [-(-len(data[0]) // 64)] * 2
    assert history["batches"] == expected_batches
    schedule = optimizer.schedule
    np.testing.assert_allclose(history["epsilon"], [float(schedule(i)) for i in range(5)])
    assert history["learning_rate"] == pytest.approx([0.2, 0.2, 0.2, 0.05, 0.05])


@pytest.mark.slow
def test_agd_matches_sgd_accuracy_with_fewer_examples(codebook, data):
    x, y = data
    model, _, history = fit_agd(codebook, data, epochs=14, mosaic_epochs=6)
    agd_examples = sum(history["frontier_size"])
    agd_accuracy = model.evaluate(x, y, verbose=0)[1]

    keras.utils.set_random_seed(0)
    sgd_model = mlp()
    sgd_model.compile(keras.optimizers.SGD(0.05, momentum=0.9), LOSS, metrics=["accuracy"])
    sgd_model.fit(x, y, batch_size=64, epochs=10, verbose=0)
    sgd_examples = 10 * len(x)
    sgd_accuracy = sgd_model.evaluate(x, y, verbose=0)[1]
    assert agd_examples <= sgd_examples
    assert agd_accuracy >= sgd_accuracy - 0.02, (agd_accuracy, sgd_accuracy)


def test_jit_compile_gives_the_same_results(codebook, data):
    # Five epochs cross the mosaic-to-regular switch, where the phase must be read
    # after each batch arrives (see AGD.apply).
    eager, _, eager_history = fit_agd(codebook, data, epochs=5, jit_compile=False)
    compiled, _, compiled_history = fit_agd(codebook, data, epochs=5, jit_compile=True)
    for a, b in zip(eager.get_weights(), compiled.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(eager_history["loss"], compiled_history["loss"], rtol=1e-5)


class StopAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("Interrupting training")


def test_backup_and_restore_resumes_at_the_same_epsilon_and_weights(codebook, data, tmp_path):
    full, full_optimizer, _ = fit_agd(codebook, data, epochs=5)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="Interrupting"):
        fit_agd(codebook, data, epochs=5, callbacks=[backup, StopAt(2)])
    resumed, resumed_optimizer, history = fit_agd(codebook, data, epochs=5, callbacks=[backup])
    assert history["annealing_step"] == [2, 3, 4]
    assert resumed_optimizer.epsilon == full_optimizer.epsilon
    assert resumed_optimizer.annealing_step == full_optimizer.annealing_step == 4
    for a, b in zip(full.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_save_load_then_more_training(codebook, data, tmp_path):
    model, optimizer, _ = fit_agd(codebook, data, epochs=2)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.optimizer
    assert isinstance(restored, AGD)
    assert restored.annealing_step == 1 and restored.epsilon == optimizer.epsilon
    assert restored.schedule.get_config() == optimizer.schedule.get_config()
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    dataset = mosaic_dataset(codebook, *data, restored, batch_size=64, mosaic_batch_size=256)
    history = loaded.fit(dataset, epochs=2, verbose=0, callbacks=[keras_agd.AnnealingLogger()])
    assert history.history["annealing_step"] == [2, 3]


def test_augment_runs_only_in_the_regular_phase(codebook, data):
    calls = []

    def augment(x, y):
        calls.append(1)  # Traced once per graph build, not per batch.
        return x + 100.0, y

    x, y = data
    optimizer = agd(codebook, mosaic_epochs=1)
    dataset = mosaic_dataset(codebook, x, y, optimizer, augment=augment)
    xs, *_ = first_epoch(dataset)
    assert xs.max() <= 1.0  # Mosaic epoch: not augmented.
    optimizer._epoch_start_iteration.assign(-1)
    optimizer._annealing_step.assign(1)  # Regular phase from here.
    xs, *_ = first_epoch(dataset)
    assert xs.min() >= 100.0 and calls


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda d: {**d, "x": d["x"] * 2}, ValueError, "different training data"),
        (lambda d: {**d, "y": d["y"][:-1]}, ValueError, "same length"),
        (lambda d: {**d, "batch_size": 0}, ValueError, "`batch_size` must be an integer >= 1"),
        (lambda d: {**d, "mosaic_batch_size": -1}, ValueError, "`mosaic_batch_size`"),
        (lambda d: {**d, "mode": "random"}, ValueError, "`mode` must be one of"),
        (lambda d: {**d, "criterion": "median"}, ValueError, "`criterion`"),
        (lambda d: {**d, "augment": 3}, TypeError, "`augment` must be callable"),
        (
            lambda d: {**d, "optimizer": keras.optimizers.SGD()},
            TypeError,
            "must be the keras_agd.AGD optimizer",
        ),
        (lambda d: {**d, "optimizer": AGD()}, ValueError, "has no annealing schedule"),
    ],
)
def test_bad_input_raises(codebook, data, change, error, message):
    x, y = data
    arguments = {"codebook": codebook, "x": x, "y": y, "optimizer": agd(codebook)}
    with pytest.raises(error, match=message):
        mosaic_dataset(**change(arguments))


def test_dataset_feeds_model_fit_inside_a_tf_function(codebook, data):
    # No py_function: the whole epoch is TensorFlow graph ops.
    dataset = mosaic_dataset(codebook, *data, agd(codebook))
    graph = tf.function(lambda: next(iter(dataset))).get_concrete_function().graph
    assert not [op for op in graph.get_operations() if "PyFunc" in op.type]
