"""Training killed with SIGKILL at random moments resumes bit for bit from its backup.

tests/resume_job.py trains with AGD and `keras_agd.multi_worker.backup_and_restore`
writing after every step. The test kills it (SIGKILL) a few milliseconds after a step
ends, mostly while that step's backup is being written, starts it again, three times,
then lets it finish: its weights must be those of an uninterrupted run at the same step,
bit for bit. Keras 3.15's own callback fails here: it writes its files in place, so a
kill during the write tears `latest.weights.h5` (single checkpoint: every restart fails)
or `training_metadata.json` (double checkpoint falls back only on `OSError`, and an
emptied JSON file or an HDF5 file that opens but fails inside raises other errors).
`backup_and_restore` renames each file into place and falls back on any error.
"""

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import keras_agd

JOB = Path(__file__).with_name("resume_job.py")
# The job imports the keras_agd under test, not an installed copy.
PACKAGE = str(Path(keras_agd.__file__).resolve().parent)
EPOCHS = 4
STEPS_PER_EPOCH = 5  # The job's.
KILLS = 3
# Each restart from a batch-level backup runs the interrupted epoch again in full (at
# most an epoch and a step more: a kill between the weights and the epoch number of a
# backup); the reference run records the weights of every step up to the longest case.
REFERENCE_EPOCHS = EPOCHS + KILLS + 1
# A step with its backup takes about 25 ms here, most of it writing: kills land up to
# this long after a step ends.
KILL_DELAY = 0.03
DEADLINE = 240  # Seconds for one run of the job before it counts as hung.

pytestmark = pytest.mark.slow


class Job:
    """One run of the job, its stdout read line by line, killed at the deadline."""

    def __init__(self, tmp_path, **config):
        self.log = tmp_path / "stderr.log"
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(JOB), json.dumps({"out": str(tmp_path), **config})],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(
                        filter(None, [str(Path(PACKAGE).parent), os.environ.get("PYTHONPATH")])
                    ),
                    "TF_CPP_MIN_LOG_LEVEL": "2",
                },
            )
        self.watchdog = threading.Timer(DEADLINE, self.process.kill)
        self.watchdog.start()

    def read(self, word):
        """The numbers of the next stdout line that starts with `word`."""
        for line in self.process.stdout:
            if line.startswith(word + " "):
                return [int(n) for n in line.split()[1:]]
        code = self.wait()
        raise AssertionError(self.failure(f"The job ended (code {code}) before {word!r}"))

    def wait(self):
        self.process.stdout.read()
        code = self.process.wait()
        self.watchdog.cancel()
        return code

    def failure(self, what):
        log = self.log.read_text()
        return f"{what}; its stderr ends with:\n{log[-3000:]}"


def torn_files(backup_dir):
    """The backup files that cannot be read whole."""
    torn = []
    for path in sorted(backup_dir.glob("*")):
        try:
            if ".weights.h5" in path.name:
                with h5py.File(path, "r") as file:
                    file.visititems(lambda _, item: isinstance(item, h5py.Dataset) and item[()])
            else:
                json.loads(path.read_text())
        except (OSError, RuntimeError, KeyError, ValueError):
            torn.append(path.name)
    return torn


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The weights of every step of an uninterrupted run, by step; started at once and
    read when first needed, so that it runs beside the first killed run."""
    out = tmp_path_factory.mktemp("reference")
    job = Job(out, epochs=REFERENCE_EPOCHS, every_step=True)
    weights = {}

    def at(step):
        if not weights:
            assert job.wait() == 0, job.failure("The reference run failed")
            with np.load(out / "result.npz") as result:
                assert int(result["iterations"]) == REFERENCE_EPOCHS * STEPS_PER_EPOCH
                for name in result.files:
                    if name.startswith("step_"):
                        _, s, i = name.split("_")
                        weights.setdefault(int(s), {})[int(i)] = result[name]
        return [weights[step][i] for i in sorted(weights[step])]

    yield at
    job.process.kill()
    job.wait()


@pytest.mark.parametrize("seed", [1, 2])
def test_a_run_killed_at_random_moments_resumes_bit_for_bit(reference, tmp_path, seed):
    backup = "agd"  # keras_agd.multi_worker.backup_and_restore
    rng = random.Random(seed)
    backup_dir = tmp_path / "backup"
    config = {"epochs": EPOCHS, "backup": backup, "backup_dir": str(backup_dir)}
    for _ in range(KILLS):
        job = Job(tmp_path, **config)
        epoch, step = job.read("start")
        end = step + (EPOCHS - epoch) * STEPS_PER_EPOCH
        # Also while the first backup is written: renamed into place, it is either whole
        # or absent. By the middle of the run, so that the kill lands before its end.
        target = rng.randint(step + 1, (step + end) // 2)
        while job.read("step")[0] < target:
            pass
        delay = rng.uniform(0, KILL_DELAY)
        time.sleep(delay)
        job.process.kill()
        assert job.wait() == -9, job.failure("The job ended before it was killed")
        # Shown when the test fails (and with `pytest -s`).
        print(
            f"{backup}: killed {delay * 1000:.1f} ms after step {target}; torn:",
            torn_files(backup_dir),
        )
    job = Job(tmp_path, **config)
    assert job.wait() == 0, job.failure("The run after the kills failed")

    with np.load(tmp_path / "result.npz") as result:
        start_epoch, start_step, step = (
            int(result[name]) for name in ("start_epoch", "start_step", "iterations")
        )
        assert str(result["package"]) == PACKAGE
        count = sum(name.startswith("weights_") for name in result.files)
        weights = [result[f"weights_{i}"] for i in range(count)]
    # Keras runs the epoch the restored backup was written in again, in full.
    assert step == start_step + (EPOCHS - start_epoch) * STEPS_PER_EPOCH
    assert step >= EPOCHS * STEPS_PER_EPOCH
    expected = reference(step)
    assert len(weights) == len(expected)
    for got, want in zip(weights, expected, strict=True):
        assert np.array_equal(got, want)
    assert not backup_dir.exists()  # Deleted by the callback when training completes.
