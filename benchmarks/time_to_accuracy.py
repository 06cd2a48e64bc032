"""Time to accuracy: AGD against SGD, Adam, a random-subset control and layer-adaptive rates.

Trains the same model on the same data with every method, seeds interleaved so that
machine noise hits all methods alike, and records for every run a learning curve
against training wall time (evaluation excluded), optimizer steps and examples
processed. The AGD methods train through a `keras_agd.Curriculum`: `--mosaic-levels`
codebook levels (one pass over each level's frontier at `--mosaic-batch-size`), then
`--regular-epochs` passes over the real samples, in one `fit` on
`curriculum.dataset(model)`; their curves have a point at the end of every level and
of every pass, and their wall time includes planning the curriculum. The other methods
have a point at the end of every epoch. Prints JSON (curves and summary), writes it
and the plots to --out.

    python benchmarks/time_to_accuracy.py                    # the setting in docs/benchmarks.md
    python benchmarks/time_to_accuracy.py --quick            # smoke run, under 5 minutes
    python benchmarks/time_to_accuracy.py --workload deformed
    python benchmarks/time_to_accuracy.py --workload synthetic   # mosaic level cost vs N

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
from _common import batch_size_of, default_mnist_path, examples_trained, machine
from _timing import EpochClock, StepTimes

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
# Trained through a keras_agd.Curriculum (random_subset takes only the frontier sizes).
USES_CURRICULUM = (*USES_CODEBOOK, "random_subset")


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
    # A mosaic level was called a "mosaic epoch" before; the old flag still works.
    parser.add_argument("--mosaic-levels", "--mosaic-epochs", type=int, default=6)
    parser.add_argument(
        "--regular-epochs", type=int, default=5, help="AGD passes over the real samples"
    )
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
    parser.add_argument(
        "--plot-only",
        type=Path,
        metavar="JSON",
        help="redraw the figure of this result file (no training) and exit",
    )
    parser.add_argument(
        "--plot-to", type=Path, metavar="PNG", help="with --plot-only: where (default: beside it)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.hidden, args.train_samples = 1, [128, 64], args.train_samples or 12000
        args.epochs, args.mosaic_levels, args.regular_epochs = 3, 3, 2
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
    """A curve point at each checkpoint step: seconds, steps, examples, loss, test accuracy.

    Seconds count from the start of `fit` plus `offset` (the curriculum's planning),
    without the evaluations, which run off the clock. `loss` is the mean training loss
    of the steps since the previous point, weighted by batch size as Keras weighs it.

    Args:
        checkpoints: Global steps after which to record a point.
        test: `(x_test, y_test)`.
        batch_size: Function from a global step to the size of its batch.
        describe: Optional function from the last trained step to extra fields.
        offset: Seconds spent before `fit` that count as training time.
    """

    def __init__(self, checkpoints, test, batch_size, describe=None, offset=0.0):
        super().__init__()
        self.checkpoints = set(checkpoints)
        self.test, self.batch_size, self.describe = test, batch_size, describe
        self.offset = offset
        self.curve = []
        self.examples = 0

    def on_train_begin(self, logs=None):
        model = self.model
        self.predict = tf.function(lambda x: model(x, training=False), jit_compile=True)
        self.accuracy()  # Compiles the evaluation before the clock starts.
        self.step = int(model.optimizer.iterations.numpy())
        self.eval_seconds = 0.0
        self.window = (0.0, 0)  # (loss sum, examples) at the previous point.
        self.start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_examples = 0  # Keras' running mean of the loss restarts each epoch.
        self.window = (0.0, 0)

    def on_train_batch_end(self, batch, logs=None):
        size = self.batch_size(self.step)
        self.step += 1
        self.examples += size
        self.epoch_examples += size
        if self.step in self.checkpoints:
            self.record(logs)

    def record(self, logs):
        seconds = time.perf_counter() - self.start - self.eval_seconds + self.offset
        begin = time.perf_counter()
        total = float(logs["loss"]) * self.epoch_examples
        loss_sum, examples = self.window
        self.window = (total, self.epoch_examples)
        point = {
            "seconds": seconds,
            "examples": self.examples,
            "steps": self.step,
            "loss": (total - loss_sum) / (self.epoch_examples - examples),
            "test_accuracy": self.accuracy(),
        }
        if self.describe is not None:
            point.update(self.describe(self.step - 1))
        self.curve.append(point)
        self.eval_seconds += time.perf_counter() - begin

    def accuracy(self):
        x, y = self.test
        correct = 0
        for start in range(0, len(x), 2048):
            logits = self.predict(tf.constant(x[start : start + 2048]))
            correct += int((np.argmax(logits, -1) == y[start : start + 2048]).sum())
        return correct / len(x)


class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """`rate` reached linearly over the first `steps` steps, then held."""

    def __init__(self, rate, steps):
        self.rate, self.steps = rate, steps

    def __call__(self, step):
        return self.rate * tf.minimum(1.0, tf.cast(step + 1, "float32") / self.steps)


def make_optimizer(method, args, steps_per_epoch, curriculum=None):
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
            curriculum,
            learning_rate=args.learning_rate,
            mosaic_learning_rate=args.mosaic_learning_rate,
            optimizer=inner,
        )
    if method.endswith("layer_adaptive"):
        optimizer = keras_agd.LayerAdaptive(optimizer)
    return optimizer


MODES = {
    "agd_per_sample": "per_sample",
    "agd_proportional": "proportional",
    "random_subset": "random_subset",
}


def train(method, seed, args, data, codebook, augment):
    """One run: `(curve, curriculum planning seconds)`."""
    x, y, x_test, y_test = data
    keras.utils.set_random_seed(seed)
    batch_size = args.mosaic_batch_size if method == "large_batch_sgd" else args.batch_size
    steps_per_epoch = -(-len(x) // batch_size)
    curriculum, plan_seconds = None, 0.0
    if method in USES_CURRICULUM:
        start = time.perf_counter()  # Planning is training time: it checks the codebook.
        curriculum = keras_agd.Curriculum(
            x,
            y,
            codebook=codebook,
            schedule=args.mosaic_levels,
            batch_size=args.batch_size,
            mosaic_batch_size=args.mosaic_batch_size,
            mode=MODES.get(method, "weighted"),
            seed=seed,
        )
        plan_seconds = time.perf_counter() - start
    optimizer = make_optimizer(method, args, steps_per_epoch, curriculum)
    model = mlp(args, x.shape[1:])
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    if curriculum is not None:
        # One Keras epoch of the whole budget; a point after each level and each pass.
        checkpoints = [level.first_step + level.steps for level in curriculum.levels]
        passes = [curriculum.steps_per_epoch * (k + 1) for k in range(args.regular_epochs)]
        checkpoints += [curriculum.mosaic_steps + steps for steps in passes]
        data_in = curriculum.dataset(model, steps_per_epoch=checkpoints[-1], augment=augment)
        epochs = 1

        def describe(step):
            return {
                "epsilon": curriculum.epsilon(step),
                "mosaic_phase": float(curriculum.phase(step) == "mosaic"),
            }

        def size(step):
            return batch_size_of(curriculum, step)

    else:
        data_in = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
        data_in = data_in.batch(batch_size)
        if augment is not None:
            data_in = data_in.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        data_in, epochs, describe = data_in.prefetch(tf.data.AUTOTUNE), args.epochs, None
        checkpoints = [steps_per_epoch * (k + 1) for k in range(epochs)]
        last = len(x) - (steps_per_epoch - 1) * batch_size

        def size(step):
            return last if (step + 1) % steps_per_epoch == 0 else batch_size

    recorder = Recorder(checkpoints, (x_test, y_test), size, describe, offset=plan_seconds)
    model.fit(data_in, epochs=epochs, callbacks=[recorder], verbose=0, shuffle=False)
    if curriculum is not None:
        assert recorder.examples == examples_trained(curriculum, checkpoints[-1])
    return recorder.curve, plan_seconds


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


def summarize(runs, build_seconds, margin, plan_seconds):
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
            # Included in the curves' seconds.
            "curriculum_plan_s": statistics.median(plan_seconds[method]),
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


def describe(result):
    """A readable title: workload, model, epochs and seeds of a result."""
    settings = result["settings"]
    data = {"mnist": "MNIST", "deformed": "Deformed MNIST"}.get(result.get("workload"), "MNIST")
    if settings.get("train_samples"):
        data += f", {settings['train_samples']:,} training images"
    model = f"{settings['activation']} MLP {'-'.join(map(str, settings['hidden']))}"
    return f"{data}, {model} (median and range of {settings['seeds']} seeds)"


def plot(result, path):
    """Training loss and test error against training time: the median of the seeds as a
    line, their range shaded, one colour, marker and line style per method, and the
    target accuracy as a black dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from _plots import error_range, percent_log_axis, plain_log_axis, style

    runs = result["runs"]
    target = 1 - result["summary"]["target_accuracy"]
    end = max(point["seconds"] for curves in runs.values() for c in curves for point in c)
    grid = np.linspace(0, end, 200)
    figure, axes = plt.subplots(1, 2, figsize=(12, 5.4))
    errors = []
    for method, curves in runs.items():
        for axis, key, transform in (
            (axes[0], "loss", lambda v: v),
            (axes[1], "test_accuracy", lambda v: 100 * (1 - v)),
        ):
            stacked = np.array([_steps(curve, key, grid) for curve in curves])
            with warnings.catch_warnings():  # All-NaN columns before the first epoch ends.
                warnings.simplefilter("ignore", RuntimeWarning)
                middle, low, high = (f(stacked, 0) for f in (np.nanmedian, np.nanmin, np.nanmax))
            kwargs = style(method, markevery=20)
            axis.plot(grid, transform(middle), **kwargs)
            axis.fill_between(
                grid, transform(low), transform(high), color=kwargs["color"], alpha=0.12
            )
            if key == "test_accuracy":
                errors.append(1 - stacked)
    axes[0].set(xlabel="training time (s)", ylabel="training loss", title="Training loss")
    plain_log_axis(axes[0], which="y")
    axes[1].axhline(100 * target, color="black", linestyle=":", linewidth=1.2)
    percent_log_axis(axes[1], *error_range(np.concatenate(errors, axis=None), target))
    axes[1].set(xlabel="training time (s)", ylabel="test error", title="Test error")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.set_xlim(0, end)
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="black", linestyle=":", linewidth=1.2))
    labels.append(f"target: {1 - target:.2%} test accuracy")
    figure.suptitle(describe(result), fontsize=13)
    figure.legend(
        handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.01), ncol=4, fontsize=9
    )
    rows = -(-len(labels) // 4)
    figure.tight_layout(rect=(0, 0.045 * rows + 0.02, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return figure


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
    plans = {method: [] for method in methods}
    for seed in range(args.seeds):
        for method in methods:
            curve, plan = train(method, seed, args, (x, y, x_test, y_test), codebook, augment)
            runs[method].append(curve)
            plans[method].append(plan)
            print(
                f"seed {seed} {method:>20}: {curve[-1]['seconds']:6.1f} s, "
                f"test accuracy {curve[-1]['test_accuracy']:.4f}",
                flush=True,
            )
    summary = summarize(runs, codebook.build_seconds_, args.margin, plans)
    return {"codebook_build_s": codebook.build_seconds_, "summary": summary, "runs": runs}


def run_synthetic_workload(args):
    """What a mosaic level costs: the steps of its frontier, however large N is.

    A curriculum of three levels of the coarsest frontier (ε above every node's error,
    one codeword a class) trains on `curriculum.dataset(model)`; the wall time of each
    level after the first (which traces and compiles) is set against a full epoch of
    plain SGD on the same N samples. The curriculum is planned once, before training:
    its planning time (which includes checking the codebook against the data) is
    reported apart.
    """
    rng = np.random.default_rng(0)
    n, dims = args.synthetic_samples, 32
    means = rng.normal(scale=2.0, size=(10, dims)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    x = means[y] + rng.normal(size=(n, dims)).astype(np.float32)
    start = time.perf_counter()
    codebook = keras_agd.HierarchicalCodebook(branching=5, max_depth=6, random_state=0).fit(x, y)
    build = time.perf_counter() - start
    # ε of 1e30, 5e29 and 2.5e29, then the real samples: three levels above every error.
    coarsest = keras_agd.schedules.ExponentialAnnealing(1e30, 0.5, final_epsilon=1e30 * 0.5**2.5)

    def compiled(optimizer):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((dims,)),
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dense(10),
            ]
        )
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=optimizer, loss=loss, jit_compile=True)
        return model

    def mosaic_levels():
        start = time.perf_counter()
        curriculum = keras_agd.Curriculum(
            x,
            y,
            codebook=codebook,
            schedule=coarsest,
            batch_size=args.batch_size,
            mosaic_batch_size=args.mosaic_batch_size,
            seed=0,
        )
        plan = time.perf_counter() - start
        model = compiled(keras_agd.AGD(curriculum, learning_rate=0.05, momentum=0.9))
        times = StepTimes()
        train = curriculum.dataset(model, steps_per_epoch=curriculum.mosaic_steps)
        model.fit(train, epochs=1, verbose=0, callbacks=[times], shuffle=False)
        seconds = times.step_seconds()
        levels = [
            sum(seconds[step] for step in range(level.first_step, level.first_step + level.steps))
            for level in curriculum.levels[1:]
        ]
        return plan, levels, curriculum

    def full_epochs():
        model = compiled(keras.optimizers.SGD(0.05, momentum=0.9))
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).prefetch(2)
        clock = EpochClock()
        model.fit(data, epochs=3, verbose=0, callbacks=[clock], shuffle=False)
        return clock.seconds[1:]  # The first epoch includes tracing and XLA compilation.

    plans, mosaic, full = [], [], []
    for _ in range(args.seeds):  # Interleaved repeats.
        plan, levels, curriculum = mosaic_levels()
        plans.append(plan)
        mosaic += levels
        full += full_epochs()
    frontier = codebook.frontier(np.inf)
    return {
        "n_samples": n,
        "codebook_build_s": build,
        "coarsest_frontier_size": int(frontier.size),
        "mosaic_level_steps": [level.steps for level in curriculum.levels],
        "mosaic_batch_size": curriculum.mosaic_batch_size,
        "full_epoch_steps": curriculum.steps_per_epoch,
        "curriculum_plan_s": plans,
        "mosaic_level_s_median": statistics.median(mosaic),
        "full_epoch_s_median": statistics.median(full),
        "mosaic_level_share_of_full": statistics.median(mosaic) / statistics.median(full),
        "mosaic_level_s": mosaic,
        "full_epoch_s": full,
    }


def main(argv=None):
    args = parse_args(argv)
    if args.plot_only:  # Redraw a committed figure from its JSON, without training.
        png = args.plot_to or args.plot_only.with_suffix(".png")
        plot(json.loads(args.plot_only.read_text()), png)
        print(f"wrote {png}")
        return None
    args.out.mkdir(parents=True, exist_ok=True)
    if args.workload == "synthetic":
        result = run_synthetic_workload(args)
    else:
        result = run_training_workload(args)
    result = {
        "benchmark": "time_to_accuracy",
        "workload": args.workload,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        **result,
    }
    if "runs" in result:
        plot(result, args.out / f"{args.workload}.png")
    (args.out / f"{args.workload}.json").write_text(json.dumps(result, indent=2, default=float))
    printable = {k: v for k, v in result.items() if k != "runs"}
    print(json.dumps(printable, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
