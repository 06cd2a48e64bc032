"""Large-batch training on MNIST: steps to a target accuracy with LARS, Lamb, Adam and SGD.

A reference, SGD with momentum 0.9 at batch `--reference-batch` (128), sets the target:
its median final test accuracy minus `--margin` (0.2 points). At each larger batch size
four arms train the same model for the same budget of epochs: `sgd` (momentum 0.9, its
rate a multiple of the reference's tuned rate scaled linearly with the batch),
`adam`, `lamb` (`keras.optimizers.Lamb`) and `lars` (`keras_agd.LARS`, trust
coefficient 0.001, the global rate swept). Every arm, the reference included, uses the
same schedule shape: linear warmup over `--warmup` of the budget from 0 to the peak
rate, then cosine decay to 0 at the end of the budget.

Tuning: each arm's peak rate is swept over a grid of `--grid` values (the same size for
every arm; `--rates` replaces a grid) with seed 0, training on 50,000 training images
and scoring on the other 10,000 (the validation split; never the test set); the rate
with the best validation accuracy at the end of the budget is chosen. The chosen rate
is then trained with `--seeds` seeds (seed 0 is the sweep's own run, its test curve
recorded alongside); only these runs are scored on the test set. Test accuracy is
evaluated `--evals-per-epoch` times per epoch (rounded to whole steps, at least one),
off the clock, giving steps-to-result curves as in Shallue et al., "Measuring the
Effects of Data Parallelism on Neural Network Training" (JMLR 2019).

Per model, batch size and arm the JSON holds the sweep, the chosen rate, every seed's
test curve, the median steps and epochs to the target (a seed that never reaches it
counts as never; the median is then the middle seed's), the final test accuracy (median
and range) and the median time of one training step. `goals` computes the verdicts: at
batch 4,096 LARS reaches the target on every model in at most 1/16 of the reference's
steps, where tuned SGD with warmup does not reach it or needs at least 30% more steps;
and LARS against Lamb at each batch size.

    python benchmarks/large_batch.py --plot docs/images/large_batch.png \\
        > docs/images/large_batch.json                       # the full run
    python benchmarks/large_batch.py --plot-only docs/images/large_batch.json \\
        --plot docs/images/large_batch.png                   # redraw the plot
    python benchmarks/large_batch.py --quick                 # smoke run
    python benchmarks/large_batch.py --models lenet5 --batch-sizes lenet5=4096 \\
        --epochs lenet5/4096=8 --arms lenet5=sgd,lamb,lars \\
        --rates sgd=0.0078125,0.015625,0.03125 lamb=0.03,0.1,0.3 lars=0.3,1,3  # one cell

The defaults are cut to fit about half an hour on 2 CPU cores: a 256-unit MLP at batch
1,024, 4,096 and 8,192 for 5, 10 and 14 epochs, LeNet-5 only at batch 4,096 for 3
epochs and without Adam, a 2-epoch reference, 3 rates per grid swept with one seed.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import default_mnist_path, machine, print_json  # noqa: E402

import keras_agd  # noqa: E402
from keras_agd.datasets import load_mnist  # noqa: E402

ARMS = ("sgd", "adam", "lamb", "lars")
VALIDATION_SIZE = 10_000
# Peak-rate grids of the sweep, the same size for every arm (`--grid 2` takes the first
# two). `sgd`'s values multiply the reference's tuned rate scaled linearly with the
# batch (1 is the linear scaling rule); the others are absolute peak rates.
GRIDS = {
    "reference": (0.03, 0.1, 0.3),
    "sgd": (1 / 16, 1 / 4, 1.0),
    "adam": (1e-3, 3e-3, 1e-2),
    "lamb": (1e-2, 3e-2, 1e-1),
    "lars": (1.0, 3.0, 10.0),
}
TRUST_COEFFICIENT = 0.001


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=default_mnist_path(), help="path to mnist.npz")
    parser.add_argument("--models", nargs="+", choices=("mlp", "lenet5"), default=None)
    parser.add_argument(
        "--arms",
        nargs="+",
        default=None,
        help="MODEL=ARM,ARM (default all four for mlp; sgd, lamb, lars for lenet5)",
    )
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        default=None,
        help="MODEL=B1,B2 (default mlp=1024,4096,8192 lenet5=4096)",
    )
    parser.add_argument("--reference-batch", type=int, default=128)
    parser.add_argument("--reference-epochs", type=float, default=None, help="default 3")
    parser.add_argument(
        "--epochs", nargs="+", default=None, help="B=E budgets (default 1024=6 4096=12 8192=16)"
    )
    parser.add_argument("--grid", type=int, default=None, help="rates per arm (default 3)")
    parser.add_argument(
        "--rates",
        nargs="+",
        default=[],
        help="ARM=R1,R2,R3 replaces an arm's grid (ARM: reference or an arm; as many rates)",
    )
    parser.add_argument("--seeds", type=int, default=None, help="default 3")
    parser.add_argument(
        "--evals-per-epoch",
        nargs="+",
        default=None,
        help="N, B=N or MODEL/B=N test evaluations per epoch (default 4 lenet5/4096=2)",
    )
    parser.add_argument("--warmup", type=float, default=0.1, help="share of the budget")
    parser.add_argument("--margin", type=float, default=0.002, help="target = ref - margin")
    parser.add_argument("--train-size", type=int, default=None, help="default all 50,000")
    parser.add_argument("--plot", default="", help="PNG path ('' for none)")
    parser.add_argument("--plot-only", default=None, help="redraw --plot from this JSON")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data and budgets")
    args = parser.parse_args(argv)
    quick = {
        "models": ["mlp"],
        "arms": ["mlp=" + ",".join(ARMS)],
        "batch_sizes": ["mlp=512"],
        "reference_epochs": 1.0,
        "epochs": ["512=4"],
        "grid": 2,
        "seeds": 1,
        "evals_per_epoch": ["2"],
        "train_size": 2048,
    }
    full = {
        "models": ["mlp", "lenet5"],
        "arms": ["mlp=" + ",".join(ARMS), "lenet5=sgd,lamb,lars"],
        "batch_sizes": ["mlp=1024,4096,8192", "lenet5=4096"],
        "reference_epochs": 2.0,
        "epochs": ["1024=5", "4096=10", "8192=14", "lenet5/4096=3"],
        "grid": 3,
        "seeds": 3,
        "evals_per_epoch": ["4", "lenet5/4096=2"],
        "train_size": 60_000 - VALIDATION_SIZE,
    }
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not 1 <= args.grid <= len(GRIDS["sgd"]):
        parser.error(f"--grid must be in 1..{len(GRIDS['sgd'])}")
    args.grids = {arm: list(rates[: args.grid]) for arm, rates in GRIDS.items()}
    for arm, rates in settings(args.rates).items():
        rates = [float(r) for r in rates.split(",")]
        if arm not in args.grids or len(rates) != args.grid:
            parser.error(f"--rates: {args.grid} rates of reference or one of {ARMS}")
        args.grids[arm] = rates
    args.batch_sizes = {
        model: [int(b) for b in sizes.split(",")]
        for model, sizes in (item.split("=") for item in args.batch_sizes)
    }
    args.arms = {model: arms.split(",") for model, arms in (item.split("=") for item in args.arms)}
    args.epochs = {key: float(value) for key, value in settings(args.epochs).items()}
    args.evals_per_epoch = {
        key: int(value) for key, value in settings(args.evals_per_epoch).items()
    }
    for model in args.models:
        if any(arm not in ARMS for arm in args.arms.get(model, [])):
            parser.error(f"--arms: choose from {ARMS}")
        for batch in args.batch_sizes.get(model, []):
            if budget(args, model, batch) is None:
                parser.error(f"no --epochs budget for batch {batch}")
    return args


def settings(items):
    """`["4", "1024=6", "lenet5/4096=2"]` as a dict ("" for the bare default)."""
    return dict(item.split("=") if "=" in item else ("", item) for item in items)


def lookup(values, model, batch):
    """`values["MODEL/B"]`, else `values["B"]`, else `values[""]`, else None."""
    for key in (f"{model}/{batch}", str(batch), ""):
        if key in values:
            return values[key]
    return None


def budget(args, model, batch):
    """Epochs of training at `batch` (`--epochs`)."""
    return lookup(args.epochs, model, batch)


# --- Models and data.


def mlp():
    """784-256-256-10, ReLU."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="mlp",
    )


