"""Codebook files as untrusted input (nothing inflated unchecked) and interrupted saves."""

import io
import json
import os
import signal
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_agd
from keras_agd import HierarchicalCodebook, _atomic_file, _codebook_file
from keras_agd.datasets import load_mnist

MiB = 2**20


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(60, 2, 2)).astype(np.float32), rng.integers(0, 3, size=60)


@pytest.fixture(scope="module")
def codebook(data):
    return HierarchicalCodebook(branching=3, backend="sklearn", random_state=0).fit(*data)


@pytest.fixture
def saved(codebook, tmp_path):
    path = tmp_path / "cb.npz"
    codebook.save(path)
    return path


def npy_bytes(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=True)
    return buffer.getvalue()


def members_of(path):
    """Per array name, the `.npy` bytes of its member."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename[:-4]: archive.read(info) for info in archive.infolist()}


def write_zip(path, members, compress_type=zipfile.ZIP_STORED):
    """Writes `(member, bytes)` pairs (repeats allowed) as a zip file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about repeated names.
        with zipfile.ZipFile(path, "w", compress_type) as archive:
            for member, payload in members:
                archive.writestr(member, payload)


def add_zeros(path, name, dtype, shape):
    """Appends a deflated member of zeros: a real `.npy` of `shape` in a small file."""
    header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    chunk = bytes(MiB)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            for start in range(0, nbytes, MiB):
                member.write(chunk[: min(MiB, nbytes - start)])


def without(path, name):
    """Removes member `name` from the zip file at `path`."""
    members = members_of(path)
    del members[name]
    write_zip(path, [(f"{key}.npy", value) for key, value in members.items()])


def peak_memory(function):
    """Runs `function`; returns what it raised (or returned) and its peak allocation."""
    tracemalloc.start()
    try:
        result = function()
    except Exception as error:  # Returned for the caller to check.
        result = error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak


# --- Members are checked against what the file declares before anything is inflated.


def test_an_extra_member_that_would_inflate_to_256_mib_is_refused_unread(saved):
    add_zeros(saved, "junk", np.uint8, (256 * MiB,))
    assert saved.stat().st_size < 2 * MiB
    error, peak = peak_memory(lambda: HierarchicalCodebook.load(saved))
    assert isinstance(error, ValueError)
    assert "unexpected arrays ['junk']" in str(error) and str(saved) in str(error)
    assert peak < 8 * MiB


def test_mnist_may_hold_other_arrays_but_they_are_never_inflated(tmp_path):
    path = tmp_path / "mnist.npz"
    x, y = np.zeros((3, 28, 28), np.uint8), np.arange(3, dtype=np.uint8)
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    add_zeros(path, "junk", np.uint8, (256 * MiB,))
    result, peak = peak_memory(lambda: load_mnist(path))
    assert not isinstance(result, Exception), result
    np.testing.assert_array_equal(result[0][1], y)
    assert peak < 8 * MiB


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda data: data + bytes(8), r"is \d+ bytes, but its header declares"),
        (lambda data: data[:-8], r"is \d+ bytes, but its header declares"),
        (lambda data: npy_bytes(np.zeros(3, object)), "Python objects"),
        (lambda data: b"not an array", "magic string"),
    ],
    ids=["trailing bytes", "short data", "pickled objects", "not npy"],
)
def test_a_member_that_disagrees_with_its_header_is_refused(saved, edit, message):
    members = members_of(saved)
    members["node_count_"] = edit(members["node_count_"])
    write_zip(saved, [(f"{key}.npy", value) for key, value in members.items()])
    with pytest.raises(ValueError, match=message) as error:
        HierarchicalCodebook.load(saved)
    assert "node_count_.npy" in str(error.value) and str(saved) in str(error.value)


def declare_size(path, member, size):
    """Rewrites the uncompressed size that the zip directory gives for `member`."""
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    entry = int.from_bytes(data[end + 16 : end + 20], "little")  # The directory's start.
    while True:
        assert data[entry : entry + 4] == b"PK\x01\x02"
        lengths = [int.from_bytes(data[entry + i : entry + i + 2], "little") for i in (28, 30, 32)]
        if data[entry + 46 : entry + 46 + lengths[0]] == member.encode():
            data[entry + 24 : entry + 28] = size.to_bytes(4, "little")
            path.write_bytes(bytes(data))
            return
        entry += 46 + sum(lengths)


def test_a_member_that_declares_more_than_deflate_can_produce_is_refused(saved):
    members = members_of(saved)
    write_zip(saved, [(f"{k}.npy", v) for k, v in members.items()], zipfile.ZIP_DEFLATED)
    declare_size(saved, "sample_node_.npy", 2**31)
    with pytest.raises(ValueError, match="2147483648 bytes from .* more than its compression"):
        HierarchicalCodebook.load(saved)


