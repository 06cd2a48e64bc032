"""The usage shown in the design card runs as written (on a slice of MNIST)."""

import keras
import numpy as np
import pytest

import keras_agd


@pytest.mark.slow
def test_design_card_snippet_runs_as_written(mnist_path):
    (x_train, y_train), (x_test, y_test) = keras_agd.datasets.load_mnist(mnist_path)
    x_train, y_train = x_train[:3000].astype(np.float32) / 255.0, y_train[:3000]
    x_test, y_test = x_test[:500].astype(np.float32) / 255.0, y_test[:500]
    model = keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(64, "relu")]
        + [keras.layers.Dense(10)]
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    codebook = keras_agd.HierarchicalCodebook(branching=5).fit(x_train, y_train)
    annealing = keras_agd.Annealing(
        codebook,
        keras_agd.schedules.ExponentialAnnealing(7.5, 0.999),
        batch_size=128,
        mosaic_batch_size=4096,
    )
    optimizer = keras_agd.AGD(learning_rate=0.1, mosaic_learning_rate=0.8, momentum=0.9)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=True)
    train = keras_agd.mosaic_dataset(annealing, x_train, y_train)
    history = model.fit(
        train, epochs=2, validation_data=(x_test, y_test), verbose=0, callbacks=[annealing]
    )

    assert history.history["annealing_step"] == [0, 1] and optimizer.phase == "mosaic"
    assert optimizer.epsilon == pytest.approx(7.5 * 0.999)
    # ε = 7.5 is above every class's mean error in [0, 1] pixels: the class means.
    assert history.history["frontier_size"] == [10, 10]
