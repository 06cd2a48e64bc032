"""Does the mosaic phase earn its keep? AGD against the controls a user would pick instead.

Every arm trains the same model on the same training split for the same budget of
examples (`--budget-epochs` passes), with SGD momentum 0.9 (Adam for `adam`) and a
learning rate that decays linearly to zero over its budget (Li et al., "Budgeted
Training", ICLR 2020). Each arm's rate is chosen by a sweep on a validation split
(held out of the training set, never the test set), with the same grid size for every
arm. The mosaic phase (AGD and its controls) costs `--mosaic-share` of one epoch's
examples, at batch `--mosaic-batch-size`, spread evenly over `--mosaic-levels` levels
of the codebook (`Curriculum(steps_per_level=...)`), its rate warmed up linearly over
the first level; the regular phase then runs the remaining epochs at SGD's tuned
rate, decaying to zero. Every arm trains its whole budget in one `fit` (the codebook
arms on `curriculum.dataset(model)`), one stream of optimizer steps.

Arms:
- `sgd`, `adam`: batch `--batch-size` throughout.
- `large_batch_sgd`: batch `--mosaic-batch-size` throughout, warmup then decay.
- `phased_sgd`: the mosaic phase's steps, batch and rate on random real samples, then
  the regular phase: "large batches early" without the codebook.
- `agd`: proportional mode (items drawn by ω). `agd_weighted`: eq. (6) weights.
- `random_subset`: growing random subsets of the frontier's sizes (Wu et al. 2021).
- `group_means`: codewords replaced by means of random groups of the same sizes
  and classes (averaging without clustering).
- `medoids`: codewords replaced by the nearest real sample of their cluster.
- `agd_trust`: `agd` with `keras_agd.LARS`'s trust ratio in the mosaic phase only
  (trust coefficient `--trust-coefficient`, biases excluded), plain SGD momentum after.

    python benchmarks/mosaic_study.py                           # plain MNIST, MLP
    python benchmarks/mosaic_study.py --label-noise 0.4         # noisy labels
    python benchmarks/mosaic_study.py --budget-epochs 2         # a short budget
    python benchmarks/mosaic_study.py --model lenet             # a CNN
    python benchmarks/mosaic_study.py --quick                   # smoke run
    python benchmarks/mosaic_study.py --arms agd agd_trust --rates '{"sgd": 0.1}' \
        --rate-grid '{"agd": [0.1, 0.4], "agd_trust": [0.1, 0.4]}'  # every seed, each rate

Metrics (median over seeds, with the seeds' range): wall time, optimizer steps and
examples until test accuracy first reaches each of three levels (SGD's median final
accuracy minus `--margin`, and the accuracies of 2x and 4x that error), the final
accuracy, and the codebook build time (added to the totals of arms that need it).
Accuracy is evaluated every `1 / --evals-per-epoch` epoch of examples, off the clock.
"""

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from _common import default_mnist_path, machine

import keras_agd

