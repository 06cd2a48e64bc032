import os
import socket
import tempfile
import warnings
from pathlib import Path

import absl.logging
import numpy as np
import pytest

from keras_agd.datasets import load_mnist, mnist_data_source, prepare_mnist
from keras_agd.sources import Source


def test_load_mnist_from_local_file(mnist_path):
    (x_train, y_train), (x_test, y_test) = load_mnist(mnist_path)
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist()[:3] == [5923, 6742, 5958]
    assert y_test.shape == (10000,)


def test_environment_variable_is_used(mnist_path, monkeypatch):
    monkeypatch.setenv("KERAS_AGD_MNIST", str(mnist_path))
    (x_train, _), _ = load_mnist()
    assert len(x_train) == 60000


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST file not found"):
        load_mnist(tmp_path / "nope.npz")


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable MNIST file"):
        load_mnist(path)


def test_file_with_wrong_arrays_is_a_clear_error(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="missing arrays"):
        load_mnist(path)


def test_file_with_wrong_shapes_is_a_clear_error(tmp_path):
    path = tmp_path / "mnist.npz"
    x, y = np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8)
    np.savez(path, x_train=x, y_train=y[:2], x_test=x, y_test=y)
    with pytest.raises(ValueError, match="y_train must have shape"):
        load_mnist(path)


# --- MNIST as a local tfds dataset (ArrayRecord files read by index) ---

N_SMALL = 1000


def _files(data_dir):
    return {
        path: (path.stat().st_mtime_ns, path.stat().st_size)
        for path in Path(data_dir).rglob("*")
        if path.is_file()
    }


def test_data_source_reads_the_npz_samples_in_order(mnist_path, tmp_path):
    (x_train, y_train), (x_test, y_test) = load_mnist(mnist_path)
    records = mnist_data_source(tmp_path, path=mnist_path, num_examples=N_SMALL)
    assert len(records) == N_SMALL
    source = Source(records, x_key="image", y_key="label")
    assert source.sample_shape == (28, 28) and source.dtype == np.uint8
    indices = [999, 0, 517, 517, 3]
    np.testing.assert_array_equal(source.read(indices), x_train[indices])
    np.testing.assert_array_equal(source.labels, y_train[:N_SMALL])

    test = Source(mnist_data_source(tmp_path, "test", num_examples=N_SMALL), None, "image", "label")
    np.testing.assert_array_equal(test.read(np.arange(N_SMALL)), x_test[:N_SMALL])
    np.testing.assert_array_equal(test.labels, y_test[:N_SMALL])


def test_second_call_reuses_the_files(mnist_path, tmp_path):
    prepare_mnist(tmp_path, path=mnist_path, num_examples=N_SMALL)
    written = _files(tmp_path)
    assert any(path.name.endswith(".array_record-00000-of-00001") for path in written)
    # A missing npz proves the second call neither reads it nor writes anything.
    records = mnist_data_source(tmp_path, path=tmp_path / "absent.npz", num_examples=N_SMALL)
    assert len(records) == N_SMALL
    assert _files(tmp_path) == written


def test_each_size_has_its_own_copy(mnist_path, tmp_path):
    assert len(mnist_data_source(tmp_path, path=mnist_path, num_examples=20)) == 20
    assert len(mnist_data_source(tmp_path, path=mnist_path, num_examples=30)) == 30
    assert len(mnist_data_source(tmp_path, "train[:5]", num_examples=20)) == 5
    folders = sorted(path.name for path in (tmp_path / "keras_agd_mnist").iterdir())
    assert folders == [".config", "first_20", "first_30"]


def test_preparing_asks_no_network(mnist_path, tmp_path, monkeypatch):
    from tensorflow_datasets.core.utils import gcs_utils

    def no_network(*args, **kwargs):
        raise AssertionError("network access")

    # As if this tfds version looked at its GCS bucket by default.
    monkeypatch.setattr(gcs_utils, "_is_gcs_disabled", False)
    for name in ("exists", "gcs_listdir", "gcs_dataset_info_files", "is_dataset_on_gcs"):
        monkeypatch.setattr(gcs_utils, name, no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    records = mnist_data_source(tmp_path, path=mnist_path, num_examples=10)
    assert len(records) == 10


def test_preparing_leaves_no_global_state_behind(mnist_path, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    filters, environ = list(warnings.filters), dict(os.environ)
    verbosity = absl.logging.get_verbosity()
    prepare_mnist(tmp_path / "data", path=mnist_path, num_examples=10)
    assert warnings.filters == filters
    assert dict(os.environ) == environ
    assert absl.logging.get_verbosity() == verbosity
    assert not list((tmp_path / "tmp").iterdir())


@pytest.mark.parametrize("num_examples", [0, -1, 1.5, True, "10"])
def test_invalid_num_examples_is_a_clear_error(tmp_path, num_examples):
    with pytest.raises(ValueError, match="`num_examples` must be a positive integer"):
        prepare_mnist(tmp_path, num_examples=num_examples)


def test_file_as_data_dir_is_a_clear_error(tmp_path):
    path = tmp_path / "data"
    path.write_text("not a folder")
    with pytest.raises(ValueError, match="`data_dir` must be a folder"):
        prepare_mnist(path, num_examples=10)


def _damaged_copy(mnist_path, data_dir):
    builder = prepare_mnist(data_dir, path=mnist_path, num_examples=50)
    return Path(builder.data_dir)


def test_missing_record_file_is_a_clear_error(mnist_path, tmp_path):
    folder = _damaged_copy(mnist_path, tmp_path)
    next(folder.glob("*-train.array_record-*")).unlink()
    with pytest.raises(ValueError, match="incomplete or damaged .*Delete that folder"):
        mnist_data_source(tmp_path, num_examples=50)


def test_truncated_record_file_is_a_clear_error(mnist_path, tmp_path):
    folder = _damaged_copy(mnist_path, tmp_path)
    shard = next(folder.glob("*-test.array_record-*"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ValueError, match="incomplete or damaged"):
        mnist_data_source(tmp_path, "test", num_examples=50)


def test_missing_dataset_info_is_a_clear_error(mnist_path, tmp_path):
    folder = _damaged_copy(mnist_path, tmp_path)
    (folder / "dataset_info.json").unlink()
    with pytest.raises(ValueError, match="incomplete or damaged \\(no 'train' split\\)"):
        mnist_data_source(tmp_path, num_examples=50)


def test_corrupt_dataset_info_is_a_clear_error(mnist_path, tmp_path):
    folder = _damaged_copy(mnist_path, tmp_path)
    (folder / "dataset_info.json").write_text("{not json")
    with pytest.raises(ValueError, match="Could not read the MNIST tfds dataset"):
        mnist_data_source(tmp_path, num_examples=50)
