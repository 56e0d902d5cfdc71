"""The jitted kernels of the exact search (``retrieval.ExactIndex``): the chunked matmul with a carried
top-k (:func:`_make_exact_search`), its two-step block selection (:func:`_block_top_k`) and the padded
device layout of the item matrix (:func:`_device_chunks`). Pure functions of arrays and static sizes;
``retrieval`` re-exports them."""

from __future__ import annotations

import numpy as np

GROUP = 16  # items per group of the exact search's two-step block top-k (:func:`_block_top_k`)


def _block_top_k(s, kc: int, group: int = GROUP):
    """``(scores, positions)`` ``[B, kc]`` of the best ``kc`` columns of each row of ``s`` ``[B, C]``,
    exactly ``jax.lax.top_k(s, kc)`` (ties: the lower column first), in two small selections.

    The columns are cut into groups of ``group``; the ``kc`` groups with the highest maxima (ties: the
    lower group) hold every column of the answer — a column's group is beaten only by groups whose
    maximum comes before it (higher, or equal at a lower column), fewer than ``kc`` of them — so the
    answer is the top ``kc`` of those groups' ``kc * group`` columns, kept in column order so that ties
    still go to the lower column. Selection work per row: ``C / group + kc * group`` instead of ``C``
    (3,072 instead of 16,384 columns per block at k = 128): the selection, not the matmul, dominated
    exact ranking on XLA:CPU."""
    import jax
    import jax.numpy as jnp

    b, c = s.shape
    n_groups = c // group
    if c % group or n_groups <= kc:
        return jax.lax.top_k(s, kc)
    _, top_groups = jax.lax.top_k(s.reshape(b, n_groups, group).max(axis=2), kc)
    cols = (jnp.sort(top_groups, axis=1)[:, :, None] * group + jnp.arange(group)[None, None, :]).reshape(b, kc * group)
    cs, pos = jax.lax.top_k(jnp.take_along_axis(s, cols, axis=1), kc)
    return cs, jnp.take_along_axis(cols, pos, axis=1)


FEW = 16  # a block's selection once every row of the batch has at most this many columns above its list


def _make_exact_search(chunk: int, num_items: int, k: int, few: int = FEW):
    """Scan (to be jitted): (items [C, chunk, d], queries [B, d], excl int32 [B, E]) -> top-k."""
    import jax
    import jax.numpy as jnp

    kc = min(k, chunk)
    few = min(few, kc)

    def search(items, queries, excl):
        b = queries.shape[0]
        queries = queries.astype(items.dtype)
        rows = jnp.arange(b)[:, None]
        col = jnp.arange(chunk)

        def body(carry, xs):
            top_s, top_i = carry
            block, start = xs
            # q @ block.T measured faster than the equivalent einsum on XLA:CPU (1 core, B=1).
            s = jnp.matmul(queries, block.T, preferred_element_type=jnp.float32)
            s = jnp.where((start + col < num_items)[None, :], s, -jnp.inf)  # padded tail rows
            local = excl - start
            local = jnp.where((local >= 0) & (local < chunk), local, chunk)  # out of chunk -> dropped
            s = s.at[rows, local].set(-jnp.inf, mode="drop")

            def merge(width):
                cs, ci = _block_top_k(s, width) if width < kc else jax.lax.top_k(s, width)
                # Carry first: on equal scores top_k keeps the lower position, i.e. the lower item id.
                ms = jnp.concatenate([top_s, cs], axis=1)
                mi = jnp.concatenate([top_i, ci + start], axis=1)
                ns, pos = jax.lax.top_k(ms, k)
                return ns, jnp.take_along_axis(mi, pos, axis=1)

            if few >= kc:
                return merge(kc), None
            # Only columns above a row's current k-th score can enter its list (equal ones lose to the
            # carry's lower ids). Once the carry has filled, that is a handful per block: then the block's
            # top ``few`` holds them all, a far smaller selection than its top kc (XLA:CPU's top_k costs
            # grow with k); otherwise the full selection.
            n_above = jnp.sum(s > top_s[:, k - 1 : k], axis=1)
            return jax.lax.cond(jnp.max(n_above) <= few, lambda: merge(few), lambda: merge(kc)), None

        init = (jnp.full((b, k), -jnp.inf, jnp.float32), jnp.full((b, k), -1, jnp.int32))
        starts = jnp.arange(items.shape[0], dtype=jnp.int32) * chunk
        (top_s, top_i), _ = jax.lax.scan(body, init, (items, starts))
        return top_s, jnp.where(jnp.isneginf(top_s), -1, top_i)

    return search


def _device_chunks(v: np.ndarray, chunk: int, dtype: str):
    """``[C, chunk, d]`` device array of the rows of ``v`` (zero rows past the end), written one chunk at a
    time into a donated buffer: the host side never holds a padded copy, nor the device side two (3.5M x
    128 float32 items are 1.8 GB; a padded host copy plus the transfer held three of them at once)."""
    import jax
    import jax.numpy as jnp

    n, d = v.shape
    n_chunks = -(-n // chunk)
    put = jax.jit(
        lambda buf, piece, j: jax.lax.dynamic_update_slice(buf, piece[None].astype(buf.dtype), (j, 0, 0)),
        donate_argnums=0,
    )
    buf = jnp.zeros((n_chunks, chunk, d), dtype)
    for j in range(n_chunks):
        piece = v[j * chunk : (j + 1) * chunk]
        if piece.shape[0] < chunk:
            piece = np.concatenate([piece, np.zeros((chunk - piece.shape[0], d), v.dtype)])
        buf = put(buf, piece, np.int32(j))
    buf.block_until_ready()  # no transfer left pending (an exit right after loading must not race it)
    return buf
