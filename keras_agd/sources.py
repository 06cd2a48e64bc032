"""Random-access training samples: in-memory arrays, memory maps, tfds data sources."""

import os

import numpy as np
import tensorflow as tf

from keras_agd import _validation


class Source:
    """Training samples that can be read by index, without holding them all in memory.

    A source wraps what a user already has: a NumPy array, an `np.memmap` of data on
    disk, a tfds `data_source` (ArrayRecord files read by index), or any object with
    `__len__` and `__getitem__`. Samples keep their stored dtype (uint8 images stay
    uint8); readers cast per batch. Labels are read once and kept in memory (one
    integer per sample).

    Invariants, checked where the data is read: every sample has the first sample's
    shape, at least one dimension, and a dtype whose values the first sample's dtype
    holds exactly (floats may differ in width: they are cast to float32 anyway);
    every value is finite. A memory-mapped file that shrinks or is rewritten while
    training runs is refused before the next read (reading a truncated map would kill
    the process with SIGBUS).

    Args:
        x: Array of shape `(N, ...)`, `np.memmap`, or a random-access collection of
            records (`len(x)`, `x[i]`, and optionally `x.__getitems__(indices)`).
        y: Optional integer labels of shape `(N,)`. `None` with `y_key` reads them
            from the records; `None` without it means unlabeled data.
            Defaults to `None`.
        x_key: For records that are dicts (tfds), the key of the input.
            Defaults to `None` (records are arrays, or `(x, y)` pairs).
        y_key: For dict records, the key of the label. Defaults to `None`.

    Example:

    >>> source = keras_agd.Source(np.load("x.npy", mmap_mode="r"), y)
    >>> source = keras_agd.Source(tfds.data_source("mnist", split="train"),
    ...                           x_key="image", y_key="label")
    """

    def __init__(self, x, y=None, x_key=None, y_key=None):
        if isinstance(x, Source):
            raise TypeError("`x` is already a Source; pass it as it is.")
        if _is_tf_dataset(x):
            raise TypeError(
                "`x` must be random-access (an array, np.memmap, a tfds data_source or "
                "any object with __len__ and __getitem__). A tf.data.Dataset cannot be "
                "read by index: pass it as `regular_dataset=` for the regular phase, and "
                "the same samples as a random-access `x`."
            )
        if isinstance(x, dict):
            raise TypeError(
                "`x` must be one array of samples: a codebook averages samples of one input "
                "into codewords, so dict or multi-input data is not supported. Received a "
                f"dict with keys {sorted(map(str, x))}. For tfds records that are dicts, "
                "pass the data source with `x_key=` and `y_key=`."
            )
        self._x = x
        self._x_key = x_key
        self._y_key = y_key
        for name, key in (("x_key", x_key), ("y_key", y_key)):
            if key is not None and isinstance(x, np.ndarray):
                raise ValueError(
                    f"`{name}` is for records that are dicts (tfds); `x` is an array. "
                    f"Received: {name}={key!r}"
                )
        if isinstance(x, np.ndarray):
            if x.ndim == 0 or len(x) == 0:
                raise ValueError(
                    f"`x` must be a non-empty array of shape (N, ...). Received: {x.shape}"
                )
            if x.ndim == 1:
                raise ValueError(
                    "`x` must have shape (N, features...): a 1-D array is ambiguous. Pass "
                    "`x.reshape(-1, 1)` for N samples of one feature, or `x[None]` for one "
                    f"sample. Received: x of shape {x.shape}"
                )
            self.n_samples = len(x)
            first = x[0]
        else:
            if not (hasattr(x, "__len__") and hasattr(x, "__getitem__")):
                raise TypeError(
                    "`x` must be an array or a random-access collection (with __len__ and "
                    f"__getitem__). Received: x of type {type(x).__name__}"
                )
            self.n_samples = len(x)
            if self.n_samples == 0:
                raise ValueError("`x` must hold at least one sample. Received: len(x)=0")
            record = x[0]
            try:
                first = self._input(record)
            except (KeyError, IndexError, TypeError) as error:
                raise ValueError(
                    f"`x_key` must name the input in each record of `x`. Received: "
                    f"x_key={x_key!r}, a first record of type {type(record).__name__} ({error!r})"
                ) from error
        first = np.asarray(first)
        _check_feature_dtype(first.dtype)
        self.sample_shape = tuple(first.shape)
        if self.sample_shape == ():
            raise ValueError(
                "`x` must hold samples that are arrays of at least one dimension (a model "
                "input of shape (features,)); its first record is a scalar. Wrap each value "
                "as a 1-element array."
            )
        if 0 in self.sample_shape:
            raise ValueError(
                "`x` must hold samples with at least one feature. "
                f"Received: samples of shape {self.sample_shape}"
            )
        self.dtype = first.dtype
        self._file_state = _file_state(x)
        if self.in_memory:
            # Memory maps and records are checked per batch as they are read.
            _validation.check_finite_float32("x", x, where=" (samples are cast to float32)")
        self.labels = self._read_labels(y)

    @property
    def in_memory(self):
        """Whether the samples are one NumPy array in memory (not a memory map)."""
        return isinstance(self._x, np.ndarray) and not isinstance(self._x, np.memmap)

    @property
    def array(self):
        """The samples as one array (in memory or memory-mapped), else `None`."""
        return self._x if isinstance(self._x, np.ndarray) else None

    def read(self, indices):
        """Samples at `indices` (any order, repeats allowed), in their stored dtype.

        Args:
            indices: Integer array of sample indices in `[0, N)`.

        Returns:
            ndarray of shape `(len(indices), *sample_shape)`.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n_samples):
            raise IndexError(f"Sample indices must be in [0, {self.n_samples}).")
        if isinstance(self._x, np.ndarray):
            self._check_file()
            # One gather; sorting random rows first bought nothing on a memory map.
            return self._checked(np.asarray(self._x[indices]))
        records = self._records([int(i) for i in indices])
        out = np.empty((len(indices), *self.sample_shape), self.dtype)
        for row, record in enumerate(records):
            index = int(indices[row])
            try:
                value = np.asarray(self._input(record))
            except (KeyError, IndexError, TypeError) as error:
                raise ValueError(
                    f"Record {index} of `x` has no input under x_key={self._x_key!r} "
                    f"({error!r}): every record must have the first one's structure."
                ) from error
            if value.shape != self.sample_shape:
                raise ValueError(
                    f"Sample {index} of `x` has shape {value.shape}; the first sample "
                    f"has {self.sample_shape}. All samples must have one shape."
                )
            _check_same_kind(value, self.dtype, index)
            out[row] = value
        return self._checked(out)

    def _records(self, indices):
        """The records at `indices`; a failed read is a `ValueError` naming `x`."""
        try:
            if hasattr(self._x, "__getitems__"):
                records = list(self._x.__getitems__(indices))
            else:
                records = [self._x[i] for i in indices]
        except (KeyError, IndexError) as error:
            raise ValueError(
                f"`x` could not read the records {indices[0]}..{indices[-1]} although "
                f"len(x)={self.n_samples} ({error!r}): `len(x)` must be the number of "
                "records, each readable as x[i]."
            ) from error
        if len(records) != len(indices):
            raise ValueError(
                f"`x.__getitems__` returned {len(records)} records for {len(indices)} "
                "indices: it must return one record per index."
            )
        return records

    def _check_file(self):
        """Refuses a memory-mapped file that changed since the source was made."""
        if self._file_state is None:
            return
        path, state = self._file_state
        try:
            now = _stat(path)
        except OSError as error:
            raise ValueError(
                f"The file behind `x` ({path!r}) can no longer be read ({error}): it must "
                "stay in place, unchanged, while training reads it."
            ) from error
        if now != state:
            raise ValueError(
                f"The file behind `x` ({path!r}) changed while it was being read (size "
                f"{state[0]} -> {now[0]} bytes, or rewritten): it must stay unchanged "
                "while training reads it. Restart from a complete copy of the data."
            )

    def _checked(self, batch):
        if not self.in_memory:
            _validation.check_finite_float32("x", batch, where=" (samples are cast to float32)")
        return batch

    def batches(self, batch_size):
        """Yields `(start, x_batch)` over all samples in order, `batch_size` at a time."""
        for start in range(0, self.n_samples, batch_size):
            stop = min(start + batch_size, self.n_samples)
            if isinstance(self._x, np.ndarray):
                self._check_file()
                yield start, self._checked(np.asarray(self._x[start:stop]))
            else:
                yield start, self.read(np.arange(start, stop))

    def _input(self, record):
        if self._x_key is not None:
            return record[self._x_key]
        if isinstance(record, tuple):
            return record[0]
        return record

    def _read_labels(self, y):
        if y is not None:
            return _check_labels(np.asarray(y), self.n_samples)
        if self._y_key is None and not self._records_are_pairs():
            return None
        labels = np.empty(self.n_samples, np.int64)
        for start in range(0, self.n_samples, 4096):
            stop = min(start + 4096, self.n_samples)
            records = self._records(list(range(start, stop)))
            key = self._y_key if self._y_key is not None else 1
            labels[start:stop] = [
                _record_label(record, key, start + i) for i, record in enumerate(records)
            ]
        return _check_labels(labels, self.n_samples)

    def _records_are_pairs(self):
        return not isinstance(self._x, np.ndarray) and isinstance(self._x[0], tuple)

    def __len__(self):
        return self.n_samples

    def __repr__(self):
        kind = "array" if self.in_memory else type(self._x).__name__
        return (
            f"Source({kind}, n_samples={self.n_samples}, sample_shape={self.sample_shape}, "
            f"dtype={self.dtype}, labeled={self.labels is not None})"
        )


def as_source(x, y=None, x_key=None, y_key=None):
    """`x` itself if it is a `Source` (then `y` must be `None`), else `Source(x, y, ...)`."""
    if isinstance(x, Source):
        if y is not None or x_key is not None or y_key is not None:
            raise ValueError("Pass `y`, `x_key` and `y_key` to the Source, not beside it.")
        return x
    return Source(x, y, x_key=x_key, y_key=y_key)


def _check_feature_dtype(dtype):
    """Features are quantities that averaging keeps meaning: floats, or small integers.

    Integers of more than 16 bits are most often ids (token ids for an `Embedding`,
    category codes), whose averages mean nothing; pixels and audio samples are 8 or
    16 bits.
    """
    if np.issubdtype(dtype, np.floating):
        return
    if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2:
        return
    if np.issubdtype(dtype, np.integer):
        raise ValueError(
            f"`x` holds {dtype} values: AGD averages samples into codewords, which means "
            "nothing for ids (e.g. token ids for an Embedding layer, category codes). If "
            "the values are quantities (pixels, measurements), cast `x` to float32 "
            f"(or uint8). Received dtype: {dtype}"
        )
    raise ValueError(f"`x` must hold integers or floats. Received dtype: {dtype}")


def _check_same_kind(value, dtype, index):
    """Refuses a record whose values the first record's dtype cannot hold exactly."""
    if value.dtype == dtype or np.can_cast(value.dtype, dtype, "safe"):
        return
    if value.dtype.kind in "biuf":
        # Held exactly when the values come back unchanged: float32 0.4528827 in a
        # float16 batch becomes 0.4528809, int64 260 in a uint8 one becomes 4.
        with np.errstate(all="ignore"):
            held = value.astype(dtype).astype(value.dtype)
        if np.array_equal(held, value, equal_nan=value.dtype.kind == "f"):
            return
    raise ValueError(
        f"Sample {index} of `x` holds {value.dtype} values that the first sample's dtype "
        f"({dtype}) cannot hold: all records must share one dtype (the first decides). "
        "Convert the records to one dtype, e.g. float32."
    )


