"""Training on several machines with `tf.distribute.MultiWorkerMirroredStrategy`.

Every worker runs the same script: it builds the same `Curriculum`, so every worker
computes the same batch for the same step, and reads its share of every batch (the
curriculum's stream shards by data). Four helpers cover what differs from one machine:

- `prepare_model`: makes Keras' `fit` run with more than one worker.
- `shared_codebook`: the chief builds the codebook once; the others load and verify it.
- `backup_and_restore`: `keras.callbacks.BackupAndRestore` with one writer, the chief.
- `worker_count` and `is_chief`: where this process stands in the cluster.

See [Scaling out](scaling_out.md) for a launch, what is sharded and what is replicated.
"""

import json
import os
import time

import keras
import tensorflow as tf

from keras_agd import _collective, _keras_adapter, _validation
from keras_agd.codebook import HierarchicalCodebook, check_fitted


def worker_count(strategy=None):
    """The number of worker processes (chief included) that train together.

    Args:
        strategy: A `tf.distribute.Strategy`; `None` reads the cluster from the
            `TF_CONFIG` environment variable, as `MultiWorkerMirroredStrategy` does.
            Defaults to `None`.

    Returns:
        1 unless the cluster has several chief and worker tasks.

    Example:

    >>> keras_agd.multi_worker.worker_count()  # no TF_CONFIG: one machine
    1
    """
    if strategy is None:
        config = _tf_config()
        if config is None:
            return 1
        cluster, _ = config
        return max(1, sum(len(cluster.get(job, ())) for job in ("chief", "worker")))
    if isinstance(_check_strategy(strategy), tf.distribute.MultiWorkerMirroredStrategy):
        spec = strategy.cluster_resolver.cluster_spec()
        return max(1, sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs))
    return 1


def is_chief(strategy=None):
    """Whether this process writes the shared files: the chief task, else worker 0.

    Args:
        strategy: A `tf.distribute.Strategy`; `None` reads the cluster from the
            `TF_CONFIG` environment variable, so that this works before the strategy
            exists or outside its scope. Defaults to `None`.

    Example:

    >>> if keras_agd.multi_worker.is_chief():
    ...     print(codebook.summary())  # printed once, by the chief
    """
    if strategy is not None:
        return bool(_check_strategy(strategy).extended.should_checkpoint)
    config = _tf_config()
    if config is None or config[1] is None:
        return True
    cluster, (task_type, task_index) = config
    if task_type == "chief":
        return True
    return task_type == "worker" and task_index == 0 and "chief" not in cluster


def _check_strategy(strategy):
    if not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(
            "`strategy` must be a tf.distribute.Strategy (e.g. the "
            "`tf.distribute.MultiWorkerMirroredStrategy()` the model is built in) or None "
            f"to read the cluster from TF_CONFIG. Received: strategy={strategy!r}"
        )
    return strategy