def test_an_array_larger_than_the_metadata_allows_is_refused_unread(saved, codebook):
    without(saved, "sample_node_")
    # 64 Mi entries where the metadata says 60 samples: 256 MiB once inflated.
    add_zeros(saved, "sample_node_", np.int32, (64 * MiB,))
    error, peak = peak_memory(lambda: HierarchicalCodebook.load(saved))
    assert isinstance(error, ValueError)
    assert "`sample_node_` has shape (67108864,), not one entry per training sample" in str(error)
    assert peak < 8 * MiB


@pytest.mark.parametrize(
    "name, shape, message",
    [
        ("node_level_", lambda n, nodes, features: (2 * n,), "60 samples make 1 to 119 nodes"),
        ("node_level_", lambda n, nodes, features: (0,), "60 samples make 1 to 119 nodes"),
        ("codewords_", lambda n, nodes, features: (nodes, features + 1), "codewords of shape"),
        ("node_count_", lambda n, nodes, features: (nodes + 1,), "`node_count_` has shape"),
        ("sample_node_", lambda n, nodes, features: (n, 1), "one entry per training sample"),
    ],
)
def test_shapes_that_disagree_with_the_metadata_are_refused(saved, codebook, name, shape, message):
    n_nodes, n_features = codebook.codewords_.shape
    dtype = _codebook_file.ARRAYS[name]
    without(saved, name)
    add_zeros(saved, name, dtype, shape(60, n_nodes, n_features))
    with pytest.raises(ValueError, match=message) as error:
        HierarchicalCodebook.load(saved)
    assert "holds an invalid codebook" in str(error.value)


def test_oversized_metadata_is_refused_unread(saved):
    without(saved, "metadata")
    add_zeros(saved, "metadata", "<U262145", ())  # Just over 1 MiB of UTF-32.
    with pytest.raises(ValueError, match="metadata.npy declares 1048580 bytes"):
        HierarchicalCodebook.load(saved)


@pytest.mark.parametrize("subsample", [None, 20], ids=["exact", "streamed"])
def test_every_fitted_tree_is_within_the_node_bound(data, subsample):
    # `load` refuses more than 2 * n_samples - 1 nodes; the builder must never make more,
    # even a full binary tree down to single samples, or one fit on a subset.
    full = HierarchicalCodebook(
        branching=2,
        min_cluster_size=1,
        min_coverage=0,
        subsample=subsample,
        backend="sklearn",
        random_state=0,
    ).fit(*data)
    assert len(full.node_level_) <= 2 * len(data[0]) - 1


# --- Any file: a codebook, or an error of the documented kinds naming the file.


