"""Backend-independent invariants of a :class:`~sampler.batch.PaddedBatch` (NumPy or device sampler).

``check_batch_invariants(graph, spec, batch)`` raises AssertionError with a precise message on the
first violated invariant and returns a few counts (handy for further assertions). Everything is
checked vectorised against the graph, so it runs on batches of realistic size.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from sampler.batch import PaddedBatch
from sampler.csr import HeteroCSR, Relation, direction_name, relation_name
from sampler.neighbors import build_dir_adj, find_in_rows
from sampler.spec import SamplingSpec


def batch_supervision_edges(spec: SamplingSpec, batch: PaddedBatch) -> dict[Relation, np.ndarray]:
    """Relation -> int64 ``[q, 2]`` (anchor, positive) pairs of the batch with ``positive_mask``."""
    lay = spec.layout()
    hop0 = np.concatenate([np.asarray(batch.seeds[t]) for t in spec.node_types]).astype(np.int64)
    pm = np.asarray(batch.positive_mask)
    out = {}
    for i, rel in enumerate(spec.relations):
        sel = (lay.positive_relation == i) & pm
        out[rel] = np.stack([hop0[lay.anchor[sel]], hop0[lay.positive[sel]]], axis=1)
    return out


def _directed(spec: SamplingSpec, edges: Mapping[Relation, np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
    """Direction -> int64 [n, 2] (row node, neighbour) pairs, both orientations."""
    out: dict = {}
    for (a, b), e in edges.items():
        e = np.asarray(e, np.int64).reshape(-1, 2)
        for d, pair in (((a, b), e), ((b, a), e[:, ::-1])):
            if d in out:
                out[d] = np.concatenate([out[d], pair])
            else:
                out[d] = pair
    return out


def check_batch_invariants(
    graph: HeteroCSR,
    spec: SamplingSpec,
    batch: PaddedBatch,
    *,
    exclude_edges: Mapping[Relation, np.ndarray] | None = None,
    forbidden_edges: Mapping[Relation, np.ndarray] | None = None,
    supervision_in_graph: bool = True,
    check_negatives_avoid: bool | None = None,
) -> dict[str, int]:
    """Asserts every structural invariant of one batch.

    Args:
      graph: the graph the batch was sampled from (after holdout removal).
      spec: its spec.
      batch: the batch (NumPy arrays, or anything ``np.asarray`` accepts).
      exclude_edges: edges that must be absent from message passing *and* counted as removed when
        checking "all neighbours taken when degree <= fan-out". Default: the batch's own supervision
        edges when ``spec.exclude_supervision_edges``, else none.
      forbidden_edges: further edges that must never appear in message passing (e.g. validation
        edges; they are not graph edges so they do not change degrees).
      supervision_in_graph: the batch's (masked-in) positive pairs must be graph edges of their
        relation (True for training batches, False for evaluation edge sets).
      check_negatives_avoid: assert no negative equals or neighbours its anchor (default
        ``spec.avoid_known_positives``).

    Returns:
      ``{"valid_slots": ..., "rows": ..., "excluded_pairs": ...}``.
    """
    lay = spec.layout()
    batch.check_shapes(spec, lay)
    pad = graph.pad_id
    rel_name = {r: relation_name(r) for r in spec.relations}
    # ---- seeds: types and ranges
    for t in spec.node_types:
        s = np.asarray(batch.seeds[t]).astype(np.int64)
        lo, hi = graph.type_range(t)
        assert ((s >= lo) & (s < hi)).all(), f"seeds[{t}]: ids outside [{lo}, {hi}): {s[(s < lo) | (s >= hi)][:5]}"
    hop0 = np.concatenate([np.asarray(batch.seeds[t]) for t in spec.node_types]).astype(np.int64)
    sup = batch_supervision_edges(spec, batch)
    pm = np.asarray(batch.positive_mask)
    if supervision_in_graph:
        for rel, e in sup.items():
            a, b = rel
            found, _ = find_in_rows(build_dir_adj(graph, (a, b)), e[:, 0], e[:, 1])
            assert found.all(), f"supervision {rel_name[rel]}: pair {e[~found][0].tolist()} is not a graph edge"
    # ---- negatives: right type per column group
    neg = hop0[lay.negative]
    col = 0
    for t in spec.node_types:
        k = int(spec.negatives_per_type.get(t, 0))
        lo, hi = graph.type_range(t)
        blk = neg[:, col : col + k]
        assert ((blk >= lo) & (blk < hi)).all(), f"negatives of type {t}: ids outside [{lo}, {hi})"
        col += k
    if check_negatives_avoid is None:
        check_negatives_avoid = spec.avoid_known_positives
    if check_negatives_avoid:
        anchors = hop0[lay.anchor]
        K = neg.shape[1]
        a_rep = np.repeat(anchors, K)
        n_flat = neg.reshape(-1)
        keep = np.repeat(pm, K)
        assert not (keep & (a_rep == n_flat)).any(), "a negative equals its anchor"
        ta = graph.node_type_of(a_rep)
        tn = graph.node_type_of(n_flat)
        for d in graph.adj:
            sel = keep & (ta == graph.type_index(d[0])) & (tn == graph.type_index(d[1]))
            if sel.any():
                found, _ = find_in_rows(build_dir_adj(graph, d), a_rep[sel], n_flat[sel])
                assert not found.any(), f"negative is a known {direction_name(d)} neighbour of its anchor"
    # ---- excluded / forbidden pairs per direction
    if exclude_edges is None:
        exclude_edges = sup if spec.exclude_supervision_edges else {}
    excl = _directed(spec, exclude_edges)
    forb = _directed(spec, forbidden_edges or {})
    n = np.int64(graph.num_nodes + 1)
    valid_total = rows_total = excl_total = 0
    for k in range(spec.num_hops):
        front = batch.frontier(k, lay)
        for d in lay.directions:
            name = direction_name(d)
            ids = np.asarray(batch.nbrs[k][name]).astype(np.int64)
            m = np.asarray(batch.masks[k][name])
            rows = np.asarray(front[d[0]]).astype(np.int64)
            R, f = ids.shape
            assert rows.shape[0] == R, f"hop {k} {name}: {R} rows but frontier has {rows.shape[0]}"
            # masks exact; ids in range of the source type
            assert (m == (ids != pad)).all(), f"hop {k} {name}: mask disagrees with ids != pad_id"
            lo, hi = graph.type_range(d[1])
            v = ids[m]
            assert ((v >= lo) & (v < hi)).all(), f"hop {k} {name}: neighbour ids outside [{lo}, {hi})"
            assert not m[rows == pad].any(), f"hop {k} {name}: a padding row has a valid neighbour"
            # true neighbours of this direction
            adj = build_dir_adj(graph, d)
            r_rep = np.broadcast_to(rows[:, None], (R, f))[m]
            found, _ = find_in_rows(adj, r_rep, v)
            assert found.all(), f"hop {k} {name}: {r_rep[~found][0]} <- {v[~found][0]} is not an edge of {name}"
            # no duplicates within a row (without replacement)
            if not spec.replace:
                srt = np.sort(np.where(m, ids, -1 - np.arange(f)[None, :]), axis=1)
                assert not (srt[:, 1:] == srt[:, :-1]).any(), f"hop {k} {name}: duplicate neighbour in a row"
            # excluded / forbidden pairs absent
            keys = r_rep * n + v
            for what, table in (("excluded", excl), ("forbidden", forb)):
                if d in table and table[d].shape[0]:
                    bad_keys = table[d][:, 0] * n + table[d][:, 1]
                    hit = np.isin(keys, bad_keys)
                    assert not hit.any(), (
                        f"hop {k} {name}: {what} edge {int(r_rep[hit][0])}<-{int(v[hit][0])} used in message passing"
                    )
            # completeness: min(effective degree, f) valid slots per row (without replacement)
            deg = adj.start[rows + 1] - adj.start[rows]
            if d in excl and excl[d].shape[0]:
                e = excl[d]
                ok, _ = find_in_rows(adj, e[:, 0], e[:, 1])
                e = np.unique(e[ok], axis=0)
                excl_total += e.shape[0]
                nodes, cnt = np.unique(e[:, 0], return_counts=True)
                pos = np.clip(np.searchsorted(nodes, rows), 0, max(nodes.shape[0] - 1, 0))
                if nodes.shape[0]:
                    deg = deg - np.where(nodes[pos] == rows, cnt[pos], 0)
            got = m.sum(axis=1)
            want = np.minimum(deg, f) if not spec.replace else np.where(deg > 0, f, 0)
            bad = got != want
            assert not bad.any(), (
                f"hop {k} {name}: row node {int(rows[bad][0])} has {int(got[bad][0])} valid slots, expected "
                f"{int(want[bad][0])} (effective degree {int(deg[bad][0])}, fan-out {f})"
            )
            valid_total += int(m.sum())
            rows_total += R
    return {"valid_slots": valid_total, "rows": rows_total, "excluded_pairs": excl_total}


__all__ = ["check_batch_invariants", "batch_supervision_edges"]
