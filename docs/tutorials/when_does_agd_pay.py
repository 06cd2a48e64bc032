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
# AGD trades full epochs over the samples for cheap steps on codewords early in training.
# Whether that trade reaches a given accuracy sooner is a measurement, not a promise. The
# method study, `benchmarks/mosaic_study.py`, makes it a fair one: every arm trains the
# same model on the same number of examples, with its own learning rate tuned on a
# validation split and decayed linearly to zero, and AGD is compared with what a user would
# do instead. This notebook reads the study's results committed in the repository
# (`docs/images/mosaic_study/*.json`: every learning curve of every seed), tabulates and
# plots them, and writes its conclusions from those numbers, so that they change when the
# study is rerun. [Benchmarks](../../benchmarks/) describes how it measures.
#
# The study's JSON was measured with keras-agd 0.1.0, the library's previous release.
#
# The arms:
#
# | arm | what it trains on |
# |---|---|
# | `sgd`, `adam` | batch 128 throughout |
# | `large_batch_sgd` | batch 1,024 throughout |
# | `phased_sgd` | the mosaic phase's steps, batch and rate on random real samples |
# | `agd_weighted` | AGD's default (weighted) mode |
# | `agd` | AGD in proportional mode (codewords drawn by weight) |
# | `random_subset` | growing random subsets of the frontier's sizes |
# | `group_means` | means of random groups of a class (averages without clustering) |
# | `medoids` | the real sample nearest to each codeword |
#
# Every arm but `sgd`, `adam` and `large_batch_sgd` has the same mosaic phase (one epoch of
# examples at batch 1,024), then SGD at batch 128 for the rest of the budget.

# %%
import json
import statistics
import urllib.request
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

import keras_agd

# Where the JSON is read from outside a checkout (the repository on GitHub).
RAW = "https://raw.githubusercontent.com/keras-agd/keras-agd/main/docs/images"


def read_benchmark(name):
    """A committed benchmark JSON: from the checkout keras_agd runs from, else from GitHub."""
    local = Path(keras_agd.__file__).resolve().parents[1] / "docs" / "images" / name
    if local.is_file():
        return json.loads(local.read_text())
    with urllib.request.urlopen(f"{RAW}/{name}") as response:
        return json.load(response)


REGIMES = {  # Study file: a short name (plain MNIST, 40% of labels flipped, ...).
    "mlp_noise0_budget6": "plain",
    "mlp_noise0.4_budget6": "40% noise",
    "mlp_noise0_budget2": "2 epochs",
    "lenet_noise0_budget4": "CNN",
}
studies = {name: read_benchmark(f"mosaic_study/{file}.json") for file, name in REGIMES.items()}
AGD_ARMS = ("agd_weighted", "agd")
CONTROLS = ("sgd", "adam", "large_batch_sgd", "phased_sgd", "random_subset")
rows = ["| regime | model | training images | labels flipped | epochs | seeds |"]
rows.append("|---|---|---|---|---|---|")
for name, study in studies.items():
    settings, machine = study["settings"], study["machine"]
    if settings["model"] == "lenet":
        model = "LeNet-5"
    else:
        model = "MLP " + "-".join(map(str, settings["hidden"]))
    images = settings["train_samples"] or 60000 - settings["validation_samples"]
    rows.append(
        f"| {name} | {model} | {images:,} | {settings['label_noise']:.0%} "
        f"| {settings['budget_epochs']} | {settings['seeds']} |"
    )
gpus = machine["gpus"] or "no GPU"
rows.append(
    f"\nMeasured on {machine['cpus']} CPU cores, {gpus}, TensorFlow {machine['tensorflow']}."
)
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## Time to the target
#
# The target of each regime is SGD's median final test accuracy minus 0.2 points. Each
# cell is an arm's median time to reach it over the seeds, as a multiple of SGD's median
# time, with the codebook's build time added for the arms that need one. "never": half of
# the seeds or more did not reach the target; "-": not run in that regime. The lowest of
# each regime is in bold.


# %%
def cell(summary_cell, digits=2):
    return "never" if summary_cell["median"] is None else f"{summary_cell['median']:.{digits}f}"


def regime_table(key, digits=2):
    """Arms down, regimes across: the median of `key` at the target level."""
    arms = list(dict.fromkeys(a for s in studies.values() for a in s["summary"]["arms"]))
    best = {}
    for name, study in studies.items():
        values = [row["final"][key]["median"] for row in study["summary"]["arms"].values()]
        best[name] = min((v for v in values if v is not None), default=None)
    rows = ["| arm | " + " | ".join(studies) + " |", "|---" * (len(studies) + 1) + "|"]
    for arm in arms:
        cells = []
        for name, study in studies.items():
            row = study["summary"]["arms"].get(arm)
            text = "-" if row is None else cell(row["final"][key], digits)
            bold = row is not None and row["final"][key]["median"] == best[name]
            cells.append(f"**{text}**" if bold else text)
        rows.append(f"| `{arm}` | " + " | ".join(cells) + " |")
    return Markdown("\n".join(rows))


