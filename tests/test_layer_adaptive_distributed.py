"""The per-layer optimizers under tf.distribute: two replicas take the same step as one
device (LayerAdaptive, LARS, PerLayerRates).

Logical CPU devices must be configured before TensorFlow initializes, which the test
process has already done, so the training runs in a fresh interpreter.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np

    from keras_agd import LARS, LayerAdaptive, LayerwiseDecay, PerLayerRates, TrustRatio


    def train(strategy, make, loss_scale):
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 5)).astype("float32")
        # The second half of the batch is scaled up: each replica's half alone would give
        # gradient norms far from those of the summed gradient.
        x[16:] *= 10.0
        y = rng.normal(size=(32, 2)).astype("float32")
        with strategy.scope():
            model = keras.Sequential(
                [keras.Input((5,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)]
            )
            optimizer = make()
            if loss_scale:
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
        wrapper = optimizer.inner_optimizer if loss_scale else optimizer
        return {
            "weights": [w.tolist() for w in model.get_weights()],
            "factors": list(wrapper.layer_factors.values()),
        }


    optimizers = {
        "nesterov": lambda: LayerAdaptive(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)),
        "adam": lambda: LayerAdaptive(keras.optimizers.Adam(0.01)),
        "lars": lambda: LARS(0.2, weight_decay=1e-3, trust_coefficient=0.1),
        "trust_decay_adamw": lambda: PerLayerRates(
            keras.optimizers.AdamW(0.01, weight_decay=0.1),
            [TrustRatio(1.0, exclude=[]), LayerwiseDecay(0.5)],
        ),
    }
    results = {}
    for name, inner in optimizers.items():
        for loss_scale in (False, True):
            key = f"{name}{'+loss_scale' if loss_scale else ''}"
            results[key] = {
                "one": train(tf.distribute.OneDeviceStrategy("/cpu:0"), inner, loss_scale),
                "two": train(
                    tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), inner, loss_scale
                ),
            }
    print("RESULT", json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def distributed_results():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    (line,) = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        f"{name}{suffix}"
        for name in ("nesterov", "adam", "lars", "trust_decay_adamw")
        for suffix in ("", "+loss_scale")
    ],
)
def test_mirrored_strategy_takes_the_single_device_step(distributed_results, case):
    one, two = distributed_results[case]["one"], distributed_results[case]["two"]
    # Factors of the summed gradient, not of either replica's half of it.
    np.testing.assert_allclose(two["factors"], one["factors"], rtol=1e-5)
    for a, b in zip(one["weights"], two["weights"], strict=True):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-6)
