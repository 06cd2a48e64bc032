# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # When does AGD pay?
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/keras-agd/keras-agd/blob/main/docs/tutorials/when_does_agd_pay.ipynb)
#
# AGD trades full epochs over the samples for cheap epochs over codewords early in training.
# Whether that trade reaches a given accuracy sooner than plain SGD is a measurement, not a
# promise. This notebook reads the results of `benchmarks/time_to_accuracy.py` committed in
# the repository (`docs/images/*.json`: every learning curve of every seed), plots them, and
# writes its conclusions from those numbers, so that they change when the benchmark is rerun.
#
# How the benchmark measures is described in
# [docs/benchmarks.md](https://github.com/keras-agd/keras-agd/blob/main/docs/benchmarks.md).
# In short: the same MLP and data for every method; seeds interleaved; training wall time
# without evaluation; the target is SGD's median final test accuracy minus a small margin.
# Besides SGD and Adam, two controls:
#
# - **random_subset** trains on random real samples of exactly the size of AGD's frontier each
#   epoch, with AGD's batch sizes and rates. If AGD does not beat it, the gain comes from "few
#   samples early", not from the codewords.
# - **agd_per_sample** is the paper's Algorithm 1 (every sample replaced by its codeword, N
#   items per epoch), beside our default weighted mode (one item per codeword).
#
# The method study (`benchmarks/mosaic_study.py`: tuned rates, budget-matched controls, more
# seeds) is the fuller measurement; its results are in the README and docs/benchmarks.md.

# %%
# On Colab: install keras-agd from its repository (skipped where it is already installed).
import importlib.util
import subprocess
import sys

PACKAGE = "keras-agd @ git+https://github.com/keras-agd/keras-agd"
if importlib.util.find_spec("keras_agd") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PACKAGE], check=True)

# %%
import json
import urllib.request
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

import keras_agd

REPOSITORY = "keras-agd/keras-agd"


def read_benchmark(name):
    """A committed benchmark JSON: from the checkout keras_agd runs from, else from GitHub."""
    local = Path(keras_agd.__file__).resolve().parents[1] / "docs" / "images" / name
    if local.is_file():
        return json.loads(local.read_text())
    url = f"https://raw.githubusercontent.com/{REPOSITORY}/main/docs/images/{name}"
    with urllib.request.urlopen(url) as response:
        return json.load(response)


mnist = read_benchmark("time_to_accuracy_mnist.json")
deformed = read_benchmark("deformed.json")
synthetic = read_benchmark("synthetic.json")

settings, machine = mnist["settings"], mnist["machine"]
print(
    f"MLP {settings['hidden']} {settings['activation']}; SGD/Adam {settings['epochs']} epochs; "
    f"AGD {settings['mosaic_epochs']} mosaic + {settings['regular_epochs']} regular epochs; "
    f"batch {settings['batch_size']}, mosaic batch {settings['mosaic_batch_size']}; "
    f"{settings['seeds']} seeds"
)
print(
    f"machine: {machine['cpus']} CPU cores, GPUs: {machine['gpus'] or 'none'}, TensorFlow {machine['tensorflow']}"
)

# %% [markdown]
# ## The summary tables
#
# Medians over the seeds. "not reached": half of the seeds or more never reached the target.


# %%
def fmt(value, spec):
    return "not reached" if value is None else format(value, spec)


