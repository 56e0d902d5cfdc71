"""Exact NumPy top-k selection whose answer is a function of the scores alone.

``np.argpartition``/``np.argsort`` (default kind) leave the order of equal scores to the algorithm, and
NumPy dispatches both to CPU-specific SIMD sorts (AVX2, AVX-512): the same scores could select different
items on different machines, so an evaluation's numbers would depend on the CPU. Here ties always go to
the lower column: the ``k``-th largest value is found with ``np.partition`` (a value, the same whatever the
algorithm), every column above it is taken and, of the columns equal to it, the lowest-indexed ones.
"""

from __future__ import annotations

import numpy as np


def top_k_mask(S: np.ndarray, k: int) -> np.ndarray:
    """bool ``[C, n]``: the ``min(k, n)`` largest entries of each row of ``S [C, n]``, ties at the cut to
    the lower columns. O(C n) time; NaN-free input expected (``-inf`` is fine)."""
    S = np.asarray(S)
    C, n = S.shape
    k = int(min(max(k, 0), n))
    if k == n:
        return np.ones((C, n), dtype=bool)
    if k == 0:
        return np.zeros((C, n), dtype=bool)
    kth = -np.partition(-S, k - 1, axis=1)[:, k - 1 : k]  # [C, 1] the k-th largest value
    above = S > kth
    tied = S == kth
    need = k - above.sum(axis=1, keepdims=True, dtype=np.int64)
    return above | (tied & (np.cumsum(tied, axis=1, dtype=np.int64) <= need))


def top_k_columns(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``d = min(k, n)`` columns of each row of ``S [C, n]`` by value descending, ties by lower
    column. Returns (int64 columns ``[C, d]``, their values ``[C, d]``)."""
    S = np.asarray(S)
    C, n = S.shape
    d = int(min(max(k, 0), n))
    if d == n:
        cols = np.broadcast_to(np.arange(n, dtype=np.int64), (C, n))
    else:
        cols = np.nonzero(top_k_mask(S, d))[1].reshape(C, d).astype(np.int64)  # ascending within a row
    vals = np.take_along_axis(S, cols, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")  # stable: equal values keep the lower column first
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(vals, order, axis=1)
