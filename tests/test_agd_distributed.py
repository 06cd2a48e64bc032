"""AGD and the curriculum's stream under tf.distribute.MirroredStrategy on two logical
CPUs (in a subprocess: logical devices must be configured before TensorFlow starts).

The subprocess trains the same model from the same initial weights on two replicas from
the stream (each global batch split in two), and, with and without XLA, on one device
from the stream and on one device by `train_on_batch` on `Curriculum.batch(step)` for
each step in turn.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# The replicas sum their halves of each batch, where one device sums the whole batch:
# float32 rounding, measured at most 6e-8 on these weights (|w| < 0.5) after 12 steps,
# against one device with XLA or without. Training each epoch one batch off (the stream
# reading the step late) moved them by 1.4e-2.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
STEPS_PER_EPOCH, EPOCHS = 4, 3

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    import keras_agd

    steps_per_epoch, epochs = json.loads(sys.argv[1])
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    curriculum = keras_agd.Curriculum(
        x, y, schedule=2, batch_size=64, mosaic_batch_size=256, seed=0,
        codebook=keras_agd.HierarchicalCodebook(random_state=0),
    )
    codebook = curriculum.codebook
    LOGS = ("loss", "step", "epsilon", "mosaic_phase", "frontier_size", "learning_rate")

    def compiled(jit_compile):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(32, "relu"), keras.layers.Dense(10)]
        )
        model.compile(
            optimizer=keras_agd.AGD(curriculum, learning_rate=0.05, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
        )
        return model

    def fit(strategy, jit_compile):
        with strategy.scope():
            model = compiled(jit_compile)
        history = model.fit(
            curriculum.dataset(model, steps_per_epoch=steps_per_epoch),
            epochs=epochs,
            verbose=0,
            callbacks=[keras_agd.CurriculumLogger()],
        )
        return {
            "logs": {key: history.history[key] for key in LOGS},
            "weights": [w.tolist() for w in model.get_weights()],
        }

    def replay(jit_compile):
        with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
            model = compiled(jit_compile)
        n = len(x)
        for step in range(steps_per_epoch * epochs):
            rows, weights = curriculum.batch(step)
            nodes = np.maximum(rows - n, 0)
            codeword = rows >= n
            inputs = np.where(codeword[:, None], codebook.codewords_[nodes], x[rows % n])
            labels = np.where(codeword, codebook.node_label_[nodes], y[rows % n])
            model.train_on_batch(inputs.astype(np.float32), labels, sample_weight=weights)
        return {"weights": [w.tolist() for w in model.get_weights()]}

    result = {
        # Keras 3.15 cannot jit-compile a step under MirroredStrategy on two devices (for
        # any model: XLA refuses the other replica's variables), so the replicas train
        # without XLA, against one device with and without it.
        "mirrored": fit(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), False),
    }
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        model = compiled(False)
    odd = keras_agd.Curriculum(
        x, y, schedule=2, batch_size=63, mosaic_batch_size=256, seed=0, codebook=codebook
    )
    try:
        odd.dataset(model)
        result["odd_batch"] = None
    except ValueError as error:
        result["odd_batch"] = str(error)
    for jit_compile in (False, True):
        result[str(jit_compile)] = {
            "one": fit(tf.distribute.OneDeviceStrategy("/cpu:0"), jit_compile),
            "replay": replay(jit_compile),
        }
    print(json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def runs():
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps([STEPS_PER_EPOCH, EPOCHS])],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_stream_trains_every_step_on_its_batch_from_the_curriculum(runs, jit_compile):
    one, replay = runs[str(jit_compile)]["one"], runs[str(jit_compile)]["replay"]
    # Step s trains on Curriculum.batch(s), the first step of every epoch too: the same
    # weights as feeding those batches by hand, bit for bit.
    for weight, expected in zip(one["weights"], replay["weights"], strict=True):
        np.testing.assert_array_equal(weight, expected)
    assert one["logs"]["step"] == [STEPS_PER_EPOCH * (epoch + 1) for epoch in range(EPOCHS)]
    # The mosaic phase (7 steps at 256 items) ends inside epoch 1.
    assert one["logs"]["mosaic_phase"] == [1, 0, 0]


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_two_replicas_train_like_one_device_on_the_same_global_batches(runs, jit_compile):
    one, mirrored = runs[str(jit_compile)]["one"], runs["mirrored"]
    for key in ("step", "epsilon", "mosaic_phase", "frontier_size", "learning_rate"):
        assert mirrored["logs"][key] == one["logs"][key], key
    assert mirrored["logs"]["loss"] == pytest.approx(one["logs"]["loss"], rel=1e-5)
    for weight, expected in zip(mirrored["weights"], one["weights"], strict=True):
        np.testing.assert_allclose(weight, expected, **TOLERANCE)


@pytest.mark.slow
def test_batches_that_two_replicas_cannot_halve_are_refused(runs):
    assert runs["odd_batch"].startswith("On 2 replicas, each batch is split into 2 shares")
    assert "{'batch_size': 63, 'mosaic_batch_size': 256}" in runs["odd_batch"]
