"""Fine-tuning with per-layer rates: uniform, frozen backbone, layer-wise decay, multipliers.

A small CNN (conv-conv-dense and a 5-way head) is pretrained once, with seed 0, on the
MNIST training images of digits 0-4. It is then fine-tuned on a small pool (`--pool-size`,
300 by default) of training images of digits 5-9, with a new 5-way head, in four arms
that share the optimizer (Adam), the number of steps and the batches, and differ only in
the per-variable rates (`keras_agd.PerLayerRates`):

- `uniform`: the same rate for every variable (plain Adam).
- `frozen`: only the head trains: `Multipliers({"head": 1.0}, default=0.0)` (a factor of
  0 freezes the backbone; the compute is the same as for the other arms).
- `layerwise_decay`: `LayerwiseDecay(d)`: the head at the rate, each layer below at `d`
  times the rate of the one above.
- `multipliers`: discriminative rates, `Multipliers({"head": 1.0}, default=0.1)`.

Every arm is tuned the same way, over the same number of configurations (9): the three
arms with one setting over 9 learning rates, layer-wise decay over 3
learning rates times 3 decays. A configuration is scored by the mean validation accuracy
over `--tuning-seeds` runs; the validation images are training images of digits 5-9 held
out of every pool (never the test set). The chosen configuration of each arm is then run
with `--seeds` evaluation seeds (each a new pool, head initialization and batch order,
shared by the arms), and its accuracy on the MNIST test images of digits 5-9 is reported:
median and range per arm.

The goal, stated before the run: layer-wise decay is at least as accurate as the better of
the uniform rate and the frozen backbone (median test accuracy over the seeds). The
verdict is reported either way.

    python benchmarks/fine_tuning.py [--quick] [--seeds 9] [--plot fine_tuning.png]
    python benchmarks/fine_tuning.py --replot fine_tuning.json --plot fine_tuning.png
"""

import argparse
import itertools
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

ARMS = ("uniform", "frozen", "layerwise_decay", "multipliers")
LABELS = {
    "uniform": "uniform rate",
    "frozen": "frozen backbone",
    "layerwise_decay": "layer-wise decay",
    "multipliers": "multipliers (backbone 0.1)",
}
# One learning-rate grid for the arms with one setting (Adam; 1, 2, 5 per decade from 1e-4
# to 5e-2); layer-wise decay gets 3 of its rates times 3 decays: the same count.
RATES = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2)
DECAY_RATES = (1e-3, 5e-3, 2e-2)
DECAYS = (0.1, 0.3, 0.6)
BACKBONE_MULTIPLIER = 0.1
PRETRAIN_SEED = 0
# Tuning seeds are kept apart from the evaluation seeds 0, 1, 2, ...
TUNING_SEED_BASE = 1000


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=default_mnist_path(), help="path to mnist.npz")
    parser.add_argument("--seeds", type=int, default=None, help="evaluation seeds (default 9)")
    parser.add_argument("--tuning-seeds", type=int, default=None, help="default 2")
    parser.add_argument("--pool-size", type=int, default=300, help="fine-tuning images")
    parser.add_argument("--validation-size", type=int, default=None, help="default 2000")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="default 2")
    parser.add_argument("--pretrain-size", type=int, default=None, help="default: all 0-4")
    parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps (300)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--test-size", type=int, default=None, help="default: all 5-9")
    parser.add_argument("--plot", default="fine_tuning.png", help="'' for none")
    parser.add_argument("--replot", metavar="JSON", help="only redraw the plot from a report")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: tiny data, 2 seeds, 1 configuration per arm",
    )
    args = parser.parse_args()
    quick = {
        "seeds": 2,
        "tuning_seeds": 1,
        "validation_size": 200,
        "pretrain_epochs": 1,
        "pretrain_size": 2000,
        "steps": 10,
        "test_size": 500,
    }
    full = {
        "seeds": 9,
        "tuning_seeds": 2,
        "validation_size": 2000,
        "pretrain_epochs": 2,
        "pretrain_size": 0,
        "steps": 300,
        "test_size": 0,
    }
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.pool_size = min(args.pool_size, 100)
    return args


def grid(arm, quick):
    """The configurations of `arm`: dicts of `learning_rate` (and `decay`)."""
    if arm == "layerwise_decay":
        rates, decays = (DECAY_RATES[1:2], DECAYS[1:2]) if quick else (DECAY_RATES, DECAYS)
        return [{"learning_rate": r, "decay": d} for r, d in itertools.product(rates, decays)]
    rates = RATES[5:6] if quick else RATES
    return [{"learning_rate": r} for r in rates]