def _tf_config():
    """`(cluster, task)` from the `TF_CONFIG` environment variable, or `None` if unset.

    `cluster` maps each job to its task indices; `task` is `(type, index)`, or `None`
    when `TF_CONFIG` names no task. The invariant, as `MultiWorkerMirroredStrategy`
    reads it: a JSON object whose `cluster` maps job names to lists of addresses (or
    dicts from task index to address), and whose `task` names one of those tasks.
    """
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return None

    def refuse(problem):
        shown = text if len(text) <= 300 else text[:300] + "..."
        return ValueError(
            f"The TF_CONFIG environment variable {problem}. It must be JSON such as "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}, set for each process with its own '
            f"task. Received: TF_CONFIG={shown!r}"
        )

    try:
        config = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise refuse(f"is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise refuse("must hold a JSON object")
    cluster = {}
    jobs = config.get("cluster", {})
    if not isinstance(jobs, dict):
        raise refuse("has a `cluster` that is not an object of jobs")
    for job, tasks in jobs.items():
        if isinstance(tasks, dict):
            indices = [int(k) for k in tasks if isinstance(k, str) and k.isdigit()]
            if len(indices) != len(tasks):
                raise refuse(f"has job {job!r} whose tasks are not keyed by task index")
            addresses = list(tasks.values())
        elif isinstance(tasks, list):
            indices, addresses = list(range(len(tasks))), tasks
        else:
            raise refuse(f"has job {job!r} whose tasks are not a list of addresses")
        if not all(isinstance(address, str) and address for address in addresses):
            raise refuse(f"has job {job!r} with an address that is not a non-empty string")
        cluster[job] = frozenset(indices)
    task = config.get("task")
    if task is None or task == {}:
        if any(cluster.values()):
            raise refuse("names a cluster but not this process's `task`")
        return cluster, None
    if not isinstance(task, dict):
        raise refuse("has a `task` that is not an object")
    task_type, index = task.get("type"), task.get("index", 0)
    if not isinstance(task_type, str) or not _validation.is_integer(index) or index < 0:
        raise refuse("has a `task` without a string `type` and an integer `index` >= 0")
    # An evaluator runs beside the cluster, not in it.
    if task_type != "evaluator" and index not in cluster.get(task_type, ()):
        raise refuse(
            f"names the task {task_type}:{index}, which its `cluster` does not list "
            f"(it lists {_listing(cluster)})"
        )
    return cluster, (task_type, int(index))


def _listing(cluster):
    tasks = [f"{job}:{index}" for job, indices in cluster.items() for index in sorted(indices)]
    return ", ".join(tasks[:8]) + (", ..." if len(tasks) > 8 else "") if tasks else "no task"


def prepare_model(model):
    """Makes `model.fit` work with more than one worker; returns `model`.

    Keras 3.15's TensorFlow trainer cannot run `fit` (nor `evaluate`) under a
    `MultiWorkerMirroredStrategy` with several workers: it fails before the first
    step (see [Scaling out](scaling_out.md)). Call this once after `compile`, on
    every worker. With one worker, or any other strategy, it does nothing.

    Args:
        model: A `keras.Model` created and compiled in `strategy.scope()`.

    Returns:
        `model`.

    Example:

    >>> with strategy.scope():
    ...     model = make_model()
    ...     model.compile(optimizer=keras_agd.AGD(curriculum, 0.05), loss=...)
    >>> keras_agd.multi_worker.prepare_model(model)
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    strategy = model.distribute_strategy
    if worker_count(strategy) > 1 and not _keras_adapter.is_multi_worker_fit_enabled(model):
        _keras_adapter.enable_multi_worker_fit(model)
    return model


def shared_codebook(path, x, y=None, *, build, strategy=None, timeout=600.0):
    """The codebook at `path`: built once by the chief, loaded and verified by all.

    The chief loads `path` if it exists (a cache), else calls `build()` and saves
    the result there (atomically: temp file, then rename). The other workers wait
    until the file appears, then load it. Every worker then checks the codebook's
    fingerprint against its own `x` and `y`, so a worker reading other data fails
    here, not with a silently different plan. `path` must be on a file system that
    all workers see.

    Args:
        path: File path of the codebook (`.npz`), shared by all workers.
        x: This worker's training inputs (anything `HierarchicalCodebook.fit` takes).
        y: This worker's training labels. Defaults to `None`.
        build: Function of no arguments returning a fitted `HierarchicalCodebook`
            (called on the chief only, and only when `path` does not exist).
        strategy: The `tf.distribute.Strategy` of the training; `None` reads the
            cluster from `TF_CONFIG`. Defaults to `None`.
        timeout: Seconds a worker waits for the chief's file. Defaults to `600.0`.

    Returns:
        A fitted `HierarchicalCodebook`, the same on every worker.

    Raises:
        TimeoutError: The chief's file did not appear within `timeout` seconds.
        ValueError: The codebook was fit on data other than this worker's.

    Example:

    >>> codebook = keras_agd.multi_worker.shared_codebook(
    ...     "/shared/codebook.npz", x_train, y_train,
    ...     build=lambda: keras_agd.HierarchicalCodebook().fit(x_train, y_train))
    """
    path = _validation.check_path("path", path)
    if not callable(build):
        raise TypeError(f"`build` must be a function. Received: build={build!r}")
    timeout = _validation.check_number("timeout", timeout, 0)
    if is_chief(strategy) and not os.path.exists(path):
        codebook = check_fitted("build()", build())
        codebook.save(path)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"No codebook appeared at {path!r} within {timeout} s: the chief builds it "
                "there. Is the chief running, and is the path on a file system that all "
                "workers share?"
            )
        time.sleep(0.2)
    codebook = HierarchicalCodebook.load(path)
    try:
        codebook.verify(x, y)
    except ValueError as error:
        raise ValueError(
            f"The shared codebook {path!r} does not match this worker's training data "
            f"(chief: {is_chief(strategy)}; a file left by another run? Delete it and the "
            f"chief builds it again): {error}"
        ) from error
    return codebook


class _ChiefBackupAndRestore(_keras_adapter.AtomicBackupAndRestore):
    """Keras' callback, writing on the chief only; all workers restore the same files."""

    def on_train_begin(self, logs=None):
        strategy = self.model.distribute_strategy
        self.writes_files = is_chief(strategy)
        if not self.writes_files:
            self.delete_checkpoint = False
        several = worker_count(strategy) > 1
        # The chief restores first: it may put the previous backup in place of a torn
        # latest one, which the others must not read (or copy) while it does.
        if self.writes_files:
            super().on_train_begin(logs)
        if several:
            _collective.barrier(strategy)
        if not self.writes_files:
            super().on_train_begin(logs)
        if several:
            # Workers that restored other files (a backup folder that is not shared)
            # would train other batches with other weights, each on its own.
            weights = [variable.numpy() for variable in self.model.weights]
            _collective.check_workers_agree(
                strategy,
                "the restored training state",
                {
                    "step": int(self.model.optimizer.iterations.numpy()),
                    "weights": _collective.digest(*weights),
                },
            )

    def on_epoch_end(self, epoch, logs=None):
        if self.writes_files:
            super().on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self.writes_files:
            super().on_train_batch_end(batch, logs)


def backup_and_restore(backup_dir, save_freq="epoch", double_checkpoint=True):
    """`keras.callbacks.BackupAndRestore` for all workers, with the chief as only writer.

    Keras' callback writes its backup from every process that runs it; with several
    workers sharing `backup_dir` they would write the same files at once. This one
    writes from the chief only (found from the strategy of `fit`), and every worker
    restores from the same files when the job restarts, after the chief has, so that
    all resume at the same epoch, weights and step (hence the same place in the
    curriculum). Each backup file is written beside its target and renamed over it,
    so a process killed at any moment leaves a complete latest backup (Keras 3.15
    writes in place, and a kill during the write tears it); `double_checkpoint=True`
    also keeps the previous backup, restored if the latest cannot be read for any
    reason. The files are Keras' own, in the same places. With one worker it is
    Keras' callback with these safer writes.

    Args:
        backup_dir: Folder shared by all workers.
        save_freq: `"epoch"` or a number of batches (see `BackupAndRestore`).
            Defaults to `"epoch"`.
        double_checkpoint: Whether to keep the previous backup too. Defaults to `True`.

    Returns:
        A `keras.callbacks.BackupAndRestore`.

    Example:

    >>> backup = keras_agd.multi_worker.backup_and_restore("/shared/backup")
    >>> model.fit(curriculum.dataset(model), epochs=3, callbacks=[backup])
    """
    backup_dir = _validation.check_path("backup_dir", backup_dir)
    # Keras reads `save_freq=False` (or any number below 1) as "every batch".
    if save_freq != "epoch" and not (_validation.is_integer(save_freq) and save_freq >= 1):
        raise ValueError(
            "`save_freq` must be 'epoch' or a number of batches >= 1 between backups. "
            f"Received: save_freq={save_freq!r}"
        )
    double_checkpoint = _validation.check_bool("double_checkpoint", double_checkpoint)
    return _ChiefBackupAndRestore(
        backup_dir,
        save_freq=save_freq if save_freq == "epoch" else int(save_freq),
        double_checkpoint=double_checkpoint,
    )
