"""Step time of `LayerAdaptive(optimizer)` relative to the plain optimizer (XLA on).

Both variants of each model (an MLP and a small CNN) are compiled side by side in one
process; repeats interleave them in a shuffled order and each repeat yields one ratio
wrapped / plain, so that drifts in machine load cancel. Prints JSON with the median
step times and the median ratio; the target is an overhead of at most 5%.

    python benchmarks/layer_adaptive_overhead.py [--repeats 21] [--plot overhead.png]
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_agd import LayerAdaptive  # noqa: E402

TARGET_OVERHEAD = 0.05

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
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), default="nesterov")
    parser.add_argument("--repeats", type=int, default=21, help="interleaved timing blocks")
    parser.add_argument("--steps", type=int, default=40, help="training steps per block")
    parser.add_argument("--steps-per-execution", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="write a box plot of the ratios to this path")
    args = parser.parse_args()
    if args.steps % args.steps_per_execution:
        parser.error("--steps must be a multiple of --steps-per-execution")
    return args


def compiled_train_function(model_name, wrapped, args):
    input_shape, batch_size, layers = MODELS[model_name]
    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential([keras.Input(input_shape), *layers()])
    optimizer = OPTIMIZERS[args.optimizer]()
    model.compile(
        optimizer=LayerAdaptive(optimizer) if wrapped else optimizer,
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

    def run_block(calls):
        start = time.perf_counter()
        for _ in range(calls):
            logs = train_function(iterator)
        float(logs["loss"])  # wait for the last step
        return time.perf_counter() - start

    run_block(2)  # compile and warm up
    return run_block


def measure(model_name, args, rng):
    runners = {
        "plain": compiled_train_function(model_name, False, args),
        "wrapped": compiled_train_function(model_name, True, args),
    }
    calls = args.steps // args.steps_per_execution
    times = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name in rng.permutation(list(runners)):
            times[name].append(runners[name](calls) / args.steps)
    plain, wrapped = np.array(times["plain"]), np.array(times["wrapped"])
    ratios = wrapped / plain
    return {
        "model": model_name,
        "plain_ms_per_step": 1e3 * float(np.median(plain)),
        "wrapped_ms_per_step": 1e3 * float(np.median(wrapped)),
        "ratio_median": float(np.median(ratios)),
        "ratio_quartiles": [float(q) for q in np.percentile(ratios, [25, 75])],
        "overhead_percent": 100 * (float(np.median(ratios)) - 1),
        "within_target": bool(np.median(ratios) <= 1 + TARGET_OVERHEAD),
        "ratios": [float(r) for r in ratios],
    }


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4 + len(results), 4))
    ax.boxplot([r["ratios"] for r in results], tick_labels=[r["model"] for r in results])
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.axhline(1 + TARGET_OVERHEAD, color="red", linestyle="--", label="target (+5%)")
    ax.set_ylabel("step time, LayerAdaptive / plain")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    results = [measure(name, args, rng) for name in args.models]
    report = {
        "benchmark": "layer_adaptive_overhead",
        "config": {**vars(args), "xla": True},
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "target_overhead_percent": 100 * TARGET_OVERHEAD,
        "results": results,
    }
    if args.plot:
        plot(results, args.plot)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
