"""The regular phase of `curriculum.dataset(model)` against a plain tf.data pipeline.

Both train the same MLP on the same in-memory MNIST arrays at batch 128 with
`jit_compile=True`: AGD through the stream of a `keras_agd.Curriculum`, its optimizer
started past the mosaic phase (`iterations = curriculum.mosaic_steps`), so that every
batch is a regular one (a stateless shuffle of the sample rows, gathered inside the
graph for arrays of up to 256 MiB); SGD through `from_tensor_slices -> shuffle ->
batch -> prefetch`, what a user would write. Each model is built and compiled once and
trained for one warm-up epoch (tracing, XLA compilation; dropped); then `--repeats`
rounds of one epoch of each, interleaved, so that machine noise hits both alike.

Per epoch it records the wall time, from the start of the epoch to the end of its
last step, and the median step time (the gaps between consecutive step ends, so
without the epoch's start-up). The ratios (stream / plain, above 1: the stream is
slower) are of the two pipelines' figures in the same round, median over rounds.
An epoch of the stream is `ceil(N / 128)` full batches, the plain one N samples with
a partial last batch, so the epoch ratio is per sample. Prints JSON.

    python benchmarks/regular_phase_pipeline.py --repeats 5
    python benchmarks/regular_phase_pipeline.py --repeats 5 --hidden 32   # pipeline-bound
"""

import argparse
import statistics

import keras
import numpy as np
import tensorflow as tf
from _common import default_mnist_path, machine, print_json
from _timing import EpochClock, StepTimes

import keras_agd

PIPELINES = ("curriculum_dataset", "from_tensor_slices")


def build(kind, x, y, codebook, hidden, batch_size):
    """A compiled MLP and its training data, the optimizer at its first regular step."""
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
    if kind == "curriculum_dataset":
        curriculum = keras_agd.Curriculum(
            x, y, codebook=codebook, schedule=1, batch_size=batch_size, seed=0
        )
        model.compile(keras_agd.AGD(curriculum, 0.05, momentum=0.9), loss, jit_compile=True)
        model.optimizer.iterations.assign(curriculum.mosaic_steps)  # Skip the mosaic phase.
        data = curriculum.dataset(model)
        samples = curriculum.steps_per_epoch * batch_size
    else:
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss, jit_compile=True)
        data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0)
        data = data.batch(batch_size).prefetch(tf.data.AUTOTUNE)
        samples = len(x)
    return model, data, samples


def one_epoch(model, data):
    """`(epoch seconds, median step seconds)` of one more epoch of `model` on `data`."""
    clock, steps = EpochClock(), StepTimes()
    model.fit(data, epochs=1, callbacks=[clock, steps], verbose=0, shuffle=False)
    return clock.seconds[0], statistics.median(steps.step_seconds().values())


def measure(x, y, codebook, hidden, batch_size, repeats):
    runs = {kind: build(kind, x, y, codebook, hidden, batch_size) for kind in PIPELINES}
    for model, data, _ in runs.values():
        one_epoch(model, data)  # Warm-up: tracing and compilation.
    epochs = {kind: [] for kind in PIPELINES}
    steps = {kind: [] for kind in PIPELINES}
    for _ in range(repeats):
        for kind, (model, data, _) in runs.items():
            seconds, step = one_epoch(model, data)
            epochs[kind].append(seconds)
            steps[kind].append(step)
    stream, plain = PIPELINES
    samples = {kind: run[2] for kind, run in runs.items()}
    epoch_ratio = [
        (a / samples[stream]) / (b / samples[plain])
        for a, b in zip(epochs[stream], epochs[plain], strict=True)
    ]
    step_ratio = [a / b for a, b in zip(steps[stream], steps[plain], strict=True)]
    return {
        "hidden": hidden,
        "samples_per_epoch": samples,
        "epoch_seconds_median": {kind: statistics.median(v) for kind, v in epochs.items()},
        "step_ms_median": {kind: 1000 * statistics.median(v) for kind, v in steps.items()},
        "ratio_curriculum_dataset_to_plain": statistics.median(epoch_ratio),
        "step_ratio_curriculum_dataset_to_plain": statistics.median(step_ratio),
        "epoch_seconds": epochs,
        "step_ms": {kind: [1000 * s for s in v] for kind, v in steps.items()},
        "ratio_per_round": epoch_ratio,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", default=default_mnist_path())
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=[512], help="hidden units; several: one each"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-samples", type=int, default=None, help="first N samples")
    args = parser.parse_args(argv)
    (x, y), _ = keras_agd.datasets.load_mnist(args.mnist)
    x, y = x[: args.train_samples], y[: args.train_samples]
    x, y = x.astype(np.float32) / 255.0, y.astype(np.int64)
    codebook = keras_agd.HierarchicalCodebook(branching=5, random_state=0).fit(x, y)
    models = [measure(x, y, codebook, h, args.batch_size, args.repeats) for h in args.hidden]
    result = {
        "benchmark": "regular_phase_pipeline",
        "settings": vars(args),
        "machine": machine(),
        "models": models,
    }
    print_json(result)
    return result


if __name__ == "__main__":
    main()
