"""AGD and the mosaic pipeline under tf.distribute (two logical CPUs, in a subprocess,
because logical devices must be configured before TensorFlow starts)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    import keras_agd

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    codebook = keras_agd.HierarchicalCodebook(random_state=0).fit(x, y)

    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            optimizer = keras_agd.AGD(learning_rate=0.05, momentum=0.9)
            model = keras.Sequential(
                [keras.Input((64,)), keras.layers.Dense(32, "relu"), keras.layers.Dense(10)]
            )
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
        annealing = keras_agd.Annealing(
            codebook,
            keras_agd.schedules.from_codebook(codebook, 2),
            batch_size=64,
            mosaic_batch_size=256,
            seed=0,
        )
        data = keras_agd.mosaic_dataset(annealing, x, y)
        logs = model.fit(data, epochs=4, verbose=0, callbacks=[annealing])
        return {key: logs.history[key] for key in ("loss", "frontier_size", "annealing_step")}

    print(json.dumps({
        "one": run(tf.distribute.OneDeviceStrategy("/cpu:0")),
        "mirrored": run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
    }))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_anneals_and_trains_like_one_device():
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=environment, timeout=300
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    one, mirrored = result["one"], result["mirrored"]
    assert mirrored["annealing_step"] == one["annealing_step"] == [0, 1, 2, 3]
    assert mirrored["frontier_size"] == one["frontier_size"]
    # Replicas sum their halves of each batch in another order: equal up to rounding.
    assert mirrored["loss"] == pytest.approx(one["loss"], rel=1e-3)
