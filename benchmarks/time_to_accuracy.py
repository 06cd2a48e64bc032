"""Time to accuracy: AGD against SGD, Adam, a random-subset control and layer-adaptive rates.

Trains the same model on the same data with every method, seeds interleaved so that
machine noise hits all methods alike, and records for every run a learning curve
against training wall time (evaluation excluded) and examples processed. Prints JSON
(curves and summary), writes it and the plots to --out.

    python benchmarks/time_to_accuracy.py                    # the setting quoted in the README
    python benchmarks/time_to_accuracy.py --quick            # smoke run, under 5 minutes
    python benchmarks/time_to_accuracy.py --workload deformed
    python benchmarks/time_to_accuracy.py --workload synthetic   # MGD epoch cost vs N

Metric: wall time until test accuracy first reaches the target (default: the median
final accuracy of SGD minus --margin), median over seeds, and its ratio to SGD's.
The codebook build time is reported apart and added in the `total` column.
"""

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from _common import default_mnist_path, machine

import keras_agd

METHODS = (
    "sgd",
    "adam",
    "agd",
    "agd_per_sample",
    "agd_proportional",
    "random_subset",
    "large_batch_sgd",
    "sgd_layer_adaptive",
    "adam_layer_adaptive",
    "agd_layer_adaptive",
)
USES_CODEBOOK = ("agd", "agd_per_sample", "agd_proportional", "agd_layer_adaptive")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", choices=["mnist", "deformed", "synthetic"], default="mnist")
    parser.add_argument("--quick", action="store_true", help="small data and model, one seed")
    parser.add_argument("--mnist", default=default_mnist_path())
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 256, 128])
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of SGD and Adam")
    parser.add_argument("--mosaic-epochs", type=int, default=6)
    parser.add_argument("--regular-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--mosaic-batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--mosaic-learning-rate", type=float, default=0.05)
    parser.add_argument("--adam-learning-rate", type=float, default=1e-3)
    parser.add_argument("--momentum", type=float, default=0.9, help="of every SGD update")
    parser.add_argument(
        "--large-batch-learning-rate",
        type=float,
        help="rate of large_batch_sgd (batch --mosaic-batch-size, one epoch of linear "
        "warmup); default: --learning-rate scaled linearly with the batch (Goyal et al.)",
    )
    parser.add_argument("--margin", type=float, default=0.002)
    parser.add_argument("--train-samples", type=int, default=None, help="first N samples")
    parser.add_argument("--synthetic-samples", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("results/time_to_accuracy"))
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.hidden, args.train_samples = 1, [128, 64], args.train_samples or 12000
        args.epochs, args.mosaic_epochs, args.regular_epochs = 3, 3, 2
        args.synthetic_samples = min(args.synthetic_samples, 100_000)
    return args


# --- Data and models.


def load_mnist(args):
    (x, y), (x_test, y_test) = keras_agd.datasets.load_mnist(args.mnist)
    x, x_test = x.astype(np.float32) / 255.0, x_test.astype(np.float32) / 255.0
    if args.train_samples:
        x, y = x[: args.train_samples], y[: args.train_samples]
    return x, y.astype(np.int64), x_test, y_test.astype(np.int64)


def deformation():
    """Random affine deformation of a batch of 28x28 images, in TensorFlow ops."""
    layers = keras.Sequential(
        [
            keras.layers.RandomRotation(15 / 360, fill_mode="constant"),
            keras.layers.RandomZoom(0.1, fill_mode="constant"),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
        ]
    )

    def augment(x, y):
        return tf.squeeze(layers(x[..., None], training=True), -1), y

    return augment


def mlp(args, input_shape):
    layers = [keras.Input(input_shape), keras.layers.Flatten()]
    layers += [keras.layers.Dense(units, activation=args.activation) for units in args.hidden]
    return keras.Sequential([*layers, keras.layers.Dense(10)])


# --- One training run.


class Recorder(keras.callbacks.Callback):
    """Per epoch: training seconds (evaluation excluded), examples, loss, test accuracy.

    List `recorder.clock` first and the recorder last among the callbacks: the clock
    then includes the epoch planning of `keras_agd.Annealing`, and the recorder sees
    the logs it adds.
    """

    def __init__(self, examples_per_epoch=None):
        super().__init__()
        self.examples_per_epoch = examples_per_epoch
        self.curve = []
        self.seconds = self.examples = 0
        self.clock = keras.callbacks.LambdaCallback(on_epoch_begin=self._start)

    def _start(self, epoch, logs=None):
        self.start = self.last_batch = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last_batch = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += self.last_batch - self.start
        self.examples += int(logs.get("frontier_size", self.examples_per_epoch))
        self.curve.append(
            {
                "epoch": epoch,
                "seconds": self.seconds,
                "examples": self.examples,
                "steps": int(self.model.optimizer.iterations.numpy()),
                "loss": float(logs["loss"]),
                "test_accuracy": logs.get("val_accuracy"),
                "epsilon": logs.get("epsilon"),
                "mosaic_phase": logs.get("mosaic_phase"),
            }
        )


