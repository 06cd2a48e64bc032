"""Every measured number on the pages comes from a committed benchmark JSON.

The pages are README.md, docs/*.md and the Markdown cells of the tutorial sources
(docs/tutorials/*.py). `measured_numbers` finds every number on them that looks like a
result, and each one must be bound by an entry of `BINDINGS`:

- `Quote(page, text, *values)`: the numbers in `text` (found on the page, each occurrence),
  in order, equal `values` rounded as the page shows them ("1.55x" is 1.55 to two decimals;
  "98.04%" and "51.9k" are compared with a value already in percent or thousands). A
  value is read from a JSON file under docs/images/ (directly, or by a function called
  when the test runs); a number written out is arithmetic, named by a comment; and
  `given(reason)` stands for a number in the quote that is not a result.
- `Table(page, anchor, rows)`: the first table after `anchor`, one `(label, values)` per
  body row, in order; `label` is one of the row's cells.
- `Given(page, text, reason)`: numbers that are not benchmark results (a setting, a goal,
  the paper's figures, arithmetic, the run time of an example), each with its reason.
- `Archived(page, heading, reason)`: an entry of an archive section whose run left no JSON.

A number looks like a result when it has a decimal point, a thousands separator, a
percent sign, a ratio sign ("1.55x", "2.8×") or a unit of time, memory or throughput
("25 s", "1.01 GiB", "51.9k"), or is the first number of a range whose second one does
("17-27 ms", "61 to 68%"). Not scanned: code blocks and inline code, link targets, HTML
comments, dates, version numbers after a package's name, IP addresses, arXiv ids, and a
number right after "batch", "batches of", "momentum", "learning rate", "base rate" or "at
rate" (a setting). Plain integers below 1,000 without a unit (seeds, levels, epochs, steps)
are not scanned.
"""

import json
import math
import re
import statistics
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
PAGES = [
    "README.md",
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")),
    *sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "docs" / "tutorials").glob("*.py")
        if p.name != "build_notebooks.py"
    ),
]

# --- Finding the numbers.

_TOKEN = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e-?\d+)?")
_SUFFIX = re.compile(
    r"\s?%|[x×](?![\w(])|k\b|\s(?:s|ms|min|minutes|hours|MiB|GiB|MB|GB|points)\b(?!-)"
)
_RANGE = re.compile(r"\s*(?:-|–|to)\s*")
_SETTING = re.compile(
    r"(?:\bbatch(?:es)?(?: of)?|\bmomentum|\blearning rate|\bbase rate|\bat rate)\s+$"
)
_PACKAGES = r"TensorFlow|Keras|Python|NumPy|scikit-learn|faiss-cpu|mkdocs|keras-agd|JAX|optax"
_UNSCANNED = [
    re.compile(r"^( *)```.*?^\1```", re.MULTILINE | re.DOTALL),  # Code blocks.
    re.compile(r"`[^`\n]*`"),  # Inline code.
    re.compile(r"\]\([^)\s]*\)"),  # Link targets.
    re.compile(r"<!--.*?-->", re.DOTALL),
    re.compile(r"\b\d{4}-\d\d-\d\d\b"),  # Dates.
    re.compile(rf"\b(?:{_PACKAGES}),?\s+\d+(?:\.\d+)*"),  # Versions.
    re.compile(r"\b\d+\.\d+\.\d+\.\d+\b"),  # IP addresses.
    re.compile(r"arXiv:\S+"),
]


@cache
def page_text(page):
    """The page's text; of a tutorial source, its Markdown cells (other lines blank)."""
    text = (ROOT / page).read_text(encoding="utf-8")
    if not page.endswith(".py"):
        return text
    lines, markdown = [], False
    for line in text.split("\n"):
        if line.startswith("# %%"):
            markdown = line.startswith("# %% [markdown]")
            lines.append("")
        elif markdown:
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        else:
            lines.append("")
    return "\n".join(lines)


@cache
def scanned_text(page):
    """The page's text with what is not scanned blanked out (positions kept)."""
    text = page_text(page)
    for pattern in _UNSCANNED:
        text = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return text


def _looks_measured(text, match):
    number = match.group(0)
    return any(c in number for c in ".,e") or _SUFFIX.match(text, match.end()) is not None


def measured_numbers(text, start=0, end=None):
    """`[(position, token)]` of the numbers in text[start:end] that look like results; a
    token keeps its sign ("98.04%", "1.55x", "51.9k", "25 s")."""
    end = len(text) if end is None else end
    tokens = [m for m in _TOKEN.finditer(text, start, end)]
    found = []
    for i, match in enumerate(tokens):
        if _SETTING.search(text[max(0, match.start() - 30) : match.start()]):
            continue
        measured = _looks_measured(text, match)
        if not measured and i + 1 < len(tokens):  # "17-27 ms", "61 to 68%".
            gap = _RANGE.fullmatch(text, match.end(), tokens[i + 1].start())
            measured = gap is not None and _looks_measured(text, tokens[i + 1])
        if measured:
            suffix = _SUFFIX.match(text, match.end())
            found.append((match.start(), match.group(0) + (suffix.group(0) if suffix else "")))
    return found


def test_the_scanner_finds_results_and_skips_settings():
    text = (
        "AGD needs 1.55x (98.04%) at batch 1,024 with momentum 0.9, 51.9k samples/s, "
        "17-27 ms, 61 to 68% accuracy, 36,495 codewords, 5x5 kernels, 3 seeds, 25 s."
    )
    tokens = [token for _, token in measured_numbers(text)]
    assert tokens == [
        "1.55x",
        "98.04%",
        "51.9k",
        "17",
        "27 ms",
        "61",
        "68%",
        "36,495",
        "25 s",
    ]


# --- Values.


_READ = set()


def load(name):
    """A benchmark JSON under docs/images/, by its path there."""
    _READ.add(name)
    return _load(name)