def lenet5():
    """LeNet-5 with ReLU and max pooling: conv 6@5x5 (same), conv 16@5x5, 120, 84, 10."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(6, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(16, 5, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu"),
            layers.Dense(10),
        ],
        name="lenet5",
    )


MODELS = {"mlp": mlp, "lenet5": lenet5}


def load(args):
    """(train, validation, test) with images as uint8 (N, 28, 28, 1) and int32 labels.

    The validation split is the last 10,000 of the 60,000 training images."""
    (x_train, y_train), (x_test, y_test) = load_mnist(args.mnist)
    x_train, x_test = x_train[..., None], x_test[..., None]
    y_train, y_test = y_train.astype(np.int32), y_test.astype(np.int32)
    validation = (x_train[-VALIDATION_SIZE:], y_train[-VALIDATION_SIZE:])
    train = (x_train[: args.train_size], y_train[: args.train_size])
    if args.quick:
        validation = tuple(a[:1000] for a in validation)
        x_test, y_test = x_test[:1000], y_test[:1000]
    return train, validation, (x_test, y_test)


def train_dataset(train, batch_size, seed):
    """Batches of a new permutation of the training set every epoch (an epoch's last
    batch runs on into the next permutation), gathered from memory by index."""
    images, labels = (tf.constant(a) for a in train)
    order = tf.data.Dataset.range(len(train[1])).shuffle(len(train[1]), seed=seed).repeat()

    def gather(index):
        return tf.cast(tf.gather(images, index), tf.float32) / 255.0, tf.gather(labels, index)

    dataset = order.batch(batch_size, drop_remainder=True).map(gather)
    return dataset.prefetch(2)


# --- One run.


def schedule(peak, steps, warmup):
    warmup_steps = max(1, round(warmup * steps))
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup_steps, warmup_target=peak, warmup_steps=warmup_steps
    )


def optimizer(arm, rate):
    if arm in ("reference", "sgd"):
        return keras.optimizers.SGD(rate, momentum=0.9)
    if arm == "adam":
        return keras.optimizers.Adam(rate)
    if arm == "lamb":
        return keras.optimizers.Lamb(rate)
    return keras_agd.LARS(rate, momentum=0.9, trust_coefficient=TRUST_COEFFICIENT)


def plan(model_name, batch_size, epochs, args):
    """(steps between evaluations, evaluations) covering `epochs` of the training set."""
    steps_per_epoch = args.train_size / batch_size
    evals_per_epoch = lookup(args.evals_per_epoch, model_name, batch_size)
    interval = max(1, round(steps_per_epoch / evals_per_epoch))
    return interval, max(1, round(epochs * steps_per_epoch / interval))


class Recorder(keras.callbacks.Callback):
    """Times each block of training steps, then scores the model on `curves` (after
    every block) and on `finals` (after the last one)."""

    def __init__(self, curves, finals):
        super().__init__()
        self.curves, self.finals = curves, finals
        self.accuracy = {name: [] for name in (*curves, *finals)}
        self.seconds = []
        self._logits = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        self._score(self.curves)

    def on_train_end(self, logs=None):
        self._score(self.finals)

    def _score(self, splits):
        if self._logits is None:
            self._logits = tf.function(lambda x: self.model(x, training=False), jit_compile=True)
        for name, (x, y) in splits.items():
            logits = np.concatenate(
                [self._logits(x[i : i + 5000]).numpy() for i in range(0, len(y), 5000)]
            )
            self.accuracy[name].append(float(np.mean(logits.argmax(axis=1) == y)))


def as_float(splits):
    return {name: (tf.constant(x.astype(np.float32) / 255.0), y) for name, (x, y) in splits.items()}


def run(model_name, arm, rate, batch_size, epochs, seed, data, validate, args):
    """Trains one arm; returns its accuracy curves per split and seconds per block: test
    accuracy after every block, validation accuracy at the end if `validate`."""
    train, validation, test = data
    interval, evaluations = plan(model_name, batch_size, epochs, args)
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = MODELS[model_name]()
    model.compile(
        optimizer=optimizer(arm, schedule(rate, interval * evaluations, args.warmup)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
        steps_per_execution=interval,
    )
    finals = as_float({"validation": validation} if validate else {})
    recorder = Recorder(as_float({"test": test}), finals)
    model.fit(
        train_dataset(train, batch_size, seed),
        epochs=evaluations,
        steps_per_epoch=interval,
        callbacks=[recorder],
        verbose=0,
    )
    return recorder.accuracy, recorder.seconds


# --- Sweep, seeds and summaries.


def steps_to(curve, steps, target):
    """The first evaluated step whose accuracy reaches `target`, else None."""
    return next((s for s, a in zip(steps, curve, strict=True) if a >= target), None)


def median_steps(values):
    """Median with a seed that never reached the target counted as never (None)."""
    ordered = sorted(values, key=lambda v: np.inf if v is None else v)
    middle = ordered[(len(ordered) - 1) // 2] if len(ordered) % 2 else None
    if len(ordered) % 2 == 0:
        low, high = ordered[len(ordered) // 2 - 1], ordered[len(ordered) // 2]
        middle = None if high is None else (low + high) / 2
    return middle


def tune_and_run(model_name, arm, batch_size, epochs, grid, data, args):
    """The validation sweep over `grid`, then the chosen rate with every seed."""
    sweep = []
    for rate in grid:
        start = time.perf_counter()
        accuracy, seconds = run(model_name, arm, rate, batch_size, epochs, 0, data, True, args)
        sweep.append(
            {
                "rate": rate,
                "validation_accuracy": accuracy["validation"][-1],
                "seconds": round(time.perf_counter() - start, 1),
                "_test": accuracy["test"],
                "_step_seconds": seconds,
            }
        )
        print(
            f"{model_name} b{batch_size} {arm} rate {rate:g}: "
            f"validation {accuracy['validation'][-1]:.4f} ({sweep[-1]['seconds']} s)",
            file=sys.stderr,
        )
    finite = [s for s in sweep if np.isfinite(s["validation_accuracy"])]
    chosen = max(finite or sweep, key=lambda s: s["validation_accuracy"])
    curves, block_seconds = [chosen["_test"]], [chosen["_step_seconds"]]
    for seed in range(1, args.seeds):
        accuracy, seconds = run(
            model_name, arm, chosen["rate"], batch_size, epochs, seed, data, False, args
        )
        curves.append(accuracy["test"])
        block_seconds.append(seconds)
        print(f"  seed {seed}: test {accuracy['test'][-1]:.4f}", file=sys.stderr)
    interval, evaluations = plan(model_name, batch_size, epochs, args)
    # The first block of each run includes compilation: left out of the step time.
    step_seconds = [s / interval for run_s in block_seconds for s in run_s[1:]] or [
        s / interval for run_s in block_seconds for s in run_s
    ]
    finals = [c[-1] for c in curves]
    return {
        "sweep": [{k: v for k, v in s.items() if not k.startswith("_")} for s in sweep],
        "rate": chosen["rate"],
        "steps": [interval * (i + 1) for i in range(evaluations)],
        "epochs_per_step": batch_size / args.train_size,
        "test_accuracy": [[round(a, 4) for a in c] for c in curves],
        "final_test_accuracy_median": statistics.median(finals),
        "final_test_accuracy_range": [min(finals), max(finals)],
        "step_ms_median": round(1000 * statistics.median(step_seconds), 2),
    }


def add_targets(result, target):
    """Steps and epochs to `target`, per seed and median, into one arm's `result`."""
    per_seed = [steps_to(c, result["steps"], target) for c in result["test_accuracy"]]
    median = median_steps(per_seed)
    result["steps_to_target"] = per_seed
    result["steps_to_target_median"] = median
    result["epochs_to_target_median"] = (
        None if median is None else round(median * result["epochs_per_step"], 3)
    )
    result["seeds_reaching_target"] = sum(s is not None for s in per_seed)


