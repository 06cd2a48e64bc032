"""Times `HierarchicalCodebook.fit` on MNIST and prints JSON.

python benchmarks/codebook_build.py                 # faiss backend, 3 repeats
python benchmarks/codebook_build.py --backend sklearn --repeats 1
python benchmarks/codebook_build.py --min-coverage 0     # the full tree (down to clusters of 5)
"""

import argparse
import resource
import statistics
import time

import numpy as np
from _common import default_mnist_path, machine, print_json

import keras_agd


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", default=default_mnist_path(), help="path to mnist.npz")
    parser.add_argument("--backend", default="auto", choices=["auto", "faiss", "sklearn"])
    parser.add_argument("--branching", type=int, default=5)
    parser.add_argument("--min-cluster-size", type=int, default=None)
    parser.add_argument("--min-coverage", type=float, default=0.5, help="0: the full tree")
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    (x, y), _ = keras_agd.datasets.load_mnist(args.mnist)
    x = x.astype(np.float32) / 255.0
    rss_before = _peak_rss_mib()
    seconds, cpu_seconds = [], []
    for repeat in range(args.repeats):
        codebook = keras_agd.HierarchicalCodebook(
            branching=args.branching,
            min_cluster_size=args.min_cluster_size,
            min_coverage=args.min_coverage,
            backend=args.backend,
            n_jobs=args.n_jobs,
            random_state=repeat,
        )
        start, cpu = time.perf_counter(), time.process_time()
        codebook.fit(x, y)
        seconds.append(time.perf_counter() - start)
        # CPU time (all threads) is steadier than wall time on a shared machine.
        cpu_seconds.append(time.process_time() - cpu)
    levels = codebook.level_summary()
    print_json(
        {
            "benchmark": "codebook_build",
            "data": {"n_samples": len(x), "n_features": int(np.prod(x.shape[1:]))},
            "params": codebook.get_params(),
            "seconds_median": statistics.median(seconds),
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "codewords": int(len(codebook.node_count_)),
            "codewords_per_level": [row["codewords"] for row in levels],
            "samples_per_level": [row["samples"] for row in levels],
            "mean_error_per_level": [round(row["mean_error"], 4) for row in levels],
            # Peak resident memory of the process, and how much `fit` raised it.
            "peak_rss_mib": _peak_rss_mib(),
            "peak_rss_increase_mib": _peak_rss_mib() - rss_before,
            "training_data_mib": x.nbytes / 2**20,
            "machine": machine(),
        }
    )


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
