"""Trains an MLP on MNIST with AGD and, side by side, with plain SGD; prints a table.

    python examples/mnist_agd.py                  # about 1-2 minutes on 2 CPU cores
    python examples/mnist_agd.py --epochs 20 --mosaic-epochs 10 --regular-epochs 12

MNIST is read from --mnist, else $KERAS_AGD_MNIST, else ../shared/data/mnist.npz
beside the checkout when present, else downloaded by Keras. The codebook is cached
in --codebook and rebuilt when missing or built on other data.
"""

import argparse
import time
from pathlib import Path

import keras
import numpy as np

import keras_agd

LOCAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"


def mlp(hidden):
    layers = [keras.Input((28, 28)), keras.layers.Flatten()]
    layers += [keras.layers.Dense(units, activation="relu") for units in hidden]
    return keras.Sequential([*layers, keras.layers.Dense(10)])


def load_or_build_codebook(path, x, y):
    if path.is_file():
        try:  # An older format, other data or other parameters: build anew.
            codebook = keras_agd.HierarchicalCodebook.load(path)
            codebook.verify(x, y)
            return codebook, 0.0
        except ValueError as error:
            print(f"Rebuilding {path}: {error}")
    codebook = keras_agd.HierarchicalCodebook(branching=5, random_state=0, verbose=1).fit(x, y)
    path.parent.mkdir(parents=True, exist_ok=True)
    codebook.save(path)
    return codebook, codebook.build_seconds_


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
    default_mnist = str(LOCAL_MNIST) if LOCAL_MNIST.is_file() else None
    parser.add_argument("--mnist", default=default_mnist)
    parser.add_argument("--codebook", type=Path, default=Path("results/mnist.codebook.npz"))
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 256, 128])
    parser.add_argument("--epochs", type=int, default=5, help="SGD epochs")
    parser.add_argument("--mosaic-epochs", type=int, default=6)
    parser.add_argument("--regular-epochs", type=int, default=3)
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
    codebook, build_seconds = load_or_build_codebook(args.codebook, x_train, y_train)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rows = []

    keras.utils.set_random_seed(args.seed)
    annealing = keras_agd.Annealing(
        codebook,
        keras_agd.schedules.from_codebook(codebook, args.mosaic_epochs),
        batch_size=args.batch_size,
        mosaic_batch_size=args.mosaic_batch_size,
    )
    optimizer = keras_agd.AGD(
        learning_rate=args.learning_rate,
        mosaic_learning_rate=args.mosaic_learning_rate,
        momentum=0.9,
    )
    model = mlp(args.hidden)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=True)
    train = keras_agd.mosaic_dataset(annealing, x_train, y_train)
    clock = TrainingClock()
    history = model.fit(
        train,
        epochs=args.mosaic_epochs + args.regular_epochs,
        callbacks=[clock, annealing],  # The clock first: it counts the epoch planning.
        verbose=2,
    )
    examples = int(sum(history.history["frontier_size"]))
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    rows.append(("AGD", clock.seconds, build_seconds, examples, accuracy))

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
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    rows.append(("SGD", clock.seconds, 0.0, args.epochs * len(x_train), accuracy))

    print()
    print("| method | train wall (s) | codebook build (s) | examples processed | test accuracy |")
    print("|---|---|---|---|---|")
    for method, seconds, build, examples, accuracy in rows:
        print(f"| {method} | {seconds:.1f} | {build:.1f} | {examples:,} | {accuracy:.4f} |")


if __name__ == "__main__":
    main()
