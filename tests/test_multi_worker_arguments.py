"""Invariants where the cluster enters the multi-worker helpers, over generated inputs.

| Boundary | Invariant | Checked in |
| --- | --- | --- |
| `TF_CONFIG` | a JSON object whose `task` its `cluster` lists | `multi_worker._tf_config` |
| `strategy` | a `tf.distribute.Strategy` or `None` | `multi_worker._check_strategy` |
| `backup_and_restore` | a path, `"epoch"` or a batch count >= 1, a bool | `backup_and_restore` |

For any generated `TF_CONFIG`, `worker_count` and `is_chief` either agree with
TensorFlow's own reading of it (`TFConfigClusterResolver`) or raise a `ValueError`
that names `TF_CONFIG`: a task that its cluster does not list is refused, not read as
"not the chief, 2 workers".
"""

import json

import keras
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_agd import multi_worker

pytestmark = pytest.mark.boundary

PROPERTY = settings(max_examples=60, derandomize=True, deadline=None)

JOBS = ("chief", "worker", "ps", "evaluator")
ADDRESS = st.integers(1, 65535).map(lambda port: f"127.0.0.1:{port}")
# Tasks of one job: a list of addresses, a dict from index to address (a sparse
# cluster), or something TensorFlow cannot read as either.
TASKS = st.one_of(
    st.lists(ADDRESS, max_size=4),
    st.dictionaries(st.integers(0, 5).map(str), ADDRESS, max_size=3),
    st.lists(st.one_of(st.just(""), st.integers(), st.none()), min_size=1, max_size=2),
    st.one_of(st.integers(), st.text(max_size=5), st.none()),
)
INDEX = st.one_of(st.integers(-1, 6), st.booleans(), st.text(max_size=2), st.floats(0, 2))
TASK = st.one_of(
    st.none(),
    st.just({}),
    st.fixed_dictionaries({"type": st.sampled_from((*JOBS, "other")), "index": INDEX}),
    st.fixed_dictionaries({"type": st.sampled_from(JOBS)}),
    st.fixed_dictionaries({"index": INDEX}),
    st.lists(st.integers(), max_size=2),
)
CONFIG = st.builds(
    lambda cluster, task: {
        key: value
        for key, value in (("cluster", cluster), ("task", task))
        if value is not None or key == "cluster"
    },
    st.one_of(st.dictionaries(st.sampled_from(JOBS), TASKS, max_size=3), st.none(), st.just([])),
    TASK,
)


@st.composite
def listed_task(draw):
    """A cluster of address lists and a task in it, or one index past its job's end."""
    cluster = draw(st.dictionaries(st.sampled_from(JOBS), st.lists(ADDRESS, max_size=4)))
    jobs = [job for job, tasks in cluster.items() if tasks]
    if not jobs:
        return {"cluster": cluster}
    job = draw(st.sampled_from(jobs))
    index = draw(st.integers(0, len(cluster[job])))
    return {"cluster": cluster, "task": {"type": job, "index": index}}


# Whole texts: configs of listed tasks and generated structures, halves of them, and
# texts that are not JSON objects at all.
TEXT = st.one_of(
    listed_task().map(json.dumps),
    CONFIG.map(json.dumps),
    CONFIG.map(json.dumps).map(lambda text: text[: len(text) // 2]),
    st.sampled_from(("[]", "3", '"worker"', "null", "{", "   ")),
)


def tensorflows_reading(config):
    """What TensorFlow makes of a valid `TF_CONFIG`: (workers, this task) or None."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    spec = resolver.cluster_spec()
    workers = sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs)
    return max(1, workers), spec.jobs, resolver.task_type, resolver.task_id


@PROPERTY
@given(TEXT)
def test_tf_config_is_read_as_tensorflow_reads_it_or_refused(text):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TF_CONFIG", text)
        try:
            workers, chief = multi_worker.worker_count(), multi_worker.is_chief()
        except ValueError as error:
            assert "TF_CONFIG" in str(error)
            return
        if not text.strip():
            assert (workers, chief) == (1, True)
            return
        tf_workers, jobs, task_type, task_id = tensorflows_reading(json.loads(text))
    assert workers == tf_workers
    if task_type in (None, "", "chief"):
        assert chief
    else:
        assert chief == (task_type == "worker" and task_id == 0 and "chief" not in jobs)
    if task_type:
        # The task is one the cluster lists (or an evaluator, which runs beside it).
        assert task_type == "evaluator" or task_id < len(json.loads(text)["cluster"][task_type])


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 5}},
            "worker:5",
        ),
        ({"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}, "ps:0"),
        ({"cluster": {"worker": ["a:1", "b:2"]}}, "not this process's `task`"),
    ],
)
def test_a_task_the_cluster_does_not_list_is_refused(monkeypatch, config, message):
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    for helper in (multi_worker.worker_count, multi_worker.is_chief):
        with pytest.raises(ValueError, match=f"TF_CONFIG.*{message}"):
            helper()


@pytest.mark.parametrize("strategy", ["mirrored", 2, keras.Model])
def test_a_strategy_must_be_a_tf_distribute_strategy(strategy):
    for helper in (multi_worker.worker_count, multi_worker.is_chief):
        with pytest.raises(TypeError, match="`strategy` must be a tf.distribute.Strategy"):
            helper(strategy)


def test_other_strategies_are_one_worker_that_writes():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    assert multi_worker.worker_count(strategy) == 1
    assert multi_worker.is_chief(strategy)


@given(
    save_freq=st.one_of(
        st.just("epoch"),
        st.integers(-(2**63), 2**63),
        st.booleans(),
        st.floats(allow_nan=True),
        st.text(max_size=6),
        st.none(),
    ),
    double_checkpoint=st.one_of(st.booleans(), st.integers(0, 1), st.text(max_size=3)),
)
@PROPERTY
def test_backups_are_taken_at_the_frequency_asked_or_refused(save_freq, double_checkpoint):
    try:
        backup = multi_worker.backup_and_restore("backup", save_freq, double_checkpoint)
    except ValueError as error:
        assert "`save_freq`" in str(error) or "`double_checkpoint`" in str(error)
        # Keras reads False and numbers below 1 as "every batch": those are refused.
        assert not (save_freq == "epoch" or type(save_freq) is int and save_freq >= 1) or (
            not isinstance(double_checkpoint, bool)
        )
        return
    assert isinstance(backup, keras.callbacks.BackupAndRestore)
    assert backup.save_freq == save_freq and type(save_freq) in (str, int)
    assert save_freq == "epoch" or save_freq >= 1
    assert backup.double_checkpoint is double_checkpoint


@pytest.mark.parametrize("backup_dir, error", [(3, TypeError), ("", ValueError), (None, TypeError)])
def test_a_backup_folder_must_be_a_path(backup_dir, error):
    with pytest.raises(error, match="`backup_dir`"):
        multi_worker.backup_and_restore(backup_dir)
