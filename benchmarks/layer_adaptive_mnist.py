"""The paper's MNIST experiment in small: LeNet with and without layer-adaptive rates.

SGD (momentum 0.9), Nesterov's accelerated gradient and Adagrad each train a LeNet-style
CNN on MNIST with their plain global learning rate and wrapped in
`keras_agd.LayerAdaptive`; the test error is measured every `--eval-every` iterations up
to `--iterations`, for several seeds. Prints JSON (mean and standard deviation of the
test error per method and checkpoint) and writes a plot.

    python benchmarks/layer_adaptive_mnist.py [--quick] [--seeds 3] [--iterations 500]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import default_mnist_path  # noqa: E402

from keras_agd import LayerAdaptive  # noqa: E402
from keras_agd.datasets import load_mnist  # noqa: E402

# Caffe's LeNet solver: base rate 0.01, momentum 0.9, batch 64 (weight decay and the
# "inv" rate policy are left out: constant rates keep the comparison to eq. 9 alone).
OPTIMIZERS = {
    "sgd": lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
    "nesterov": lambda lr: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True),
    "adagrad": lambda lr: keras.optimizers.Adagrad(lr),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=default_mnist_path(), help="path to mnist.npz")
    parser.add_argument("--optimizers", nargs="+", choices=list(OPTIMIZERS), default=None)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, default=None, help="runs per method (default 3)")
    parser.add_argument("--iterations", type=int, default=None, help="default 500")
    parser.add_argument("--eval-every", type=int, default=None, help="default 100")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-size", type=int, default=None, help="default: all 10000")
    parser.add_argument("--plot", default="layer_adaptive_mnist.png", help="'' for none")
    parser.add_argument(
        "--quick", action="store_true", help="2 seeds, 200 iterations, 2000 test images"
    )
    args = parser.parse_args()
    quick = {"seeds": 2, "iterations": 200, "eval_every": 50, "test_size": 2000}
    full = {"seeds": 3, "iterations": 500, "eval_every": 100, "test_size": 10000}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.optimizers = args.optimizers or list(OPTIMIZERS)
    if args.iterations % args.eval_every:
        parser.error("--iterations must be a multiple of --eval-every")
    return args


def lenet():
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(20, 5, name="conv1"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(50, 5, name="conv2"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(500, activation="relu", name="ip1"),
            keras.layers.Dense(10, name="ip2"),
        ],
        name="lenet",
    )


def train_dataset(x, y, batch_size, seed):
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).repeat()
    dataset = dataset.shuffle(10_000, seed=seed).batch(batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def run(method, seed, data, args):
    name, layer_adaptive = method
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    model = lenet()
    optimizer = OPTIMIZERS[name](args.learning_rate)
    if layer_adaptive:
        optimizer = LayerAdaptive(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
        steps_per_execution=args.eval_every,
    )
    history = model.fit(
        train_dataset(x_train, y_train, args.batch_size, seed),
        epochs=args.iterations // args.eval_every,
        steps_per_epoch=args.eval_every,
        validation_data=(x_test, y_test),
        validation_batch_size=1000,
        verbose=0,
    )
    test_error = [100.0 * (1.0 - a) for a in history.history["val_accuracy"]]
    factors = optimizer.layer_factors if layer_adaptive else {}
    return test_error, factors


def load(args):
    (x_train, y_train), (x_test, y_test) = load_mnist(args.mnist)
    scale = np.float32(1 / 255)
    x_train = (x_train[..., None] * scale).astype(np.float32)
    x_test = (x_test[: args.test_size, ..., None] * scale).astype(np.float32)
    return (x_train, y_train.astype(np.int32)), (x_test, y_test[: args.test_size].astype(np.int32))


def plot(results, iterations, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["optimizer"] for r in results.values()))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for key, label in ((name, name), (f"{name}+layer_adaptive", "layer-adaptive")):
            mean = np.array(results[key]["test_error_mean"])
            std = np.array(results[key]["test_error_std"])
            ax.plot(iterations, mean, marker="o", markersize=3, label=label)
            ax.fill_between(iterations, mean - std, mean + std, alpha=0.2)
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.set_ylabel("test error (%)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    args = parse_args()
    data = load(args)
    iterations = list(range(args.eval_every, args.iterations + 1, args.eval_every))
    methods = [(name, adaptive) for name in args.optimizers for adaptive in (False, True)]
    results, start = {}, time.perf_counter()
    for method in methods:
        key = f"{method[0]}{'+layer_adaptive' if method[1] else ''}"
        errors, factors = [], []
        for seed in range(args.seeds):
            error, last_factors = run(method, seed, data, args)
            errors.append(error)
            factors.append(last_factors)
            print(f"{key} seed {seed}: test error {error[-1]:.2f}%", file=sys.stderr)
        errors = np.array(errors)
        results[key] = {
            "optimizer": method[0],
            "layer_adaptive": method[1],
            "test_error_mean": errors.mean(axis=0).round(3).tolist(),
            "test_error_std": errors.std(axis=0, ddof=1 if len(errors) > 1 else 0)
            .round(3)
            .tolist(),
            "final_test_error_mean": round(float(errors[:, -1].mean()), 3),
            "final_test_error_std": round(
                float(errors[:, -1].std(ddof=1 if len(errors) > 1 else 0)), 3
            ),
            "last_layer_factors_seed0": factors[0],
        }
    report = {
        "benchmark": "layer_adaptive_mnist",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "config": {k: v for k, v in vars(args).items() if k != "mnist"},
        "iterations": iterations,
        "results": results,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.plot:
        plot(results, iterations, args.plot)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