targets = ", ".join(f"{n} {s['summary']['levels']['final']:.2%}" for n, s in studies.items())
display(Markdown(f"Targets (test accuracy): {targets}."))
display(regime_table("total_ratio_to_sgd"))

# %% [markdown]
# The same in optimizer steps, what transfers to an accelerator, where a step of a small
# model costs about the same at any batch size (no codebook build here):

# %%
display(regime_table("steps_ratio_to_sgd"))

# %% [markdown]
# ## The curves
#
# Test error against training time, the median of the seeds at each evaluation: SGD and
# Adam, the three arms without a codebook that share AGD's first steps or batch sizes, and
# AGD in both modes. The target is the black dotted line. The training time excludes the
# codebook build, which the tables above add.

# %%
STYLES = {  # Arm: label, colour, marker, line style.
    "sgd": ("SGD", "tab:blue", "o", "--"),
    "adam": ("Adam", "tab:orange", "v", "--"),
    "large_batch_sgd": ("large-batch SGD", "tab:gray", "x", ":"),
    "phased_sgd": ("phased SGD", "tab:green", "^", "--"),
    "random_subset": ("random subsets", "tab:olive", "P", "--"),
    "agd_weighted": ("AGD, weighted", "tab:red", "s", "-"),
    "agd": ("AGD, proportional", "tab:purple", "D", "-"),
    "group_means": ("group means", "tab:brown", "h", "-."),
    "medoids": ("medoids", "tab:cyan", "*", "-."),
}


def median_curve(curves, measure):
    points = min(len(curve) for curve in curves)
    x = [statistics.median(c[i][measure] for c in curves) for i in range(points)]
    error = [
        100 * statistics.median(1 - c[i]["test_accuracy"] for c in curves) for i in range(points)
    ]
    return x, error


def percent_axis(ax, low, high):
    """A log axis in percent, labelled where the curves are (not only at 10% and 100%)."""
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ticks = [t for t in (1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30) if low <= t <= high]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))


def plot_curves(arms, measure, xlabel, title):
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    for ax, (name, study) in zip(axes.flat, studies.items()):
        target = 100 * (1 - study["summary"]["levels"]["final"])
        for arm in arms:
            if arm not in study["runs"]:
                continue
            label, color, marker, style = STYLES[arm]
            x, error = median_curve(study["runs"][arm], measure)
            ax.plot(x, error, ls=style, marker=marker, ms=4, color=color, label=label)
        ax.axhline(target, color="black", ls=":", lw=1.2, label="target")
        percent_axis(ax, target / 1.4, 20)
        if measure == "steps":
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,g}"))
        ax.set(title=f"{name} (target {100 - target:.2f}%)", xlabel=xlabel, ylabel="test error")
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout(rect=(0, 0.07, 1, 1))


MAIN_ARMS = ("sgd", "adam", "large_batch_sgd", "phased_sgd", "random_subset", *AGD_ARMS)
plot_curves(MAIN_ARMS, "seconds", "training time (s)", "Test error against training time")

# %% [markdown]
# Against optimizer steps, with the two ablations:

# %%
plot_curves(
    (*MAIN_ARMS, "group_means", "medoids"),
    "steps",
    "optimizer steps",
    "Test error against optimizer steps",
)

# %% [markdown]
# ## What the numbers say
#
# Computed from the JSON above. "AGD" is the better of its two modes in each regime; an arm
# "beats" another when its median time to the target (with the codebook build) is shorter;
# the "best control" is the fastest arm without a codebook (`sgd`, `adam`, `large_batch_sgd`,
# `phased_sgd`, `random_subset`).


# %%
def ratio(study, arm, key="total_ratio_to_sgd"):
    row = study["summary"]["arms"].get(arm)
    return None if row is None else row["final"][key]["median"]


def first_time(curve, target, build):
    """Seconds (with the codebook build) at which `curve` first reached `target`."""
    reached = (p["seconds"] for p in curve if p["test_accuracy"] >= target)
    return next(reached, np.inf) + build


def needs(value):
    if value is None:
        return "does not reach the target in half of the seeds or more"
    return f"needs {value:.2f}x SGD's time to the target"