ARMS = (
    "sgd",
    "adam",
    "large_batch_sgd",
    "phased_sgd",
    "agd",
    "agd_weighted",
    "random_subset",
    "group_means",
    "medoids",
    "agd_trust",
)
USES_CODEBOOK = ("agd", "agd_weighted", "group_means", "medoids", "agd_trust")
CURRICULUM_ARMS = ("random_subset", *USES_CODEBOOK)  # Trained through keras_agd.Curriculum.
MOSAIC_ARMS = ("phased_sgd", *CURRICULUM_ARMS)
# Rate grids of the validation sweep: the same number of values for every arm.
GRIDS = {
    "sgd": (0.025, 0.05, 0.1, 0.2),
    "adam": (3e-4, 1e-3, 3e-3, 1e-2),
    "large_batch_sgd": (0.1, 0.2, 0.4, 0.8),
    "mosaic": (0.05, 0.1, 0.2, 0.4),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", default=default_mnist_path())
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--model", choices=["mlp", "lenet"], default="mlp")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 256, 128])
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--budget-epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--mosaic-batch-size", type=int, default=1024)
    # A mosaic level was called a "mosaic epoch" before; the old flag still works.
    parser.add_argument(
        "--mosaic-levels", "--mosaic-epochs", type=int, default=4, help="codebook levels visited"
    )
    parser.add_argument("--mosaic-share", type=float, default=1.0, help="epochs of examples")
    parser.add_argument("--label-noise", type=float, default=0.0, help="share of labels flipped")
    parser.add_argument("--validation-samples", type=int, default=10000)
    parser.add_argument("--train-samples", type=int, default=None, help="first N of the split")
    parser.add_argument("--evals-per-epoch", type=int, default=4)
    parser.add_argument("--margin", type=float, default=0.002)
    parser.add_argument(
        "--rates", type=json.loads, default=None, help='skip the sweep: {"sgd": 0.05, ...}'
    )
    parser.add_argument(
        "--rate-grid",
        type=json.loads,
        default={},
        help='train every seed at each of these rates (no sweep), e.g. {"agd": [0.1, 0.4]}',
    )
    parser.add_argument(
        "--trust-coefficient", type=float, default=0.03, help="agd_trust's η (mosaic phase)"
    )
    parser.add_argument(
        "--grid",
        type=json.loads,
        default={},
        help='replace sweep grids, e.g. {"mosaic": [0.0125, 0.025, 0.05, 0.1]}',
    )
    parser.add_argument("--threads", type=int, default=0, help="TF threads (0: TF's default)")
    parser.add_argument("--quick", action="store_true", help="small data, 1 seed, 2 rates")
    parser.add_argument("--out", type=Path, default=Path("results/mosaic_study"))
    parser.add_argument("--name", default=None, help="file name of the JSON (default: regime)")
    parser.add_argument(
        "--report", nargs="+", type=Path, help="print the tables of these result files and exit"
    )
    parser.add_argument("--plot", action="store_true", help="write <regime>.png beside the JSON")
    parser.add_argument(
        "--plot-only",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="redraw <name>.png beside each of these result files (no training) and exit",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.hidden, args.train_samples = 1, [64], args.train_samples or 4000
        args.validation_samples, args.budget_epochs, args.mosaic_levels = 2000, 2, 2
    return args


# --- Data, models, codebooks.


def load_data(args):
    """The training split (labels flipped at `--label-noise`), validation split, test set."""
    (x, y), (x_test, y_test) = keras_agd.datasets.load_mnist(args.mnist)
    x, x_test = x.astype(np.float32) / 255.0, x_test.astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    val, train = order[: args.validation_samples], order[args.validation_samples :]
    train = train[: args.train_samples] if args.train_samples else train
    y = y.astype(np.int64)
    if args.label_noise:
        # The user's labels are noisy in both splits; the test labels stay clean.
        flip = rng.random(len(y)) < args.label_noise
        y = np.where(flip, (y + rng.integers(1, 10, len(y))) % 10, y)
    return (x[train], y[train]), (x[val], y[val]), (x_test, y_test.astype(np.int64))


def build_model(args, input_shape):
    layers = [keras.Input(input_shape)]
    if args.model == "lenet":
        layers += [
            keras.layers.Reshape((*input_shape, 1)),
            keras.layers.Conv2D(6, 5, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(120, activation="relu"),
            keras.layers.Dense(84, activation="relu"),
        ]
    else:
        layers.append(keras.layers.Flatten())
        layers += [keras.layers.Dense(units, activation=args.activation) for units in args.hidden]
    return keras.Sequential([*layers, keras.layers.Dense(10)])


def ablation_codebook(codebook, x, kind, seed=0):
    """A copy of `codebook` whose codewords are means of random groups, or medoids.

    The tree, counts and errors stay, so the frontiers (sizes, weights) are the same;
    only what each codeword looks like changes.
    """
    paths = codebook.sample_paths_  # (N, levels): each sample's chain of nodes.
    flat = x.reshape(len(x), -1)
    n_nodes = len(codebook.codewords_)
    if kind == "group_means":
        # Random groups of the same sizes within each class: the same nesting, applied
        # to a within-class permutation of the samples.
        rng = np.random.default_rng(seed)
        label = codebook.node_label_[codebook.sample_node_]
        source = np.arange(len(x))
        for value in np.unique(label):
            members = np.flatnonzero(label == value)
            source[members] = rng.permutation(members)
        sums = np.zeros((n_nodes, flat.shape[1]))
        for level in range(paths.shape[1]):
            valid = paths[:, level] >= 0
            np.add.at(sums, paths[valid, level], flat[source[valid]])
        codewords = sums / codebook.node_count_[:, None]
    elif kind == "medoids":
        best = np.full(n_nodes, np.inf)
        chosen = np.zeros(n_nodes, np.int64)
        centroids = codebook.codewords_.reshape(n_nodes, -1)
        for level in range(paths.shape[1]):
            rows = np.flatnonzero(paths[:, level] >= 0)
            nodes = paths[rows, level]
            distance = ((flat[rows] - centroids[nodes]) ** 2).sum(1)
            # The smallest distance per node: sort by distance, keep each node's first.
            order = np.lexsort((distance, nodes))
            first = np.r_[True, nodes[order][1:] != nodes[order][:-1]]
            nodes, rows, distance = nodes[order][first], rows[order][first], distance[order][first]
            better = distance < best[nodes]
            best[nodes[better]], chosen[nodes[better]] = distance[better], rows[better]
        codewords = flat[chosen]
    else:
        raise ValueError(kind)
    ablated = copy.copy(codebook)
    ablated.codewords_ = codewords.reshape(codebook.codewords_.shape).astype(np.float32)
    return ablated


# --- Learning rates.


class BudgetRate(keras.optimizers.schedules.LearningRateSchedule):
    """`rate`, warmed up linearly over `warmup` steps, decayed linearly to 0 at `steps`."""

    def __init__(self, rate, steps, warmup=0, decay=True):
        self.rate, self.steps, self.warmup, self.decay = rate, steps, warmup, decay

    def __call__(self, step):
        step = tf.cast(step, "float32")
        rate = self.rate * tf.minimum(1.0, (step + 1) / max(self.warmup, 1))
        if self.decay:
            rate *= tf.maximum(0.0, 1.0 - step / self.steps)
        return rate

    def get_config(self):
        return {"rate": self.rate, "steps": self.steps, "warmup": self.warmup, "decay": self.decay}


class PhasedRate(keras.optimizers.schedules.LearningRateSchedule):
    """`first` for the first `boundary` steps, then `second` counted from the boundary."""

    def __init__(self, first, boundary, second):
        self.first, self.boundary, self.second = first, boundary, second

    def __call__(self, step):
        step = tf.cast(step, "int64")
        return tf.where(
            step < self.boundary, self.first(step), self.second(tf.maximum(step - self.boundary, 0))
        )


class MosaicLARS(keras_agd.LARS):
    """`keras_agd.LARS` steps for the first `mosaic_steps` steps, plain SGD steps after.

    The momentum buffers carry over: AGD's mosaic phase takes the trust ratio, its
    regular phase the same steps as `agd`'s.
    """

    def __init__(self, mosaic_steps, **kwargs):
        super().__init__(**kwargs)
        self.mosaic_steps = mosaic_steps

    def update_step(self, gradient, variable, learning_rate):
        def trust():
            keras_agd.LARS.update_step(self, gradient, variable, learning_rate)

        def plain():
            keras.optimizers.SGD.update_step(self, gradient, variable, learning_rate)

        # `iterations` counts the steps before this one, as AGD's phase rate does.
        tf.cond(self.iterations < self.mosaic_steps, trust, plain)


# --- One run.


class Curve(keras.callbacks.Callback):
    """Test and validation accuracy every `every` examples, off the clock."""

    def __init__(self, data, every, batch_size_now):
        super().__init__()
        self.data, self.every, self.batch_size_now = data, every, batch_size_now
        self.points, self.examples, self.next_eval = [], 0, every
        self.eval_seconds = 0.0

    def on_train_begin(self, logs=None):
        self.predict = tf.function(lambda x: self.model(x, training=False), jit_compile=True)
        self.accuracy("test")  # Compiles the evaluation before the clock starts.
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.examples += self.batch_size_now()
        if self.examples >= self.next_eval:
            self.next_eval += self.every
            self.record()

    def on_train_end(self, logs=None):
        if not self.points or self.points[-1]["examples"] != self.examples:
            self.record()

    def record(self):
        seconds = time.perf_counter() - self.start - self.eval_seconds
        begin = time.perf_counter()
        self.points.append(
            {
                "seconds": seconds,
                "examples": self.examples,
                "steps": int(self.model.optimizer.iterations.numpy()),
                "test_accuracy": self.accuracy("test"),
                "validation_accuracy": self.accuracy("validation"),
            }
        )
        inner = getattr(self.model.optimizer, "inner_optimizer", None)
        if isinstance(inner, MosaicLARS):  # The trust ratios of the last mosaic step.
            self.points[-1]["trust_ratios"] = inner.layer_factors
        self.eval_seconds += time.perf_counter() - begin

    def accuracy(self, split):
        x, y = self.data[split]
        correct = 0
        for start in range(0, len(x), 5000):
            logits = self.predict(tf.constant(x[start : start + 5000]))
            correct += int((np.argmax(logits, -1) == y[start : start + 5000]).sum())
        return correct / len(x)


def mosaic_plan(args, n):
    """Steps per mosaic level and in all: `--mosaic-share` epochs of examples."""
    total = max(args.mosaic_levels, round(args.mosaic_share * n / args.mosaic_batch_size))
    per_level = -(-total // args.mosaic_levels)
    return per_level, per_level * args.mosaic_levels


def train(arm, rate, seed, args, data, codebooks, regular_rate):
    """One run; returns its curve. `regular_rate` is the tuned SGD rate (mosaic arms)."""
    (x, y), validation, test = data
    n, batch, big = len(x), args.batch_size, args.mosaic_batch_size
    keras.utils.set_random_seed(seed)
    model = build_model(args, x.shape[1:])
    per_level, mosaic_steps = mosaic_plan(args, n)
    regular_epochs = args.budget_epochs - (1 if arm in MOSAIC_ARMS else 0)
    regular_steps = regular_epochs * -(-n // batch)
    warmup = per_level  # The mosaic rate (and large_batch_sgd's) warms up over one level.
    curriculum = None
    if arm in CURRICULUM_ARMS:
        codebook = codebooks.get(arm, codebooks["agd"])
        mode = {"agd_weighted": "weighted", "random_subset": "random_subset"}.get(
            arm, "proportional"
        )
        # The ablations keep the tree, hence the same ε and frontier sizes per level.
        curriculum = keras_agd.Curriculum(
            x,
            y,
            codebook=codebook,
            schedule=keras_agd.schedules.from_codebook(codebooks["agd"], args.mosaic_levels),
            batch_size=batch,
            mosaic_batch_size=big,
            mode=mode,
            seed=seed,
            steps_per_level=per_level,
        )
        if curriculum.mosaic_steps != mosaic_steps:
            raise RuntimeError(f"{curriculum} has not the {mosaic_steps} mosaic steps planned.")
        rates = {
            "learning_rate": BudgetRate(regular_rate, regular_steps),
            "mosaic_learning_rate": BudgetRate(rate, mosaic_steps, warmup, decay=False),
        }
        if arm == "agd_trust":
            inner = MosaicLARS(mosaic_steps, momentum=0.9, trust_coefficient=args.trust_coefficient)
            optimizer = keras_agd.AGD(curriculum, optimizer=inner, **rates)
        else:
            optimizer = keras_agd.AGD(curriculum, momentum=0.9, **rates)
        epochs = 1

        def batch_size_now():
            step = int(model.optimizer.iterations.numpy())  # Already counts this batch.
            return big if step <= mosaic_steps else batch

    else:
        if arm == "large_batch_sgd":
            phases = [(big, args.budget_epochs * -(-n // big))]
            schedule = BudgetRate(rate, phases[0][1], warmup=phases[0][1] // 10)
        elif arm == "phased_sgd":
            phases = [(big, mosaic_steps), (batch, regular_steps)]
            schedule = PhasedRate(
                BudgetRate(rate, mosaic_steps, warmup, decay=False),
                mosaic_steps,
                BudgetRate(regular_rate, regular_steps),
            )
        else:
            phases = [(batch, regular_steps)]
            schedule = BudgetRate(rate, regular_steps)
        if arm == "adam":
            optimizer = keras.optimizers.Adam(schedule)
        else:
            optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
        pieces = []
        for size, steps in phases:
            piece = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=seed).repeat()
            pieces.append(piece.batch(size, drop_remainder=True).take(steps))
        train_data = pieces[0] if len(pieces) == 1 else pieces[0].concatenate(pieces[1])
        train_data, epochs = train_data.prefetch(tf.data.AUTOTUNE), 1
        boundary = phases[0][1]

        def batch_size_now():
            step = int(model.optimizer.iterations.numpy())  # Already counts this batch.
            return phases[0][0] if step <= boundary else phases[-1][0]

    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    if curriculum is not None:  # The stream follows the compiled optimizer's step.
        train_data = curriculum.dataset(model, steps_per_epoch=mosaic_steps + regular_steps)
    every = max(1, n // args.evals_per_epoch)
    curve = Curve({"test": test, "validation": validation}, every, batch_size_now)
    model.fit(train_data, epochs=epochs, callbacks=[curve], verbose=0, shuffle=False)
    return curve.points


# --- Summary.


def first(curve, target, measure):
    return next((p[measure] for p in curve if p["test_accuracy"] >= target), None)


def spread(values):
    """Median (None where half or more of the seeds never got a value) and range."""
    values = [np.inf if v is None else float(v) for v in values]
    middle = statistics.median(values)
    return {
        "median": None if middle == np.inf else middle,
        "min": min(values) if min(values) < np.inf else None,
        "max": max(values) if max(values) < np.inf else None,
        "reached": sum(v < np.inf for v in values),
    }


def summarize(runs, build_seconds, margin):
    sgd_final = statistics.median(curve[-1]["test_accuracy"] for curve in runs["sgd"])
    error = 1 - (sgd_final - margin)
    levels = {"early": 1 - 4 * error, "middle": 1 - 2 * error, "final": 1 - error}
    reference = {
        (level, measure): spread([first(c, target, measure) for c in runs["sgd"]])["median"]
        for level, target in levels.items()
        for measure in ("seconds", "steps")
    }
    rows = {}
    for arm, curves in runs.items():
        build = build_seconds if arm.split("@")[0] in USES_CODEBOOK else 0.0
        row = {
            "final_accuracy": spread([c[-1]["test_accuracy"] for c in curves]),
            "train_seconds": spread([c[-1]["seconds"] for c in curves]),
            "codebook_build_s": build,
        }
        for level, target in levels.items():
            seconds = [first(c, target, "seconds") for c in curves]
            total = [None if s is None else s + build for s in seconds]
            steps = [first(c, target, "steps") for c in curves]
            row[level] = {
                "seconds": spread(seconds),
                "total_seconds": spread(total),
                "steps": spread(steps),
                "examples": spread([first(c, target, "examples") for c in curves]),
                # Ratios per seed against SGD's median: the range says how sure it is.
                "total_ratio_to_sgd": spread(
                    [None if t is None else t / reference[level, "seconds"] for t in total]
                ),
                "steps_ratio_to_sgd": spread(
                    [None if s is None else s / reference[level, "steps"] for s in steps]
                ),
            }
        rows[arm] = row
    return {"levels": levels, "arms": rows}


def sweep(args, data, codebooks):
    """Each arm's rate by the best final validation accuracy (seed 1000, one run each)."""
    grid_size = 2 if args.quick else None
    grids = {**GRIDS, **args.grid}
    chosen, scores = {}, {}

    def best(arm, grid, regular_rate=None):
        grid = grid[1 : 1 + grid_size] if grid_size else grid
        accuracy = {}
        for rate in grid:
            curve = train(arm, rate, 1000, args, data, codebooks, regular_rate)
            accuracy[rate] = curve[-1]["validation_accuracy"]
            print(f"sweep {arm:>16} rate {rate:<7g} validation {accuracy[rate]:.4f}", flush=True)
        scores[arm] = accuracy
        return max(grid, key=lambda r: (accuracy[r], -r))  # Ties: the smaller rate.

    chosen["sgd"] = best("sgd", grids["sgd"])
    for arm in args.arms:
        if arm != "sgd" and arm not in args.rate_grid:
            grid = grids["mosaic"] if arm in MOSAIC_ARMS else grids[arm]
            chosen[arm] = best(arm, grid, chosen["sgd"])
    return chosen, scores


def _cell(cell, digits=2):
    if cell["median"] is None:
        return f"not reached ({cell['reached']} seeds did)"
    low, high = (
        f"{v:.{digits}f}" if v is not None else "never" for v in (cell["min"], cell["max"])
    )
    return f"{cell['median']:.{digits}f} ({low} to {high})"


def table(result):
    """The summary as a Markdown table: medians over seeds, their range in brackets."""
    summary, seeds = result["summary"], result["settings"]["seeds"]
    levels = summary["levels"]
    lines = [
        f"{result['regime']}: {seeds} seeds; target {levels['final']:.4f} (middle "
        f"{levels['middle']:.4f}); codebook build {result['codebook_build_s']:.1f} s",
        "",
        "| arm | rate | final accuracy | steps to target / SGD | time to target / SGD "
        "(with codebook) | time to middle level / SGD |",
        "|---|---|---|---|---|---|",
    ]
    for arm, row in summary["arms"].items():
        cells = (
            _cell(row["final_accuracy"], 4),
            _cell(row["final"]["steps_ratio_to_sgd"]),
            _cell(row["final"]["total_ratio_to_sgd"]),
            _cell(row["middle"]["total_ratio_to_sgd"]),
        )
        lines.append(f"| {arm} | {result['rates'][arm]:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(result):
    """A readable title for a study's regime: data, model, budget, seeds."""
    settings = result["settings"]
    if settings["model"] == "lenet":
        model = "LeNet-5"
    else:
        model = f"MLP {'-'.join(map(str, settings['hidden']))}"
    data = "MNIST"
    if settings.get("label_noise"):
        data = f"MNIST, {settings['label_noise']:.0%} of labels flipped"
    if settings.get("train_samples"):
        data += f", {settings['train_samples']:,} training images"
    seeds = settings["seeds"]
    return f"{data}, {model}, {settings['budget_epochs']}-epoch budget (median of {seeds} seeds)"


# In this study `agd` is proportional mode and `agd_weighted` the library's default mode:
# drawn as the other benchmarks draw those modes.
STYLE_OF = {"agd": "agd_proportional", "agd_weighted": "agd"}
RATE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot(result, path):
    """Test error against training time and against optimizer steps, every arm.

    Like the paper's Figure 2: the median of the seeds at each evaluation, one colour,
    marker and line style per arm, and the target (SGD's median final accuracy minus the
    margin) as a black dotted line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from _plots import percent_log_axis, plain_log_axis, style

    levels, settings = result["summary"]["levels"], result["settings"]
    target = 1 - levels["final"]
    top = 25  # Percent: the upper end of the error axis.
    figure, axes = plt.subplots(1, 2, figsize=(12, 5.6))
    first_steps = []  # Of each arm, the first evaluation below `top`.
    seen = {}  # Rates drawn so far of each arm of `--rate-grid`.
    for arm, curves in result["runs"].items():
        points = min(len(c) for c in curves)
        base, _, rate = arm.partition("@")
        look = style(STYLE_OF.get(base, base))
        if rate:  # One arm at several rates (`--rate-grid`): one marker per rate.
            seen.setdefault(base, []).append(rate)
            marker = RATE_MARKERS[(len(seen[base]) - 1) % len(RATE_MARKERS)]
            look.update(label=f"{base} at {rate}", marker=marker)  # Short: many lines.
        error = [
            100 * statistics.median(1 - c[i]["test_accuracy"] for c in curves)
            for i in range(points)
        ]
        for axis, measure in zip(axes, ("seconds", "steps"), strict=True):
            x = [statistics.median(c[i][measure] for c in curves) for i in range(points)]
            axis.plot(x, error, **look)
        first_steps += [x for x, e in zip(x, error, strict=True) if e <= top][:1]
    margin = 100 * settings.get("margin", 0.0)
    target_label = (
        f"target: {levels['final']:.2%} test accuracy (SGD's median final, less {margin:g} points)"
    )
    build = result["codebook_build_s"]
    xlabels = (
        f"training time (s), without the codebook build ({build:.1f} s)",
        "optimizer steps",
    )
    titles = ("Against training time", "Against optimizer steps")
    for axis, xlabel, title in zip(axes, xlabels, titles, strict=True):
        axis.axhline(100 * target, color="black", linestyle=":", linewidth=1.2)
        percent_log_axis(axis, 100 * target / 1.4, top)
        axis.set(xlabel=xlabel, ylabel="test error", title=title)
        axis.grid(alpha=0.3)
    axes[0].set_xlim(left=0)
    plain_log_axis(axes[1])
    if first_steps:
        axes[1].set_xlim(left=min(first_steps) / 1.3)
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="black", linestyle=":", linewidth=1.2))
    labels.append(target_label)
    figure.suptitle(describe(result), fontsize=13)
    figure.legend(
        handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.01), ncol=4, fontsize=9
    )
    rows = -(-len(labels) // 4)  # Of the legend: more room below for a fourth row.
    figure.tight_layout(rect=(0, max(0.13, 0.035 * rows + 0.025), 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return figure


def main(argv=None):
    args = parse_args(argv)
    if args.plot_only:
        for path in args.plot_only:
            plot(json.loads(path.read_text()), path.with_suffix(".png"))
            print(f"wrote {path.with_suffix('.png')}")
        return None
    if args.report:
        for path in args.report:
            result = json.loads(path.read_text())
            print(table(result) + "\n")
            if args.plot:
                plot(result, path.with_suffix(".png"))
        return None
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_data(args)
    (x, y), _, _ = data
    start = time.perf_counter()
    codebook = keras_agd.HierarchicalCodebook(branching=5, random_state=0).fit(x, y)
    build_seconds = time.perf_counter() - start
    codebooks = {"agd": codebook}
    if "group_means" in args.arms:
        codebooks["group_means"] = ablation_codebook(codebook, x, "group_means")
    if "medoids" in args.arms:
        codebooks["medoids"] = ablation_codebook(codebook, x, "medoids")
    if args.rates:
        rates, sweep_scores = args.rates, None
    else:
        rates, sweep_scores = sweep(args, data, codebooks)
    print(f"rates: {rates}", flush=True)
    arms = []  # (key, arm, rate): `arm@rate` for each rate of `--rate-grid`.
    for arm in dict.fromkeys(["sgd", *args.arms]):
        if arm in args.rate_grid:
            arms += [(f"{arm}@{rate:g}", arm, rate) for rate in args.rate_grid[arm]]
        else:
            arms.append((arm, arm, rates[arm]))
    rates = {key: rate for key, _, rate in arms}
    runs = {key: [] for key, _, _ in arms}
    for seed in range(args.seeds):  # Interleaved: load changes hit every arm alike.
        for key, arm, rate in arms:
            curve = train(arm, rate, seed, args, data, codebooks, rates["sgd"])
            runs[key].append(curve)
            print(
                f"seed {seed} {key:>16}: {curve[-1]['seconds']:6.1f} s, "
                f"{curve[-1]['steps']:5d} steps, test {curve[-1]['test_accuracy']:.4f}",
                flush=True,
            )
    regime = args.name or (
        f"{args.model}_noise{args.label_noise:g}_budget{args.budget_epochs}"
        + ("_quick" if args.quick else "")
    )
    per_level, mosaic_steps = mosaic_plan(args, len(x))
    result = {
        "benchmark": "mosaic_study",
        "regime": regime,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "steps_per_level": per_level,
        "mosaic_steps": mosaic_steps,
        "codebook_build_s": build_seconds,
        "rates": rates,
        "sweep_validation_accuracy": sweep_scores,
        "summary": summarize(runs, build_seconds, args.margin),
        "runs": runs,
    }
    (args.out / f"{regime}.json").write_text(json.dumps(result, indent=2, default=float))
    if args.plot:
        plot(result, args.out / f"{regime}.png")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2, default=float))
    print(table(result))
    return result


if __name__ == "__main__":
    main()