@cache
def _load(name):
    return json.loads((IMAGES / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class given:  # noqa: N801 (reads as a value in a list of values)
    """A number in a quote or table row that is not a benchmark result, and why."""

    reason: str


def _digits(token):
    """The number a token shows, without its sign, and its decimals."""
    number = _TOKEN.match(token).group(0).replace(",", "")
    decimals = len(number.split(".")[1]) if "." in number else 0
    return number, decimals


def _check(token, value, where):
    if isinstance(value, given):
        return []
    value = value() if callable(value) else value
    number, decimals = _digits(token)
    if value is None:
        return [f"{where}: {token!r} shown, but the JSON has no value (not reached?)"]
    shown = f"{value:.{decimals}f}"
    if shown != number:
        return [f"{where}: {token!r} shown, the JSON gives {value!r} ({shown})"]
    return []


# --- Bindings.


class Quote:
    def __init__(self, page, text, *values):
        self.page, self.text, self.values = page, text, values


@dataclass(frozen=True)
class Table:
    page: str
    anchor: str
    rows: tuple


@dataclass(frozen=True)
class Given:
    page: str
    text: str
    reason: str


@dataclass(frozen=True)
class Archived:
    page: str
    heading: str
    reason: str


def _pattern(text):
    """`text` as a regex: any run of whitespace (and a blockquote's "> ") for a space."""
    words = [re.escape(word) for word in text.split()]
    return re.compile(r"(?:\s+>?\s*|\s+)".join(words))


def _spans(page, text):
    return [m.span() for m in _pattern(text).finditer(page_text(page))]


def _table(page, anchor):
    """`[(start, end, cells)]` of the body rows of the first table after `anchor`."""
    text = page_text(page)
    spans = _spans(page, anchor)
    if len(spans) != 1:
        return None
    position = spans[0][1]
    lines, rows, offset = text[position:].split("\n"), [], position
    in_table = False
    for line in lines:
        if line.startswith("|"):
            in_table = True
            cells = [c.strip().strip("*").strip("`") for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append((offset, offset + len(line), cells))
        elif in_table:
            break
        offset += len(line) + 1
    return rows[1:]  # Less the header.


def _section(page, heading):
    """The span of the section under `heading` (a whole heading line)."""
    text = page_text(page)
    match = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.MULTILINE)
    if match is None:
        return None
    level = len(match.group(1))
    following = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, match.end())
    return match.start(), following.start() if following else len(text)


def check_bindings(bindings):
    """Errors of the bindings, and the spans they cover: `{page: [(start, end)]}`."""
    errors, covered = [], {page: [] for page in PAGES}
    for binding in bindings:
        page = binding.page
        scanned = scanned_text(page)
        if isinstance(binding, Quote | Given):
            spans = _spans(page, binding.text)
            if not spans:
                errors.append(f"{page}: not found (reworded? update its binding): {binding.text!r}")
            for start, end in spans:
                covered[page].append((start, end))
                if isinstance(binding, Given):
                    continue
                tokens = measured_numbers(scanned, start, end)
                if len(tokens) != len(binding.values):
                    shown = [token for _, token in tokens]
                    errors.append(
                        f"{page}: {binding.text!r} shows {shown}, bound to "
                        f"{len(binding.values)} values"
                    )
                    continue
                for (_, token), value in zip(tokens, binding.values):
                    errors += _check(token, value, f"{page}: {binding.text!r}")
        elif isinstance(binding, Table):
            rows = _table(page, binding.anchor)
            if rows is None:
                errors.append(f"{page}: table anchor not found once: {binding.anchor!r}")
                continue
            if len(rows) != len(binding.rows):
                errors.append(
                    f"{page}: the table after {binding.anchor!r} has {len(rows)} rows, "
                    f"bound to {len(binding.rows)}"
                )
                continue
            for (start, end, cells), (label, values) in zip(rows, binding.rows):
                where = f"{page}: row {label!r} after {binding.anchor!r}"
                if not any(label in cell for cell in cells):
                    errors.append(f"{where}: the row is {cells}")
                    continue
                covered[page].append((start, end))
                tokens = measured_numbers(scanned, start, end)
                if len(tokens) != len(values):
                    shown = [token for _, token in tokens]
                    errors.append(f"{where} shows {shown}, bound to {len(values)} values")
                    continue
                for (_, token), value in zip(tokens, values):
                    errors += _check(token, value, where)
        elif isinstance(binding, Archived):
            span = _section(page, binding.heading)
            if span is None:
                errors.append(f"{page}: no section {binding.heading!r}")
            else:
                covered[page].append(span)
    return errors, covered


# --- The JSON files, and the values the pages show.

STUDY = "mosaic_study/{}.json"
PLAIN, NOISE, SHORT, CNN = (
    "mlp_noise0_budget6",
    "mlp_noise0.4_budget6",
    "mlp_noise0_budget2",
    "lenet_noise0_budget4",
)


def study(regime):
    return load(STUDY.format(regime))


def arm(regime, name):
    return study(regime)["summary"]["arms"][name]


def spread(cell):
    """What a cell "median (min to max)" shows: nothing when the median is missing ("not
    reached"), and no number for a missing end ("never")."""
    if cell["median"] is None:
        return []
    return [v for v in (cell["median"], cell["min"], cell["max"]) if v is not None]


def study_row(regime, name):
    row = arm(regime, name)
    return [
        study(regime)["rates"][name],
        *spread(row["final_accuracy"]),
        *spread(row["final"]["steps_ratio_to_sgd"]),
        *spread(row["final"]["total_ratio_to_sgd"]),
        *spread(row["middle"]["total_ratio_to_sgd"]),
    ]


def median_ratio(regime, name, key="total_ratio_to_sgd", level="final"):
    return lambda: arm(regime, name)[level][key]["median"]


def final_accuracy(regime, name):
    return lambda: arm(regime, name)["final_accuracy"]["median"]


def mosaic_accuracy(regime, name):
    """Median test accuracy at the last evaluation inside the mosaic phase (as the tutorial
    "When does AGD pay?" computes it)."""
    data = study(regime)
    last = [[p for p in c if p["steps"] <= data["mosaic_steps"]][-1] for c in data["runs"][name]]
    return statistics.median(p["test_accuracy"] for p in last)


def accuracy_after_mosaic(regime, name):
    """Median test accuracy at the first evaluation after the mosaic phase."""
    data = study(regime)
    first = [[p for p in c if p["steps"] > data["mosaic_steps"]][0] for c in data["runs"][name]]
    return statistics.median(p["test_accuracy"] for p in first)


ABLATION_ARMS = ("agd", "agd_weighted", "group_means", "medoids", "random_subset", "phased_sgd")


def sweep(regime, name, rate):
    return lambda: study(regime)["sweep_validation_accuracy"][name][rate]


def regular_step_ms(regimes, names):
    """Milliseconds per step of the regular phase in the study's own curves (between its
    first and last evaluation, medians over seeds): the lowest and highest of `names`."""
    values = []
    for regime in regimes:
        data = study(regime)
        for name in names:
            per_seed = []
            for curve in data["runs"][name]:
                regular = [p for p in curve if p["steps"] > data["mosaic_steps"]]
                first, last = regular[0], regular[-1]
                seconds = last["seconds"] - first["seconds"]
                per_seed.append(1000 * seconds / (last["steps"] - first["steps"]))
            values.append(statistics.median(per_seed))
    return min(values), max(values)


MLP_REGIMES = (PLAIN, NOISE, SHORT)
ON_STREAM = ("agd", "agd_weighted", "random_subset", "group_means", "medoids")
ON_SLICES = ("sgd", "phased_sgd")


def mosaic_rates(regimes, names):
    return [study(r)["rates"][n] for r in regimes for n in names if n in study(r)["rates"]]


MOSAIC_ARMS = ("phased_sgd", "agd", "agd_weighted", "random_subset", "group_means", "medoids")

# The trust ratio in the mosaic phase: `agd` and `agd_trust` at each rate of `--rate-grid`.
TRUST = "mosaic_study/trust_ratio.json"


def trust_runs(key):
    return load(TRUST)["runs"][key]


def at_chance(key):
    """Seeds whose final test accuracy is below 0.5 (MNIST's chance is about 0.1)."""
    return sum(curve[-1]["test_accuracy"] < 0.5 for curve in trust_runs(key))


def trust_mosaic_accuracy(key):
    """Median test accuracy at the last evaluation inside the mosaic phase."""
    steps = load(TRUST)["mosaic_steps"]
    last = [[p for p in curve if p["steps"] <= steps][-1] for curve in trust_runs(key)]
    return statistics.median(p["test_accuracy"] for p in last)


def trust_row(key):
    """A row of the trust-ratio table: rate, mosaic-end accuracy, final accuracy, ratios."""
    row = load(TRUST)["summary"]["arms"][key]
    mosaic = [] if key == "sgd" else [trust_mosaic_accuracy(key)]
    return [
        load(TRUST)["rates"][key],
        *mosaic,
        *spread(row["final_accuracy"]),
        *spread(row["final"]["steps_ratio_to_sgd"]),
        *spread(row["final"]["total_ratio_to_sgd"]),
    ]


def trust_rate(key):
    return load(TRUST)["rates"][key]


def trust_final(key):
    return load(TRUST)["summary"]["arms"][key]["final_accuracy"]["median"]


def trust_steps_ratio(key):
    return load(TRUST)["summary"]["arms"][key]["final"]["steps_ratio_to_sgd"]["median"]


def trust_keys(arm_name):
    return [key for key in load(TRUST)["runs"] if key.split("@")[0] == arm_name]


def trust_table_order():
    """sgd, then each rate's `agd` and `agd_trust` rows, as the table lists them."""
    keys = [key for key in load(TRUST)["runs"] if key != "sgd"]
    return ["sgd", *sorted(keys, key=lambda key: (trust_rate(key), key))]


def highest_trained(arm_name):
    """The highest rate at which no seed of `arm_name` ended at chance."""
    return max(trust_rate(key) for key in trust_keys(arm_name) if at_chance(key) == 0)


def chance_rate(key, seeds):
    """The rate of `key` if exactly `seeds` of its seeds ended at chance (as the page says)."""
    return trust_rate(key) if at_chance(key) == seeds else None


def best_rate(arm_name, measure):
    """The key of `arm_name` with the highest `measure`."""
    return max(trust_keys(arm_name), key=measure)


def trust_validation(key):
    """Median final validation accuracy over the seeds."""
    return statistics.median(curve[-1]["validation_accuracy"] for curve in trust_runs(key))


def trust_ratios(key, at):
    """Lowest and highest trust ratio of the kernels over the seeds: `at="first"` in the
    last step before the first evaluation, `at="end"` in the mosaic phase's last step (the
    ratios stay as they were after it)."""
    values = []
    for curve in trust_runs(key):
        point = curve[0] if at == "first" else curve[-1]
        values += [v for name, v in point["trust_ratios"].items() if name.endswith("kernel")]
    return min(values), max(values)


# --- Helpers for the other benchmarks.

TTA, TTA_ARCHIVED = "time_to_accuracy_mnist.json", "archive/time_to_accuracy_mnist_2026-11-23.json"
OVERHEAD = "layer_adaptive_overhead.json"
OVERHEAD_1125 = "archive/layer_adaptive_overhead_2026-11-25.json"
OVERHEAD_1130 = "archive/layer_adaptive_overhead_2026-11-30.json"
PIPELINE, SCALE, SYNTHETIC = "regular_phase_pipeline.json", "scale.json", "synthetic.json"
LOOPBACK = {
    "b128": "multi_worker_loopback_b128.json",
    "b1024": "multi_worker_loopback_b1024.json",
    "input_context": "multi_worker_loopback_b128_input_context.json",
}
PAPER = "mosaic_study/paper_setting_small.json"


def method(name, method_name):
    return load(name)["summary"]["methods"][method_name]


def tta_row(name, method_name, keys):
    """What a row of a time-to-accuracy table shows: "not reached" has no number."""
    row = method(name, method_name)
    return [row[key] for key in keys if row[key] is not None]


TTA_MNIST_KEYS = (
    "time_to_target_s",
    "ratio_to_sgd",
    "codebook_build_s",
    "total_ratio_to_sgd",
    "examples_to_target",
    "accuracy_within_sgd_time",
    "final_accuracy",
)
TTA_DEFORMED_KEYS = (
    "time_to_target_s",
    "ratio_to_sgd",
    "total_ratio_to_sgd",
    "accuracy_within_sgd_time",
    "final_accuracy",
)
TTA_METHODS = (
    "sgd",
    "adam",
    "agd",
    "agd_per_sample",
    "random_subset",
    "sgd_layer_adaptive",
    "adam_layer_adaptive",
    "agd_layer_adaptive",
)


def tta_ratio(name, method_name, key="ratio_to_sgd"):
    return lambda: method(name, method_name)[key]


def mosaic_end(name, method_name):
    """Median test accuracy (%) and examples (thousands) at the end of the mosaic phase."""
    ends = [[p for p in c if p["mosaic_phase"]][-1] for c in load(name)["runs"][method_name]]
    accuracy = 100 * statistics.median(p["test_accuracy"] for p in ends)
    return accuracy, statistics.median(p["examples"] for p in ends) / 1000


def seed_spread():
    """The largest ratio of one method's slowest to its fastest seed (train time)."""
    ratios = []
    for name in (TTA, "deformed.json"):
        for curves in load(name)["runs"].values():
            seconds = [c[-1]["seconds"] for c in curves]
            ratios.append(max(seconds) / min(seconds))
    return max(ratios)


def paper_row(method_name):
    """Per seed: accuracy at the end of the mosaic phase (if any), final accuracy, time."""
    curves = load(PAPER)["runs"][method_name]
    mosaic = [[p for p in c if p.get("mosaic_phase")] for c in curves]
    return [
        *(m[-1]["test_accuracy"] for m in mosaic if m),
        *(c[-1]["test_accuracy"] for c in curves),
        *(c[-1]["seconds"] for c in curves),
    ]


def paper_mosaic_epoch_seconds():
    """Median duration of an Algorithm 1 mosaic epoch after the first (which compiles)."""
    durations = []
    for curve in load(PAPER)["runs"]["agd_per_sample"]:
        mosaic = [p["seconds"] for p in curve if p.get("mosaic_phase")]
        durations += [b - a for a, b in zip(mosaic, mosaic[1:])]
    return statistics.median(durations)


LA_MNIST = "layer_adaptive_mnist.json"
LA_MNIST_CONTROL = "layer_adaptive_mnist_sgd_lr0.025.json"


def la_mnist_row(name, key):
    """Mean and standard deviation of the test error at each checkpoint, interleaved."""
    result = load(name)["results"][key]
    return [
        value for pair in zip(result["test_error_mean"], result["test_error_std"]) for value in pair
    ]


def la_mnist_factor(layer):
    return lambda: load(LA_MNIST)["results"]["sgd+layer_adaptive"]["last_layer_factors_seed0"][
        f"lenet/{layer}"
    ]


def la_final(name, key):
    return load(name)["results"][key]["final_test_error_mean"]


FINE_TUNING = "fine_tuning.json"


def fine_tuning_row(arm):
    """A row of the fine-tuning table: the chosen rate (and decay), then the test accuracy
    in percent, median, lowest and highest over the seeds."""
    result = load(FINE_TUNING)["results"][arm]
    spread = result["summary"]
    return [
        *result["chosen"].values(),
        *(100 * spread[key] for key in ("median", "min", "max")),
    ]


def fine_tuning_median(arm):
    return load(FINE_TUNING)["results"][arm]["summary"]["median"]


def fine_tuning_verdict(key):
    verdict = load(FINE_TUNING)["verdict"]
    return verdict[key] * (1 if key == "difference_points" else 100)


LARGE_BATCH = "large_batch.json"
LARGE_BATCH_CONTROL_MLP = "large_batch_control_mlp.json"
LARGE_BATCH_LENET5_LONG = "large_batch_lenet5_8_epochs.json"


def large_batch(model, batch, arm, name=LARGE_BATCH):
    return load(name)["results"][model][str(batch)][arm]


def large_batch_row(model, batch, arm, name=LARGE_BATCH):
    """What a row of the large-batch tables shows: the peak rate (where it has decimals),
    the median steps to the target (where 1,000 or more: smaller counts are not scanned)
    and epochs to it (where reached), the final test accuracy in percent (median, lowest,
    highest) and the milliseconds per step."""
    result = large_batch(model, batch, arm, name)
    values = [result["rate"]] if "." in f"{result['rate']:g}" else []
    steps = result["steps_to_target_median"]
    if steps is not None:
        values += [steps] if steps >= 1000 else []
        values.append(result["epochs_to_target_median"])
    accuracy = [result["final_test_accuracy_median"], *result["final_test_accuracy_range"]]
    return [*values, *(100 * a for a in accuracy), result["step_ms_median"]]


LARGE_BATCH_ARMS = (("sgd", "momentum SGD"), ("adam", "Adam"), ("lamb", "Lamb"), ("lars", "LARS"))


def large_batch_lamb_lead(key):
    """Points by which Lamb's median final test accuracy is above LARS's."""
    return lambda: (
        -100 * load(LARGE_BATCH)["goals"]["lars_vs_lamb"][key]["final_accuracy_lars_minus_lamb"]
    )


def large_batch_sweep(name, model, batch, arm, rates=True):
    """Rates (where shown with decimals) and validation accuracies (percent) of a sweep."""
    sweep = load(name)["results"][model][str(batch)][arm]["sweep"]
    shown = [s["rate"] for s in sweep] if rates else []
    return [*shown, *(100 * s["validation_accuracy"] for s in sweep)]


def large_batch_final(model, batch, arm, name=LARGE_BATCH):
    """The median final test accuracy of an arm, in percent."""
    return lambda: 100 * large_batch(model, batch, arm, name)["final_test_accuracy_median"]


def large_batch_goal(model, key):
    return lambda: load(LARGE_BATCH)["goals"]["per_model"][model][key]


def overhead(name, model, optimizer):
    return next(
        r for r in load(name)["results"] if (r["model"], r["optimizer"]) == (model, optimizer)
    )


def overhead_row(model, optimizer):
    r = overhead(OVERHEAD, model, optimizer)
    return [
        r["plain_ms_per_step"],
        r["ratio_median"],
        *r["ratio_ci95"],
        r["null_wrapper_ratio_median"],
        *r["null_wrapper_ratio_ci95"],
        r["control_ratio_median"],
        *r["control_ratio_ci95"],
    ]


PER_LAYER_OVERHEAD = "per_layer_rates_overhead.json"
PER_LAYER_OVERHEAD_MODELS = (
    ("MLP 784-512-512-10, batch 128", "mlp"),
    ("LeNet-style CNN, batch 64", "cnn"),
    ("50 x Dense(64) + Dense(10), batch 128", "deep"),
)


def per_layer_overhead(model):
    return next(r for r in load(PER_LAYER_OVERHEAD)["results"] if r["model"] == model)["variants"]


def per_layer_overhead_row(model):
    """Plain ms/step, then median (CI) over the plain step of each column's variant."""
    variants = per_layer_overhead(model)
    values = [variants["plain"]["ms_per_step"]]
    for name in ("layerwise_decay", "trust_ratio", "lars", "lamb", "plain_copy"):
        ratio = variants[name]["ratio_to_plain"]
        values += [ratio["median"], *ratio["ci95"]]
    return values


def per_layer_overhead_trust(model):
    return lambda: per_layer_overhead(model)["trust_ratio"]["ratio_to_plain"]["median"]


def archived_overhead_row(name, model, optimizer):
    r = overhead(name, model, optimizer)
    return [r["plain_ms_per_step"], r["ratio_median"], *r["ratio_ci95"]]


def loopback_row(name, workers):
    data = load(LOOPBACK[name])
    summary, runs = data["summary"][str(workers)], data["runs"][str(workers)]
    return [
        summary["median_regular_items_per_s"],
        *(run["regular_items_per_s"] for run in runs),
        summary["median_regular_items_per_s_per_worker"],
        1000 * summary["median_regular_step_seconds"],
    ]


def loopback_step_ms(name, workers):
    return 1000 * load(LOOPBACK[name])["summary"][str(workers)]["median_regular_step_seconds"]


def loopback_epochs(workers=2):
    """Seconds of the timed epochs (1 to 3) of worker 0, at batch 128, all runs."""
    runs = load(LOOPBACK["b128"])["runs"][str(workers)]
    return [s for run in runs for s in run["epoch_seconds_per_worker"][0][1:]]


def mlp_gradient_megabytes(sizes=(784, 256, 128, 10)):
    """float32 weights and biases of the loopback benchmark's MLP."""
    return 4 * sum(a * b + b for a, b in zip(sizes, sizes[1:])) / 1e6


def pipeline(hidden):
    return next(m for m in load(PIPELINE)["models"] if m["hidden"] == hidden)


def pipeline_row(hidden):
    model = pipeline(hidden)
    return [
        model["epoch_seconds_median"]["curriculum_dataset"],
        model["epoch_seconds_median"]["from_tensor_slices"],
        model["ratio_curriculum_dataset_to_plain"],
        min(model["ratio_per_round"]),
        max(model["ratio_per_round"]),
    ]


def scale(*keys):
    value = load(SCALE)
    for key in keys:
        value = value[key]
    return value


def boundaries(key):
    return [b[key] for b in scale("train", "level_boundaries", "boundaries")]


def sweep_rates(regime, name):
    return [float(rate) for rate in study(regime)["sweep_validation_accuracy"][name]]


# Reasons for numbers that are not benchmark results.
SETTING = "a setting of the run, not a result"
GOAL = "a goal set before the run"
PAPER_FIGURE = "the paper's figure"
MNIST_SIZE = "the size of MNIST, not a result"
ARCHIVED = "an archived run that printed its output and kept no JSON"

BINDINGS = [
    # README.md
    Given("README.md", "about 25 s in all", "the quickstart's run time, a guide for readers"),
    Given("README.md", "about 30 s on the same machine", "the quickstart's run time"),
    Quote(
        "README.md",
        "it reached 98.04% test accuracy in 1.55 times SGD's time (codebook build included; "
        "1.04 times",
        lambda: 100 * study(PLAIN)["summary"]["levels"]["final"],
        median_ratio(PLAIN, "agd_weighted"),
        median_ratio(PLAIN, "phased_sgd"),
    ),
    Quote(
        "README.md",
        "layer-wise decay ended 0.21 points above a uniform rate",
        lambda: fine_tuning_verdict("difference_points"),
    ),
    # docs/agd.md
    Given("docs/agd.md", "256 MiB", "a constant of the code (IN_GRAPH_BYTES)"),
    Quote(
        "docs/agd.md",
        "would: 0.98x its epoch time",
        lambda: pipeline(512)["ratio_curriculum_dataset_to_plain"],
    ),
    Given("docs/agd.md", "within 10,000 levels", "a limit of the code"),
    Given("docs/agd.md", "after 10,000 levels", "a limit of the code"),
    Given("docs/agd.md", "decay_rate='0.5'", "an argument in an error message"),
    Given("docs/agd.md", "(default 100,000)", "a default of the code"),
    Quote(
        "docs/agd.md",
        "4,000,000 x 784 uint8 on 2 cores: 51 s",
        lambda: scale("codebook", "data", "n_samples"),
        lambda: scale("codebook", "fit_seconds"),
    ),
    Given("docs/agd.md", r"($\varepsilon_1 = 7.5$, $r = 0.999$)", PAPER_FIGURE),
    Given(
        "docs/agd.md",
        "every class's mean error is about 6.4, so ε = 7.5",
        "a property of MNIST (a class's mean distance to its mean, averaged over the "
        "classes), not a benchmark result; 7.5 is the paper's",
    ),
    Given("docs/agd.md", "at 0.1% per level", "the paper's r = 0.999"),
    Given("docs/agd.md", '("multiply by 0.8', PAPER_FIGURE),
    Given("docs/agd.md", "(0.8 vs 0.4)", PAPER_FIGURE),
    # docs/troubleshooting.md
    Given("docs/troubleshooting.md", r"$\varepsilon_1 = 7.5$", PAPER_FIGURE),
    Quote(
        "docs/troubleshooting.md",
        "a mosaic rate of 0.4 diverged",
        lambda: max(sweep_rates(PLAIN, "agd")),
    ),
    Quote(
        "docs/troubleshooting.md",
        "chose 0.05 to 0.2 on the MLP and 0.00625 on a CNN",
        lambda: min(mosaic_rates(MLP_REGIMES, MOSAIC_ARMS)),
        lambda: max(mosaic_rates(MLP_REGIMES, MOSAIC_ARMS)),
        lambda: study(CNN)["rates"]["agd_weighted"],
    ),
    # The tutorials.
    Quote(
        "docs/tutorials/when_does_agd_pay.py",
        "minus 0.2 points",
        *(lambda r=r: 100 * study(r)["settings"]["margin"] for r in (PLAIN,)),
    ),
    Given(
        "docs/tutorials/when_does_agd_pay.py",
        "validation accuracy below 20%",
        "the notebook's own threshold for a diverged run",
    ),
    Quote(
        "docs/tutorials/your_own_data.py",
        "4,000,000 samples in a 2.9 GiB memory map",
        lambda: scale("codebook", "data", "n_samples"),
        lambda: scale("codebook", "data", "gib_on_disk"),
    ),
    # docs/scaling_out.md
    Given("docs/scaling_out.md", "1e-5", "the tolerance the tests assert"),
    Given(
        "docs/scaling_out.md",
        "takes about 2 minutes",
        "the test suite's run time, a guide for developers",
    ),
    Given("docs/scaling_out.md", "about 60 s", "the test suite's run time"),
    Given("docs/scaling_out.md", "takes about 40 s", "the test suite's run time"),
    Quote(
        "docs/scaling_out.md",
        "first 12,000 samples",
        lambda: load(LOOPBACK["b128"])["train_samples"],
    ),
    Table(
        "docs/scaling_out.md",
        "python benchmarks/multi_worker.py --workers 1 2 --repeats 3 --input-context",
        (
            ("128", loopback_row("b128", 1)),
            ("128", loopback_row("b128", 2)),
            ("1024", loopback_row("b1024", 1)),
            ("1024", loopback_row("b1024", 2)),
            ("--input-context", loopback_row("input_context", 1)),
            ("--input-context", loopback_row("input_context", 2)),
        ),
    ),
    Quote(
        "docs/scaling_out.md",
        "(0.94 MB for this MLP)",
        mlp_gradient_megabytes,
    ),
    Quote(
        "docs/scaling_out.md",
        "adds about 17-27 ms to a step here, while one worker's whole step at batch 128 takes "
        "1.8 ms",
        lambda: min(loopback_step_ms(n, 2) - loopback_step_ms(n, 1) for n in LOOPBACK),
        lambda: max(loopback_step_ms(n, 2) - loopback_step_ms(n, 1) for n in LOOPBACK),
        lambda: loopback_step_ms("b128", 1),
    ),
    Quote(
        "docs/scaling_out.md",
        "(2-worker throughput 2.8x higher at batch 1024)",
        lambda: (
            load(LOOPBACK["b1024"])["summary"]["2"]["median_regular_items_per_s"]
            / load(LOOPBACK["b128"])["summary"]["2"]["median_regular_items_per_s"]
        ),
    ),
    Quote(
        "docs/scaling_out.md",
        "epochs also took 1-9 s more than their steps at the median step time (94 steps of "
        "18.7 ms are 1.8 s; the epochs took 3.0 to 10.5 s)",
        lambda: min(loopback_epochs()) - 94 * loopback_step_ms("b128", 2) / 1000,
        lambda: max(loopback_epochs()) - 94 * loopback_step_ms("b128", 2) / 1000,
        lambda: loopback_step_ms("b128", 2),
        lambda: 94 * loopback_step_ms("b128", 2) / 1000,
        lambda: min(loopback_epochs()),
        lambda: max(loopback_epochs()),
    ),
    Quote(
        "docs/scaling_out.md",
        "(2,108 and 2,373)",
        lambda: load(LOOPBACK["b128"])["summary"]["2"]["median_regular_items_per_s"],
        lambda: load(LOOPBACK["input_context"])["summary"]["2"]["median_regular_items_per_s"],
    ),
    # docs/layer_adaptive.md
    # Arithmetic: eq. (9) at the norm's floor, 1 + log(1 + 1 / 1e-7).
    Quote("docs/layer_adaptive.md", "about 17.1", 1 + math.log1p(1e7)),
    Given("docs/layer_adaptive.md", "the 10,000 MNIST test images", MNIST_SIZE),
    Quote(
        "docs/layer_adaptive.md",
        "(about 0.5 s)",
        lambda: load(OVERHEAD)["config"]["block_seconds"],
    ),
    Given("docs/layer_adaptive.md", "95 % interval", "the interval's level"),
    Given("docs/layer_adaptive.md", "(95 % CI)", "the interval's level"),
    Quote(
        "docs/layer_adaptive.md",
        "(load average 0.6 at start)",
        lambda: load(OVERHEAD)["load_average_before_after"][0],
    ),
    Table(
        "docs/layer_adaptive.md",
        "Step time over the plain step, median (95 % CI):",
        tuple((label, per_layer_overhead_row(model)) for label, model in PER_LAYER_OVERHEAD_MODELS),
    ),
    Table(
        "docs/layer_adaptive.md",
        "Step time of the trust ratio and of LARS over Lamb's",
        tuple(
            (
                label,
                [
                    per_layer_overhead(model)[name]["ratio_to_lamb"]["median"]
                    for name in ("trust_ratio", "lars")
                ],
            )
            for label, model in PER_LAYER_OVERHEAD_MODELS
        ),
    ),
    Quote(
        "docs/layer_adaptive.md",
        "load average 1.23 at the\nstart, 0.67 at the end",
        lambda: load(PER_LAYER_OVERHEAD)["load_average_before_after"][0],
        lambda: load(PER_LAYER_OVERHEAD)["load_average_before_after"][1],
    ),
    Given("docs/layer_adaptive.md", "blocks of about 0.4 s", "the script's --block-seconds"),
    Given("docs/layer_adaptive.md", "within the 2 % goal", "the goal"),
    Given("docs/layer_adaptive.md", "(at most 2 % over the plain optimizer", "the goal"),
    Quote(
        "docs/layer_adaptive.md",
        "is not**: 1.249 on the MLP, 1.039 on the CNN and 1.362 on the",
        per_layer_overhead_trust("mlp"),
        per_layer_overhead_trust("cnn"),
        per_layer_overhead_trust("deep"),
    ),
    Given("docs/layer_adaptive.md", "within about 1 % of", "read off the table above"),
    Table(
        "docs/layer_adaptive.md",
        "python benchmarks/layer_adaptive_overhead.py --plot docs/layer_adaptive_overhead.png",
        tuple(
            (label, overhead_row(model, optimizer))
            for model in ("mlp", "cnn", "deep")
            for optimizer, label in (("nesterov", "Nesterov"), ("adam", "Adam"))
        ),
    ),
    Quote(
        "docs/layer_adaptive.md",
        "within the 3 % goal, and the null wrapper stays within 1.6 % of plain everywhere",
        lambda: load(OVERHEAD)["target"]["median_overhead_percent"],
        lambda: (
            max(abs(r["null_wrapper_ratio_median"] - 1) for r in load(OVERHEAD)["results"]) * 100
        ),
    ),
    Quote(
        "docs/layer_adaptive.md",
        "1.063, and 1.058 over the null wrapper",
        lambda: overhead(OVERHEAD, "cnn", "adam")["ratio_median"],
        lambda: overhead(OVERHEAD, "cnn", "adam")["wrapped_to_null_ratio_median"],
    ),
    Quote(
        "docs/layer_adaptive.md",
        "(2026-11-30) gave 1.060",
        lambda: overhead(OVERHEAD_1130, "cnn", "adam")["ratio_median"],
    ),
    Quote(
        "docs/layer_adaptive.md",
        "that run gave 1.040 (Nesterov) and 1.051 (Adam)",
        lambda: overhead(OVERHEAD_1130, "deep", "nesterov")["ratio_median"],
        lambda: overhead(OVERHEAD_1130, "deep", "adam")["ratio_median"],
    ),
    Quote(
        "docs/layer_adaptive.md",
        "Nesterov cost 1.041 on the MLP and 1.056 on the CNN",
        lambda: overhead(OVERHEAD_1125, "mlp", "nesterov")["ratio_median"],
        lambda: overhead(OVERHEAD_1125, "cnn", "nesterov")["ratio_median"],
    ),
    # docs/layer_adaptive.md, "Large-batch training".
    Quote(
        "docs/layer_adaptive.md",
        "50,000 of the MNIST training images; the other 10,000",
        lambda: load(LARGE_BATCH)["config"]["train_size"],
        lambda: load(LARGE_BATCH)["config"]["validation_size"],
    ),
    Given("docs/layer_adaptive.md", "The 10,000 test images", MNIST_SIZE),
    Quote(
        "docs/layer_adaptive.md",
        "less 0.2 points: 97.21% for the MLP, 98.43% for LeNet-5",
        lambda: 100 * load(LARGE_BATCH)["config"]["margin"],
        lambda: 100 * load(LARGE_BATCH)["targets"]["mlp"],
        lambda: 100 * load(LARGE_BATCH)["targets"]["lenet5"],
    ),
    Given(
        "docs/layer_adaptive.md", "at batch 1,024, 4,096 and 8,192", "the benchmark's batch sizes"
    ),
    Given("docs/layer_adaptive.md", "Momentum SGD (0.9)", "the benchmark's setting"),
    Given(
        "docs/layer_adaptive.md",
        "at batch 128, 1,024, 4,096 and 8,192), for LeNet-5 at batch 4,096",
        "the benchmark's batch sizes",
    ),
    Quote(
        "docs/layer_adaptive.md",
        "trust coefficient 0.001",
        lambda: load(LARGE_BATCH)["config"]["trust_coefficient"],
    ),
    Quote(
        "docs/layer_adaptive.md",
        "over the first 10% of the budget",
        lambda: 100 * load(LARGE_BATCH)["config"]["warmup"],
    ),
    Quote("docs/layer_adaptive.md", "The run took 1,864 s", lambda: load(LARGE_BATCH)["seconds"]),
    Table(
        "docs/layer_adaptive.md",
        "The reference (batch 128):",
        tuple(
            (label, large_batch_row(model, 128, "reference"))
            for label, model in (("MLP", "mlp"), ("LeNet-5", "lenet5"))
        ),
    ),
    *(
        Table(
            "docs/layer_adaptive.md",
            f"{label}, batch {batch:,}:",
            tuple(
                (name, large_batch_row(model, batch, arm))
                for arm, name in LARGE_BATCH_ARMS
                if arm in load(LARGE_BATCH)["results"][model][str(batch)]
            ),
        )
        for label, model, batch in (
            ("MLP", "mlp", 1024),
            ("MLP", "mlp", 4096),
            ("MLP", "mlp", 8192),
            ("LeNet-5", "lenet5", 4096),
        )
    ),
    Given("docs/layer_adaptive.md", "at least 30% more steps", "the goal"),
    Quote(
        "docs/layer_adaptive.md",
        "SGD's validation accuracy at rates 0.1, 0.2 and 0.4 was 94.08%, 95.60% and 95.40%",
        *large_batch_sweep(LARGE_BATCH_CONTROL_MLP, "mlp", 4096, "sgd"),
    ),
    Quote(
        "docs/layer_adaptive.md",
        "LARS's at 10, 20 and 40 was 97.35%, 92.62% and 19.06%",
        *large_batch_sweep(LARGE_BATCH_CONTROL_MLP, "mlp", 4096, "lars", rates=False),
    ),
    Quote(
        "docs/layer_adaptive.md",
        "The rates of the main run (0.2 and 10)",
        lambda: large_batch("mlp", 4096, "sgd")["rate"],
    ),
    Given("docs/layer_adaptive.md", "at batch 4,096 and 8,192, since", "the batch sizes"),
    Quote(
        "docs/layer_adaptive.md",
        "(8.11 epochs), against a limit of 42.9 steps",
        lambda: large_batch("mlp", 4096, "lars")["epochs_to_target_median"],
        large_batch_goal("mlp", "step_limit"),
    ),
    Quote(
        "docs/layer_adaptive.md",
        "in its 10 epochs (95.31%)",
        lambda: 100 * large_batch("mlp", 4096, "sgd")["final_test_accuracy_median"],
    ),
    Quote(
        "docs/layer_adaptive.md",
        "LARS ended at 71.92%",
        lambda: 100 * large_batch("lenet5", 4096, "lars")["final_test_accuracy_median"],
    ),
    Quote(
        "docs/layer_adaptive.md",
        "Lamb 0.18 points higher",
        large_batch_lamb_lead("mlp/1024"),
    ),
    Quote(
        "docs/layer_adaptive.md",
        "and ended 0.45 points higher",
        large_batch_lamb_lead("mlp/4096"),
    ),
    Quote(
        "docs/layer_adaptive.md",
        "Lamb ended 1.24 points higher",
        large_batch_lamb_lead("mlp/8192"),
    ),
    Quote(
        "docs/layer_adaptive.md",
        "Lamb ended 21.46 points higher (93.38% against 71.92%)",
        large_batch_lamb_lead("lenet5/4096"),
        lambda: 100 * large_batch("lenet5", 4096, "lamb")["final_test_accuracy_median"],
        lambda: 100 * large_batch("lenet5", 4096, "lars")["final_test_accuracy_median"],
    ),
    Quote(
        "docs/layer_adaptive.md",
        "Adam chose its largest (0.01) everywhere",
        lambda: load(LARGE_BATCH)["config"]["grids"]["adam"][-1],
    ),
    Quote(
        "docs/layer_adaptive.md",
        "LARS's to 0.3, 1 and 3, Lamb's to 0.03, 0.1 and 0.3",
        lambda: load(LARGE_BATCH_LENET5_LONG)["config"]["grids"]["lars"][0],
        *(
            lambda i=i: load(LARGE_BATCH_LENET5_LONG)["config"]["grids"]["lamb"][i]
            for i in range(3)
        ),
    ),
    Table(
        "docs/layer_adaptive.md",
        "LeNet-5, batch 4,096, 8 epochs:",
        tuple(
            (label, large_batch_row("lenet5", 4096, arm, LARGE_BATCH_LENET5_LONG))
            for arm, label in LARGE_BATCH_ARMS
            if arm != "adam"
        ),
    ),
    Quote(
        "docs/layer_adaptive.md",
        "(98.17% against the target of 98.43%), SGD ended at 92.79% and LARS at 90.95%",
        large_batch_final("lenet5", 4096, "lamb", LARGE_BATCH_LENET5_LONG),
        lambda: 100 * load(LARGE_BATCH_LENET5_LONG)["targets"]["lenet5"],
        large_batch_final("lenet5", 4096, "sgd", LARGE_BATCH_LENET5_LONG),
        large_batch_final("lenet5", 4096, "lars", LARGE_BATCH_LENET5_LONG),
    ),
    # Counted in the optimized HLO (benchmarks/layer_adaptive_hlo.py, which keeps no JSON);
    # they follow from the MLP kernel's shape, 784 x 512, and the row length 32.
    Quote("docs/layer_adaptive.md", "is 12,544 numbers", 784 * 512 // 32),
    Quote("docs/layer_adaptive.md", "(401,408 numbers", 784 * 512),
    # docs/layer_adaptive.md: fine-tuning (benchmarks/fine_tuning.py).
    Quote(
        "docs/layer_adaptive.md",
        "for 2 epochs on the 30,596 training",
        lambda: load(FINE_TUNING)["setup"]["pretrain_images"],
    ),
    Quote(
        "docs/layer_adaptive.md",
        "accuracy on 2,000 held-out training images",
        lambda: load(FINE_TUNING)["setup"]["validation_images"],
    ),
    Quote(
        "docs/layer_adaptive.md",
        "is tested on the 4,861",
        lambda: load(FINE_TUNING)["setup"]["test_images"],
    ),
    Table(
        "docs/layer_adaptive.md",
        "python benchmarks/fine_tuning.py --plot docs/images/fine_tuning.png > "
        "docs/images/fine_tuning.json",
        (
            ("uniform rate", fine_tuning_row("uniform")),
            ("frozen backbone", fine_tuning_row("frozen")),
            ("layer-wise decay", fine_tuning_row("layerwise_decay")),
            ("multipliers", fine_tuning_row("multipliers")),
        ),
    ),
    Quote(
        "docs/layer_adaptive.md",
        "Layer-wise decay's median, 95.68 %, is 0.21 points above the better baseline, the "
        "uniform rate (95.47 %): about 10 of the 4,861 test images",
        lambda: fine_tuning_verdict("layerwise_decay_median"),
        lambda: fine_tuning_verdict("difference_points"),
        lambda: fine_tuning_verdict("best_baseline_median"),
        lambda: load(FINE_TUNING)["setup"]["test_images"],
    ),
    Quote(
        "docs/layer_adaptive.md",
        "Freezing the backbone lost about 5 points",
        lambda: 100 * fine_tuning_median("uniform") - 100 * fine_tuning_median("frozen"),
    ),
    Quote("docs/layer_adaptive.md", "the run took 623 s", lambda: load(FINE_TUNING)["seconds"]),
    # docs/benchmarks.md: the settings.
    Given("docs/benchmarks.md", "24 GiB", "the machine's memory"),
    Quote(
        "docs/benchmarks.md",
        "`--margin` (0.002)",
        lambda: load(TTA)["settings"]["margin"],
    ),
    Quote(
        "docs/benchmarks.md",
        "1,000,000 samples from 10 Gaussian classes",
        lambda: load(SYNTHETIC)["n_samples"],
    ),
    Quote(
        "docs/benchmarks.md",
        "(10,000 images held out of the training set",
        lambda: study(PLAIN)["settings"]["validation_samples"],
    ),
    Given("docs/benchmarks.md", "warmup over 10%", SETTING),
    Quote(
        "docs/benchmarks.md",
        "median final accuracy minus 0.002",
        lambda: study(PLAIN)["settings"]["margin"],
    ),
    Quote(
        "docs/benchmarks.md",
        "40% of training and validation labels flipped",
        lambda: 100 * study(NOISE)["settings"]["label_noise"],
    ),
    # The method study.
    Quote(
        "docs/benchmarks.md",
        "50,000 training images (10,000 held out for the sweeps)",
        lambda: 60000 - study(PLAIN)["settings"]["validation_samples"],
        lambda: study(PLAIN)["settings"]["validation_samples"],
    ),
    *(
        Quote("docs/benchmarks.md", f"{anchor}, target {target}", *values)
        for anchor, target, values in (
            (
                "(`python benchmarks/mosaic_study.py`)",
                "0.9804",
                [lambda: study(PLAIN)["summary"]["levels"]["final"]],
            ),
            (
                "the test labels are clean)",
                "0.9659",
                [lambda: study(NOISE)["summary"]["levels"]["final"]],
            ),
            (
                "the mosaic phase is half of it)",
                "0.9736",
                [lambda: study(SHORT)["summary"]["levels"]["final"]],
            ),
        )
    ),
    Quote(
        "docs/benchmarks.md",
        "**40% label noise**",
        lambda: 100 * study(NOISE)["settings"]["label_noise"],
    ),
    *(
        Table(
            "docs/benchmarks.md",
            anchor,
            tuple((name, study_row(regime, name)) for name in study(regime)["summary"]["arms"]),
        )
        for anchor, regime in (
            ("**Plain MNIST**", PLAIN),
            ("**40% label noise**", NOISE),
            ("**Short budget**", SHORT),
            ('"large_batch_sgd": [0.0125, 0.025, 0.05, 0.1]}', CNN),
        )
    ),
    Quote(
        "docs/benchmarks.md",
        "15,000 training and 5,000 validation images",
        lambda: study(CNN)["settings"]["train_samples"],
        lambda: study(CNN)["settings"]["validation_samples"],
    ),
    Quote(
        "docs/benchmarks.md",
        "target 0.9759, codebook build 1.6 s",
        lambda: study(CNN)["summary"]["levels"]["final"],
        lambda: study(CNN)["codebook_build_s"],
    ),
    Quote(
        "docs/benchmarks.md",
        "phased_sgd stayed at chance on one seed at 0.0125, and AGD diverged at 0.025 where "
        "random subsets trained (validation 0.9752)",
        lambda: study(CNN)["rates"]["phased_sgd"],
        lambda: study(CNN)["rates"]["random_subset"],
        sweep(CNN, "random_subset", "0.025"),
    ),
    Quote(
        "docs/benchmarks.md",
        "AGD (1.39x, one seed short of the target) loses to random subsets (1.14x, every seed)",
        median_ratio(CNN, "agd_weighted"),
        median_ratio(CNN, "random_subset"),
    ),
    Table(
        "docs/benchmarks.md",
        "--methods sgd agd_per_sample agd random_subset large_batch_sgd",
        (
            ("sgd", paper_row("sgd")),
            ("agd_per_sample (Algorithm 1)", paper_row("agd_per_sample")),
            ("agd (weighted)", paper_row("agd")),
            ("random_subset", paper_row("random_subset")),
            (
                "large_batch_sgd (batch 4,500 at 0.8)",
                [
                    load(PAPER)["settings"]["large_batch_learning_rate"],
                    *paper_row("large_batch_sgd"),
                ],
            ),
        ),
    ),
    Quote(
        "docs/benchmarks.md",
        "The target is 0.9661",
        lambda: load(PAPER)["summary"]["target_accuracy"],
    ),
    Quote(
        "docs/benchmarks.md",
        "leaves the sigmoid network at 61 to 68% accuracy",
        lambda: 100 * min(paper_row("agd_per_sample")[:3]),
        lambda: 100 * max(paper_row("agd_per_sample")[:3]),
    ),
    Given("docs/benchmarks.md", "annealed at 0.1% per epoch", PAPER_FIGURE),
    Quote("docs/benchmarks.md", "costs N examples (2.3 s", paper_mosaic_epoch_seconds),
    Given(
        "docs/benchmarks.md",
        "The goal was at most 0.6x of tuned SGD's time and 20% ahead of the best control in "
        "at least one regime, and at most 1.0x",
        GOAL,
    ),
    Quote(
        "docs/benchmarks.md",
        "AGD needs 1.55x (weighted, the default mode) or 1.73x (proportional), with the "
        "codebook build. With 40% label noise it needs 1.69x",
        median_ratio(PLAIN, "agd_weighted"),
        median_ratio(PLAIN, "agd"),
        lambda: 100 * study(NOISE)["settings"]["label_noise"],
        median_ratio(NOISE, "agd_weighted"),
    ),
    Quote(
        "docs/benchmarks.md",
        "On the CNN it needs 1.39x against random subsets' 1.14x",
        median_ratio(CNN, "agd_weighted"),
        median_ratio(CNN, "random_subset"),
    ),
    Quote(
        "docs/benchmarks.md",
        "weighted AGD needs 0.84x SGD's steps on plain MNIST. But `phased_sgd`, the same 52 "
        "large-batch steps on random real samples with no codebook, needs 0.78x",
        median_ratio(PLAIN, "agd_weighted", "steps_ratio_to_sgd"),
        median_ratio(PLAIN, "phased_sgd", "steps_ratio_to_sgd"),
    ),
    Quote(
        "docs/benchmarks.md",
        "median test accuracy was 0.898 (agd), 0.893 (agd_weighted), 0.873 (group means), "
        "0.898 (medoids), 0.904 (random subsets) and 0.910 (random real samples, "
        "`phased_sgd`); at the first evaluation after it (step 125), 0.923, 0.924, 0.926, "
        "0.922, 0.927 and 0.935. Under label noise, after it: 0.921 (agd at 0.2), 0.913 "
        "(medoids), 0.927 (random subsets)",
        *(lambda n=n: mosaic_accuracy(PLAIN, n) for n in ABLATION_ARMS),
        *(lambda n=n: accuracy_after_mosaic(PLAIN, n) for n in ABLATION_ARMS),
        lambda: accuracy_after_mosaic(NOISE, "agd"),
        lambda: study(NOISE)["rates"]["agd"],
        lambda: accuracy_after_mosaic(NOISE, "medoids"),
        lambda: accuracy_after_mosaic(NOISE, "random_subset"),
    ),
    Given("docs/benchmarks.md", "batch-1,024 arm", SETTING),
    Given("docs/benchmarks.md", "(95 % CI)", "the interval's level"),
    Quote("docs/benchmarks.md", "At a mosaic rate of 0.4", lambda: max(sweep_rates(PLAIN, "agd"))),
    Quote(
        "docs/benchmarks.md",
        "Every arm on real samples trained at 0.4: phased_sgd (0.974 and 0.957 validation "
        "accuracy), random_subset (0.963, 0.934) and medoids (0.968, 0.945)",
        lambda: max(sweep_rates(PLAIN, "phased_sgd")),
        *(
            sweep(regime, name, "0.4")
            for name in ("phased_sgd", "random_subset", "medoids")
            for regime in (PLAIN, SHORT)
        ),
    ),
    Quote(
        "docs/benchmarks.md",
        "The sweeps chose mosaic rates of 0.05 to 0.2 against SGD's 0.1",
        lambda: min(mosaic_rates(MLP_REGIMES, MOSAIC_ARMS)),
        lambda: max(mosaic_rates(MLP_REGIMES, MOSAIC_ARMS)),
        lambda: study(PLAIN)["rates"]["sgd"],
    ),
    Given("docs/benchmarks.md", "(0.1 x 8 = 0.8)", "arithmetic: SGD's rate times 1024 / 128"),
    # The trust ratio in the mosaic phase (docs/images/mosaic_study/trust_ratio.json).
    Quote(
        "docs/benchmarks.md",
        "(`--trust-coefficient`, 0.03) was set before the runs so that the kernels' trust "
        "ratios start near 1: 0.39 to 1.14 at the first evaluation at rate 0.05",
        lambda: load(TRUST)["settings"]["trust_coefficient"],
        lambda: trust_ratios("agd_trust@0.05", "first")[0],
        lambda: trust_ratios("agd_trust@0.05", "first")[1],
        lambda: trust_rate("agd_trust@0.05"),
    ),
    Quote(
        "docs/benchmarks.md",
        'Target 0.9799; "at chance": final test accuracy below 0.5',
        lambda: load(TRUST)["summary"]["levels"]["final"],
        given("the threshold of the table's count (chance is about 0.1)"),
    ),
    Table(
        "docs/benchmarks.md",
        "is the median at its last evaluation (step 49 of 52):",
        tuple((key.split("@")[0], trust_row(key)) for key in trust_table_order()),
    ),
    Quote(
        "docs/benchmarks.md",
        "Plain `agd` trained at 0.2, ended at chance on 2 of 3 seeds at 0.4 and on every seed "
        "at 0.8. `agd_trust` trained on every seed up to 1.6 and ended at chance on every "
        "seed at 3.2",
        lambda: highest_trained("agd"),
        lambda: chance_rate("agd@0.4", 2),
        lambda: chance_rate("agd@0.8", 3),
        lambda: highest_trained("agd_trust"),
        lambda: chance_rate("agd_trust@3.2", 3),
    ),
    Quote(
        "docs/benchmarks.md",
        "at rate 0.4 the kernels' trust ratios were 0.02 to 0.59 at the first evaluation (near "
        "1 at rate 0.05), and 0.59 to 3.78 in the mosaic phase's last step",
        lambda: trust_ratios("agd_trust@0.4", "first")[0],
        lambda: trust_ratios("agd_trust@0.4", "first")[1],
        lambda: trust_ratios("agd_trust@0.4", "end")[0],
        lambda: trust_ratios("agd_trust@0.4", "end")[1],
    ),
    Quote(
        "docs/benchmarks.md",
        "The mosaic phase ended at 0.919 test accuracy at best (`agd_trust` at 0.2) against "
        "0.914 (`agd` at 0.1). Above 0.4 the final accuracy falls: 0.9772 at 0.8",
        lambda: trust_mosaic_accuracy(best_rate("agd_trust", trust_mosaic_accuracy)),
        lambda: trust_rate(best_rate("agd_trust", trust_mosaic_accuracy)),
        lambda: trust_mosaic_accuracy(best_rate("agd", trust_mosaic_accuracy)),
        lambda: trust_rate(best_rate("agd", trust_mosaic_accuracy)),
        lambda: trust_rate("agd_trust@0.4"),
        lambda: trust_final("agd_trust@0.8"),
        lambda: trust_rate("agd_trust@0.8"),
    ),
    Given("docs/benchmarks.md", "(the linear scaling of SGD's rate", "a setting: 0.1 x 8"),
    Quote(
        "docs/benchmarks.md",
        "and 0.9574 at 1.6, both below the target",
        lambda: trust_final("agd_trust@1.6"),
        lambda: trust_rate("agd_trust@1.6"),
    ),
    Quote(
        "docs/benchmarks.md",
        "both arms would pick 0.1 (`agd_trust` 0.9812, `agd` 0.9808), where `agd_trust` needs "
        "0.95x SGD's steps against `agd`'s 1.02x",
        lambda: (
            trust_rate(best_rate("agd_trust", trust_validation))
            if trust_rate(best_rate("agd", trust_validation)) == 0.1
            else None
        ),
        lambda: trust_validation(best_rate("agd_trust", trust_validation)),
        lambda: trust_validation(best_rate("agd", trust_validation)),
        lambda: trust_steps_ratio(best_rate("agd_trust", trust_validation)),
        lambda: trust_steps_ratio(best_rate("agd", trust_validation)),
    ),
    Quote(
        "docs/benchmarks.md",
        "the rate no longer diverges until 3.2, but the best rate by validation accuracy "
        "stays at 0.1, inside the 0.05 to 0.2 that the study's sweeps chose",
        lambda: chance_rate("agd_trust@3.2", 3),
        lambda: trust_rate(best_rate("agd_trust", trust_validation)),
        lambda: min(mosaic_rates(MLP_REGIMES, MOSAIC_ARMS)),
        lambda: max(mosaic_rates(MLP_REGIMES, MOSAIC_ARMS)),
    ),
    Quote(
        "docs/benchmarks.md",
        "(0.9827 vs 0.9815, 0.9667 vs 0.9642, 0.9686 vs 0.9676)",
        *(
            final_accuracy(regime, name)
            for regime in (PLAIN, NOISE, SHORT)
            for name in ("agd_weighted", "agd")
        ),
    ),
    Quote(
        "docs/benchmarks.md",
        "at 0.66x SGD's time and 0.13x its steps",
        median_ratio(NOISE, "large_batch_sgd"),
        median_ratio(NOISE, "large_batch_sgd", "steps_ratio_to_sgd"),
    ),
    Quote(
        "docs/benchmarks.md",
        "ended 0.3 to 0.4 points below SGD and the real-sample arms",
        lambda: (
            100
            * (
                min(final_accuracy(NOISE, n)() for n in ("sgd", "phased_sgd", "random_subset"))
                - max(final_accuracy(NOISE, n)() for n in ("agd", "group_means", "medoids"))
            )
        ),
        lambda: (
            100
            * (
                max(final_accuracy(NOISE, n)() for n in ("sgd", "phased_sgd", "random_subset"))
                - min(final_accuracy(NOISE, n)() for n in ("agd", "group_means", "medoids"))
            )
        ),
    ),
    Quote(
        "docs/benchmarks.md",
        "The codebook build (4.9 s) is 0.26x of SGD's whole budget",
        lambda: study(PLAIN)["codebook_build_s"],
        lambda: (
            study(PLAIN)["codebook_build_s"]
            / statistics.median(c[-1]["seconds"] for c in study(PLAIN)["runs"]["sgd"])
        ),
    ),
    Quote(
        "docs/benchmarks.md",
        "took 8.5 to 11.1 ms per regular step in the plain and label-noise studies, and sgd "
        "and phased_sgd, on a `from_tensor_slices` pipeline, 7.3 to 7.4 ms; in the "
        "short-budget study the two were level (6.8 to 7.5 ms against 7.3 to 7.5 ms)",
        *regular_step_ms((PLAIN, NOISE), ON_STREAM),
        *regular_step_ms((PLAIN, NOISE), ON_SLICES),
        *regular_step_ms((SHORT,), ON_STREAM),
        *regular_step_ms((SHORT,), ON_SLICES),
    ),
    Quote(
        "docs/benchmarks.md",
        "0.98x a `from_tensor_slices` pipeline's epoch time for the MLP and 0.90x",
        lambda: pipeline(512)["ratio_curriculum_dataset_to_plain"],
        lambda: pipeline(32)["ratio_curriculum_dataset_to_plain"],
    ),
    # The regular phase.
    Quote(
        "docs/benchmarks.md",
        "MNIST arrays (60,000 images, MLP",
        lambda: pipeline(512)["samples_per_epoch"]["from_tensor_slices"],
    ),
    Table(
        "docs/benchmarks.md",
        "--repeats 7 --hidden 512 32   # JSON: docs/images/regular_phase_pipeline.json",
        (("MLP 512", pipeline_row(512)), ("--hidden 32", pipeline_row(32))),
    ),
    Quote(
        "docs/benchmarks.md",
        "The stream's epochs are 60,032 samples (full batches) against 60,000",
        lambda: pipeline(512)["samples_per_epoch"]["curriculum_dataset"],
        lambda: pipeline(512)["samples_per_epoch"]["from_tensor_slices"],
    ),
    Given("docs/benchmarks.md", "256 MiB", "a constant of the code (IN_GRAPH_BYTES)"),
    # The codebook build.
    Given("docs/benchmarks.md", "MNIST 60,000 x 784", MNIST_SIZE),
    Quote(
        "docs/benchmarks.md",
        "6.0 s for MNIST in the time-to-accuracy run, 29.8 s for its 1,000,000 synthetic "
        "samples, and 50.9 s for 4,000,000 images",
        lambda: load(TTA)["codebook_build_s"],
        lambda: load(SYNTHETIC)["codebook_build_s"],
        lambda: load(SYNTHETIC)["n_samples"],
        lambda: scale("codebook", "fit_seconds"),
        lambda: scale("codebook", "data", "n_samples"),
    ),
    Given("docs/benchmarks.md", "The paper reports 4.3 hours", PAPER_FIGURE),
    # The scale run.
    Quote(
        "docs/benchmarks.md",
        "4,000,000 x 784 uint8",
        lambda: scale("codebook", "data", "n_samples"),
    ),
    Quote(
        "docs/benchmarks.md",
        "2.9 GiB memory map",
        lambda: scale("codebook", "data", "gib_on_disk"),
    ),
    Given("docs/benchmarks.md", "every 20 ms", SETTING),
    Quote("docs/benchmarks.md", "1,236 steps", lambda: scale("train", "mosaic_steps")),
    Table(
        "docs/benchmarks.md",
        "python benchmarks/scale.py --mosaic-levels 6 --repeats 2",
        (
            (
                "0.95",
                [
                    lambda: scale("codebook", "fit_seconds"),
                    given(GOAL),
                    lambda: scale("codebook", "codewords"),
                    *(v / 1000 for v in scale("train", "agd_regular_samples_per_second")),
                    *(v / 1000 for v in scale("train", "plain_samples_per_second")),
                    lambda: scale("train", "regular_throughput_vs_plain_median"),
                    lambda: min(boundaries("ratio_to_median_step")),
                    lambda: max(boundaries("ratio_to_median_step")),
                    lambda: 1000 * scale("train", "level_boundaries", "median_step_seconds"),
                    lambda: scale("memory_mib", "peak_rss_anon_increase") / 1024,
                    given(GOAL),
                    lambda: scale("memory_mib", "peak_rss_file") / 1024,
                ],
            ),
        ),
    ),
    Quote("docs/benchmarks.md", "(2.7 s here", lambda: scale("train", "curriculum_seconds")),
    Quote(
        "docs/benchmarks.md",
        "took 42 ms against a 30 ms median",
        lambda: 1000 * max(boundaries("first_step_seconds")),
        lambda: 1000 * scale("train", "level_boundaries", "median_step_seconds"),
    ),
    Quote(
        "docs/benchmarks.md",
        "ended at loss 3.71, above chance (2.30:",
        lambda: scale("train", "loss")[0],
        math.log(10),  # The loss of a uniform guess over 10 classes.
    ),
    Quote("docs/benchmarks.md", "reached loss 0.23", lambda: scale("train", "loss")[1]),
    # The demo's plan.
    Given(
        "docs/benchmarks.md",
        "1,538 steps as 4 Keras epochs",
        "the demo's plan: 131 mosaic steps and 3 passes of 469 steps, from its settings",
    ),
    # Time to accuracy.
    Quote("docs/benchmarks.md", "vary by up to 1.8x between seeds", seed_spread),
    Quote(
        "docs/benchmarks.md",
        "Target: 0.9781 test accuracy (SGD's median final accuracy minus 0.002)",
        lambda: method(TTA, "sgd")["final_accuracy"] - load(TTA)["settings"]["margin"],
        lambda: load(TTA)["settings"]["margin"],
    ),
    Table(
        "docs/benchmarks.md",
        "minus 0.002). Medians over 3 seeds.",
        tuple((m, tta_row(TTA, m, TTA_MNIST_KEYS)) for m in TTA_METHODS),
    ),
    Quote(
        "docs/benchmarks.md",
        "Target: 0.9786.",
        lambda: load("deformed.json")["summary"]["target_accuracy"],
    ),
    Table(
        "docs/benchmarks.md",
        "### Deformed MNIST",
        tuple(
            (m, tta_row("deformed.json", m, TTA_DEFORMED_KEYS))
            for m in ("sgd", "adam", "agd", "random_subset")
        ),
    ),
    Quote(
        "docs/benchmarks.md", "Synthetic, 1,000,000 samples", lambda: load(SYNTHETIC)["n_samples"]
    ),
    Table(
        "docs/benchmarks.md",
        "python benchmarks/time_to_accuracy.py --workload synthetic",
        (
            (
                "10 codewords",
                [
                    lambda: load(SYNTHETIC)["codebook_build_s"],
                    lambda: load(SYNTHETIC)["mgd_epoch_s_median"],
                    lambda: load(SYNTHETIC)["full_epoch_s_median"],
                    lambda: 100 * load(SYNTHETIC)["mgd_epoch_share_of_full"],
                    given(GOAL),
                ],
            ),
        ),
    ),
    Quote(
        "docs/benchmarks.md",
        "1.38x SGD's time to the target on MNIST, 1.87x",
        tta_ratio(TTA, "agd"),
        tta_ratio(TTA, "agd", "total_ratio_to_sgd"),
    ),
    Quote(
        "docs/benchmarks.md",
        "The random-subset control took 1.63x on MNIST, less than AGD with its codebook, and "
        "reached the deformed target (1.12x)",
        tta_ratio(TTA, "random_subset"),
        tta_ratio("deformed.json", "random_subset"),
    ),
    Quote(
        "docs/benchmarks.md",
        "AGD's mosaic phase ends at 94.3% test accuracy after 6 epochs (131k examples), random "
        "subsets of the same sizes at 95.1%",
        *(lambda i=i: mosaic_end(TTA, "agd")[i] for i in (0, 1)),
        lambda: mosaic_end(TTA, "random_subset")[0],
    ),
    Quote(
        "docs/benchmarks.md",
        "(1.3% of a full epoch",
        lambda: 100 * load(SYNTHETIC)["mgd_epoch_share_of_full"],
    ),
    Quote(
        "docs/benchmarks.md",
        "slower to the target here (2.19x, 2.58x)",
        tta_ratio(TTA, "sgd_layer_adaptive"),
        tta_ratio(TTA, "adam_layer_adaptive"),
    ),
    # The archive.
    Quote(
        "docs/benchmarks.md",
        "Target: 0.9781 test accuracy. Medians over 3 seeds.",
        lambda: load(TTA_ARCHIVED)["summary"]["target_accuracy"],
    ),
    Table(
        "docs/benchmarks.md",
        "Target: 0.9781 test accuracy. Medians over 3 seeds.",
        tuple((m, tta_row(TTA_ARCHIVED, m, TTA_MNIST_KEYS)) for m in TTA_METHODS),
    ),
    Quote(
        "docs/benchmarks.md",
        "In this run AGD needed 1.85x SGD's time to the target (2.24x with the codebook build) "
        "and random subsets 1.20x; AGD's mosaic phase ended at 94.6% test accuracy after 6 "
        "epochs (130k examples), random subsets of the same sizes at 94.6% too; layer-adaptive "
        "rates made SGD and Adam slower (2.36x, 2.13x) and AGD faster (1.31x)",
        tta_ratio(TTA_ARCHIVED, "agd"),
        tta_ratio(TTA_ARCHIVED, "agd", "total_ratio_to_sgd"),
        tta_ratio(TTA_ARCHIVED, "random_subset"),
        *(lambda i=i: mosaic_end(TTA_ARCHIVED, "agd")[i] for i in (0, 1)),
        lambda: mosaic_end(TTA_ARCHIVED, "random_subset")[0],
        tta_ratio(TTA_ARCHIVED, "sgd_layer_adaptive"),
        tta_ratio(TTA_ARCHIVED, "adam_layer_adaptive"),
        tta_ratio(TTA_ARCHIVED, "agd_layer_adaptive"),
    ),
    Archived(
        "docs/benchmarks.md",
        "`benchmarks/regular_phase_pipeline.py` on earlier data paths, 2026-11-25",
        ARCHIVED,
    ),
    Archived("docs/benchmarks.md", "`benchmarks/codebook_build.py`, 2026-11-25", ARCHIVED),
    Archived("docs/benchmarks.md", "`examples/mnist_agd.py`, 2026-12-02", ARCHIVED),
    Quote(
        "docs/benchmarks.md",
        "test error (%) of LeNet on the 10,000 MNIST test images",
        lambda: load(LA_MNIST)["config"]["test_size"],
    ),
    Given("docs/benchmarks.md", "at a base rate of 0.01 (JSON:", "the benchmark's setting"),
    Table(
        "docs/benchmarks.md",
        "python benchmarks/layer_adaptive_mnist.py --plot docs/layer_adaptive_mnist.png > "
        "docs/images/layer_adaptive_mnist.json",
        tuple(
            (label, la_mnist_row(LA_MNIST, key))
            for label, key in (
                ("SGD", "sgd"),
                ("SGD + layer-adaptive", "sgd+layer_adaptive"),
                ("Nesterov", "nesterov"),
                ("Nesterov + layer-adapt.", "nesterov+layer_adaptive"),
                ("Adagrad", "adagrad"),
                ("Adagrad + layer-adapt.", "adagrad+layer_adaptive"),
            )
        ),
    ),
    Quote(
        "docs/benchmarks.md",
        "conv1 2.66, conv2 2.19, ip1 1.93, ip2 2.16",
        *(la_mnist_factor(layer) for layer in ("conv1", "conv2", "ip1", "ip2")),
    ),
    Quote("docs/benchmarks.md", "The run took 547 s", lambda: load(LA_MNIST)["seconds"]),
    Given(
        "docs/benchmarks.md",
        "(about 2 to 2.5), so part of the gain",
        "the range of the factors quoted above, rounded",
    ),
    Given("docs/benchmarks.md", "A control with a 2.5 times larger", "the control's setting"),
    Table(
        "docs/benchmarks.md",
        "python benchmarks/layer_adaptive_mnist.py --optimizers sgd --learning-rate 0.025 "
        "--plot '' > docs/images/layer_adaptive_mnist_sgd_lr0.025.json",
        (
            ("SGD", la_mnist_row(LA_MNIST_CONTROL, "sgd")),
            ("SGD + layer-adaptive", la_mnist_row(LA_MNIST_CONTROL, "sgd+layer_adaptive")),
        ),
    ),
    Quote(
        "docs/benchmarks.md",
        "Plain SGD at 0.025 (2.51 %) did better than layer-adaptive SGD at 0.01 (2.71 %)",
        given("the control's rate"),
        lambda: la_final(LA_MNIST_CONTROL, "sgd"),
        given("the base rate"),
        lambda: la_final(LA_MNIST, "sgd+layer_adaptive"),
    ),
    Quote(
        "docs/benchmarks.md",
        "(2.60 % against 2.51 %, within their spread)",
        lambda: la_final(LA_MNIST_CONTROL, "sgd+layer_adaptive"),
        lambda: la_final(LA_MNIST_CONTROL, "sgd"),
    ),
    Given(
        "docs/benchmarks.md",
        "a built-in rate increase of about 2 to 2.5 times",
        "the range of the factors quoted above, rounded",
    ),
    Given(
        "README.md",
        "acted like a learning rate about 2 to 2.5 times larger",
        "the range of the layer factors in docs/images/layer_adaptive_mnist.json, rounded",
    ),
    Given("README.md", "but not plain SGD at a 2.5 times larger rate", "the control's setting"),
    Given("docs/benchmarks.md", "| method (rate 0.025)", "the control's setting"),
    Given("docs/benchmarks.md", "layer-adaptive SGD at 0.025 was", "the control's setting"),
    *(
        Table(
            "docs/benchmarks.md",
            f"`docs/images/archive/layer_adaptive_overhead_{date}.json`):",
            tuple(
                (label, archived_overhead_row(name, model, optimizer))
                for model in ("mlp", "cnn", "deep")
                for optimizer, label in (("nesterov", "Nesterov"), ("adam", "Adam"))
            ),
        )
        for date, name in (("2026-11-25", OVERHEAD_1125), ("2026-11-30", OVERHEAD_1130))
    ),
]


def test_every_measured_number_is_bound_and_agrees_with_its_json():
    errors, covered = check_bindings(BINDINGS)
    for page in PAGES:
        scanned = scanned_text(page)
        for position, token in measured_numbers(scanned):
            if not any(start <= position < end for start, end in covered[page]):
                line = scanned.count("\n", 0, position) + 1
                context = page_text(page).split("\n")[line - 1].strip()
                errors.append(f"{page}:{line}: {token!r} is bound to nothing: {context[:90]}")
    unread = {p.relative_to(IMAGES).as_posix() for p in IMAGES.rglob("*.json")} - _READ
    errors += [f"docs/images/{name} backs no number on the pages" for name in sorted(unread)]
    assert not errors, "\n".join(errors)


def test_every_archive_entry_has_its_date_and_command():
    for page in PAGES:
        archive = _section(page, "Archive: earlier runs")
        if archive is None:
            continue
        text = page_text(page)[archive[0] : archive[1]]
        entries = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
        assert entries, f"{page}: an empty archive"
        for entry in entries:
            heading = entry.split("\n", 1)[0]
            assert re.search(r"\d{4}-\d\d-\d\d", heading), f"{page}: no date in {heading!r}"
            assert "python " in entry, f"{page}: no command in the entry {heading!r}"
    archived = [b for b in BINDINGS if isinstance(b, Archived)]
    for binding in archived:  # Only entries of an archive leave their numbers unbound.
        archive = _section(binding.page, "Archive: earlier runs")
        entry = _section(binding.page, binding.heading)
        assert archive and entry and archive[0] < entry[0] < archive[1], binding.heading


def test_the_fine_tuning_verdict_and_comparisons_are_the_json_s():
    """The words around the fine-tuning numbers: the verdict, the baseline, the seed counts."""
    data = load(FINE_TUNING)
    text = " ".join(page_text("docs/layer_adaptive.md").split())
    verdict = data["verdict"]
    assert ("Verdict: goal met" in text) == verdict["met"]
    assert verdict["best_baseline"] == "uniform"  # The page names the uniform rate.
    results = data["results"]
    pairs = list(
        zip(
            results["layerwise_decay"]["test_accuracy"],
            results["uniform"]["test_accuracy"],
            strict=True,
        )
    )
    higher = sum(decay > uniform for decay, uniform in pairs)
    equal = sum(decay == uniform for decay, uniform in pairs)
    assert (higher, equal, len(pairs)) == (7, 1, 9)
    assert "higher than the uniform rate on 7 of the 9 seeds, equal on one" in text
    rates = {t["learning_rate"] for t in data["tuning"]["layerwise_decay"]}
    assert results["layerwise_decay"]["chosen"]["learning_rate"] == max(rates) == 2e-2
    rates = {t["learning_rate"] for t in data["tuning"]["multipliers"]}
    assert results["multipliers"]["chosen"]["learning_rate"] == max(rates) == 5e-2
    assert round(verdict["difference_points"] / 100 * data["setup"]["test_images"]) == 10
