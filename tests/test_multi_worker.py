"""AGD with layer-adaptive rates on several worker processes (MultiWorkerMirroredStrategy).

Each cluster test starts real worker processes on 127.0.0.1 (tests/multi_worker_job.py,
one per worker, with `TF_CONFIG`), waits for them with a deadline and kills any left
over. Every worker builds the same `Curriculum`; the job records, for every step it
trained, its items and the whole batch `Curriculum.batch(step)`, so the tests check
which share of which batch each worker trained at each step.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import keras_agd

JOB = Path(__file__).with_name("multi_worker_job.py")
# Replicas sum their shares of each batch in another order than one device sums the
# whole batch: float32 rounding, measured at most 1.2e-7 on these weights (|w| < 1) after
# 19 steps. Skipping one batch an epoch (a stream reading the step late) moved them by
# 4e-2.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
# Steps of the job's run (4 epochs of 4 steps); the fixtures then train `EXTRA` more.
STEPS = 16
# The chief dies while writing the backup taken at step TORN; the restart falls back to
# the one before (step TORN - 1), inside epoch 0, and Keras runs that epoch again in
# full: TORN - 1 steps more than an uninterrupted run.
TORN = 4
EXTRA = TORN - 1
# Workers of the fault test: 2 by default; 3 pass too, beyond this suite's budget on
# busy cores.
FAULT_TEST_WORKERS = int(os.environ.get("KERAS_AGD_FAULT_TEST_WORKERS", "2"))
CURRICULUM_LOGS = (
    "epsilon",
    "mosaic_phase",
    "frontier_size",
    "annealing_level",
    "step",
    "learning_rate",
)


def run_cluster(workers, out, timeout=240, **config):
    """Runs the job on `workers` processes; returns their exit codes and results."""
    out.mkdir(parents=True, exist_ok=True)
    sockets = [socket.socket() for _ in range(workers)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    try:
        for index in range(workers):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            env.pop("TF_CONFIG", None)
            if workers > 1:
                env["TF_CONFIG"] = json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                )
            with open(out / f"stderr-{index}.txt", "w") as stderr:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, str(JOB), json.dumps({"out": str(out), **config})],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                    )
                )
        deadline = time.monotonic() + timeout
        for process in processes:
            process.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    results = []
    for index in range(workers):
        path = out / f"result-{index}.json"
        results.append(json.loads(path.read_text()) if path.exists() else None)
    return [p.returncode for p in processes], results


def stderr_tail(out, workers):
    return "\n".join((out / f"stderr-{i}.txt").read_text()[-1500:] for i in range(workers))


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    codes, (result,) = run_cluster(1, out, extra_steps=EXTRA)
    assert codes == [0], stderr_tail(out, 1)
    return result


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    codes, results = run_cluster(2, out, misuse=True, input_context=True, extra_steps=EXTRA)
    assert codes == [0, 0], stderr_tail(out, 2)
    return results


def check_shares(results, one_worker, steps):
    """Worker i trained the i-th share of `Curriculum.batch(s)` at each step s, once."""
    planned = one_worker["planned"]
    for index, result in enumerate(results):
        assert [step for step, _ in result["trained"]] == list(steps)
        for step, items in result["trained"]:
            batch = planned[str(step)]
            assert result["planned"][str(step)] == batch  # The same curriculum.
            share = len(batch) // len(results)
            assert items == batch[index * share : (index + 1) * share], step


def check_like_one_worker(results, one_worker, epochs=4):
    reference = one_worker["epochs"][-epochs:]
    for result in results:
        assert [e["epoch"] for e in result["epochs"]] == [e["epoch"] for e in reference]
        for epoch, expected in zip(result["epochs"], reference):
            for key in CURRICULUM_LOGS:
                assert epoch["logs"][key] == expected["logs"][key], (epoch["epoch"], key)
            # Layer factors of the all-reduced gradient, not of a worker's share of it.
            for key, value in expected["logs"].items():
                if key.startswith(("layer_factor/", "loss")):
                    assert epoch["logs"][key] == pytest.approx(value, rel=1e-5), key


def assert_weights_close(weights, expected):
    for weight, reference in zip(weights, expected, strict=True):
        np.testing.assert_allclose(weight, reference, **TOLERANCE)


@pytest.mark.slow
def test_the_one_worker_run_trains_every_step_on_its_whole_batch(one_worker):
    assert one_worker["first_step"] == 0
    assert [e["logs"]["step"] for e in one_worker["epochs"]] == [4, 8, 12, 16]
    # The mosaic phase (5 steps) ends inside epoch 1.
    assert [e["logs"]["mosaic_phase"] for e in one_worker["epochs"]] == [1, 0, 0, 0]
    trained = one_worker["trained"]
    assert [step for step, _ in trained] == list(range(STEPS + EXTRA))
    for step, items in trained:
        assert items == one_worker["planned"][str(step)], step


@pytest.mark.slow
def test_two_workers_reading_their_shares_train_like_one_on_the_same_batches(
    one_worker, two_workers
):
    # `distribute_datasets_from_function` with `input_context`; the fault test below
    # trains on the stream itself (tf.distribute shards it by data).
    assert [result["built_codebook"] for result in two_workers] == [True, False]
    check_like_one_worker(two_workers, one_worker)
    check_shares(two_workers, one_worker, range(STEPS + EXTRA))
    for result in two_workers:
        assert result["iterations"] == STEPS
        assert result["extended_iterations"] == STEPS + EXTRA
        assert_weights_close(result["weights"], one_worker["weights"])
        assert_weights_close(result["extended_weights"], one_worker["extended_weights"])
    # Mirrored variables: the workers hold the same weights, bit for bit.
    assert two_workers[0]["extended_weights"] == two_workers[1]["extended_weights"]


@pytest.mark.slow
def test_workers_whose_curricula_differ_are_refused_on_every_worker(two_workers):
    for result in two_workers:
        own_optimizers, one_stream_other, from_function = result["errors"]
        assert from_function == own_optimizers
        # Each worker's model and stream of its own seed: the collective check.
        assert own_optimizers.startswith("The workers disagree on the curriculum: replica 0: ")
        assert "seed=0; replica 1: digest=" in own_optimizers and "seed=1." in own_optimizers
        # Worker 1's stream is of another curriculum than its AGD: every worker fails
        # at once (none waits in the check for a peer that has given up).
        assert one_stream_other.startswith("The workers disagree on the curriculum: ")


@pytest.mark.slow
def test_a_chief_killed_while_writing_its_backup_resumes_at_the_same_step(
    one_worker, two_workers, tmp_path
):
    backup = tmp_path / "backup"
    workers = FAULT_TEST_WORKERS
    # The chief (backing up after every step) dies halfway through writing the backup
    # of step TORN; the other workers' collectives fail instead of waiting forever.
    started = time.monotonic()
    codes, _ = run_cluster(workers, tmp_path / "killed", backup=str(backup), torn_save=[0, TORN])
    assert codes[0] == -signal.SIGKILL, stderr_tail(tmp_path / "killed", workers)
    assert all(code not in (0, None) for code in codes[1:]), codes
    assert time.monotonic() - started < 150
    # The backup is written beside its target and renamed over it: the kill tore the
    # file being written, while the latest backup (step TORN - 1) stayed whole.
    torn = backup / "latest.next.weights.h5"
    assert torn.stat().st_size < (backup / "latest.weights.h5").stat().st_size

    # The restart continues from the latest backup (step TORN - 1, in epoch 0) and
    # runs epoch 0 again in full from there, then epochs 1-3: STEPS + EXTRA steps.
    restarted = tmp_path / "restarted"
    restarted.mkdir()
    (tmp_path / "killed" / "codebook.npz").rename(restarted / "codebook.npz")
    codes, results = run_cluster(workers, restarted, backup=str(backup))
    assert codes == [0] * workers, stderr_tail(restarted, workers)
    assert not any(result["built_codebook"] for result in results)  # Shared, not rebuilt.
    for result in results:
        assert result["first_step"] == TORN - 1
        assert [e["logs"]["step"] for e in result["epochs"]] == [
            step + EXTRA for step in (4, 8, 12, 16)
        ]
        assert result["iterations"] == STEPS + EXTRA
        # The same weights as the uninterrupted runs after as many steps: bit for bit
        # on 2 workers, within float rounding of one.
        assert_weights_close(result["weights"], one_worker["extended_weights"])
        if workers == 2:
            assert result["weights"] == two_workers[0]["extended_weights"]
    check_shares(results, one_worker, range(TORN - 1, STEPS + EXTRA))
    assert not backup.exists()  # The chief deletes its backup at the end.


KILLED_SAVE = """
import os, signal, sys
import numpy as np
from sklearn.datasets import load_digits
import keras_agd