class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """`rate` reached linearly over the first `steps` steps, then held."""

    def __init__(self, rate, steps):
        self.rate, self.steps = rate, steps

    def __call__(self, step):
        return self.rate * tf.minimum(1.0, tf.cast(step + 1, "float32") / self.steps)


def make_optimizer(method, args, steps_per_epoch):
    if method == "large_batch_sgd":
        scaled = args.learning_rate * args.mosaic_batch_size / args.batch_size
        rate = args.large_batch_learning_rate or scaled
        return keras.optimizers.SGD(LinearWarmup(rate, steps_per_epoch), momentum=args.momentum)
    if method.startswith("adam"):
        optimizer = keras.optimizers.Adam(args.adam_learning_rate)
    elif method.startswith("sgd"):
        optimizer = keras.optimizers.SGD(args.learning_rate, momentum=args.momentum)
    else:
        inner = keras.optimizers.SGD(momentum=args.momentum)
        if method.endswith("layer_adaptive"):
            inner = keras_agd.LayerAdaptive(inner)
        return keras_agd.AGD(
            learning_rate=args.learning_rate,
            mosaic_learning_rate=args.mosaic_learning_rate,
            optimizer=inner,
        )
    if method.endswith("layer_adaptive"):
        optimizer = keras_agd.LayerAdaptive(optimizer)
    return optimizer


