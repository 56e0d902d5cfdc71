"""Random draws on the device: one counter-based bit pool per batch, Floyd's without-replacement
subsets, the bit budgets of a batch, and the epoch/batch keys.

Uniformity (Floyd): for a row with ``d`` candidates and fan-out ``f < d``, iteration ``m`` draws
``t`` uniform in ``[0, j]`` with ``j = d - f + m`` and adds ``t`` unless already taken, else ``j``.
By induction, after iteration ``m`` the set is a uniform ``(m+1)``-subset of ``[0, j]``: each subset
containing ``j`` arises from ``m+1`` draws (``j`` itself or any of the ``m`` previously chosen), each
not containing ``j`` from exactly one, and ``(m+1) / C(j+1, m+1)`` times the uniform probability of
the previous set equals ``1 / C(j+1, m+1)``. The map from "index among the remaining neighbours" to
CSR position is a bijection, so the sampled *set* is uniform over the f-subsets of the remaining
neighbours. (The order inside a row is not exchangeable; consumers aggregate over the fan-out axis
with a permutation-invariant reduction.) Integers are reduced from 64 random bits modulo the span
like ``jax.random.randint``: exact to ~span/2**64 for spans below 2**16 (every fan-out draw in
practice); for larger spans (negatives over a million-node type) the product wraps at 32 bits and
the relative bias is below span/2**32 (2.4e-4 at 1M nodes).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from sampler.csr import Direction
from sampler.spec import Layout, SamplingSpec

_AVOID_ROUNDS = 8  # = NumpySampler's default max_negative_retries
_UNROLL_FANOUT = 16  # unrolled up to here (faster at run time); a loop above (smaller programs)


class _BitPool:
    """All random bits of one batch from a single ``jax.random.bits`` call, handed out in static
    slices. Every ``jax.random`` call costs a threefry block in the program: ten of them took 10 s to
    compile on the 2-core box against 2 s for one draw sliced ten ways — so a batch uses one.

    Integers in ``[0, span)`` take two words per value and are reduced exactly like
    ``jax.random.randint`` (a 64-bit value modulo the span; see the module docstring for the bias).
    """

    def __init__(self, key: jax.Array, size: int):
        self.size = int(size)
        self.bits = jax.random.bits(key, (max(self.size, 1),), jnp.uint32)
        self.used = 0

    def take(self, n: int) -> jax.Array:
        if self.used + n > self.size:
            raise AssertionError(f"random-bit budget exceeded: {self.used} + {n} > {self.size}")
        out = self.bits[self.used : self.used + n]
        self.used += n
        return out

    def randint(self, shape: tuple[int, ...], lo: Any, hi: Any) -> jax.Array:
        """int32 uniform in ``[lo, hi)`` (broadcast against ``shape``; ``hi > lo``)."""
        n = int(np.prod(shape))
        hi_bits, lo_bits = self.take(n).reshape(shape), self.take(n).reshape(shape)
        lo = jnp.asarray(lo, jnp.int32)
        span = jnp.maximum(jnp.asarray(hi, jnp.int32) - lo, 1).astype(jnp.uint32)
        mult = (jnp.uint32(2**16) % span) ** 2 % span  # 2**32 mod span
        off = ((hi_bits % span) * mult + lo_bits % span) % span
        return lo + off.astype(jnp.int32)

    def coin(self, shape: tuple[int, ...]) -> jax.Array:
        return (self.take(int(np.prod(shape))) >> 31).reshape(shape) == 1

    def done(self) -> None:
        if self.used != self.size:
            raise AssertionError(f"random-bit budget {self.size} but {self.used} used")


def _hop_groups(lay: Layout, k: int) -> list[tuple[int, list[Direction]]]:
    """Directions of hop ``k`` grouped by fan-out (one draw per group), in a fixed order."""
    groups: dict[int, list[Direction]] = {}
    for d in lay.directions:
        groups.setdefault(lay.fanout[k][d], []).append(d)
    return sorted(groups.items())


def _neighbourhood_bits(spec: SamplingSpec, lay: Layout, seed_counts: Mapping[str, int]) -> int:
    """Random words :func:`sample_neighbourhoods` consumes for these seed counts."""
    sizes = dict(seed_counts)
    total = 0
    for k in range(spec.num_hops):
        for f, dirs in _hop_groups(lay, k):
            total += 2 * f * sum(sizes[d[0]] for d in dirs)
        nxt = {t: 0 for t in spec.node_types}
        for d in lay.directions:
            nxt[d[1]] += sizes[d[0]] * lay.fanout[k][d]
        sizes = nxt
    return total


def _negative_bits(spec: SamplingSpec) -> int:
    n = 2 * spec.num_positives * spec.negatives_per_positive
    return n * (1 + _AVOID_ROUNDS) if spec.avoid_known_positives else n


def _floyd(pool: _BitPool, d: jax.Array, f: int) -> jax.Array:
    """``[n, f]`` distinct ranks in ``[0, max(d, f))`` per row: a uniform f-subset (Floyd's algorithm,
    ``f`` static iterations over every row at once; proof in the module docstring). Rows with
    ``d <= f`` run the same code with ``d`` raised to ``f`` and get a permutation of ``0..f-1``; the
    caller masks ranks ``>= d`` — the NumPy backend's convention, so valid slots need not be a prefix."""
    n = d.shape[0]
    top = jnp.maximum(d, f) - f  # iteration m draws in [0, top + m]
    j = top[:, None] + jnp.arange(f, dtype=d.dtype)[None, :]  # [n, f]
    t = pool.randint((n, f), 0, j + 1).astype(d.dtype)
    if f <= _UNROLL_FANOUT:  # unrolled: O(f^2) compares per row, fused into few kernels
        cols: list[jax.Array] = []
        for m in range(f):
            tm = t[:, m]
            if cols:
                taken = jnp.any(jnp.stack(cols, axis=1) == tm[:, None], axis=1)
                tm = jnp.where(taken, j[:, m], tm)
            cols.append(tm)
        return jnp.stack(cols, axis=1)
    col = jnp.arange(f)[None, :]

    def body(m, s):  # large fan-outs: a loop keeps the program (and compile time) small
        tm = jax.lax.dynamic_index_in_dim(t, m, axis=1, keepdims=False)
        taken = jnp.any((s == tm[:, None]) & (col < m), axis=1)
        tm = jnp.where(taken, jax.lax.dynamic_index_in_dim(j, m, axis=1, keepdims=False), tm)
        return jax.lax.dynamic_update_index_in_dim(s, tm, m, axis=1)

    return jax.lax.fori_loop(0, f, body, jnp.zeros((n, f), d.dtype))


def epoch_key(seed: int, epoch: int) -> jax.Array:
    """The key of an epoch; batch ``index`` uses ``fold_in(epoch_key, index)`` (:func:`batch_key`)."""
    return jax.random.fold_in(jax.random.key(int(seed)), int(epoch))


def batch_key(seed: int, epoch: int, index: int) -> jax.Array:
    """The key of batch ``index`` of ``epoch`` (a function of the three numbers only)."""
    return jax.random.fold_in(epoch_key(seed, epoch), int(index))


__all__ = ["batch_key", "epoch_key"]