def backbone():
    return [
        keras.layers.Conv2D(16, 3, activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu", name="dense"),
    ]


def cnn(name):
    """conv1 - conv2 - dense - head (5 classes), as `keras.Sequential` named `name`."""
    layers = [keras.Input((28, 28, 1)), *backbone(), keras.layers.Dense(5, name="head")]
    return keras.Sequential(layers, name=name)


def optimizer(arm, config):
    adam = keras.optimizers.Adam(config["learning_rate"])
    if arm == "uniform":
        return adam
    if arm == "frozen":
        rules = keras_agd.Multipliers({"head": 1.0}, default=0.0)
    elif arm == "layerwise_decay":
        rules = keras_agd.LayerwiseDecay(config["decay"])
    else:
        rules = keras_agd.Multipliers({"head": 1.0}, default=BACKBONE_MULTIPLIER)
    return keras_agd.PerLayerRates(adam, rules=[rules])


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
# Without XLA: each run compiles its own step, which XLA makes slower than the run itself.
JIT = False
STEPS_PER_EXECUTION = 10


def load(args):
    (x_train, y_train), (x_test, y_test) = load_mnist(args.mnist)
    x_train = x_train[..., None].astype(np.float32) / 255
    x_test = x_test[..., None].astype(np.float32) / 255
    old, new = y_train < 5, y_train >= 5
    x_old, y_old = x_train[old], y_train[old].astype(np.int32)
    if args.pretrain_size:
        x_old, y_old = x_old[: args.pretrain_size], y_old[: args.pretrain_size]
    x_new, y_new = x_train[new], (y_train[new] - 5).astype(np.int32)
    # The validation images: a fixed part of the 5-9 training images, never in a pool.
    order = np.random.default_rng(12345).permutation(len(x_new))
    validation, candidates = order[: args.validation_size], order[args.validation_size :]
    test = y_test >= 5
    x_test, y_test = x_test[test], (y_test[test] - 5).astype(np.int32)
    if args.test_size:
        x_test, y_test = x_test[: args.test_size], y_test[: args.test_size]
    return {
        "pretrain": (x_old, y_old),
        "candidates": (x_new[candidates], y_new[candidates]),
        "validation": (x_new[validation], y_new[validation]),
        "test": (x_test, y_test),
    }


def pretrain(data, args):
    """The backbone's weights after `--pretrain-epochs` on digits 0-4 (seed 0)."""
    keras.utils.set_random_seed(PRETRAIN_SEED)
    model = cnn("pretrain")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=LOSS, metrics=["accuracy"], jit_compile=JIT
    )
    x, y = data["pretrain"]
    model.fit(x, y, batch_size=128, epochs=args.pretrain_epochs, verbose=0)
    weights = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    return weights, len(x)


def pool(data, seed, size):
    """`size` fine-tuning images of digits 5-9, drawn for `seed`, 5-way labels."""
    x, y = data["candidates"]
    index = np.random.default_rng(seed).choice(len(x), size, replace=False)
    return x[index], y[index]


