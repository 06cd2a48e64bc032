"""Throughput of AGD on 1 and 2 worker processes on this machine (loopback), as JSON.

Each run starts its workers on 127.0.0.1 (`MultiWorkerMirroredStrategy`, `TF_CONFIG`),
trains an MLP with AGD on a slice of MNIST (the chief builds the codebook first; its
build is not timed) and times every epoch on every worker. Every worker builds the same
`keras_agd.Curriculum` and trains on `curriculum.dataset(model)` (sharded by data) or,
with `--input-context`, on `distribute_datasets_from_function`. A Keras epoch is one
pass over the samples (`curriculum.steps_per_epoch` steps); the mosaic phase is the
start of epoch 0. Each worker gets `--threads` TensorFlow threads, so a 2-worker run
uses twice the cores of a 1-worker run; what it measures is the cost of the all-reduce
and of the split batches on loopback, not a speed-up between machines.

    python benchmarks/multi_worker.py --workers 1 2
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import default_mnist_path, machine, print_json  # noqa: E402


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--mnist", default=default_mnist_path())
    parser.add_argument("--train-samples", type=int, default=12000)
    parser.add_argument("--mosaic-levels", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4, help="passes over the samples")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument("--mosaic-batch-size", type=int, default=1024, help="global batch")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads per worker")
    parser.add_argument(
        "--input-context",
        action="store_true",
        help="each worker reads only its share (distribute_datasets_from_function)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per worker count, interleaved")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # Internal: run one worker.
    return parser.parse_args(argv)


def worker(args):
    """One worker: trains and prints its epochs' timings as JSON."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_agd

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    strategy = tf.distribute.get_strategy()
    if "TF_CONFIG" in os.environ:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                timeout_seconds=120
            )
        )
    (x, y), _ = keras_agd.datasets.load_mnist(args.mnist)
    x = (x[: args.train_samples].reshape(args.train_samples, -1) / 255.0).astype(np.float32)
    y = y[: args.train_samples]
    codebook = keras_agd.multi_worker.shared_codebook(
        os.path.join(args.worker, "codebook.npz"),
        x,
        y,
        build=lambda: keras_agd.HierarchicalCodebook(random_state=0).fit(x, y),
    )
    curriculum = keras_agd.Curriculum(
        x,
        y,
        schedule=args.mosaic_levels,
        codebook=codebook,
        batch_size=args.batch_size,
        mosaic_batch_size=args.mosaic_batch_size,
        seed=0,
    )
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((784,)),
                keras.layers.Dense(256, "relu"),
                keras.layers.Dense(128, "relu"),
                keras.layers.Dense(10),
            ]
        )
        model.compile(
            optimizer=keras_agd.AGD(curriculum, learning_rate=0.05, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    keras_agd.multi_worker.prepare_model(model)
    epochs = []

    def batch_size(step):  # Global items of the batch of `step`.
        mosaic = step < curriculum.mosaic_steps
        return args.mosaic_batch_size if mosaic else args.batch_size

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.first_step = int(self.model.optimizer.iterations.numpy())
            self.steps = []
            self.start = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            self.step_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.steps.append(time.perf_counter() - self.step_start)

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.start
            steps = range(self.first_step, self.first_step + len(self.steps))
            epochs.append(
                {
                    "seconds": seconds,
                    "first_step": self.first_step,
                    "steps": len(self.steps),
                    # Steady state: the median step; the rest of the epoch is its start
                    # (a new iterator) and its first step (tracing, compiling).
                    "median_step_seconds": float(np.median(self.steps)),
                    "items": sum(batch_size(step) for step in steps),
                    # Whether every step of the epoch trained on real samples.
                    "regular": self.first_step >= curriculum.mosaic_steps,
                    "loss": float(logs["loss"]),
                }
            )

    if args.input_context:
        train = strategy.distribute_datasets_from_function(
            lambda context: curriculum.dataset(model, input_context=context)
        )
    else:
        train = curriculum.dataset(model)
    model.fit(train, epochs=args.epochs, verbose=0, callbacks=[Timer()])
    print("EPOCHS " + json.dumps(epochs), flush=True)


def run(workers, args, folder):
    """Starts `workers` processes; returns each worker's epochs."""
    sockets = [socket.socket() for _ in range(workers)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    command = [sys.executable, __file__, "--worker", folder, "--mnist", str(args.mnist)]
    for name in ("train_samples", "mosaic_levels", "epochs", "batch_size"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    command += ["--mosaic-batch-size", str(args.mosaic_batch_size), "--threads", str(args.threads)]
    command += ["--input-context"] if args.input_context else []
    processes = []
    try:
        for index in range(workers):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            env.pop("TF_CONFIG", None)
            if workers > 1:
                task = {"type": "worker", "index": index}
                env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
            processes.append(
                subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
            )
        outputs = [p.communicate(timeout=args.timeout) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    results = []
    for process, (stdout, stderr) in zip(processes, outputs):
        if process.returncode != 0:
            raise RuntimeError(f"a worker failed ({process.returncode}):\n{stderr[-3000:]}")
        line = next(line for line in stdout.splitlines() if line.startswith("EPOCHS "))
        results.append(json.loads(line.removeprefix("EPOCHS ")))
    return results


def summarize(per_worker):
    """Throughput of the epochs on real samples only, after epoch 0 (which traces)."""
    first = per_worker[0]
    regular = [i for i, epoch in enumerate(first) if epoch["regular"] and i > 0]
    # An epoch ends when the slowest worker's does.
    seconds = sum(max(worker[i]["seconds"] for worker in per_worker) for i in regular)
    items = sum(first[i]["items"] for i in regular)
    return {
        "epoch_seconds_per_worker": [[e["seconds"] for e in worker] for worker in per_worker],
        "first_step": [e["first_step"] for e in first],
        "loss": [e["loss"] for e in first],
        "regular_epochs_timed": regular,
        "regular_items_per_s": items / seconds,
        "regular_items_per_s_per_worker": items / seconds / len(per_worker),
        "regular_median_step_seconds": statistics.median(
            worker[i]["median_step_seconds"] for worker in per_worker for i in regular
        ),
        "regular_steps_per_epoch": first[regular[0]]["steps"] if regular else 0,
    }


def main(argv=None):
    args = parse(argv)
    if args.worker:
        return worker(args)
    runs = {str(workers): [] for workers in args.workers}
    for _ in range(args.repeats):
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as folder:
                runs[str(workers)].append(summarize(run(workers, args, folder)))
    summary = {
        workers: {
            "median_regular_items_per_s": statistics.median(
                r["regular_items_per_s"] for r in repeats
            ),
            "median_regular_items_per_s_per_worker": statistics.median(
                r["regular_items_per_s_per_worker"] for r in repeats
            ),
            "median_regular_step_seconds": statistics.median(
                r["regular_median_step_seconds"] for r in repeats
            ),
        }
        for workers, repeats in runs.items()
    }
    result = {
        "command": "python benchmarks/multi_worker.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine(),
        "threads_per_worker": args.threads,
        "input_context": args.input_context,
        "train_samples": args.train_samples,
        "global_batch": {"regular": args.batch_size, "mosaic": args.mosaic_batch_size},
        "summary": summary,
        "runs": runs,
    }
    print_json(result)
    return result


if __name__ == "__main__":
    main()
