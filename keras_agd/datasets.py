"""MNIST loading that works both online and on machines without a network.

`load_mnist` returns the arrays; `prepare_mnist` writes them once as a local
tensorflow-datasets (tfds) dataset in ArrayRecord files, which `mnist_data_source`
reads by index.
"""

import dataclasses
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from keras_agd import _validation
from keras_agd._npz import read_npz

MNIST_ENV_VAR = "KERAS_AGD_MNIST"
_MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")
_SPLITS = ("train", "test")


def load_mnist(path=None):
    """Loads MNIST in the layout of `keras.datasets.mnist.load_data()`.

    The file is looked up in this order: `path`, the environment variable
    `KERAS_AGD_MNIST`, then Keras' own cache and download
    (`~/.keras/datasets/mnist.npz`).

    Args:
        path: Optional path to an `.npz` file with the arrays `x_train`,
            `y_train`, `x_test` and `y_test` (uint8 images of shape
            `(N, 28, 28)` and integer labels). Defaults to `None`.

    Returns:
        Tuple of NumPy arrays `(x_train, y_train), (x_test, y_test)`.

    Raises:
        FileNotFoundError: If the given file does not exist.
        IsADirectoryError: If the given path is a folder.
        ValueError: If the file is not a valid MNIST `.npz` file.
        RuntimeError: If no file is given and the download fails.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = keras_agd.datasets.load_mnist()
    >>> x_train.shape
    (60000, 28, 28)
    """
    if path is not None:
        path = _validation.check_path("path", path)
    path = path or os.environ.get(MNIST_ENV_VAR)
    if path is None:
        return _download_mnist()
    arrays = read_npz(path, "MNIST", names=_MNIST_KEYS)
    missing = [key for key in _MNIST_KEYS if key not in arrays]
    if missing:
        raise ValueError(
            f"{path!r} is not an MNIST file: missing arrays {missing}. "
            f"Expected keys {list(_MNIST_KEYS)}."
        )
    for split in ("train", "test"):
        _check_split(path, split, arrays[f"x_{split}"], arrays[f"y_{split}"])
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _check_split(path, split, x, y):
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"{path!r}: x_{split} must have shape (N, 28, 28). Received: {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(
            f"{path!r}: y_{split} must have shape ({len(x)},) to match x_{split}. "
            f"Received: {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path!r}: y_{split} must hold integer labels. Received: {y.dtype}")


def _download_mnist():
    import keras

    try:
        return keras.datasets.mnist.load_data()
    except Exception as error:  # The download raises many kinds of network errors.
        raise RuntimeError(
            "Could not download MNIST with keras.datasets.mnist.load_data(). "
            f"Pass `path=` or set {MNIST_ENV_VAR} to a local mnist.npz. Cause: {error}"
        ) from error


def prepare_mnist(data_dir, path=None, num_examples=None):
    """Writes MNIST once as a local tfds dataset in ArrayRecord files; returns its builder.

    The first call reads MNIST with `load_mnist(path)` and writes both splits
    under `data_dir/keras_agd_mnist/<config>/1.0.0/`, where `<config>` is `full`
    or `first_<num_examples>`. Later calls with the same `data_dir` and
    `num_examples` reuse those files: they neither read `path` nor rewrite
    anything. Nothing is fetched from the network (no tfds GCS lookup); only
    `load_mnist` downloads, when neither `path` nor `KERAS_AGD_MNIST` is given.

    Records are dicts `{"image": uint8 array of shape (28, 28), "label": int64}`,
    stored in the order of `load_mnist`: record `i` of a split is sample `i` of
    its arrays. Images keep the `(28, 28)` layout of `load_mnist` and
    `keras.datasets.mnist`, not the `(28, 28, 1)` of the tfds catalog's `mnist`;
    they are stored as raw tensors, not PNG, so reading by index decodes nothing.

    Args:
        data_dir: Folder for the prepared dataset (created if missing).
        path: Optional MNIST `.npz` file, as for `load_mnist`; only read when
            the dataset is written. Defaults to `None`.
        num_examples: Optional number of leading samples of each split to
            write (a small copy for quick trials). Defaults to `None` (all samples).

    Returns:
        The prepared `tfds.core.DatasetBuilder`; `as_data_source(split)` reads
        its records by index. (tfds 4.9 cannot stream ArrayRecord files with
        `as_dataset`; a `tf.data` pipeline over the same samples in the same
        order is `tf.data.Dataset.from_tensor_slices(load_mnist(path)[0])`.)

    Raises:
        ValueError: If `num_examples` is not a positive integer, `data_dir` is
            a file, or `data_dir` holds an incomplete or damaged copy (delete
            that copy to write it again).

    Example:

    >>> builder = keras_agd.datasets.prepare_mnist("~/keras_agd_data")
    >>> builder.info.splits["train"].num_examples
    60000
    """
    if num_examples is not None and (
        isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1
    ):
        raise ValueError(
            f"`num_examples` must be a positive integer or None. Received: {num_examples!r}"
        )
    data_dir = os.path.expanduser(os.fspath(data_dir))
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise ValueError(f"`data_dir` must be a folder. Received a file: {data_dir!r}")
    config = "full" if num_examples is None else f"first_{num_examples}"
    try:
        builder = _MnistBuilder(
            data_dir=data_dir, config=config, file_format="array_record", mnist_path=path
        )
    except Exception as error:  # A damaged dataset_info.json fails in many ways.
        copy = os.path.join(data_dir, _MnistBuilder.name, config)
        raise ValueError(
            f"Could not read the MNIST tfds dataset in {copy!r}: {error} "
            "If that copy is damaged, delete the folder to write it again."
        ) from error
    if not builder.is_prepared():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    _check_prepared(builder)
    return builder