def fine_tune(arm, config, seed, weights, data, args, evaluate_on):
    """Accuracy on `evaluate_on` ("validation" or "test") after fine-tuning with `seed`."""
    keras.utils.set_random_seed(seed)
    model = cnn("finetune")
    for layer in model.layers:
        if layer.name in weights and layer.name != "head":
            layer.set_weights(weights[layer.name])
    model.compile(
        optimizer=optimizer(arm, config),
        loss=LOSS,
        metrics=["accuracy"],
        jit_compile=JIT,
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    x, y = pool(data, seed, args.pool_size)
    # A constant rate for `--steps` steps: passes over the pool, each in a new order (the
    # last batch of a pass filled from the next), in one call of `fit`.
    rng = np.random.default_rng(seed)
    passes = -(-args.steps * args.batch_size // len(x))
    order = np.concatenate([rng.permutation(len(x)) for _ in range(passes)])
    order = order[: args.steps * args.batch_size]
    model.fit(x[order], y[order], batch_size=args.batch_size, shuffle=False, verbose=0)
    x_eval, y_eval = data[evaluate_on]
    return float(model.evaluate(x_eval, y_eval, batch_size=1000, verbose=0)[1]), model


def summary(values):
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13.5, 4.4), width_ratios=(1, 1.15))
    for i, arm in enumerate(ARMS):
        result = report["results"][arm]
        values = 100 * np.array(result["test_accuracy"])
        jitter = np.linspace(-0.12, 0.12, len(values))
        left.plot(i + jitter, values, "o", color=f"C{i}", alpha=0.6)
        left.plot([i - 0.25, i + 0.25], [100 * result["summary"]["median"]] * 2, "k-", lw=2)
    left.set_xticks(range(len(ARMS)), [LABELS[a].replace(" ", "\n", 1) for a in ARMS])
    left.set_ylabel("test accuracy, digits 5-9 (%)")
    left.set_title(f"Chosen settings, {report['config']['seeds']} seeds (bar: median)")
    left.grid(alpha=0.3, axis="y")
    for i, arm in enumerate(ARMS):
        tuning = report["tuning"][arm]
        decays = [t.get("decay") for t in tuning]
        for j, decay in enumerate(dict.fromkeys(decays)):
            points = [t for t, d in zip(tuning, decays, strict=True) if d == decay]
            label = LABELS[arm] if decay is None else f"{LABELS[arm]}, d = {decay:g}"
            right.plot(
                [t["learning_rate"] for t in points],
                [100 * t["validation_accuracy"] for t in points],
                ["o-", "s--", "^:", "v-."][j % 4],
                color=f"C{i}",
                label=label,
            )
    rates = sorted({t["learning_rate"] for a in ARMS for t in report["tuning"][a]})
    right.set_xscale("log")
    right.set_xticks(rates, [f"{rate:g}" for rate in rates], rotation=45)
    right.minorticks_off()
    right.set_xlabel("learning rate (Adam; the head's rate)")
    right.set_ylabel("validation accuracy (%)")
    right.set_title("Tuning: mean validation accuracy of each configuration")
    # Zoomed on the best configurations; worse ones leave the axes at the bottom.
    best = [max(t["validation_accuracy"] for t in report["tuning"][a]) for a in ARMS]
    right.set_ylim(100 * min(best) - 5, min(100, 100 * max(best) + 1.5))
    right.grid(alpha=0.3)
    right.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    args = parse_args()
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()), args.plot)
        return
    tf.get_logger().setLevel("ERROR")  # Each run traces its own step: no retracing notices.
    start = time.perf_counter()
    data = load(args)
    weights, pretrain_images = pretrain(data, args)
    pretrain_seconds = time.perf_counter() - start
    tuning_seeds = [TUNING_SEED_BASE + i for i in range(args.tuning_seeds)]
    tuning, chosen = {}, {}
    for arm in ARMS:
        tuning[arm] = []
        for config in grid(arm, args.quick):
            scores = [
                fine_tune(arm, config, seed, weights, data, args, "validation")[0]
                for seed in tuning_seeds
            ]
            tuning[arm].append({**config, "validation_accuracy": float(np.mean(scores))})
            print(f"tune {arm} {config}: {np.mean(scores):.4f}", file=sys.stderr)
        # The first of equal scores: the smaller rate (the grids are in increasing order).
        best = max(tuning[arm], key=lambda t: t["validation_accuracy"])
        chosen[arm] = {k: v for k, v in best.items() if k != "validation_accuracy"}
    results, factors = {}, {}
    for arm in ARMS:
        accuracies = []
        for seed in range(args.seeds):
            accuracy, model = fine_tune(arm, chosen[arm], seed, weights, data, args, "test")
            accuracies.append(accuracy)
            print(f"{arm} seed {seed}: test accuracy {accuracy:.4f}", file=sys.stderr)
        if arm != "uniform":
            factors[arm] = model.optimizer.layer_factors
        results[arm] = {
            "chosen": chosen[arm],
            "test_accuracy": accuracies,
            "summary": summary(accuracies),
        }
    medians = {arm: results[arm]["summary"]["median"] for arm in ARMS}
    best_baseline = max(("uniform", "frozen"), key=lambda arm: medians[arm])
    met = medians["layerwise_decay"] >= medians[best_baseline]
    report = {
        "benchmark": "fine_tuning",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "goal": (
            "layer-wise decay is at least as accurate as the better of the uniform rate and "
            "the frozen backbone: median test accuracy over the seeds"
        ),
        "verdict": {
            "met": bool(met),
            "layerwise_decay_median": medians["layerwise_decay"],
            "best_baseline": best_baseline,
            "best_baseline_median": medians[best_baseline],
            "difference_points": round(
                100 * (medians["layerwise_decay"] - medians[best_baseline]), 3
            ),
        },
        "config": {k: v for k, v in vars(args).items() if k != "mnist"},
        "setup": {
            "model": "conv1 16@3x3 - pool - conv2 32@3x3 - pool - dense 64 - head 5",
            "optimizer": "Adam, constant rate",
            "pretrain": f"once (seed {PRETRAIN_SEED}), Adam 1e-3, batch 128, digits 0-4",
            "pretrain_images": pretrain_images,
            "pretrain_seconds": round(pretrain_seconds, 1),
            "frozen": "PerLayerRates(Adam, Multipliers({'head': 1.0}, default=0.0))",
            "multipliers": (
                f"PerLayerRates(Adam, Multipliers({{'head': 1.0}}, default={BACKBONE_MULTIPLIER}))"
            ),
            "layerwise_decay": "PerLayerRates(Adam, LayerwiseDecay(decay))",
            "grid_size": {arm: len(grid(arm, args.quick)) for arm in ARMS},
            "tuning_seeds": tuning_seeds,
            "evaluation_seeds": list(range(args.seeds)),
            "validation_images": len(data["validation"][0]),
            "test_images": len(data["test"][0]),
            "fine_tuning_passes_over_pool": args.steps * args.batch_size / args.pool_size,
        },
        "tuning": tuning,
        "results": results,
        "layer_factors_last_seed": factors,
        "machine": machine(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.plot:
        plot(report, args.plot)
    print_json(report)


if __name__ == "__main__":
    main()
