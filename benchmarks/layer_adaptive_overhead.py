"""Step time of `LayerAdaptive(optimizer)` relative to the plain optimizer (XLA on).

For each model and optimizer, both variants are compiled side by side in one process
and warmed up (compilation and the first blocks are not timed). Then repeats time one
block of each, in a shuffled order, and each repeat yields one ratio wrapped / plain,
so that drifts in machine load cancel. The JSON gives the median step times, the
median ratio with a distribution-free 95% confidence interval, and a verdict against
the target (median overhead at most 3%, upper end of the interval under 5%); it says
"inconclusive" when the interval is too wide to tell. A second plain copy of each step
is timed too (an A/A control): its ratio to the first shows how far two identical
compiled steps differ on the machine, the floor under any overhead figure. A third
control wraps the optimizer in the wrappers' common base class and nothing else (a null
wrapper, whose compiled step is the plain one): its ratio to plain is what the wrapper
object alone costs, and the wrapped / null-wrapper ratio what eq. (9)'s own work costs.

    python benchmarks/layer_adaptive_overhead.py [--repeats 31] [--plot overhead.png]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import machine  # noqa: E402
from scipy import stats  # noqa: E402

from keras_agd import LayerAdaptive  # noqa: E402
from keras_agd._wrapper import WrapperOptimizer  # noqa: E402

TARGET_MEDIAN = 0.03  # median overhead at most 3% ...
TARGET_UPPER = 0.05  # ... with the upper end of its 95% interval under 5%

MODELS = {
    # name: (input shape, batch size, builder)
    "mlp": (
        (784,),
        128,
        lambda: [
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(10),
        ],
    ),
    "cnn": (
        (28, 28, 1),
        64,
        lambda: [
            keras.layers.Conv2D(20, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(50, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(500, activation="relu"),
            keras.layers.Dense(10),
        ],
    ),
    # Many small layers: where a per-layer cost shows most.
    "deep": (
        (784,),
        128,
        lambda: (
            [keras.layers.Dense(64, activation="relu") for _ in range(50)]
            + [keras.layers.Dense(10)]
        ),
    ),
}

OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.01),
    "nesterov": lambda: keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
    "adagrad": lambda: keras.optimizers.Adagrad(0.01),
    "adam": lambda: keras.optimizers.Adam(0.001),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument(
        "--optimizers", nargs="+", choices=list(OPTIMIZERS), default=["nesterov", "adam"]
    )
    parser.add_argument("--repeats", type=int, default=31, help="timed pairs of blocks")
    parser.add_argument(
        "--block-seconds", type=float, default=0.5, help="about how long one timed block runs"
    )
    parser.add_argument("--warmup-blocks", type=int, default=3)
    parser.add_argument(
        "--instances", type=int, default=4, help="compiled copies of each variant, used in turn"
    )
    parser.add_argument("--steps-per-execution", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, default=0, help="TensorFlow intra-op threads (0: its default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="write a box plot of the ratios to this path")
    return parser.parse_args()


VARIANTS = {
    "plain": lambda optimizer: optimizer,
    "wrapped": LayerAdaptive,
    # Forwards every call to the optimizer it wraps: the same compiled step as plain.
    "null_wrapper": WrapperOptimizer,
    "plain_copy": lambda optimizer: optimizer,
}


def compiled_train_function(model_name, optimizer_name, variant, args, make_optimizer=None):
    """Returns `run(calls)`: seconds for `calls` executions of the compiled step.

    The optimizer is `VARIANTS[variant]` around `OPTIMIZERS[optimizer_name]`, or what
    `make_optimizer()` returns when given.
    """
    input_shape, batch_size, layers = MODELS[model_name]
    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential([keras.Input(input_shape), *layers()])
    if make_optimizer is None:
        optimizer = VARIANTS[variant](OPTIMIZERS[optimizer_name]())
    else:
        optimizer = make_optimizer()
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
        steps_per_execution=args.steps_per_execution,
    )
    rng = np.random.default_rng(args.seed)
    x = rng.random((16 * batch_size, *input_shape), dtype=np.float32)
    y = rng.integers(0, 10, size=16 * batch_size)
    iterator = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache().repeat())
    model.make_train_function()
    train_function = model.train_function

    def run(calls):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            logs = train_function(iterator)
        float(logs["loss"])  # wait for the last step
        return time.perf_counter() - start, time.process_time() - start_cpu

    run(1)  # compile
    return run


def median_interval(values, confidence=0.95):
    """Distribution-free interval for the median: order statistics of a binomial."""
    values = np.sort(values)
    n = len(values)
    low = int(stats.binom.ppf((1 - confidence) / 2, n, 0.5))
    high = n - 1 - low
    if low < 1:  # too few repeats for this confidence: the full range
        return float(values[0]), float(values[-1])
    return float(values[low - 1]), float(values[high])


def verdict(median, low, high):
    if median <= 1 + TARGET_MEDIAN and high < 1 + TARGET_UPPER:
        return "within target"
    if low > 1 + TARGET_MEDIAN:
        return "over target"
    return "inconclusive: the interval is wider than the target"


def timed_blocks(runners, args, rng):
    """Seconds per step (wall, CPU) of each variant's compiled copies, in paired blocks.

    `runners` maps each variant to its compiled copies (`run(calls)`, "plain" among
    them). Each copy is warmed up (the first calls run slower); blocks are sized from a
    timing of the warm plain step to last about --block-seconds; then each repeat runs
    one block of every variant, in a shuffled order, repeat r on copy r mod k.

    Returns:
        `(times, steps)`: `times[variant]` is a list of `[wall, cpu]` seconds per step,
        one per repeat; `steps` the steps in a block.
    """
    for _ in range(args.warmup_blocks):
        for copies in runners.values():
            for runner in copies:
                runner(5)
    seconds_per_call = runners["plain"][0](5)[0] / 5
    calls = max(1, round(args.block_seconds / seconds_per_call))
    steps = calls * args.steps_per_execution
    times = {name: [] for name in runners}
    for repeat in range(args.repeats):
        for name in rng.permutation(list(runners)):
            runner = runners[name][repeat % len(runners[name])]
            times[name].append(np.array(runner(calls)) / steps)
    return times, steps


def measure(model_name, optimizer_name, args, rng):
    # Each variant is compiled --instances times; repeat r times instance r mod k of
    # each. Two compiled copies of one step can differ by several percent (buffer
    # placement), which interleaving cannot remove but spreading over copies averages.
    # "plain_copy" is an A/A control: its ratio to "plain" shows how far identical
    # compiled steps differ on this machine.
    # Copies are compiled in turns (plain, wrapped, null_wrapper, plain_copy, plain, ...)
    # so that no variant is always the first or last to take memory.
    runners = {name: [] for name in VARIANTS}
    for _ in range(args.instances):
        for name in VARIANTS:
            runners[name].append(compiled_train_function(model_name, optimizer_name, name, args))
    times, steps = timed_blocks(runners, args, rng)
    # In the order of VARIANTS.
    (plain, plain_cpu), (wrapped, wrapped_cpu), (null, _), (copy, _) = (
        np.array(times[name]).T for name in VARIANTS
    )
    ratios, cpu_ratios, control = wrapped / plain, wrapped_cpu / plain_cpu, copy / plain
    median = float(np.median(ratios))
    low, high = median_interval(ratios)
    return {
        "model": model_name,
        "optimizer": optimizer_name,
        "steps_per_block": steps,
        "plain_ms_per_step": 1e3 * float(np.median(plain)),
        "wrapped_ms_per_step": 1e3 * float(np.median(wrapped)),
        "ratio_median": median,
        "ratio_ci95": [low, high],
        "overhead_percent": 100 * (median - 1),
        "verdict": verdict(median, low, high),
        "ratios": [float(r) for r in ratios],
        # Process CPU time (all threads): less sensitive to other jobs than wall time.
        "cpu_ratio_median": float(np.median(cpu_ratios)),
        "cpu_ratio_ci95": list(median_interval(cpu_ratios)),
        "control_ratio_median": float(np.median(control)),
        "control_ratio_ci95": list(median_interval(control)),
        # False: two identical steps already differ by more than the target here.
        "control_within_target": bool(
            1 - TARGET_MEDIAN <= min(median_interval(control))
            and max(median_interval(control)) <= 1 + TARGET_MEDIAN
        ),
        "null_wrapper_ratio_median": float(np.median(null / plain)),
        "null_wrapper_ratio_ci95": list(median_interval(null / plain)),
        "null_wrapper_ratios": [float(r) for r in null / plain],
        # Paired in each repeat: the cost of eq. (9)'s work over the wrapper object's.
        "wrapped_to_null_ratio_median": float(np.median(wrapped / null)),
        "wrapped_to_null_ratio_ci95": list(median_interval(wrapped / null)),
    }


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3 + 1.2 * len(results), 4))
    labels = [f"{r['model']}\n{r['optimizer']}" for r in results]
    positions = np.arange(len(results))
    wrapped = ax.boxplot(
        [r["ratios"] for r in results],
        positions=positions - 0.18,
        widths=0.3,
        patch_artist=True,
    )
    null = ax.boxplot(
        [r["null_wrapper_ratios"] for r in results],
        positions=positions + 0.18,
        widths=0.3,
        patch_artist=True,
    )
    for box in wrapped["boxes"]:
        box.set_facecolor("tab:blue")
    for box in null["boxes"]:
        box.set_facecolor("lightgray")
    ax.set_xticks(positions, labels)
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.axhline(1 + TARGET_MEDIAN, color="orange", linestyle="--", label="median target (+3%)")
    ax.axhline(1 + TARGET_UPPER, color="red", linestyle=":", label="interval bound (+5%)")
    ax.set_ylabel("step time / plain optimizer")
    ax.legend(
        [wrapped["boxes"][0], null["boxes"][0], *ax.get_lines()[-2:]],
        [
            "LayerAdaptive",
            "null wrapper (same compiled step)",
            "median target (+3%)",
            "interval bound (+5%)",
        ],
        fontsize="small",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    args = parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()
    results = [
        measure(model, optimizer, args, rng)
        for model in args.models
        for optimizer in args.optimizers
    ]
    report = {
        "benchmark": "layer_adaptive_overhead",
        "config": {**vars(args), "xla": True},
        "environment": {**machine(), "keras": keras.__version__},
        # A busy machine widens the intervals; the load average says how busy it was.
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "target": {
            "median_overhead_percent": 100 * TARGET_MEDIAN,
            "ci95_upper_percent": 100 * TARGET_UPPER,
        },
        "results": results,
    }
    if args.plot:
        plot(results, args.plot)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
