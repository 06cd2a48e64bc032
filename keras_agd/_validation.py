"""Checks of arguments at the public boundary, with errors that name the argument.

Every check accepts what Keras and scikit-learn accept: NumPy scalars (`np.int64(3)`,
`np.float32(0.1)`) count as numbers, integers count as floats, `bool` counts as neither.
Errors read "`name` must be ... Received: name=value"; as in Keras, a hyperparameter of
the wrong value or type is a `ValueError`, an object of the wrong kind a `TypeError`.
"""

import math
import numbers
import os

import numpy as np

# Hyperparameters and inputs are used in float32: a larger value becomes inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# The smallest normal float32: a smaller positive value loses precision or becomes 0.
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
INT32_MAX = 2**31 - 1  # What C libraries (faiss) take as an `int`.
_CHUNK = 1 << 20  # Elements per pass of the array checks, to bound their memory.


def is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def check_number(name, value, low=None, high=None, *, low_open=False, high_open=False):
    """`value` as a float if it is a finite number within float32 and the bounds.

    Args:
        name: The argument's name, for the error.
        value: What the user passed.
        low, high: Optional bounds. `high=math.inf` admits infinity.
        low_open, high_open: Whether the bound itself is excluded.

    Returns:
        `float(value)`.
    """
    allow_inf = high == math.inf
    ok = is_number(value) and not math.isnan(value)
    ok = ok and (math.isfinite(value) or (allow_inf and value == math.inf))
    if ok and math.isfinite(value) and abs(value) > FLOAT32_MAX:
        raise ValueError(
            f"`{name}` must be at most {FLOAT32_MAX:.4g} in magnitude: it is used in float32, "
            f"where it would be infinite. Received: {name}={value!r}"
        )
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None and high != math.inf:
        ok = value < high if high_open else value <= high
    if not ok:
        bounded = low is not None and high is not None and not allow_inf
        kind = "" if bounded else "a number" if allow_inf else "a finite number"
        raise ValueError(
            f"`{name}` must be {kind}{_range(low, high, low_open, high_open)}. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_float32_positive(name, value):
    """A finite number > 0 that float32 holds without rounding to 0 or inf."""
    value = check_number(name, value, 0, None, low_open=True)
    if value < FLOAT32_TINY:
        raise ValueError(
            f"`{name}` must be >= {FLOAT32_TINY:.3g} (the smallest normal float32; it is "
            f"used in float32). Received: {name}={value!r}"
        )
    return value


def check_integer(name, value, low=None, high=None):
    """`value` as an int if it is an integer (Python or NumPy) in [`low`, `high`]."""
    ok = is_integer(value) and (low is None or value >= low)
    if not (ok and (high is None or value <= high)):
        bound = "" if low is None else f" >= {low}"
        bound += "" if high is None else f" and <= {high}"
        raise ValueError(f"`{name}` must be an integer{bound}. Received: {name}={value!r}")
    return int(value)


def check_bool(name, value):
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_string(name, value):
    if not isinstance(value, str):
        raise ValueError(f"`{name}` must be a string. Received: {name}={value!r}")
    return value


def check_path(name, value):
    """A file path (str or os.PathLike) as a str."""
    if not isinstance(value, str | bytes | os.PathLike):
        raise TypeError(f"`{name}` must be a file path. Received: {name}={value!r}")
    path = os.fsdecode(os.fspath(value))
    if not path:
        raise ValueError(f"`{name}` must be a non-empty file path. Received: {name}={value!r}")
    return path


def check_optimizer(name, value):
    """Raises `TypeError` unless `value` is a Keras optimizer instance."""
    import keras

    if not isinstance(value, keras.optimizers.Optimizer):
        raise TypeError(
            f"`{name}` must be a `keras.optimizers.Optimizer` instance, e.g. "
            f"keras.optimizers.SGD(0.01). Received: {name}={value!r}"
        )
    return value


def check_random_state(name, value):
    """A `np.random.SeedSequence` from what scikit-learn takes as a `random_state`.

    `None` (fresh entropy), an integer in [0, 2**32), or a `np.random.RandomState` or
    `np.random.Generator`, from which one seed is drawn (advancing it, as in sklearn).
    """
    if value is None:
        return np.random.SeedSequence()
    if is_integer(value) and 0 <= value < 2**32:
        return np.random.SeedSequence(int(value))
    if isinstance(value, np.random.RandomState):
        return np.random.SeedSequence(int(value.randint(0, 2**32, dtype=np.int64)))
    if isinstance(value, np.random.Generator):
        return np.random.SeedSequence(int(value.integers(0, 2**63)))
    raise ValueError(
        f"`{name}` must be None, an integer in [0, 2**32), a np.random.RandomState or a "
        f"np.random.Generator. Received: {name}={value!r}"
    )


def check_finite_float32(name, x, where=""):
    """Raises unless every value of the numeric array `x` is finite and fits float32.

    Runs in chunks, so that a large array needs no float copy of itself.
    """
    if not np.issubdtype(x.dtype, np.floating):
        return  # Every integer fits float32's range (if not its precision).
    flat = x.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start : start + _CHUNK]
        finite = np.isfinite(chunk)
        if not finite.all():
            bad = int((~finite).sum())
            raise ValueError(
                f"`{name}` must hold finite values{where}. Received: {bad} NaN or infinite "
                f"values in {name} (the first at flat index {start + int(np.argmin(finite))})."
            )
        if x.dtype.itemsize > 4 and chunk.size and np.abs(chunk).max() > FLOAT32_MAX:
            raise ValueError(
                f"`{name}` must hold values within float32 (|v| <= {FLOAT32_MAX:.4g}): it is "
                f"cast to float32{where}. Received: max |{name}|={float(np.abs(chunk).max()):.4g}"
            )


def _range(low, high, low_open, high_open):
    if low is not None and high is not None and high != math.inf:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f"in {left}{low}, {high}{right}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None and high != math.inf:
        return f" {'<' if high_open else '<='} {high}"
    return ""