def goals(results, reference_batch, goal_batch=4096, fraction=1 / 16, sgd_margin=1.3):
    """The benchmark's verdicts, computed from the results."""
    per_model, met = {}, True
    for model_name, by_batch in results.items():
        reference = by_batch[str(reference_batch)]["reference"]["steps_to_target_median"]
        arms = by_batch.get(str(goal_batch))
        if arms is None or "lars" not in arms or "sgd" not in arms or reference is None:
            per_model[model_name] = {"evaluated": False}
            met = False
            continue
        lars = arms["lars"]["steps_to_target_median"]
        sgd = arms["sgd"]["steps_to_target_median"]
        limit = reference * fraction
        lars_fast = lars is not None and lars <= limit
        sgd_behind = lars is not None and (sgd is None or sgd >= sgd_margin * lars)
        per_model[model_name] = {
            "evaluated": True,
            "reference_steps_to_target": reference,
            "step_limit": limit,
            "lars_steps_to_target": lars,
            "sgd_steps_to_target": sgd,
            "lars_within_limit": lars_fast,
            "sgd_misses_or_needs_30pct_more": sgd_behind,
            "met": lars_fast and sgd_behind,
        }
        met = met and per_model[model_name]["met"]
    lars_vs_lamb = {}
    for model_name, by_batch in results.items():
        for batch, arms in by_batch.items():
            if "lars" not in arms or "lamb" not in arms:
                continue
            lars, lamb = arms["lars"], arms["lamb"]
            a, b = lars["steps_to_target_median"], lamb["steps_to_target_median"]
            lars_vs_lamb[f"{model_name}/{batch}"] = {
                "lars_steps_to_target": a,
                "lamb_steps_to_target": b,
                "steps_ratio_lars_over_lamb": None if None in (a, b) else round(a / b, 3),
                "final_accuracy_lars_minus_lamb": round(
                    lars["final_test_accuracy_median"] - lamb["final_test_accuracy_median"], 4
                ),
            }
    return {
        "rule": (
            f"at batch {goal_batch}, LARS reaches the target on every model in at most "
            f"{fraction:g} of the reference's steps to target, and tuned SGD with warmup "
            f"does not reach it or needs at least {sgd_margin:g}x LARS's steps"
        ),
        "per_model": per_model,
        "met": met,
        "lars_vs_lamb": lars_vs_lamb,
    }


