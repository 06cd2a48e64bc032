"""Reading `.npz` files as untrusted input: no pickle, and nothing inflated unchecked.

An `.npz` file is a zip archive of `.npy` members. Each member's zip entry declares
its uncompressed size, and its `.npy` header declares its dtype and shape. Before any
array is inflated, every member must be a `NAME.npy` whose two declarations agree,
that deflate could have produced from its compressed size, and that holds no Python
objects. A file can then make a reader allocate no more than its members declare
(so at most about 1000 times its size), and callers can bound the declared shapes
before they read anything: a small file can no longer inflate to gigabytes.
"""

import contextlib
import functools
import math
import os
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

# Deflate codes a 258-byte match in 2 bits at best: no stream expands more than this.
_DEFLATE_MAX_RATIO = 1032
_SUFFIX = ".npy"
# What a damaged archive or member raises while it is read (zipfile raises
# NotImplementedError for a zip version or feature it does not know).
_READ_ERRORS = (OSError, ValueError, EOFError, NotImplementedError, zipfile.BadZipFile, zlib.error)


class Member(NamedTuple):
    """One array of an `.npz` file, as its `.npy` header declares it.

    Attributes:
        info: The member's `zipfile.ZipInfo`.
        dtype: The declared dtype.
        shape: The declared shape.
        nbytes: The size of the array's data, from `dtype` and `shape`.
    """

    info: zipfile.ZipInfo
    dtype: np.dtype
    shape: tuple
    nbytes: int


class NpzFile:
    """An open `.npz` file whose members are checked before anything is inflated.

    Opening it reads the zip directory only: every entry must be a `NAME.npy`, once,
    stored or deflated, declaring no more than deflate can expand. `members` then
    reads each member's `.npy` header (a few KiB at most) and checks it against the
    entry; `read` loads an array only after every member passed. Callers check
    `names` and the declared shapes of `members` before they `read`.

    Args:
        path: File path.
        what: What the file should be, for error messages ("MNIST", "codebook").

    Raises:
        FileNotFoundError: If there is no such file.
        IsADirectoryError: If `path` is a folder.
        ValueError: If it is not a readable `.npz` file.
    """

    def __init__(self, path, what):
        self.path = os.fspath(path)
        self.what = what
        if os.path.isdir(self.path):
            raise IsADirectoryError(f"{what} file expected, found a folder: {self.path!r}")
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{what} file not found: {self.path!r}")
        with self._errors():
            self._archive = zipfile.ZipFile(self.path)
        try:
            with self._errors():
                self._infos = _check_entries(self._archive.infolist())
        except BaseException:
            self._archive.close()
            raise

    @property
    def names(self):
        """The arrays' names (members without `.npy`), in file order."""
        return list(self._infos)

    @functools.cached_property
    def members(self):
        """Per name, the `Member` its header declares; checks every member on first use."""
        with self._errors():
            return {name: _declared(self._archive, info) for name, info in self._infos.items()}

    def read(self, name, max_bytes=None):
        """The array `name`, loaded after every member's header was checked.

        Args:
            name: Array name, one of `names`.
            max_bytes: Most bytes the array may declare, or `None` for no bound.
                Defaults to `None`.
        """
        member = self.members[name]
        if max_bytes is not None and member.nbytes > max_bytes:
            raise ValueError(
                f"{self.path!r} is not a readable {self.what} file: {name}{_SUFFIX} declares "
                f"{member.nbytes} bytes of data, more than the {max_bytes} it may hold."
            )
        with self._errors(), _about(member.info):
            with self._archive.open(member.info) as file:
                array = np.lib.format.read_array(file, allow_pickle=False)
        if array.dtype != member.dtype or array.shape != member.shape:
            raise ValueError(
                f"{self.path!r} is not a readable {self.what} file: member "
                f"{member.info.filename!r} changed while it was read."
            )
        return array

    def close(self):
        self._archive.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _errors(self):
        return _unreadable(self.path, self.what)


def read_npz(path, what, names=None):
    """Returns the arrays of the `.npz` file at `path` as a dict.

    Every member is checked (see `NpzFile`) before any is read, and only `names` are
    read: other members are allowed but never inflated.

    Args:
        path: File path.
        what: What the file should be, for error messages ("MNIST", "codebook").
        names: The arrays to read, or `None` for all. Missing ones are left out of
            the result. Defaults to `None`.

    Raises:
        FileNotFoundError: If there is no such file.
        IsADirectoryError: If `path` is a folder.
        ValueError: If it is not a readable `.npz` file (truncated, not a zip, pickled,
            or members that disagree with their headers).
    """
    with NpzFile(path, what) as npz:
        wanted = [name for name in npz.names if names is None or name in names]
        return {name: npz.read(name) for name in wanted}


@contextlib.contextmanager
def _unreadable(path, what):
    """Turns what a damaged file raises into one `ValueError` naming the file."""
    try:
        yield
    except _READ_ERRORS as error:
        raise ValueError(f"{path!r} is not a readable {what} file: {error}") from error


@contextlib.contextmanager
def _about(info):
    """Names the member in what reading it raises."""
    try:
        yield
    except _READ_ERRORS as error:
        raise ValueError(f"member {info.filename!r}: {error}") from error


def _check_entries(infos):
    """Per array name, its zip entry; raises `ValueError` for an entry no `.npz` has."""
    entries = {}
    for info in infos:
        member = info.filename
        name = member.removesuffix(_SUFFIX)
        if not (member.endswith(_SUFFIX) and name):
            raise ValueError(f"member {member!r} is not an array (NAME{_SUFFIX}).")
        if name in entries:
            raise ValueError(f"member {member!r} appears twice.")
        if info.flag_bits & 0x1:
            raise ValueError(f"member {member!r} is encrypted.")
        if info.compress_type == zipfile.ZIP_STORED:
            expands = info.file_size == info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            expands = info.file_size <= _DEFLATE_MAX_RATIO * info.compress_size
        else:  # NumPy writes only these two; others could expand without bound.
            raise ValueError(
                f"member {member!r} uses zip compression method {info.compress_type}; "
                "an .npz file is stored or deflated."
            )
        if not expands:
            raise ValueError(
                f"member {member!r} declares {info.file_size} bytes from "
                f"{info.compress_size} compressed, more than its compression can produce."
            )
        entries[name] = info
    return entries


def _declared(archive, info):
    """The `Member` that `info`'s `.npy` header declares, checked against its zip entry."""
    member = info.filename
    with _about(info), archive.open(info) as file:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(file)
        else:  # 3.0 only adds UTF-8 field names, which no array of ours has.
            raise ValueError(f".npy format version {version} is not read here.")
        header_size = file.tell()
    if dtype.hasobject:
        raise ValueError(
            f"member {member!r} holds Python objects (dtype {dtype}), which need pickle."
        )
    if any(length < 0 for length in shape):
        raise ValueError(f"member {member!r} declares the shape {shape}.")
    nbytes = math.prod(shape) * dtype.itemsize
    if info.file_size != header_size + nbytes:
        raise ValueError(
            f"member {member!r} is {info.file_size} bytes, but its header declares "
            f"{header_size} + {nbytes} ({dtype} of shape {shape})."
        )
    return Member(info, dtype, tuple(shape), nbytes)