lines, verdicts = [], {}
for name, study in studies.items():
    agd_arms = [arm for arm in AGD_ARMS if arm in study["runs"]]
    infinite = float("inf")
    agd_arm = min(agd_arms, key=lambda arm: ratio(study, arm) or infinite)
    agd = ratio(study, agd_arm)
    controls = {arm: ratio(study, arm) for arm in CONTROLS if arm in study["runs"]}
    best = min(controls, key=lambda arm: controls[arm] or infinite)
    beats_sgd = agd is not None and agd < 1.0
    beats_best = agd is not None and (controls[best] is None or agd < controls[best])
    verdicts[name] = (beats_sgd, beats_best)
    target, build = study["summary"]["levels"]["final"], study["codebook_build_s"]
    pairs = zip(study["runs"][agd_arm], study["runs"]["random_subset"])
    wins = [first_time(a, target, build) < first_time(r, target, 0.0) for a, r in pairs]
    lines.append(
        f"- **{name}**: AGD (`{agd_arm}`) {needs(agd)}; "
        f"the best control, `{best}`, {needs(controls[best])}. AGD "
        f"{'beats' if beats_sgd else 'does not beat'} SGD and "
        f"{'beats' if beats_best else 'does not beat'} the best control; it reached the "
        f"target before `random_subset` in {sum(wins)} of {len(wins)} seeds."
    )
sgd_wins = sum(v[0] for v in verdicts.values())
control_wins = sum(v[1] for v in verdicts.values())
lines.append(
    f"\n**So AGD beat tuned SGD in {sgd_wins} of {len(verdicts)} regimes and the best "
    f"control in {control_wins} of {len(verdicts)}.**"
)
plain = studies["plain"]
agd_steps, phased_steps = (
    ratio(plain, arm, "steps_ratio_to_sgd") for arm in ("agd_weighted", "phased_sgd")
)
fewer = "fewer" if phased_steps < agd_steps else "more"
lines.append(
    f"\nIn steps, on plain MNIST, weighted AGD needs {agd_steps:.2f}x SGD's steps; "
    f"`phased_sgd`, the same large-batch steps on random real samples without a codebook, "
    f"needs {phased_steps:.2f}x, {fewer} than AGD."
)
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Why: what the codewords carry
#
# The ablations replace the codewords by something cheaper and keep everything else. The
# median test accuracy of each arm with a mosaic phase, at the last evaluation inside it:

# %%
MOSAIC_ARMS = ("phased_sgd", "random_subset", "medoids", "group_means", *AGD_ARMS)
KIND = {  # What each arm trains on in the mosaic phase.
    "phased_sgd": "real samples",
    "random_subset": "real samples",
    "medoids": "real samples",
    "group_means": "averages",
    "agd_weighted": "averages",
    "agd": "averages",
}


def mosaic_accuracy(study, arm):
    """Median test accuracy at the last evaluation inside the mosaic phase."""
    last = [[p for p in c if p["steps"] <= study["mosaic_steps"]][-1] for c in study["runs"][arm]]
    return statistics.median(p["test_accuracy"] for p in last)


accuracy = {
    name: {arm: mosaic_accuracy(s, arm) for arm in MOSAIC_ARMS if arm in s["runs"]}
    for name, s in studies.items()
}
when = {}
for name, study in studies.items():
    last = max(
        p["steps"] for p in study["runs"]["agd_weighted"][0] if p["steps"] <= study["mosaic_steps"]
    )
    when[name] = f"step {last} of {study['mosaic_steps']}"
rows = [f"Evaluated at: {', '.join(f'{name}, {at}' for name, at in when.items())}.", ""]
rows += ["| arm | inputs | " + " | ".join(studies) + " |", "|---" * (len(studies) + 2) + "|"]
for arm in MOSAIC_ARMS:
    cells = [f"{accuracy[n][arm]:.3f}" if arm in accuracy[n] else "-" for n in studies]
    rows.append(f"| `{arm}` | {KIND[arm]} | " + " | ".join(cells) + " |")
display(Markdown("\n".join(rows)))

lines = []
for name, values in accuracy.items():
    best_real = max((a for a in values if KIND[a] == "real samples"), key=values.get)
    best_code = max((a for a in values if a in AGD_ARMS), key=values.get)
    gap = 100 * (values[best_real] - values[best_code])
    means = 100 * (values[best_code] - values["group_means"])
    lines.append(
        f"- {name}: the best arm on real samples, `{best_real}`, is "
        f"{abs(gap):.1f} points {'above' if gap > 0 else 'below'} the best AGD mode "
        f"(`{best_code}`), which is {abs(means):.1f} points "
        f"{'above' if means > 0 else 'below'} random averages (`group_means`)."
    )
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Why: averaged inputs limit the rate
#
# Each arm's rate was chosen by a sweep of four values on the validation split. A run that
# ends at chance (validation accuracy below 20%) diverged. The largest rate of the sweep at
# which each arm still trained:


# %%
def largest_rate_that_trained(study, arm):
    scores = (study["sweep_validation_accuracy"] or {}).get(arm, {})
    trained = [float(rate) for rate, accuracy in scores.items() if accuracy >= 0.2]
    return max(trained, default=None)


