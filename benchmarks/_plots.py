"""Figure helpers shared by the benchmark scripts: one look for every arm, percent axes."""

import numpy as np

# (label, colour, marker, line style) of every arm or method. Arms without a codebook are
# dashed or dotted, arms that train on codewords solid.
STYLES = {
    "sgd": ("SGD", "tab:blue", "o", "--"),
    "adam": ("Adam", "tab:orange", "v", "--"),
    "large_batch_sgd": ("large-batch SGD", "tab:gray", "x", ":"),
    "phased_sgd": ("phased SGD (real samples)", "tab:green", "^", "--"),
    "random_subset": ("random subsets", "tab:olive", "P", "--"),
    "agd": ("AGD, weighted (default)", "tab:red", "s", "-"),
    "agd_proportional": ("AGD, proportional", "tab:purple", "D", "-"),
    "agd_per_sample": ("AGD, per sample (Algorithm 1)", "tab:pink", "*", "-"),
    "group_means": ("group means (ablation)", "tab:brown", "h", "-."),
    "medoids": ("medoids (ablation)", "tab:cyan", "*", "-."),
    "agd_trust": ("AGD, proportional, trust ratio in the mosaic phase", "tab:red", "X", "-"),
    "sgd_layer_adaptive": ("SGD + layer-adaptive", "tab:cyan", "<", "--"),
    "adam_layer_adaptive": ("Adam + layer-adaptive", "tab:brown", ">", "--"),
    "agd_layer_adaptive": ("AGD + layer-adaptive", "black", "d", "-"),
}
_FALLBACK = ("", "black", ".", "-")
PERCENT_TICKS = (0.5, 1, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 70, 100)


def style(name, label=None, markevery=None):
    """Keyword arguments of `Axes.plot` for arm `name` (`label` replaces its label)."""
    default, color, marker, linestyle = STYLES.get(name, (name, *_FALLBACK[1:]))
    return {
        "label": label or default,
        "color": color,
        "marker": marker,
        "linestyle": linestyle,
        "markersize": 5,
        "markevery": markevery,
        "linewidth": 1.6,
    }


def percent_log_axis(axis, low, high, which="y"):
    """A log axis in percent from `low` to `high` (percent), labelled at 1, 2, 3, 5, 10 %...

    Matplotlib's own log axis labels only the decades (10^-1, 10^0), which leaves the
    region of a few percent, where test errors end, without a label.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = [t for t in PERCENT_TICKS if low <= t <= high]
    if len(ticks) > 9:  # Wide ranges: fewer labels.
        ticks = [t for t in ticks if t in (0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100)]
    target = axis.yaxis if which == "y" else axis.xaxis
    (axis.set_yscale if which == "y" else axis.set_xscale)("log")
    (axis.set_ylim if which == "y" else axis.set_xlim)(low, high)
    target.set_major_locator(FixedLocator(ticks))
    target.set_minor_locator(NullLocator())
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))


def plain_log_axis(axis, which="x"):
    """A log axis labelled with plain numbers (20, 50, 100, 200, ...), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = axis.xaxis if which == "x" else axis.yaxis
    (axis.set_xscale if which == "x" else axis.set_yscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,g}"))
    target.set_minor_formatter(NullFormatter())


def error_range(errors, target=None, floor=0.5, ceiling=100.0):
    """(low, high) in percent for a log axis that holds `errors` (fractions) and `target`."""
    values = np.asarray([e for e in np.ravel(errors) if np.isfinite(e) and e > 0]) * 100
    low = min(values.min(), 100 * target if target else np.inf) / 1.25
    high = min(values.max() * 1.2, ceiling)
    return max(low, floor), high
