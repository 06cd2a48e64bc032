"""Trains an MLP on MNIST with AGD and, side by side, with plain SGD; prints a table.

    python examples/mnist_agd.py                  # about 1 minute on 2 CPU cores
    python examples/mnist_agd.py --epochs 20 --mosaic-levels 10 --regular-epochs 12

AGD trains through a `keras_agd.Curriculum`: `--mosaic-levels` codebook levels (each
one pass over its frontier at `--mosaic-batch-size`, or `--steps-per-level` steps),
then `--regular-epochs` passes over the real samples at `--batch-size`. A Keras epoch
of the curriculum's stream is `curriculum.steps_per_epoch` steps (one pass over the
real samples) by default. The AGD budget is
`mosaic_steps + regular_epochs * steps_per_epoch` optimizer steps; the run is given as
many Keras epochs as that budget spans in passes, each a window of
`ceil(budget / epochs)` steps (at most one pass), so that it trains the budget and at
most `epochs - 1` steps more. The table reports the steps and examples it really
trained, counted from the curriculum's batches.

MNIST is read from --mnist, else from the file $KERAS_AGD_MNIST names, else downloaded
by Keras (as `keras_agd.datasets.load_mnist` does). The codebook is cached
in --codebook and rebuilt when missing, unreadable or built on other data.
"""

import argparse
import time
from pathlib import Path

import keras
import numpy as np

import keras_agd


def mlp(hidden):
    layers = [keras.Input((28, 28)), keras.layers.Flatten()]
    layers += [keras.layers.Dense(units, activation="relu") for units in hidden]
    return keras.Sequential([*layers, keras.layers.Dense(10)])


def load_or_build_codebook(path, x, y):
    """`(codebook, cached)`: the cached codebook if it was built on `x` and `y`, else a
    new one, saved to `path`. Its `build_seconds_` is the wall time of the build."""
    if path.is_file():
        try:  # An older format, other data or other parameters: build anew.
            codebook = keras_agd.HierarchicalCodebook.load(path)
            codebook.verify(x, y)
            return codebook, True
        except ValueError as error:
            print(f"Rebuilding {path}: {error}")
    codebook = keras_agd.HierarchicalCodebook(branching=5, random_state=0, verbose=1).fit(x, y)
    path.parent.mkdir(parents=True, exist_ok=True)
    codebook.save(path)
    return codebook, False


def examples_trained(curriculum, steps):
    """Items in the batches of global steps `0 .. steps - 1` (every batch is full)."""
    mosaic = min(steps, curriculum.mosaic_steps)
    return mosaic * curriculum.mosaic_batch_size + (steps - mosaic) * curriculum.batch_size


class TrainingClock(keras.callbacks.Callback):
    """Training wall time, validation excluded."""

    def on_train_begin(self, logs=None):
        self.seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.batch_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += self.batch_end - self.start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", default=None, help="path to mnist.npz")
    parser.add_argument("--codebook", type=Path, default=Path("results/mnist.codebook.npz"))
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 256, 128])
    parser.add_argument("--epochs", type=int, default=5, help="SGD epochs")
    # A mosaic level was called a "mosaic epoch" before; the old flag still works.
    parser.add_argument("--mosaic-levels", "--mosaic-epochs", type=int, default=6)
    parser.add_argument("--steps-per-level", type=int, default=None, help="default: one pass")
    parser.add_argument(
        "--regular-epochs", type=int, default=3, help="AGD passes over the real samples"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--mosaic-batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    # 0.2 diverged (NaN) in weighted mode: heavy codewords make large batch gradients.
    parser.add_argument("--mosaic-learning-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test) = keras_agd.datasets.load_mnist(args.mnist)
    x_train = x_train.astype(np.float32) / 255.0
    x_test = x_test.astype(np.float32) / 255.0
    codebook, cached = load_or_build_codebook(args.codebook, x_train, y_train)
    build = f"{codebook.build_seconds_:.1f}" + (" (cached)" if cached else "")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rows = []

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    curriculum = keras_agd.Curriculum(
        x_train,
        y_train,
        codebook=codebook,  # Checked against x_train and y_train.
        schedule=args.mosaic_levels,
        batch_size=args.batch_size,
        mosaic_batch_size=args.mosaic_batch_size,
        steps_per_level=args.steps_per_level,
        seed=args.seed,
    )
    plan_seconds = time.perf_counter() - start
    optimizer = keras_agd.AGD(
        curriculum,
        learning_rate=args.learning_rate,
        mosaic_learning_rate=args.mosaic_learning_rate,
        momentum=0.9,
    )
    model = mlp(args.hidden)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=True)
    budget = curriculum.mosaic_steps + args.regular_epochs * curriculum.steps_per_epoch
    epochs = -(-budget // curriculum.steps_per_epoch)
    window = -(-budget // epochs)  # Steps of each Keras epoch: epochs * window >= budget.
    print(f"{curriculum} (planned in {plan_seconds:.1f} s)")
    for index, level in enumerate(curriculum.levels):
        print(
            f"  level {index}: epsilon {level.epsilon:.3f}, {level.frontier_size:,} items, "
            f"steps {level.first_step} to {level.first_step + level.steps - 1}"
        )
    print(
        f"AGD budget: {curriculum.mosaic_steps} mosaic steps + {args.regular_epochs} x "
        f"{curriculum.steps_per_epoch} regular steps = {budget} steps -> {epochs} Keras "
        f"epochs of {window} steps ({epochs * window} steps)"
    )
    train = curriculum.dataset(model, steps_per_epoch=window)
    clock = TrainingClock()
    model.fit(train, epochs=epochs, callbacks=[clock], verbose=2, shuffle=False)
    steps = int(model.optimizer.iterations.numpy())
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    agd_examples = examples_trained(curriculum, steps)
    rows.append(("AGD", epochs, steps, clock.seconds, build, agd_examples, accuracy))

    keras.utils.set_random_seed(args.seed)
    model = mlp(args.hidden)
    model.compile(
        optimizer=keras.optimizers.SGD(args.learning_rate, momentum=0.9),
        loss=loss,
        metrics=["accuracy"],
        jit_compile=True,
    )
    clock = TrainingClock()
    model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        callbacks=[clock],
        verbose=2,
    )
    steps = int(model.optimizer.iterations.numpy())
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    sgd_examples = args.epochs * len(x_train)  # The last batch of each epoch is partial.
    rows.append(("SGD", args.epochs, steps, clock.seconds, "0.0", sgd_examples, accuracy))

    print()
    print(
        "| method | Keras epochs | optimizer steps | train wall (s) | codebook build (s) "
        "| examples processed | test accuracy |"
    )
    print("|---|---|---|---|---|---|---|")
    for method, epochs, steps, seconds, build, examples, accuracy in rows:
        print(
            f"| {method} | {epochs} | {steps:,} | {seconds:.1f} | {build} | {examples:,} "
            f"| {accuracy:.4f} |"
        )


if __name__ == "__main__":
    main()