rows = ["| arm | inputs | " + " | ".join(studies) + " |", "|---" * (len(studies) + 2) + "|"]
diverged = {name: [] for name in studies}
for arm in MOSAIC_ARMS:
    cells = []
    for name, study in studies.items():
        if arm not in study["runs"]:
            cells.append("-")
            continue
        rate = largest_rate_that_trained(study, arm)
        swept = max(float(r) for r in study["sweep_validation_accuracy"][arm])
        cells.append(f"{rate:g}" + ("" if rate == swept else f" (not {swept:g})"))
        if rate != swept:
            diverged[name].append(arm)
    rows.append(f"| `{arm}` | {KIND[arm]} | " + " | ".join(cells) + " |")
display(Markdown("\n".join(rows)))
lines = []
for name, arms in diverged.items():
    study = studies[name]
    real = [arm for arm in MOSAIC_ARMS if arm in study["runs"] and KIND[arm] == "real samples"]
    on_averages = [arm for arm in arms if KIND[arm] == "averages"]
    real_diverged = [arm for arm in arms if KIND[arm] == "real samples"]
    text = ", ".join(f"`{arm}`" for arm in arms) or "no arm"
    lines.append(
        f"- {name}: {text} diverged at the sweep's largest rate "
        f"({len(on_averages)} of them on averaged inputs); at that rate, "
        f"{len(real) - len(real_diverged)} of the {len(real)} arms on real samples trained."
    )
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## The codebook's cost
#
# The codebook is built once per data set (and can be saved and reused), but in a single
# training run its build time is part of the bill:

# %%
for name, study in studies.items():
    budget = statistics.median(c[-1]["seconds"] for c in study["runs"]["sgd"])
    build = study["codebook_build_s"]
    print(f"{name:>16}: codebook build {build:.1f} s, {build / budget:.2f}x SGD's whole budget")

# %% [markdown]
# ## The paper's setting, in small
#
# The paper used a sigmoid MLP, SGD at batch 10 and mosaic batches of 4,500. The same
# setting in small (a 500-300 sigmoid MLP, 3 seeds; `benchmarks/time_to_accuracy.py`, whose
# `agd` is the weighted mode and `agd_per_sample` the paper's Algorithm 1), by seed:

# %%
paper = read_benchmark("mosaic_study/paper_setting_small.json")
target = paper["summary"]["target_accuracy"]
rows = [
    "| method | accuracy after the mosaic phase | final accuracy | seeds at the target |",
    "|---|---|---|---|",
]
for method, curves in paper["runs"].items():
    mosaic = [[p for p in c if p.get("mosaic_phase")] for c in curves]
    after = ", ".join(f"{m[-1]['test_accuracy']:.3f}" for m in mosaic if m) or "-"
    final = ", ".join(f"{c[-1]['test_accuracy']:.4f}" for c in curves)
    reached = sum(max(p["test_accuracy"] for p in c) >= target for c in curves)
    rows.append(f"| `{method}` | {after} | {final} | {reached} of {len(curves)} |")
display(Markdown(f"Target: {target:.4f} test accuracy.\n\n" + "\n".join(rows)))

# %% [markdown]
# ## The mechanism itself works
#
# A step on codewords costs its batch, not the data set: the synthetic workload of
# `benchmarks/time_to_accuracy.py` times an epoch over the coarsest frontier of a large
# codebook against a full epoch over the samples.

# %%
synthetic = read_benchmark("synthetic.json")
print(
    f"{synthetic['n_samples']:,} samples: an epoch over the coarsest frontier "
    f"({synthetic['coarsest_frontier_size']} codewords) took "
    f"{synthetic['mgd_epoch_s_median']:.2f} s, a full epoch "
    f"{synthetic['full_epoch_s_median']:.1f} s ({synthetic['mgd_epoch_share_of_full']:.1%}); "
    f"codebook build {synthetic['codebook_build_s']:.0f} s"
)

# %% [markdown]
# ## Where it could still pay
#
# The study ran on a CPU, where a batch of 1,024 costs about as much per example as a batch
# of 128, so the mosaic phase's epoch of examples costs as much as an epoch of SGD. It did
# not measure GPUs, where a large batch costs much less per example; data sets much larger
# than MNIST, where a coarse frontier is a far smaller share of the data; or models that
# tolerate larger rates on averaged inputs. The older fixed-epoch comparison
# (`benchmarks/time_to_accuracy.py`, constant rates) is on the [Benchmarks](../../benchmarks/)
# page.
#
# To measure on your own machine: `python benchmarks/mosaic_study.py --quick` (a small run),
# then point `read_benchmark` above at `results/mosaic_study/<regime>.json`.