def _file_state(x):
    """`(path, (size, mtime))` of the file behind a memory map, else `None`."""
    path = getattr(x, "filename", None) if isinstance(x, np.memmap) else None
    if path is None:
        return None
    return os.fspath(path), _stat(path)


def _stat(path):
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns


def _record_label(record, key, index):
    try:
        value = np.asarray(record[key])
    except (KeyError, IndexError, TypeError) as error:
        raise ValueError(
            f"`y_key` must name the label in each record of `x`. Received: y_key={key!r}, "
            f"record {index} of type {type(record).__name__} ({error!r})"
        ) from error
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise ValueError(
            "Labels read with `y_key` must be integer class indices, one per record. "
            f"Record {index} has a label of dtype {value.dtype} and shape {value.shape}."
        )
    return int(value)


def _check_labels(y, n_samples):
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"`y` must be a vector of class indices (not one-hot). Received shape: {y.shape}"
        )
    if len(y) != n_samples:
        raise ValueError(
            f"`x` and `y` must have the same length. Received: {n_samples} and {len(y)}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            "`y` must hold integer class labels (the codebook clusters each class on its own, "
            "so AGD is for classification, not regression). If the values are class "
            f"indices, pass `y.astype('int64')`. Received dtype: {y.dtype}"
        )
    if len(y) and y.min() < 0:
        raise ValueError(f"`y` must hold non-negative class labels. Received: min(y)={y.min()}")
    return y.astype(np.int64)


def _is_tf_dataset(x):
    return isinstance(x, tf.data.Dataset)
