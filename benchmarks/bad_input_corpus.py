"""Throws the corpus of bad and unusual inputs at the public API and counts what happens.

The cases live in `tests/bad_input_cases.py`: each a call of one public entry point and
what the documentation promises for it (an error naming the argument, or a valid
result that a check accepts). Each outcome falls in one class:

- `crash_or_hang`: the interpreter died (cases that may take faiss down run in a
  subprocess) or the call ran past the timeout;
- `silent_wrong`: an input the documentation rules out was accepted, or a result
  failed its check;
- `unclear_error`: another exception type, a message that does not name the argument,
  or a valid input refused;
- `clear_error`: the documented error, naming the argument;
- `valid`: a valid input handled as documented.

The corpus was written beside the fixes it checks, so it is not a held-out measure: it
covers what its authors imagined. The property tests (pytest marker `boundary`) state
the invariants at each boundary instead and generate their inputs; `--properties` runs
them too and reports, per test, the generated examples that kept the invariant and
those that broke it.

Usage: `python benchmarks/bad_input_corpus.py [--verbose] [--properties]` prints one
JSON object with the counts (and, with `--verbose`, every case that is not a clear
error or valid, with the library gap the corpus knows of, if any).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
# Measure the keras_agd of this checkout, not an installed copy.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import bad_input_cases  # noqa: E402

TIMEOUT_S = 60
# The tests that state boundary invariants over generated inputs carry this marker.
PROPERTY_MARKER = "boundary"
_STATISTICS = re.compile(
    r"(\d+) passing examples?, (\d+) failing examples?, (\d+) invalid examples?"
)
CLASSES = ("crash_or_hang", "silent_wrong", "unclear_error", "clear_error", "valid")


class _Timeout(BaseException):
    pass


def classify(case):
    """Runs one case in this process; returns (class, detail)."""

    def alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(TIMEOUT_S)
    try:
        return bad_input_cases.outcome(case)
    except _Timeout:
        return "crash_or_hang", f"no answer after {TIMEOUT_S} s"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def classify_isolated(index):
    """Runs case `index` in a fresh interpreter, so that a crash only kills that one."""
    return bad_input_cases.outcome_isolated(index, timeout=4 * TIMEOUT_S)


def run(verbose=False, isolate=True):
    with tempfile.TemporaryDirectory() as tmp:
        cases = bad_input_cases.all_cases(tmp)
        counts = dict.fromkeys(CLASSES, 0)
        problems = []
        for index, case in enumerate(cases):
            if case["isolate"] and isolate:
                kind, detail = classify_isolated(index)
            else:
                kind, detail = classify(case)
            counts[kind] += 1
            if kind not in ("clear_error", "valid"):
                problems.append(
                    {
                        "class": kind,
                        "entry": case["entry"],
                        "case": case["case"],
                        "detail": detail,
                        "known_gap": case["gap"],
                    }
                )
    result = {
        "cases": len(cases),
        **counts,
        "known_gaps": sum(case["gap"] is not None for case in cases),
    }
    if verbose:
        result["problems"] = problems
    return result


def run_properties():
    """Runs the property tests; counts their generated examples by outcome."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["--hypothesis-show-statistics", "-m", PROPERTY_MARKER, "tests"]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    tests = re.findall(r"^(tests/\S+::\S+):$", completed.stdout, re.MULTILINE)
    blocks = re.split(r"^tests/\S+::\S+:$", completed.stdout, flags=re.MULTILINE)[1:]
    per_test = {}
    for name, block in zip(tests, blocks):
        counts = [tuple(map(int, match)) for match in _STATISTICS.findall(block)]
        per_test[name] = {
            "kept_invariant": sum(passing for passing, _, _ in counts),
            "broke_invariant": sum(failing for _, failing, _ in counts),
        }
    summary = completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else ""
    return {
        "modules": sorted({name.partition("::")[0] for name in per_test}),
        "pytest_exit_status": completed.returncode,
        "pytest_summary": summary,
        "generated_examples": sum(
            t["kept_invariant"] + t["broke_invariant"] for t in per_test.values()
        ),
        "broke_invariant": sum(t["broke_invariant"] for t in per_test.values()),
        "tests": per_test,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list every problem case")
    parser.add_argument(
        "--properties", action="store_true", help="also run the boundary property tests"
    )
    args = parser.parse_args(argv)
    result = run(verbose=args.verbose)
    if args.properties:
        result["property_tests"] = run_properties()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