@pytest.fixture(scope="module")
def base(codebook, tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "cb.npz"
    codebook.save(path)
    with np.load(path) as contents:
        arrays = {name: contents[name] for name in _codebook_file.ARRAYS}
        metadata = json.loads(str(contents["metadata"]))
    return arrays, metadata, path.parent


# Members to add: repeated or foreign arrays, names that are not `NAME.npy`, a folder.
EXTRA_MEMBERS = [
    *(f"{name}.npy" for name in ["metadata", *_codebook_file.ARRAYS]),
    *["junk.npy", "x_train.npy", "dir/a.npy", ".npy", "node_level_", "notes.txt", "dir/"],
]
ARRAYS = st.one_of(
    st.builds(np.zeros, st.tuples(st.integers(0, 3)), st.sampled_from(["f4", "f8", "i4", "i8"])),
    st.builds(lambda n: np.array([object()] * n, object), st.integers(0, 2)),
    st.builds(lambda n: np.array("x" * n), st.integers(0, 5)),
    st.just(np.zeros((2, 3), ">f4")),
)


@st.composite
def npz_files(draw, arrays, metadata):
    metadata = json.loads(json.dumps(metadata))
    arrays = dict(arrays)
    edit = draw(st.sampled_from(["none", "n_samples", "feature_shape", "params", "format", "text"]))
    if edit == "n_samples":
        metadata["fingerprint"]["n_samples"] = draw(st.sampled_from([0, 61, -1, "60", True]))
    elif edit == "feature_shape":
        metadata["feature_shape"] = draw(st.sampled_from([[4], [2, 3], [0], "4", [[2]], None]))
    elif edit == "params":
        del metadata["params"][draw(st.sampled_from(sorted(metadata["params"])))]
    elif edit == "format":
        metadata["format_version"] = draw(st.sampled_from([1, None, "2"]))
    for name in draw(st.lists(st.sampled_from(sorted(arrays)), max_size=2)):
        arrays[name] = draw(ARRAYS)
    if draw(st.booleans()):
        metadata["checksum"] = _codebook_file._checksum(metadata, arrays)
    payloads = {name: npy_bytes(array) for name, array in arrays.items()}
    payloads["metadata"] = (
        npy_bytes(np.array(json.dumps(metadata)))
        if edit != "text"
        else draw(st.sampled_from([npy_bytes(np.array("{")), npy_bytes(np.ones(2)), b"{}"]))
    )
    entries = [(f"{name}.npy", payload) for name, payload in payloads.items()]
    entries = draw(st.permutations(entries))
    entries = entries[: len(entries) - draw(st.integers(0, 1))]  # Maybe one missing.
    for member in draw(st.lists(st.sampled_from(EXTRA_MEMBERS), max_size=2)):
        entries.append((member, b"" if member.endswith("/") else npy_bytes(draw(ARRAYS))))
    compress = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    # Damage: cut the file short, or overwrite some bytes (the zip directory may survive).
    damage = draw(st.sampled_from([None, "cut", "overwrite"]))
    where = draw(st.floats(0, 1))
    garbage = draw(st.binary(min_size=1, max_size=64))
    return entries, compress, (damage, where, garbage)


@settings(derandomize=True, max_examples=30, deadline=None)
@pytest.mark.boundary
@given(st.data())
def test_any_npz_file_loads_or_raises_a_documented_error_naming_it(base, data):
    arrays, metadata, folder = base
    entries, compress, (damage, where, garbage) = data.draw(npz_files(arrays, metadata))
    path = folder / "any.npz"
    write_zip(path, entries, compress)
    content = path.read_bytes()
    at = int(where * len(content))
    if damage == "cut":
        path.write_bytes(content[:at])
    elif damage == "overwrite":
        path.write_bytes(content[:at] + garbage + content[at + len(garbage) :])
    try:
        HierarchicalCodebook.load(path)
    except (ValueError, TypeError, FileNotFoundError, IsADirectoryError) as error:
        assert str(path) in str(error)


# --- Interrupted saves: the temporary file of a killed save is removed by the next.

KILLED_SAVE = """
import io, os, signal, sys
import numpy as np
from keras_agd import HierarchicalCodebook

codebook = HierarchicalCodebook.load(sys.argv[1])
savez = np.savez

def killed_savez(file, **arrays):
    whole = io.BytesIO()
    savez(whole, **arrays)
    file.write(whole.getvalue()[: len(whole.getvalue()) // 2])
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)

np.savez = killed_savez  # NumPy's, not keras_agd's: the child dies in the middle of it.
codebook.save(sys.argv[2])
"""


def temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(_atomic_file.SUFFIX))


def test_the_next_save_removes_what_a_killed_save_left(saved):
    folder, target = saved.parent, saved.parent / "target.npz"
    package = Path(keras_agd.__file__).resolve().parents[1]
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_SAVE, str(saved), str(target)],
        env={**os.environ, "PYTHONPATH": str(package)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = child.communicate(timeout=300)[0]
    assert child.returncode == -signal.SIGKILL, output[-2000:]
    prefix = f".target.npz.{_atomic_file.host()}.{child.pid}."
    (left,) = temporaries(folder)
    assert left.startswith(prefix) and not target.exists()

    HierarchicalCodebook.load(saved).save(target)
    assert sorted(p.name for p in folder.iterdir()) == ["cb.npz", "target.npz"]
    HierarchicalCodebook.load(target)


def test_a_save_leaves_other_writers_temporaries_alone(saved, codebook):
    folder, host = saved.parent, _atomic_file.host()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    names = {
        "gone": f".cb.npz.{host}.{gone.pid}.abc.keras_agd-tmp",
        "alive": f".cb.npz.{host}.{os.getpid()}.abc.keras_agd-tmp",
        "other host": f".cb.npz.elsewhere~1.{gone.pid}.abc.keras_agd-tmp",
        "other file": f".other.npz.{host}.{gone.pid}.abc.keras_agd-tmp",
        "not ours": f".cb.npz.{host}.{gone.pid}.abc.tmp",
    }
    for name in names.values():
        (folder / name).write_bytes(b"partial")
    codebook.save(saved)
    assert temporaries(folder) == sorted(
        names[key] for key in ["alive", "other host", "other file"]
    )
    assert (folder / names["not ours"]).exists()


def test_a_long_file_name_is_saved(saved, codebook):
    path = saved.parent / ("c" * 240 + ".npz")
    codebook.save(path)
    assert HierarchicalCodebook.load(path).get_params() == codebook.get_params()
    assert temporaries(saved.parent) == []
