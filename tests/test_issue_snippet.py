"""The README's scripts run as written, on a slice of MNIST, and print what the README shows.

Every Python block of the README is a complete script that a test here runs, read from the
README itself: the AGD quickstart and the layer-specific rates. Each is followed by a `text`
block, its output on full MNIST; the run on the slice prints the same lines, numbers aside.
"""

import re
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_agd

README = Path(__file__).resolve().parents[1] / "README.md"
# A fenced block of Markdown: its language and its text.
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# The README's scripts, each known by the one class of keras_agd it shows.
SCRIPTS = {"agd": "keras_agd.AGD(", "layer_adaptive": "keras_agd.LayerAdaptive("}
# The README's recipes: blocks that continue a script of the user's own (a `model`,
# `x_train`, `y_train` defined before), each known by what it shows.
RECIPES = {"large_batch": "keras_agd.LARS(", "fine_tuning": "keras_agd.LayerwiseDecay("}
# A number as Keras and the scripts print it, with its time unit if any ("5s", "12ms").
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]\d+)?(?:ms|us|s)?")


def readme_scripts():
    """`{name: (script, output)}`: the README's Python blocks and the `text` block after each."""
    blocks = FENCE.findall(README.read_text(encoding="utf-8"))
    scripts = {}
    for i, (language, text) in enumerate(blocks):
        if language != "python" or any(marker in text for marker in RECIPES.values()):
            continue
        names = [name for name, marker in SCRIPTS.items() if marker in text]
        assert len(names) == 1, f"a Python block of the README that no test here runs:\n{text}"
        (name,) = names
        assert name not in scripts, f"two {name} scripts in the README"
        following = blocks[i + 1] if i + 1 < len(blocks) else ("", "")
        assert following[0] == "text", f"no ```text block of output after the {name} script"
        scripts[name] = (text, following[1])
    return scripts


def readme_recipes():
    """`{name: recipe}`: the README's Python blocks that continue a user's script."""
    recipes = {}
    for language, text in FENCE.findall(README.read_text(encoding="utf-8")):
        names = [name for name, marker in RECIPES.items() if marker in text]
        if language == "python" and names:
            assert len(names) == 1 and names[0] not in recipes, text
            recipes[names[0]] = text
    return recipes


def shape(output):
    """The lines of `output`, each number replaced by `N`."""
    return [NUMBER.sub("N", line.rstrip()) for line in output.strip().splitlines()]


def run_on_a_slice(script, mnist_path, tmp_path, monkeypatch, capsys):
    """Runs `script` with `load_mnist()` reading 2,000 training and 500 test images, found
    the way it finds a local file: through the environment variable. Returns the script's
    variables, what it printed and the warnings it raised."""
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
    # Layer names as in a fresh process ("dense", "dense_1"), whatever ran before.
    keras.backend.clear_session()
    capsys.readouterr()
    namespace = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(script, "README.md", "exec"), namespace)  # noqa: S102
    return namespace, capsys.readouterr().out, caught


def test_the_readme_shows_both_scripts_with_their_output():
    scripts = readme_scripts()
    assert set(scripts) == set(SCRIPTS)
    for name, (script, output) in scripts.items():
        assert script.startswith("import keras\nimport keras_agd\n"), name
        assert "keras_agd.datasets.load_mnist()" in script, name
        accuracy = re.search(r"^test accuracy: (0\.\d{4})$", output, re.MULTILINE)
        assert accuracy and float(accuracy.group(1)) > 0.97, name


@pytest.mark.slow
def test_the_agd_script_runs_as_written(mnist_path, tmp_path, monkeypatch, capsys):
    script, output = readme_scripts()["agd"]
    namespace, printed, caught = run_on_a_slice(script, mnist_path, tmp_path, monkeypatch, capsys)
    assert not [w for w in caught if "keras_agd" in w.filename or "shuffle" in str(w.message)]
    model, curriculum = namespace["model"], namespace["curriculum"]
    assert len(curriculum.levels) == 6 and 0 < curriculum.mosaic_steps < curriculum.steps_per_epoch
    assert int(model.optimizer.iterations) == 3 * curriculum.steps_per_epoch == 3 * 16
    assert model.optimizer.phase == "regular"
    assert namespace["accuracy"] > 0.8
    assert shape(printed) == shape(output)


@pytest.mark.slow
def test_the_layer_adaptive_script_runs_as_written(mnist_path, tmp_path, monkeypatch, capsys):
    script, output = readme_scripts()["layer_adaptive"]
    namespace, printed, caught = run_on_a_slice(script, mnist_path, tmp_path, monkeypatch, capsys)
    assert not [w for w in caught if "keras_agd" in w.filename]
    optimizer = namespace["optimizer"]
    assert isinstance(optimizer, keras_agd.LayerAdaptive)
    assert int(optimizer.iterations) == 3 * 63  # ceil(2,000 / 32) steps an epoch
    factors = {layer: float(f) for layer, f in optimizer.layer_factors.items()}
    assert set(factors) == {"sequential/dense", "sequential/dense_1"}
    assert all(f > 1 for f in factors.values())
    assert namespace["accuracy"] > 0.8
    assert shape(printed) == shape(output)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_recipes_run_as_written(name, mnist_path):
    recipe = readme_recipes()[name]
    (x_train, y_train), _ = keras_agd.datasets.load_mnist(mnist_path)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    namespace = {
        "keras": keras,
        "keras_agd": keras_agd,
        "model": model,
        "x_train": x_train[:256].astype("float32") / 255,
        "y_train": y_train[:256],
    }
    before = [w.copy() for w in model.get_weights()] if model.built else None
    exec(compile(recipe, "README.md", "exec"), namespace)  # noqa: S102
    assert int(model.optimizer.iterations) > 0
    after = model.get_weights()
    assert all(np.isfinite(w).all() for w in after)
    if before is not None:
        assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
