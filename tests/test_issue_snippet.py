"""The usage snippet of the README runs as written (on a slice of MNIST) and is the README's."""

import warnings
from pathlib import Path

import numpy as np
import pytest

import keras_agd

README = Path(__file__).resolve().parents[1] / "README.md"

SNIPPET = """\
import keras
import keras_agd

(x_train, y_train), (x_test, y_test) = keras_agd.datasets.load_mnist()
x_train, x_test = x_train.astype("float32") / 255.0, x_test.astype("float32") / 255.0
model = keras.Sequential(
    [
        keras.Input((28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(512, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(10),
    ]
)

curriculum = keras_agd.Curriculum(x_train, y_train, schedule=6)
model.compile(
    optimizer=keras_agd.AGD(curriculum, learning_rate=0.05, momentum=0.9),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
    jit_compile=True,
)
model.fit(curriculum.dataset(model), epochs=3, validation_data=(x_test, y_test))
"""


def test_the_readme_shows_the_snippet():
    assert f"```python\n{SNIPPET}```" in README.read_text()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")
def test_the_snippet_runs_as_written(mnist_path, tmp_path, monkeypatch):
    # The same file layout, cut to 2,000 training and 500 test images, found the way
    # `load_mnist()` finds it: through the environment variable.
    (x_train, y_train), (x_test, y_test) = keras_agd.datasets.load_mnist(mnist_path)
    small = tmp_path / "mnist.npz"
    np.savez(
        small,
        x_train=x_train[:2000],
        y_train=y_train[:2000],
        x_test=x_test[:500],
        y_test=y_test[:500],
    )
    monkeypatch.setenv(keras_agd.datasets.MNIST_ENV_VAR, str(small))
    namespace = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(SNIPPET, "README.md", "exec"), namespace)  # noqa: S102
    assert not [w for w in caught if "mosaic phase" in str(w.message)]
    model, curriculum = namespace["model"], namespace["curriculum"]
    assert len(curriculum.levels) == 6 and 0 < curriculum.mosaic_steps < curriculum.steps_per_epoch
    assert int(model.optimizer.iterations) == 3 * curriculum.steps_per_epoch == 3 * 16
    assert model.optimizer.phase == "regular"
    accuracy = model.evaluate(namespace["x_test"], namespace["y_test"], verbose=0)[1]
    assert accuracy > 0.8
