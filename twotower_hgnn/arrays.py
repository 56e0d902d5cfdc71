"""Distinct values of large integer arrays, without NumPy's plain ``np.unique``.

In NumPy 2.4 a plain ``np.unique(x)`` (no ``return_*`` argument) goes through a hash table and measured
4-70x slower on this project's arrays (``benchmarks/unique.py``: 1M int64 keys 814 ms vs 52 ms sorted,
25M 50 s vs 1.9 s; 250M user ids 82 s vs 2.8 s marked); with ``return_index`` / ``return_counts`` /
``return_inverse`` it still sorts. The library uses these instead (``tests/test_arrays.py`` keeps plain ``np.unique`` out).
"""

from __future__ import annotations

import numpy as np


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values of ``x`` (flattened), by sort + neighbour compare; ``x``'s dtype."""
    x = np.sort(np.asarray(x).ravel())
    if x.size == 0:
        return x
    keep = np.empty(x.size, dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def _marks(ids: np.ndarray, n: int) -> np.ndarray:
    """bool ``[n]``: True at every value of ``ids`` (integers in ``[0, n)``)."""
    seen = np.zeros(int(n), dtype=bool)
    seen[np.asarray(ids)] = True
    return seen


def distinct_ids(ids: np.ndarray, n: int, dtype=np.int32) -> np.ndarray:
    """Sorted distinct values of ``ids``, integers in ``[0, n)`` (user or item indices), as ``dtype``:
    one pass that marks each id in a bool ``[n]`` array, no sort (``n`` bytes of memory)."""
    return np.flatnonzero(_marks(ids, n)).astype(dtype, copy=False)


def count_distinct_ids(ids: np.ndarray, n: int) -> int:
    """How many distinct values ``ids`` (integers in ``[0, n)``) holds."""
    return int(np.count_nonzero(_marks(ids, n)))