def mnist_data_source(data_dir, split="train", path=None, num_examples=None):
    """MNIST records read by index from local ArrayRecord files, written on first use.

    `prepare_mnist(data_dir, path, num_examples).as_data_source(split)`: a
    random-access sequence of `{"image": (28, 28) uint8, "label": int64}` dicts
    in the order of `load_mnist`, ready for
    `keras_agd.sources.Source(..., x_key="image", y_key="label")`.

    Args:
        data_dir: Folder for the prepared dataset (see `prepare_mnist`).
        split: `"train"`, `"test"`, or a tfds slice such as `"train[:1000]"`.
            Defaults to `"train"`.
        path: Optional MNIST `.npz` file, only read when the dataset is
            written. Defaults to `None`.
        num_examples: Optional number of leading samples of each split to
            write. Defaults to `None` (all samples).

    Returns:
        A tfds `ArrayRecordDataSource` (`len`, `[i]`, `__getitems__`).

    Example:

    >>> records = keras_agd.datasets.mnist_data_source("~/keras_agd_data")
    >>> source = keras_agd.sources.Source(records, x_key="image", y_key="label")
    >>> source.read([0, 1]).shape
    (2, 28, 28)
    """
    builder = prepare_mnist(data_dir, path=path, num_examples=num_examples)
    return builder.as_data_source(split=split)


def _check_prepared(builder):
    """Fails early, naming the folder, where tfds would fail deep inside a later read."""
    try:
        if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
            raise ValueError(f"stored as {builder.info.file_format}, not ArrayRecord")
        for split in _SPLITS:
            if split not in builder.info.splits:
                raise ValueError(f"no {split!r} split")
            records = builder.as_data_source(split=split)
            expected = builder.info.splits[split].num_examples
            if len(records) != expected or expected == 0:
                raise ValueError(f"{len(records)} {split} records where {expected} were written")
            # Reading the last record opens every file of the split and checks its end.
            shape = np.shape(records[len(records) - 1]["image"])
            if shape != (28, 28):
                raise ValueError(f"images of shape {shape}")
    except Exception as error:  # tfds and ArrayRecord raise many kinds of errors here.
        raise ValueError(
            f"The MNIST tfds dataset in {os.fspath(builder.data_dir)!r} is incomplete or "
            f"damaged ({error}). Delete that folder to write it again."
        ) from error


class _LocalDatasetInfo(tfds.core.DatasetInfo):
    def initialize_from_bucket(self):
        # The tfds bucket holds no info on our dataset; looking would leave an empty temp dir.
        pass


@dataclasses.dataclass(eq=False)
class _MnistConfig(tfds.core.BuilderConfig):
    num_examples: int | None = None


class _MnistBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """MNIST from `load_mnist`, written as tfds records (not in the tfds registry)."""

    name = "keras_agd_mnist"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "MNIST from keras_agd.datasets.load_mnist, (28, 28) uint8."}
    BUILDER_CONFIGS = [_MnistConfig(name="full", description="All samples.")]
    # tfds looks for a checksums file beside a builder's code; ours downloads nothing. Finding
    # that code also imports `importlib_resources`, which tfds 4.9.10 does not install on
    # Python >= 3.9 (tensorflow/datasets#11212).
    code_path = None

    def __init__(self, *, mnist_path=None, **kwargs):
        self.mnist_path = mnist_path
        super().__init__(**kwargs)

    @classmethod
    def get_builder_config(cls, name, version=None):
        # Subsets are made on demand; as declared configs they skip tfds' "custom config" warning.
        match = re.fullmatch(r"first_([1-9][0-9]*)", name)
        if match is None:
            return super().get_builder_config(name, version)
        num_examples = int(match.group(1))
        return _MnistConfig(
            name=name,
            num_examples=num_examples,
            description=f"The first {num_examples} samples of each split.",
        )

    def _info(self):
        # Built directly: `dataset_info_from_configs` would look for metadata files in our package.
        return _LocalDatasetInfo(
            builder=self,
            description="MNIST handwritten digits, as `keras_agd.datasets.load_mnist` reads them.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(28, 28), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="http://yann.lecun.com/exdb/mnist/",
            # Keeps records in key order, so record i is sample i.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        (x_train, y_train), (x_test, y_test) = load_mnist(self.mnist_path)
        return {
            "train": self._generate_examples(x_train, y_train),
            "test": self._generate_examples(x_test, y_test),
        }

    def _generate_examples(self, images, labels):
        stop = self.builder_config.num_examples
        for i, (image, label) in enumerate(zip(images[:stop], labels[:stop])):
            yield i, {"image": image, "label": int(label)}