x, y = load_digits(return_X_y=True)
path = sys.argv[1]
keras_agd.HierarchicalCodebook(random_state=0).fit(x, y).save(path)
second = keras_agd.HierarchicalCodebook(random_state=1, branching=3).fit(x, y)
savez = np.savez

def torn_savez(file, **arrays):
    savez(file, **arrays)
    file.truncate(file.tell() // 2)
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)

np.savez = torn_savez
second.save(path)
"""


@pytest.mark.slow
def test_a_process_killed_while_saving_the_codebook_leaves_the_previous_file(tmp_path):
    from sklearn.datasets import load_digits

    path = tmp_path / "codebook.npz"
    process = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(path)], capture_output=True, timeout=120
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    x, y = load_digits(return_X_y=True)
    codebook = keras_agd.HierarchicalCodebook.load(path)
    codebook.verify(x, y)
    assert codebook.branching == 5  # The first codebook, whole.
    # The torn temporary file, unused (the next save removes it).
    assert [p.name for p in tmp_path.glob(".codebook.npz.*.keras_agd-tmp")]


# --- The helpers on one process (the default strategy: one worker, the chief).


def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


def compiled(curriculum):
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    model.compile(
        optimizer=keras_agd.AGD(curriculum, 0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def test_one_process_is_one_worker_and_the_chief():
    import keras

    assert keras_agd.multi_worker.worker_count() == 1
    assert keras_agd.multi_worker.is_chief()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    train_step = model.train_step
    assert keras_agd.multi_worker.prepare_model(model) is model
    assert model.train_step == train_step  # Nothing to work around.
    backup = keras_agd.multi_worker.backup_and_restore("backup")
    assert isinstance(backup, keras.callbacks.BackupAndRestore) and backup.double_checkpoint


def test_the_chief_builds_the_shared_codebook_once_and_every_worker_verifies_it(tmp_path):
    x, y = digits()
    path = tmp_path / "codebook.npz"
    built = []

    def build():
        built.append(1)
        return keras_agd.HierarchicalCodebook(random_state=0).fit(x, y)

    first = keras_agd.multi_worker.shared_codebook(path, x, y, build=build)
    again = keras_agd.multi_worker.shared_codebook(path, x, y, build=build)
    assert built == [1]
    np.testing.assert_array_equal(first.codewords_, again.codewords_)
    with pytest.raises(ValueError, match="does not match this worker's training data"):
        keras_agd.multi_worker.shared_codebook(path, x[::-1], y[::-1], build=build)
    with pytest.raises(TypeError, match="must return a fitted|must be a fitted"):
        keras_agd.multi_worker.shared_codebook(tmp_path / "other.npz", x, y, build=lambda: None)


def test_the_stream_asks_to_be_sharded_by_data_unless_it_takes_its_shares_itself():
    import tensorflow as tf

    x, y = digits()
    curriculum = keras_agd.Curriculum(x, y, schedule=2, seed=0)
    model = compiled(curriculum)
    policy = tf.data.experimental.AutoShardPolicy
    stream = curriculum.dataset(model)
    assert stream.options().experimental_distribute.auto_shard_policy == policy.DATA
    context = tf.distribute.InputContext(2, 0, 2)
    own_shares = curriculum.dataset(model, input_context=context)
    assert own_shares.options().experimental_distribute.auto_shard_policy == policy.OFF


def test_tf_config_tells_the_chief_and_the_worker_count(monkeypatch, tmp_path):
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]}
    for task, chief in (
        ({"type": "chief", "index": 0}, True),
        ({"type": "worker", "index": 0}, False),
    ):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        assert keras_agd.multi_worker.is_chief() is chief
        assert keras_agd.multi_worker.worker_count() == 3
    x, y = digits()
    with pytest.raises(TimeoutError, match="No codebook appeared .* within 0.2 s"):
        keras_agd.multi_worker.shared_codebook(
            tmp_path / "codebook.npz", x, y, build=lambda: None, timeout=0.2
        )


def test_an_input_context_keeps_its_replicas_shares_of_each_batch():
    import tensorflow as tf

    x, y = digits()
    curriculum = keras_agd.Curriculum(
        x, y, schedule=2, batch_size=8, mosaic_batch_size=12, steps_per_level=1, seed=0
    )
    model = compiled(curriculum)
    # Steps 0-1 are mosaic batches (12 items), steps 2-3 regular ones (8 items).
    whole = list(curriculum.dataset(model, steps_per_epoch=4))
    for worker in (0, 1):
        # 2 workers with 2 replicas each: each worker yields its 2 replicas' shares.
        context = tf.distribute.InputContext(2, worker, 4)
        shares = list(curriculum.dataset(model, steps_per_epoch=4, input_context=context))
        assert len(shares) == 8
        for step, batch in enumerate(whole):
            mine = shares[2 * step : 2 * step + 2]
            for part, parts in zip(batch, zip(*mine)):
                quarter = len(part) // 4
                expected = part[2 * worker * quarter : (2 * worker + 2) * quarter]
                np.testing.assert_array_equal(np.concatenate(parts), expected)
    with pytest.raises(TypeError, match="`input_context` must be"):
        curriculum.dataset(model, input_context=2)
