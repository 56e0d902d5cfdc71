"""Negatives: ``K_t`` per positive of each node type ``t``, uniform within the type, vectorised.

With ``avoid_known_positives`` a negative that is a graph neighbour of its anchor (in any relation of
the graph between the anchor's type and ``t``), or the anchor itself, is redrawn — all offenders at
once, at most ``max_retries`` rounds (offenders left after that are kept; their count is returned so
callers can log it; on real graphs the first round already leaves almost none).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from sampler.csr import Direction, HeteroCSR
from sampler.neighbors import DirAdj, find_in_rows


def draw_negatives(
    graph: HeteroCSR,
    negatives_per_type: Mapping[str, int],
    anchors: np.ndarray,
    anchor_type: np.ndarray,
    rng: np.random.Generator,
    *,
    avoid_adj: Mapping[Direction, DirAdj] | None = None,
    max_retries: int = 8,
) -> tuple[np.ndarray, int]:
    """Draws the negatives of a batch.

    Args:
      graph: for type ranges.
      negatives_per_type: type -> K_t.
      anchors: int ``[P]`` global ids.
      anchor_type: int ``[P]`` type index of each anchor.
      rng: consumed deterministically.
      avoid_adj: when given, direction ``(anchor_type, t)`` -> adjacency used to reject known
        positives (directions missing from it are not checked, except for ``negative == anchor``).
      max_retries: rounds of redrawing.

    Returns:
      ``(neg int32 [P, K], unresolved)``: columns grouped by type in ``graph.node_types`` order
      (``Layout.negative``'s order); ``unresolved`` = offenders left after the retries.
    """
    anchors = np.asarray(anchors, np.int64)
    P = anchors.shape[0]
    cols, unresolved = [], 0
    for ti, t in enumerate(graph.node_types):
        k = int(negatives_per_type.get(t, 0))
        if k == 0:
            continue
        lo, hi = graph.type_range(t)
        neg = lo + (rng.random((P, k)) * (hi - lo)).astype(np.int64)
        if avoid_adj is not None:
            a = np.broadcast_to(anchors[:, None], (P, k))
            at = np.broadcast_to(np.asarray(anchor_type)[:, None], (P, k))
            for attempt in range(max_retries + 1):
                bad = neg == a
                for ai, s in enumerate(graph.node_types):
                    adj = avoid_adj.get((s, t))
                    sel = at == ai
                    if adj is None or not sel.any():
                        continue
                    found, _pos = find_in_rows(adj, a[sel], neg[sel])
                    bad[sel] |= found
                nbad = int(bad.sum())
                if nbad == 0:
                    break
                if attempt == max_retries:
                    unresolved += nbad
                    break
                neg[bad] = lo + (rng.random(nbad) * (hi - lo)).astype(np.int64)
        cols.append(neg)
    return np.concatenate(cols, axis=1).astype(np.int32), unresolved


__all__ = ["draw_negatives"]