def train(method, seed, args, data, codebook, augment):
    x, y, x_test, y_test = data
    keras.utils.set_random_seed(seed)
    batch_size = args.mosaic_batch_size if method == "large_batch_sgd" else args.batch_size
    optimizer = make_optimizer(method, args, -(-len(x) // batch_size))
    model = mlp(args, x.shape[1:])
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    if isinstance(optimizer, keras_agd.AGD):
        modes = {
            "agd_per_sample": "per_sample",
            "agd_proportional": "proportional",
            "random_subset": "random_subset",
        }
        mode = modes.get(method, "weighted")
        annealing = keras_agd.Annealing(
            codebook,
            keras_agd.schedules.from_codebook(codebook, args.mosaic_epochs),
            batch_size=args.batch_size,
            mosaic_batch_size=args.mosaic_batch_size,
            mode=mode,
            seed=seed,
        )
        data_in = keras_agd.mosaic_dataset(annealing, x, y, augment=augment)
        epochs, callbacks = args.mosaic_epochs + args.regular_epochs, [annealing]
    else:
        data_in = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
        data_in = data_in.batch(batch_size)
        if augment is not None:
            data_in = data_in.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        data_in, epochs, callbacks = data_in.prefetch(tf.data.AUTOTUNE), args.epochs, []
    recorder = Recorder(examples_per_epoch=len(x))
    model.fit(
        data_in,
        epochs=epochs,
        validation_data=(x_test, y_test),
        validation_batch_size=2048,
        callbacks=[recorder.clock, *callbacks, recorder],
        verbose=0,
    )
    return recorder.curve


# --- Summary and plots.


def time_to(curve, target, measure="seconds"):
    """`measure` (seconds or examples) when test accuracy first reaches `target`."""
    return next((p[measure] for p in curve if p["test_accuracy"] >= target), None)


def accuracy_within(curve, budget):
    reached = [p["test_accuracy"] for p in curve if p["seconds"] <= budget]
    return reached[-1] if reached else None


def median_or_none(values):
    """Median where at least half the seeds got a value (missing counts as infinite)."""
    values = [np.inf if v is None else v for v in values]
    middle = statistics.median(values)
    return None if middle == np.inf else float(middle)


def summarize(runs, build_seconds, margin):
    sgd_final = [runs_curve[-1]["test_accuracy"] for runs_curve in runs["sgd"]]
    sgd_seconds = [runs_curve[-1]["seconds"] for runs_curve in runs["sgd"]]
    target = statistics.median(sgd_final) - margin
    budget = statistics.median(sgd_seconds)
    reference = median_or_none([time_to(curve, target) for curve in runs["sgd"]])
    rows = {}
    for method, curves in runs.items():
        seconds = median_or_none([time_to(curve, target) for curve in curves])
        build = build_seconds if method in USES_CODEBOOK else 0.0
        rows[method] = {
            "time_to_target_s": seconds,
            "ratio_to_sgd": seconds / reference if seconds is not None and reference else None,
            "codebook_build_s": build,
            "total_s": seconds + build if seconds is not None else None,
            "total_ratio_to_sgd": (seconds + build) / reference
            if seconds is not None and reference
            else None,
            "examples_to_target": median_or_none(
                [time_to(curve, target, "examples") for curve in curves]
            ),
            # Optimizer steps: what transfers to an accelerator, where a step of a small
            # model costs about the same at any batch size.
            "steps_to_target": median_or_none(
                [time_to(curve, target, "steps") for curve in curves]
            ),
            "accuracy_within_sgd_time": median_or_none(
                [accuracy_within(curve, budget) for curve in curves]
            ),
            "final_accuracy": statistics.median(c[-1]["test_accuracy"] for c in curves),
            "train_seconds": statistics.median(c[-1]["seconds"] for c in curves),
        }
    return {"target_accuracy": target, "sgd_time_budget_s": budget, "methods": rows}


def plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = max(point["seconds"] for curves in runs.values() for c in curves for point in c)
    grid = np.linspace(0, end, 200)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for method, curves in runs.items():
        for axis, key, transform in (
            (axes[0], "loss", lambda v: v),
            (axes[1], "test_accuracy", lambda v: 1 - v),
        ):
            stacked = np.array([_steps(curve, key, grid) for curve in curves])
            with warnings.catch_warnings():  # All-NaN columns before the first epoch ends.
                warnings.simplefilter("ignore", RuntimeWarning)
                middle, low, high = (f(stacked, 0) for f in (np.nanmedian, np.nanmin, np.nanmax))
            line = axis.plot(grid, transform(middle), label=method)[0]
            axis.fill_between(
                grid, transform(low), transform(high), color=line.get_color(), alpha=0.15
            )
    axes[0].set(xlabel="training time (s)", ylabel="training loss", yscale="log")
    axes[1].set(xlabel="training time (s)", ylabel="test error", yscale="log")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _steps(curve, key, grid):
    """The value of the last epoch finished by each grid time (NaN before the first)."""
    seconds = np.array([p["seconds"] for p in curve])
    values = np.array([p[key] for p in curve])
    index = np.searchsorted(seconds, grid, side="right") - 1
    return np.where(index >= 0, values[np.maximum(index, 0)], np.nan)


# --- Workloads.


def run_training_workload(args):
    x, y, x_test, y_test = load_mnist(args)
    augment = deformation() if args.workload == "deformed" else None
    codebook = keras_agd.HierarchicalCodebook(branching=5, random_state=0).fit(x, y)
    methods = list(dict.fromkeys(["sgd", *args.methods]))  # SGD sets the target.
    runs = {method: [] for method in methods}
    for seed in range(args.seeds):
        for method in methods:
            curve = train(method, seed, args, (x, y, x_test, y_test), codebook, augment)
            runs[method].append(curve)
            print(
                f"seed {seed} {method:>20}: {curve[-1]['seconds']:6.1f} s, "
                f"test accuracy {curve[-1]['test_accuracy']:.4f}",
                flush=True,
            )
    summary = summarize(runs, codebook.build_seconds_, args.margin)
    return {"codebook_build_s": codebook.build_seconds_, "summary": summary, "runs": runs}


def run_synthetic_workload(args):
    """How an MGD epoch's cost grows with the frontier, not with N."""
    rng = np.random.default_rng(0)
    n, dims = args.synthetic_samples, 32
    means = rng.normal(scale=2.0, size=(10, dims)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    x = means[y] + rng.normal(size=(n, dims)).astype(np.float32)
    start = time.perf_counter()
    codebook = keras_agd.HierarchicalCodebook(branching=5, max_depth=6, random_state=0).fit(x, y)
    build = time.perf_counter() - start
    # A schedule that never leaves the coarsest level (ε above every node error).
    coarsest = keras_agd.schedules.ExponentialAnnealing(1e30, 1.0)

    def epoch_seconds(kind):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((dims,)),
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dense(10),
            ]
        )
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        callbacks = []
        if kind == "mosaic":
            optimizer = keras_agd.AGD(learning_rate=0.05, momentum=0.9)
            annealing = keras_agd.Annealing(
                codebook, coarsest, mosaic_batch_size=args.mosaic_batch_size
            )
            data, callbacks = keras_agd.mosaic_dataset(annealing, x, y), [annealing]
        else:
            optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
            data = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).prefetch(2)
        model.compile(optimizer=optimizer, loss=loss, jit_compile=True)
        recorder = Recorder(examples_per_epoch=n)
        model.fit(data, epochs=3, verbose=0, callbacks=[recorder.clock, *callbacks, recorder])
        # The first epoch includes tracing and XLA compilation.
        return [b["seconds"] - a["seconds"] for a, b in zip(recorder.curve, recorder.curve[1:])]

    mosaic, full = [], []
    for _ in range(args.seeds):  # Interleaved repeats.
        mosaic += epoch_seconds("mosaic")
        full += epoch_seconds("full")
    frontier = codebook.frontier(np.inf)
    return {
        "n_samples": n,
        "codebook_build_s": build,
        "coarsest_frontier_size": int(frontier.size),
        "mgd_epoch_s_median": statistics.median(mosaic),
        "full_epoch_s_median": statistics.median(full),
        "mgd_epoch_share_of_full": statistics.median(mosaic) / statistics.median(full),
        "mgd_epoch_s": mosaic,
        "full_epoch_s": full,
    }


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.workload == "synthetic":
        result = run_synthetic_workload(args)
    else:
        result = run_training_workload(args)
        plot(result["runs"], args.out / f"{args.workload}.png")
    result = {
        "benchmark": "time_to_accuracy",
        "workload": args.workload,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        **result,
    }
    (args.out / f"{args.workload}.json").write_text(json.dumps(result, indent=2, default=float))
    printable = {k: v for k, v in result.items() if k != "runs"}
    print(json.dumps(printable, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
