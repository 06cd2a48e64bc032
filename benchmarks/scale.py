"""Scale benchmark on a large memory-mapped data set; prints JSON.

The data set is MNIST tiled to `--n-samples` rows (uint8, 784 features, 10 classes),
every copy shifted by up to 2 pixels and perturbed by noise, so that it is not 66
exact copies. It is written as a raw memory map (`x.u8`, `y.u8`) to `--data-dir`
(default: a temporary folder, deleted at the end unless `--keep`).

python benchmarks/scale.py                                   # 4,000,000 x 784, 3.1 GB
python benchmarks/scale.py --mosaic-levels 6                 # 5 level boundaries, not 1
python benchmarks/scale.py --n-samples 400000 --data-dir /tmp/agd-scale --keep
python benchmarks/scale.py --stage codebook                  # the codebook alone
python benchmarks/scale.py --stage data --data-dir /tmp/agd-scale   # only write the data

Stages:
    data: write the memory map (in this process).
    codebook: write it in a child process (so that its memory does not count), then
        fit `HierarchicalCodebook` through `Source(np.memmap)` and report wall time,
        CPU time and memory. `ru_maxrss` counts the memory map's pages that the fit
        touched (clean, file-backed, reclaimable: page cache mapped into the process);
        `peak_rss_anon_mib`, sampled every 20 ms, is the process's own memory.
    all (default): the codebook stage, then an MLP (784-256-10, uint8 inputs rescaled
        in the model) trained with AGD through `curriculum.dataset(model)` over the
        memory map: the mosaic phase (`--mosaic-levels` codebook levels, one `fit`),
        then one regular epoch (a pass over the samples, a second `fit`); beside it
        the same MLP with SGD fed by a plain tf.data pipeline over the same memory map
        (the same random rows per batch, read with NumPy in a `tf.numpy_function`),
        interleaved with more regular AGD epochs, `--repeats` of each. Throughput is
        samples per second of each regular AGD epoch and each plain epoch after its
        first step (the first regular epoch's first step includes one XLA compilation
        for its batch shape).

        Level boundaries: every batch is planned when the `Curriculum` is built, so a
        new mosaic level should start without a pause. From the end time of every
        step of the mosaic phase (`on_train_batch_end`), the wall time of each level's
        first step (from the end of the previous level's last step) is set against
        the median time of the other mosaic steps, all of batch
        `--mosaic-batch-size`; a planning pause that grew with N would show as a
        ratio well above 1 at 4,000,000 samples.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from _common import default_mnist_path, machine, print_json
from _timing import StepTimes

import keras_agd
from keras_agd.sources import Source

N_FEATURES = 28 * 28


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", default="all", choices=["data", "codebook", "all"])
    parser.add_argument("--n-samples", "--samples", type=int, default=4_000_000)
    parser.add_argument("--data-dir", default=None, help="where the memory map goes")
    parser.add_argument("--keep", action="store_true", help="keep the data afterwards")
    parser.add_argument("--mnist", default=default_mnist_path(), help="path to mnist.npz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subsample", type=int, default=None, help="default: the library's")
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--mosaic-batch-size", type=int, default=4096)
    parser.add_argument("--mosaic-levels", type=int, default=2, help="codebook levels trained")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved throughput pairs")
    args = parser.parse_args(argv)

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="keras-agd-scale-")
    os.makedirs(data_dir, exist_ok=True)
    try:
        if args.stage == "data":
            result = {"data": write_data(data_dir, args.n_samples, args.mnist, args.seed)}
        else:
            sampler = _PeakSampler()
            baseline = sampler.peak.copy()
            codebook, source, result = codebook_stage(data_dir, args)
            result = {"codebook": result}
            if args.stage == "all":
                result["train"] = train_stage(codebook, source, args)
            sampler.stop()
            result["memory_mib"] = {
                "interpreter_baseline_rss": baseline["VmRSS"],
                "peak_rss_anon_increase": sampler.peak["RssAnon"] - baseline["RssAnon"],
                "peak_rss_file": sampler.peak["RssFile"],
                "vm_hwm_increase": sampler.peak["VmHWM"] - baseline["VmRSS"],
                "note": "RssFile is the memory map's clean page cache mapped into the process "
                "(reclaimable); RssAnon is the process's own memory",
            }
    finally:
        if args.keep:
            pass
        elif args.data_dir is None:
            shutil.rmtree(data_dir)
        else:
            remove_data(data_dir)
    result.update({"benchmark": "scale", "stage": args.stage, "machine": machine()})
    print_json(result)
    return result


def data_paths(data_dir):
    return os.path.join(data_dir, "x.u8"), os.path.join(data_dir, "y.u8")


def write_data(data_dir, n_samples, mnist_path, seed):
    """Writes `n_samples` shifted, noisy MNIST digits as raw uint8 memory maps."""
    start = time.perf_counter()
    (images, labels), _ = keras_agd.datasets.load_mnist(mnist_path)
    rng = np.random.default_rng(seed)
    x_path, y_path = data_paths(data_dir)
    x = np.memmap(x_path, np.uint8, "w+", shape=(n_samples, N_FEATURES))
    y = np.memmap(y_path, np.uint8, "w+", shape=(n_samples,))
    for begin in range(0, n_samples, len(images)):
        end = min(begin + len(images), n_samples)
        pick = rng.permutation(len(images))[: end - begin]
        block = images[pick]
        # Each copy moves by up to 2 pixels each way (25 shifts), then gets noise.
        shifts = rng.integers(0, 25, len(block))
        for shift in range(25):
            rows = shifts == shift
            block[rows] = np.roll(block[rows], (shift // 5 - 2, shift % 5 - 2), axis=(1, 2))
        noisy = block.reshape(len(block), -1).astype(np.int16)
        noisy += rng.integers(-12, 13, noisy.shape, dtype=np.int16)
        x[begin:end] = np.clip(noisy, 0, 255)
        y[begin:end] = labels[pick]
    x.flush()
    y.flush()
    return {
        "n_samples": n_samples,
        "n_features": N_FEATURES,
        "gib_on_disk": os.path.getsize(x_path) / 2**30,
        "write_seconds": time.perf_counter() - start,
    }


def remove_data(data_dir):
    for path in data_paths(data_dir):
        if os.path.exists(path):
            os.remove(path)


def codebook_stage(data_dir, args):
    x_path, y_path = data_paths(data_dir)
    expected = args.n_samples * N_FEATURES
    data = None
    if not (os.path.exists(x_path) and os.path.getsize(x_path) == expected):
        # A child process writes the data, so its memory does not count here.
        command = [sys.executable, __file__, "--stage", "data", "--keep"]
        command += ["--data-dir", data_dir, "--n-samples", str(args.n_samples)]
        command += ["--seed", str(args.seed)] + (["--mnist", args.mnist] if args.mnist else [])
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        data = json.loads(output)["data"]

    x = np.memmap(x_path, np.uint8, "r", shape=(args.n_samples, N_FEATURES))
    y = np.fromfile(y_path, np.uint8)
    source = Source(x, y)
    options = {"subsample": args.subsample} if args.subsample else {}
    codebook = keras_agd.HierarchicalCodebook(n_jobs=args.n_jobs, random_state=args.seed, **options)
    baseline = _status()
    baseline_maxrss = _maxrss_mib()
    sampler = _PeakSampler()
    cpu = time.process_time()
    start = time.perf_counter()
    codebook.fit(source)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    sampler.stop()
    after = _status()
    levels = codebook.level_summary()
    return (
        codebook,
        source,
        {
            "data": data or {"n_samples": args.n_samples, "reused": data_dir},
            "params": codebook.get_params(),
            "fit_seconds": seconds,
            "fit_cpu_seconds": cpu,
            "codewords": int(len(codebook.node_count_)),
            "codewords_per_level": [row["codewords"] for row in levels],
            "samples_per_level": [row["samples"] for row in levels],
            "mean_error_per_level": [round(row["mean_error"], 2) for row in levels],
            "weights_sum": int(codebook.frontier(np.inf).node_weights.sum()),
            "memory_mib": {
                "baseline_rss": baseline["VmRSS"],
                "ru_maxrss": _maxrss_mib(),
                "ru_maxrss_increase": _maxrss_mib() - baseline_maxrss,
                "vm_hwm": after["VmHWM"],
                "peak_rss_anon": sampler.peak["RssAnon"],
                "peak_rss_anon_increase": sampler.peak["RssAnon"] - baseline["RssAnon"],
                "peak_rss_file": sampler.peak["RssFile"],
                "codewords": codebook.codewords_.nbytes / 2**20,
            },
        },
    )


def train_stage(codebook, source, args):
    def mlp(optimizer):
        keras.utils.set_random_seed(args.seed)
        model = keras.Sequential(
            [
                keras.Input((N_FEATURES,)),
                keras.layers.Rescaling(1 / 255.0),
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dense(10),
            ]
        )
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer, loss, jit_compile=True)
        return model

    start = time.perf_counter()
    # Checks the codebook against the memory map (one read), then plans every batch.
    curriculum = keras_agd.Curriculum(
        source,
        codebook=codebook,
        schedule=args.mosaic_levels,
        batch_size=args.batch_size,
        mosaic_batch_size=args.mosaic_batch_size,
        seed=args.seed,
    )
    plan_seconds = time.perf_counter() - start
    model = mlp(keras_agd.AGD(curriculum, 0.05, momentum=0.9))
    start = time.perf_counter()
    mosaic = curriculum.dataset(model, steps_per_epoch=curriculum.mosaic_steps)
    dataset = curriculum.dataset(model)  # One pass over the samples an epoch.
    build_seconds = time.perf_counter() - start
    mosaic_clock, steps = _EpochClock(args.mosaic_batch_size), StepTimes()
    mosaic_fit = model.fit(
        mosaic, epochs=1, verbose=0, callbacks=[mosaic_clock, steps], shuffle=False
    )
    clock = _EpochClock(args.batch_size)
    regular_fit = model.fit(dataset, epochs=1, verbose=0, callbacks=[clock], shuffle=False)

    x, y = source.array, source.labels

    def read(indices):
        indices = np.sort(indices)
        return np.asarray(x[indices], np.float32), y[indices]

    order = np.random.default_rng(args.seed).permutation(len(x))
    plain = tf.data.Dataset.from_tensor_slices(order).batch(args.batch_size)
    plain = plain.map(
        lambda i: tf.numpy_function(read, [i], [tf.float32, tf.int64]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    plain = plain.map(
        lambda a, b: (tf.ensure_shape(a, [None, N_FEATURES]), tf.ensure_shape(b, [None]))
    ).prefetch(tf.data.AUTOTUNE)
    plain_model = mlp(keras.optimizers.SGD(0.05, momentum=0.9))
    # Interleaved: a plain epoch, then one more regular AGD epoch, `--repeats` times.
    agd_rates, plain_rates = [clock.rates[0]], []
    for _ in range(args.repeats):
        plain_clock = _EpochClock(args.batch_size)
        plain_model.fit(plain, epochs=1, verbose=0, callbacks=[plain_clock], shuffle=False)
        plain_rates.append(plain_clock.rates[0])
        more = _EpochClock(args.batch_size)
        model.fit(dataset, epochs=1, verbose=0, callbacks=[more], shuffle=False)
        agd_rates.append(more.rates[0])
    agd_rate, plain_rate = statistics.median(agd_rates), statistics.median(plain_rates)
    return {
        "curriculum_seconds": plan_seconds,
        "pipeline_build_seconds": build_seconds,
        "levels": [level._asdict() for level in curriculum.levels],
        "mosaic_steps": curriculum.mosaic_steps,
        "steps_per_epoch": curriculum.steps_per_epoch,
        "mosaic_phase_seconds": mosaic_clock.seconds[0],
        "agd_regular_epoch_seconds": clock.seconds[0],
        "level_boundaries": level_boundaries(curriculum, steps),
        # Mean training loss of the mosaic phase, then of the first regular epoch.
        "loss": [mosaic_fit.history["loss"][0], regular_fit.history["loss"][0]],
        # Samples per second after each epoch's first batch (tracing and XLA excluded).
        "agd_regular_samples_per_second": agd_rates,
        "plain_samples_per_second": plain_rates,
        "regular_throughput_vs_plain_median": agd_rate / plain_rate,
    }


def level_boundaries(curriculum, steps):
    """The first step of each mosaic level against the other mosaic steps.

    `steps` is the `StepTimes` of a `fit` over the mosaic phase from step 0; the time
    of a step runs from the end of the step before it, so a level's first step counts
    anything done between two levels. Step 0 (tracing and compilation) has no time.
    Beside the median of all other mosaic steps, each boundary gets the median of the
    (up to) 5 steps on either side of it, as the first steps of a fit run slower while
    tf.data's autotuning settles.
    """
    seconds = steps.step_seconds()
    firsts = {level.first_step for level in curriculum.levels[1:]}
    others = [value for step, value in seconds.items() if step not in firsts]
    median = statistics.median(others) if others else None
    boundaries = []
    for index, level in enumerate(curriculum.levels[1:], start=1):
        first = seconds[level.first_step]
        near = [
            seconds[step]
            for step in range(level.first_step - 5, level.first_step + 6)
            if step in seconds and step not in firsts
        ]
        near_median = statistics.median(near) if near else None
        boundaries.append(
            {
                "level": index,
                "first_step": level.first_step,
                "first_step_seconds": first,
                "previous_step_seconds": seconds.get(level.first_step - 1),
                "ratio_to_median_step": None if median is None else first / median,
                "neighbour_median_seconds": near_median,
                "ratio_to_neighbours": None if near_median is None else first / near_median,
            }
        )
    return {
        "batch_size": curriculum.mosaic_batch_size,
        "median_step_seconds": median,
        "steps_in_median": len(others),
        "boundaries": boundaries,
        "max_ratio_to_median_step": max(
            (b["ratio_to_median_step"] for b in boundaries if median is not None), default=None
        ),
    }


class _EpochClock(keras.callbacks.Callback):
    """Per epoch: wall seconds, and samples per second after the first batch (epochs
    of batches of `batch_size`)."""

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size
        self.seconds, self.rates = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = self.warm = time.perf_counter()
        self.batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 1:  # The first step traced and compiled.
            self.warm = time.perf_counter()
        self.batches = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        self.seconds.append(end - self.start)
        self.rates.append((self.batches - 1) * self.batch_size / max(end - self.warm, 1e-9))


def _maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status():
    """VmRSS, VmHWM, RssAnon, RssFile of this process, in MiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                values[key] = int(value.split()[0]) / 1024
    return values


class _PeakSampler:
    """Polls `_status()` in a thread; `peak` holds each field's maximum."""

    def __init__(self, interval=0.02):
        self.peak = _status()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval):
        while not self._done.wait(interval):
            for key, value in _status().items():
                self.peak[key] = max(self.peak[key], value)

    def stop(self):
        self._done.set()
        self._thread.join()
        for key, value in _status().items():
            self.peak[key] = max(self.peak[key], value)


if __name__ == "__main__":
    main()