def summary_table(result):
    summary = result["summary"]
    rows = [
        f"Target: test accuracy {summary['target_accuracy']:.4f}; codebook build {result['codebook_build_s']:.1f} s.",
        "",
        "| method | time to target (s) | ratio to SGD | ratio with codebook build | examples to target | accuracy at SGD's time | final accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, row in summary["methods"].items():
        rows.append(
            f"| {method} | {fmt(row['time_to_target_s'], '.1f')} | {fmt(row['ratio_to_sgd'], '.2f')} "
            f"| {fmt(row['total_ratio_to_sgd'], '.2f')} | {fmt(row['examples_to_target'], ',.0f')} "
            f"| {row['accuracy_within_sgd_time']:.4f} | {row['final_accuracy']:.4f} |"
        )
    return Markdown("\n".join(rows))


display(Markdown("### MNIST"), summary_table(mnist))
display(
    Markdown("### Deformed MNIST (random affine deformation every epoch)"), summary_table(deformed)
)

# %% [markdown]
# ## The curves
#
# Test error against training time and against examples processed: the median over seeds as a
# line, the range of the seeds shaded, the target as a dotted line. AGD's early epochs are
# short (a few hundred to a few thousand codewords), so its curve starts with points close
# together.

# %%
STYLE = {
    "sgd": ("SGD", "C0"),
    "adam": ("Adam", "C1"),
    "agd": ("AGD (weighted)", "C3"),
    "agd_per_sample": ("AGD (per sample)", "C5"),
    "random_subset": ("random-subset control", "C2"),
    "sgd_layer_adaptive": ("SGD + layer-adaptive", "C4"),
    "adam_layer_adaptive": ("Adam + layer-adaptive", "C6"),
    "agd_layer_adaptive": ("AGD + layer-adaptive", "C7"),
}


def curves(result, method, x_key):
    """Median and range over seeds, epoch by epoch, of x_key and the test error."""
    seeds = result["runs"][method]
    x = np.array([[epoch[x_key] for epoch in seed] for seed in seeds], dtype=float)
    error = 1 - np.array([[epoch["test_accuracy"] for epoch in seed] for seed in seeds])
    return np.median(x, 0), np.median(error, 0), error.min(0), error.max(0)


def plot_workload(result, title, methods):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    target = 1 - result["summary"]["target_accuracy"]
    for ax, (x_key, xlabel) in zip(
        axes, [("seconds", "training time (s)"), ("examples", "examples processed")]
    ):
        for method in methods:
            if method not in result["runs"]:
                continue
            label, color = STYLE[method]
            x, error, low, high = curves(result, method, x_key)
            ax.plot(x, 100 * error, marker="o", ms=3, color=color, label=label)
            ax.fill_between(x, 100 * low, 100 * high, color=color, alpha=0.15)
        ax.axhline(100 * target, color="k", ls=":", lw=1, label="target")
        ax.set(xlabel=xlabel, yscale="log", title=title)
    axes[0].set_ylabel("test error (%)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()


plot_workload(mnist, "MNIST", ["sgd", "adam", "agd", "agd_per_sample", "random_subset"])
plot_workload(
    mnist,
    "MNIST, layer-adaptive variants",
    ["sgd", "sgd_layer_adaptive", "adam_layer_adaptive", "agd_layer_adaptive"],
)
plot_workload(deformed, "Deformed MNIST", ["sgd", "adam", "agd", "random_subset"])

# %% [markdown]
# ## What the numbers say
#
# The sentences below are computed from the JSON above. A method "beats" another when its
# median time to the target is shorter; "with the codebook" adds the codebook's build time.


# %%
def ratio(result, method, key="ratio_to_sgd"):
    return result["summary"]["methods"].get(method, {}).get(key)


def compare(result, method, other, key="ratio_to_sgd"):
    mine, theirs = ratio(result, method, key), ratio(result, other, key)
    if mine is None and theirs is None:
        return f"neither {method} nor {other} reached the target"
    if mine is None:
        return f"{method} did not reach the target, {other} did ({theirs:.2f}x SGD's time)"
    if theirs is None:
        return f"{method} reached the target ({mine:.2f}x SGD's time), {other} did not"
    verdict = "beats" if mine < theirs else "does not beat"
    return f"{method} {verdict} {other} ({mine:.2f}x vs {theirs:.2f}x SGD's time)"


def seeds_reaching_first(result, method, other):
    """In how many seeds `method` reached the target before `other` (None: never)."""
    target = result["summary"]["target_accuracy"]

    def first_time(seed):
        return next(
            (epoch["seconds"] for epoch in seed if epoch["test_accuracy"] >= target), np.inf
        )

    pairs = zip(result["runs"][method], result["runs"][other])
    wins = [first_time(a) < first_time(b) for a, b in pairs]
    return sum(wins), len(wins)


lines = []
for name, result in [("MNIST", mnist), ("Deformed MNIST", deformed)]:
    lines.append(f"\n**{name}**\n")
    lines.append(
        f"- {compare(result, 'agd', 'sgd')}; with the codebook: {compare(result, 'agd', 'sgd', 'total_ratio_to_sgd')}."
    )
    lines.append(f"- Against the control: {compare(result, 'agd', 'random_subset')}.")
    wins, seeds = seeds_reaching_first(result, "agd", "random_subset")
    settled = "the same in every seed" if wins in (0, seeds) else "not settled by these seeds"
    lines.append(
        f"- Seed by seed, AGD reached the target before the random-subset control in {wins} of {seeds} seeds ({settled})."
    )
    if "agd_per_sample" in result["runs"]:
        lines.append(f"- {compare(result, 'agd_per_sample', 'agd')}.")
agd, sgd_ratio, control = (ratio(mnist, m) for m in ("agd", "sgd", "random_subset"))
beats_sgd = agd is not None and agd < sgd_ratio
beats_control = agd is not None and (control is None or agd < control)
wins, seeds = seeds_reaching_first(mnist, "agd", "random_subset")
against_control = "beats" if beats_control else "does not beat"
if wins not in (0, seeds):
    against_control += " (by the medians, not in every seed)"
lines.append(
    f"\n**So on MNIST, AGD {'beats' if beats_sgd else 'does not (yet) beat'} SGD and "
    f"{against_control} the random-subset control in these runs.**"
)
share = synthetic["mgd_epoch_share_of_full"]
lines.append("\n**The mechanism** (synthetic workload)\n")
lines.append(
    f"- On {synthetic['n_samples']:,} samples, an epoch over the coarsest frontier "
    f"({synthetic['coarsest_frontier_size']} codewords) took {synthetic['mgd_epoch_s_median']:.2f} s, "
    f"a full epoch {synthetic['full_epoch_s_median']:.1f} s: {share:.1%} of it "
    f"(codebook build: {synthetic['codebook_build_s']:.0f} s)."
)
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Where it wins, and where it does not
#
# - **The mechanism works.** An epoch over codewords costs the size of the frontier, not of
#   the data set: the synthetic line above is the cost of a coarse epoch relative to a full one.
# - **Time to accuracy on a CPU is another matter.** The paper's speed-up came from mosaic
#   batches far larger than its SGD batches (4,500 against 10) on a GPU, where a large batch
#   costs much less per example than a small one. On the few CPU cores of these runs, a batch
#   of 1,024 costs almost as much per example as a batch of 128. The lines above say whether
#   AGD beat SGD and the random-subset control in these runs; where the medians and the
#   seed-by-seed count disagree, a few seeds do not settle the ordering.
# - **The codebook has a cost**, added in the "with the codebook" ratios: a few seconds for
#   MNIST, reusable across runs (`codebook.save`).
# - **Not measured yet**: GPUs, larger mosaic batches and rates (per-sample mode tolerates larger
#   rates than weighted mode), fewer mosaic epochs, harder data. The method study
#   (`benchmarks/mosaic_study.py`) covers some of them.
#
# To measure it on your own machine: `python benchmarks/time_to_accuracy.py` (add `--quick`
# for a small run), then point `read_benchmark` above at `results/time_to_accuracy/mnist.json`.
