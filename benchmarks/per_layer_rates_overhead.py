"""Step time of the per-layer rules, and of `keras.optimizers.Lamb`, beside the plain optimizer.

The method of `layer_adaptive_overhead.py` (same models, XLA on): every variant is
compiled `--instances` times side by side and warmed up; then each repeat times one
block of every variant, in a shuffled order, and yields the ratio of each variant's step
time to the plain optimizer's in that repeat, so that drifts in machine load cancel. The
plain optimizer is SGD with Nesterov momentum 0.9; the variants:

- `trust_ratio`: `PerLayerRates(sgd, TrustRatio())`, the trust ratio on every kernel;
- `layerwise_decay`: `PerLayerRates(sgd, LayerwiseDecay(0.9))`, a fixed factor on every
  variable but the head's (what `Multipliers` compiles to as well);
- `lars`: `keras_agd.LARS` (the SGD subclass with the trust ratio);
- `lamb`: `keras.optimizers.Lamb`, the trust ratio on Adam's update in Keras itself;
- `plain_copy`: a second plain copy, an A/A control: how far two identical compiled
  steps differ here, the floor under any overhead figure.

The JSON gives, per model and variant, the median step time, the median ratio to the
plain step with a distribution-free 95% interval and a verdict against the target
(median overhead at most 2%), and the paired ratio of each rule to Lamb.

    python benchmarks/per_layer_rates_overhead.py [--repeats 21] [--plot PATH]
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import machine  # noqa: E402
from layer_adaptive_overhead import (  # noqa: E402
    MODELS,
    compiled_train_function,
    median_interval,
    timed_blocks,
)

from keras_agd import LARS, LayerwiseDecay, PerLayerRates, TrustRatio  # noqa: E402

TARGET_MEDIAN = 0.02  # Every rule at most 2% slower per step than the plain optimizer.


def sgd():
    return keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True)


VARIANTS = {
    "plain": sgd,
    "trust_ratio": lambda: PerLayerRates(sgd(), TrustRatio()),
    "layerwise_decay": lambda: PerLayerRates(sgd(), LayerwiseDecay(0.9)),
    "lars": lambda: LARS(0.01, momentum=0.9, nesterov=True),
    "lamb": lambda: keras.optimizers.Lamb(0.001),
    "plain_copy": sgd,
}
RULES = ("trust_ratio", "layerwise_decay", "lars")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=21, help="timed rounds of blocks")
    parser.add_argument("--block-seconds", type=float, default=0.4)
    parser.add_argument("--warmup-blocks", type=int, default=3)
    parser.add_argument("--instances", type=int, default=2, help="compiled copies per variant")
    parser.add_argument("--steps-per-execution", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="write a box plot of the ratios to this path")
    return parser.parse_args()


def verdict(median, low, high):
    if high <= 1 + TARGET_MEDIAN:
        return "within target"
    if low > 1 + TARGET_MEDIAN:
        return "over target"
    if median <= 1 + TARGET_MEDIAN:
        return "within target at the median; the interval reaches past it"
    return "over target at the median; the interval reaches below it"


def summary(ratios):
    low, high = median_interval(ratios)
    return {"median": float(np.median(ratios)), "ci95": [low, high]}


def measure(model_name, args, rng):
    runners = {name: [] for name in VARIANTS}
    for _ in range(args.instances):
        for name, make in VARIANTS.items():
            runners[name].append(compiled_train_function(model_name, None, name, args, make))
    times, steps = timed_blocks(runners, args, rng)
    times = {name: np.array(values)[:, 0] for name, values in times.items()}  # Wall time.
    variants = {}
    for name, values in times.items():
        entry = {"ms_per_step": 1e3 * float(np.median(values))}
        if name != "plain":
            ratios = values / times["plain"]
            entry["ratio_to_plain"] = {**summary(ratios), "ratios": ratios.tolist()}
        if name in RULES:
            ratio = entry["ratio_to_plain"]
            entry["verdict"] = verdict(ratio["median"], *ratio["ci95"])
            entry["ratio_to_lamb"] = summary(values / times["lamb"])
        variants[name] = entry
    return {"model": model_name, "steps_per_block": steps, "variants": variants}


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in VARIANTS if name != "plain"]
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.6), sharey=True)
    for ax, result in zip(np.atleast_1d(axes), results, strict=True):
        ratios = [result["variants"][name]["ratio_to_plain"]["ratios"] for name in names]
        ax.boxplot(ratios, tick_labels=[name.replace("_", "\n") for name in names])
        ax.axhline(1.0, color="gray", linewidth=0.8)
        ax.axhline(1 + TARGET_MEDIAN, color="orange", linestyle="--", linewidth=0.8)
        ax.set_title(result["model"])
        ax.tick_params(axis="x", labelsize=7)
    np.atleast_1d(axes)[0].set_ylabel("step time / plain SGD (Nesterov)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()
    results = [measure(model, args, rng) for model in args.models]
    report = {
        "benchmark": "per_layer_rates_overhead",
        "config": {**vars(args), "xla": True},
        "environment": {**machine(), "keras": keras.__version__},
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "target": {"median_overhead_percent": 100 * TARGET_MEDIAN},
        "results": results,
    }
    if args.plot:
        plot(results, args.plot)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
