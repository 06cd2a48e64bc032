"""Helpers shared by the benchmark scripts (not part of the library)."""

import json
import os
import platform
from pathlib import Path

# The project's data folder sits beside the checkout (see ../shared/data/README.md).
LOCAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"


def default_mnist_path():
    """`$KERAS_AGD_MNIST`, else the shared local copy when present, else None (download)."""
    if os.environ.get("KERAS_AGD_MNIST"):
        return os.environ["KERAS_AGD_MNIST"]
    return str(LOCAL_MNIST) if LOCAL_MNIST.is_file() else None


def machine():
    """A short description of where a benchmark ran."""
    import tensorflow as tf

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
    }


def print_json(result):
    print(json.dumps(result, indent=2, default=float))


def batch_size_of(curriculum, step):
    """Items in the batch of global step `step` of `curriculum` (every batch is full)."""
    return curriculum.mosaic_batch_size if step < curriculum.mosaic_steps else curriculum.batch_size


def examples_trained(curriculum, steps):
    """Items in the batches of global steps `0 .. steps - 1` of `curriculum`."""
    mosaic = min(steps, curriculum.mosaic_steps)
    return mosaic * curriculum.mosaic_batch_size + (steps - mosaic) * curriculum.batch_size
