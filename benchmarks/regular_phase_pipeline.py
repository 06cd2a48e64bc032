"""The regular phase of `mosaic_dataset` against a plain tf.data pipeline, in memory.

Both train the same MLP on the same in-memory MNIST arrays at batch 128 with
`jit_compile=True`: AGD through `keras_agd.mosaic_dataset` (a per-batch NumPy gather
through `tf.numpy_function`), SGD through `from_tensor_slices -> shuffle -> batch ->
prefetch`, what a user would write. Each repeat runs 4 epochs of each, interleaved;
the first two (tracing, compilation, the AGD mosaic epoch) are dropped. Prints JSON.

    python benchmarks/regular_phase_pipeline.py --repeats 3
    python benchmarks/regular_phase_pipeline.py --hidden 32   # pipeline-bound
"""

import argparse
import statistics
import time

import keras
import numpy as np
import tensorflow as tf
from _common import default_mnist_path, machine, print_json

import keras_agd


class EpochClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def regular_epochs(kind, x, y, codebook, hidden, epochs=4):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    clock, callbacks = EpochClock(), []
    if kind == "mosaic_dataset":
        # One short mosaic epoch (ε between the deepest errors), then regular epochs.
        schedule = keras_agd.schedules.ExponentialAnnealing(1.0, 0.5, final_epsilon=0.9)
        annealing = keras_agd.Annealing(codebook, schedule, batch_size=128, seed=0)
        model.compile(keras_agd.AGD(0.05, momentum=0.9), loss, jit_compile=True)
        data, callbacks = keras_agd.mosaic_dataset(annealing, x, y), [annealing]
    else:
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss, jit_compile=True)
        data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(128)
        data = data.prefetch(tf.data.AUTOTUNE)
    model.fit(data, epochs=epochs, callbacks=[*callbacks, clock], verbose=0, shuffle=False)
    return clock.seconds[2:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", default=default_mnist_path())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--train-samples", type=int, default=None, help="first N samples")
    args = parser.parse_args(argv)
    (x, y), _ = keras_agd.datasets.load_mnist(args.mnist)
    x, y = x[: args.train_samples], y[: args.train_samples]
    x, y = x.astype(np.float32) / 255.0, y.astype(np.int64)
    codebook = keras_agd.HierarchicalCodebook(branching=5, random_state=0).fit(x, y)
    seconds = {"mosaic_dataset": [], "from_tensor_slices": []}
    for _ in range(args.repeats):
        for kind in seconds:
            seconds[kind] += regular_epochs(kind, x, y, codebook, args.hidden)
    medians = {kind: statistics.median(values) for kind, values in seconds.items()}
    result = {
        "benchmark": "regular_phase_pipeline",
        "settings": vars(args),
        "machine": machine(),
        "epoch_seconds_median": medians,
        "ratio_mosaic_dataset_to_plain": medians["mosaic_dataset"] / medians["from_tensor_slices"],
        "epoch_seconds": seconds,
    }
    print_json(result)
    return result


if __name__ == "__main__":
    main()