# --- Plot.


LABELS = {
    "sgd": ("momentum SGD, warmup", "tab:blue"),
    "adam": ("Adam", "tab:orange"),
    "lamb": ("Lamb", "tab:green"),
    "lars": ("LARS", "tab:red"),
}


def plot(report, path):
    """Test error against steps, one panel per model and batch size: the median over
    seeds (line) and the seeds' range (band), the reference, the target, and 1/16 of the
    reference's steps to the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from _plots import error_range, percent_log_axis, plain_log_axis

    reference_batch = str(report["config"]["reference_batch"])
    panels = [
        (model_name, batch)
        for model_name, by_batch in report["results"].items()
        for batch in by_batch
        if batch != reference_batch
    ]
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.remove()
    for ax, (model_name, batch) in zip(axes.flat, panels):
        by_batch = report["results"][model_name]
        target = report["targets"][model_name]
        reference = by_batch[reference_batch]["reference"]
        lines = [(f"SGD, batch {reference_batch}", "black", reference)]
        lines += [(*LABELS[arm], result) for arm, result in by_batch[batch].items()]
        errors = []
        for label, color, result in lines:
            curves = 1 - np.array(result["test_accuracy"])
            errors.append(curves)
            ax.plot(result["steps"], 100 * np.median(curves, axis=0), color=color, label=label)
            low, high = 100 * curves.min(axis=0), 100 * curves.max(axis=0)
            ax.fill_between(result["steps"], low, high, color=color, alpha=0.15, linewidth=0)
        ax.axhline(100 * (1 - target), color="gray", linestyle=":", label="target")
        if reference["steps_to_target_median"] is not None:
            limit = reference["steps_to_target_median"] / 16
            ax.axvline(limit, color="gray", linestyle="--", linewidth=1, label="1/16 of ref. steps")
        plain_log_axis(ax, "x")
        percent_log_axis(ax, *error_range(np.concatenate([e.ravel() for e in errors]), 1 - target))
        ax.set_title(f"{model_name}, batch {int(batch):,}")
        ax.set_xlabel("training steps")
        ax.set_ylabel("test error")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --- Main.


def main(argv=None):
    args = parse_args(argv)
    if args.plot_only:
        plot(json.loads(Path(args.plot_only).read_text()), args.plot)
        return
    data = load(args)
    start = time.perf_counter()
    results, targets = {}, {}
    for model_name in args.models:
        reference_grid = args.grids["reference"]
        reference = tune_and_run(
            model_name,
            "reference",
            args.reference_batch,
            args.reference_epochs,
            reference_grid,
            data,
            args,
        )
        targets[model_name] = reference["final_test_accuracy_median"] - args.margin
        add_targets(reference, targets[model_name])
        results[model_name] = {str(args.reference_batch): {"reference": reference}}
        for batch in args.batch_sizes.get(model_name, []):
            arms = {}
            for arm in args.arms.get(model_name, []):
                grid = args.grids[arm]
                if arm == "sgd":
                    scaled = reference["rate"] * batch / args.reference_batch
                    grid = [round(m * scaled, 6) for m in grid]
                arms[arm] = tune_and_run(
                    model_name, arm, batch, budget(args, model_name, batch), grid, data, args
                )
                add_targets(arms[arm], targets[model_name])
                print(
                    f"{model_name} b{batch} {arm}: steps to target {arms[arm]['steps_to_target']}",
                    file=sys.stderr,
                )
            results[model_name][str(batch)] = arms
    config = {k: v for k, v in vars(args).items() if k not in ("mnist", "plot_only")}
    config |= {"trust_coefficient": TRUST_COEFFICIENT, "validation_size": VALIDATION_SIZE}
    report = {
        "benchmark": "large_batch",
        "command": " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "machine": machine(),
        "config": config,
        "targets": {k: round(v, 4) for k, v in targets.items()},
        "results": results,
        "goals": goals(results, args.reference_batch),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.plot:
        plot(report, args.plot)
    print_json(report)


if __name__ == "__main__":
    main()
