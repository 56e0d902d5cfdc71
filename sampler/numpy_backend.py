"""The NumPy sampling backend: balanced supervision edges + negatives + L-hop neighbourhoods, as a
static-shape :class:`~sampler.batch.PaddedBatch`.

``NumpySampler.batch(epoch, index)`` is a *pure function* of ``(spec.seed, epoch, index)`` (and the
graph): every random draw comes from an RNG stream keyed by those numbers, so any worker may build any
batch in any order and the result is the same — which is what makes resuming mid-epoch and
multi-worker loading deterministic.

Per batch (see ``sampler/spec.py`` for the layout conventions):

1. the ``q_r`` supervision edges of each relation for this batch (``sampler/edges.py``); for a
   same-type relation each edge's orientation (which end is the anchor) is a fair coin;
2. ``K_t`` negatives of each type per positive (``sampler/negatives.py``);
3. the batch's own supervision edges removed from message passing (both directions, every hop) when
   ``spec.exclude_supervision_edges``;
4. L hops of fixed fan-out neighbour sampling (``sampler/neighbors.py``).
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Iterator, Mapping

import numpy as np

from sampler import edges as edges_mod
from sampler.batch import PaddedBatch
from sampler.csr import Direction, HeteroCSR, Relation, relation_name
from sampler.negatives import draw_negatives
from sampler.neighbors import DirAdj, Holes, build_dir_adj, find_in_rows, make_holes, sample_hops
from sampler.spec import Layout, SamplingSpec, SpecError

_TAG_BATCH = 0x42415443  # "BATC"
_TAG_EVAL = 0x4556414C  # "EVAL"


def canonical_edges(graph: HeteroCSR, rel: Relation, e: np.ndarray, what: str = "edges") -> np.ndarray:
    """int64 ``[E, 2]`` with column 0 of type ``rel[0]`` (and ``col0 < col1`` for a same-type relation).

    Cross-type pairs given the other way round are flipped; anything else (ids outside the two
    types, self loops) raises a ValueError naming the relation and row.
    """
    e = np.asarray(e)
    if e.ndim != 2 or e.shape[1] != 2:
        raise ValueError(f"{what}[{relation_name(rel)}]: expected an [E, 2] array, got shape {e.shape}")
    e = e.astype(np.int64, copy=True)
    a, b = rel
    la, ha = graph.type_range(a)
    lb, hb = graph.type_range(b)
    in_a = lambda x: (x >= la) & (x < ha)  # noqa: E731
    in_b = lambda x: (x >= lb) & (x < hb)  # noqa: E731
    if a == b:
        ok = in_a(e[:, 0]) & in_a(e[:, 1]) & (e[:, 0] != e[:, 1])
        e.sort(axis=1)
    else:
        flip = in_b(e[:, 0]) & in_a(e[:, 1])
        e[flip] = e[flip][:, ::-1]
        ok = in_a(e[:, 0]) & in_b(e[:, 1])
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        raise ValueError(
            f"{what}[{relation_name(rel)}]: row {row} = {e[row].tolist()} is not a {a}-{b} pair "
            f"({a} ids in [{la}, {ha}), {b} ids in [{lb}, {hb}), no self loops)"
        )
    return e


def _edge_keys(e: np.ndarray, n: int) -> np.ndarray:
    return e[:, 0] * np.int64(n) + e[:, 1]


def remove_edges(graph: HeteroCSR, drop: Mapping[Relation, np.ndarray]) -> tuple[HeteroCSR, dict[Relation, int]]:
    """The graph without the (canonical) edges in ``drop``; also returns how many were present."""
    n = graph.num_nodes
    new, removed = {}, {}
    present = {}
    for rel, d in drop.items():  # cheap check first (bisection per dropped edge): usually none present
        if rel in graph.edges and d.shape[0]:
            found, _ = find_in_rows(build_dir_adj(graph, rel), d[:, 0], d[:, 1])
            present[rel] = bool(found.any())
    if not any(present.values()):
        return graph, {r: 0 for r in drop}
    for rel, e in graph.edges.items():
        if present.get(rel):
            keys = _edge_keys(np.asarray(e), n)
            hit = np.isin(keys, _edge_keys(drop[rel], n))
            removed[rel] = int(hit.sum())
            new[rel] = np.asarray(e)[~hit]
        else:
            new[rel] = e
    if not any(removed.values()):
        return graph, removed
    counts = {t: graph.num_nodes_of(t) for t in graph.node_types}
    return HeteroCSR.from_edges(graph.node_types, counts, new), removed


class NumpySampler:
    """Static-shape multi-link sampler on the host.

    Args:
      graph: the training graph (validation edges normally already removed).
      spec: the sampling spec (validated against the graph here).
      holdout: relation -> ``[H, 2]`` edges that must never be supervision edges nor message-passing
        edges (e.g. the validation split). Any of them still in ``graph`` are removed (with a
        warning) before anything else.
      max_negative_retries: rounds of redrawing for ``spec.avoid_known_positives``.
    """

    def __init__(
        self,
        graph: HeteroCSR,
        spec: SamplingSpec,
        *,
        holdout: Mapping[Relation, np.ndarray] | None = None,
        max_negative_retries: int = 8,
    ) -> None:
        if tuple(graph.node_types) != tuple(spec.node_types):
            raise SpecError(f"node_types: spec {list(spec.node_types)} != graph {list(graph.node_types)}")
        if graph.num_nodes >= 2**31 - 1:
            raise ValueError(f"graph has {graph.num_nodes} nodes; int32 batch ids need fewer than 2**31 - 1")
        self.holdout: dict[Relation, np.ndarray] = {}
        for rel, e in (holdout or {}).items():
            rel = tuple(rel)
            if rel not in graph.edges:
                raise ValueError(f"holdout: relation {relation_name(rel)} is not in the graph")
            self.holdout[rel] = canonical_edges(graph, rel, e, "holdout")
        if self.holdout:
            graph, removed = remove_edges(graph, self.holdout)
            if any(removed.values()):
                warnings.warn(
                    "NumpySampler: removed holdout edges still present in the training graph: "
                    + ", ".join(f"{relation_name(r)}={c}" for r, c in removed.items() if c),
                    stacklevel=2,
                )
        self.graph = graph
        self.spec = spec
        self.layout: Layout = spec.layout()
        self.edge_counts = {r: graph.num_edges(r) for r in spec.relations if r in graph.edges}
        for rel in spec.relations:
            if rel not in graph.edges:
                raise SpecError(
                    f"relations: {relation_name(rel)} is not in the graph (has {[relation_name(r) for r in graph.relations]})"
                )
            if self.edge_counts[rel] == 0:
                raise SpecError(f"relations: {relation_name(rel)} is empty in the graph")
        self.epoch_sizes = edges_mod.epoch_sizes(spec, self.edge_counts)
        spec.validate_against(graph, self.epoch_sizes)
        self._num_batches = edges_mod.num_batches(spec, self.epoch_sizes)
        self.adjs: dict[Direction, DirAdj] = {d: build_dir_adj(graph, d) for d in self.layout.directions}
        self._avoid: dict[Direction, DirAdj] | None = None
        if spec.avoid_known_positives:  # every graph direction, not only those in use
            self._avoid = {d: self.adjs.get(d) or build_dir_adj(graph, d) for d in graph.adj}
        self.max_negative_retries = int(max_negative_retries)
        self._rel_start = np.cumsum([0] + [int(spec.positives_per_relation[relation_name(r)]) for r in spec.relations])
        self._anchor_type = np.repeat(
            np.array([graph.type_index(r[0]) for r in spec.relations], np.int64), np.diff(self._rel_start)
        )
        self._epoch_cache: dict[int, dict[Relation, np.ndarray]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ pickling (process workers)
    def __getstate__(self) -> dict:
        from sampler.loader import portable_graph  # memory-mapped arrays travel as file names

        return {
            "graph": portable_graph(self.graph),
            "spec": self.spec,
            "holdout": self.holdout,
            "max_negative_retries": self.max_negative_retries,
        }

    def __setstate__(self, st: dict) -> None:
        from sampler.loader import restore_graph

        # the graph is already without the holdout edges: skip the removal pass
        self.__init__(restore_graph(st["graph"]), st["spec"], max_negative_retries=st["max_negative_retries"])
        self.holdout = st["holdout"]

    # ------------------------------------------------------------------ epochs
    def num_batches(self, epoch: int = 0) -> int:
        """Batches in ``epoch`` (the same for every epoch; known before sampling)."""
        return self._num_batches

    def _epoch_order(self, epoch: int) -> dict[Relation, np.ndarray]:
        with self._lock:
            order = self._epoch_cache.get(epoch)
        if order is None:
            order = edges_mod.draw_epoch(self.spec, self.edge_counts, epoch)
            with self._lock:
                self._epoch_cache[epoch] = order
                for old in sorted(self._epoch_cache)[:-2]:  # keep the last two epochs
                    del self._epoch_cache[old]
        return order

    def epoch_edges(self, epoch: int) -> dict[Relation, np.ndarray]:
        """Relation -> int64 ``[n_r, 2]`` supervision edges of ``epoch`` (each once), in epoch order."""
        return {r: np.asarray(self.graph.edges[r])[idx] for r, idx in self._epoch_order(epoch).items()}

    def batch_edges(self, epoch: int, index: int) -> dict[Relation, np.ndarray]:
        """Relation -> int64 ``[q_r, 2]`` canonical supervision edges of one batch."""
        if not 0 <= index < self._num_batches:
            raise IndexError(f"batch index {index} outside [0, {self._num_batches}) for epoch {epoch}")
        order = self._epoch_order(epoch)
        out = {}
        for r in self.spec.relations:
            q = int(self.spec.positives_per_relation[relation_name(r)])
            out[r] = np.asarray(self.graph.edges[r])[edges_mod.batch_slice(order[r], q, index)]
        return out

    # ------------------------------------------------------------------ batches
    def batch(self, epoch: int, index: int) -> PaddedBatch:
        """Training batch ``index`` of ``epoch``; a pure function of ``(spec.seed, epoch, index)``."""
        pairs = self.batch_edges(epoch, index)
        ss = np.random.SeedSequence([int(self.spec.seed), _TAG_BATCH, int(epoch), int(index)])
        return self._assemble(pairs, np.ones(self.spec.num_positives, bool), ss)

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[PaddedBatch]:
        for i in range(int(start), self._num_batches):
            yield self.batch(epoch, i)

    def num_edge_batches(self, edges: Mapping[Relation, np.ndarray]) -> int:
        """Batches :meth:`edge_batches` yields for this edge set (at least 1)."""
        n = 1
        for r in self.spec.relations:
            e = edges.get(r)
            q = int(self.spec.positives_per_relation[relation_name(r)])
            if e is not None:
                n = max(n, math.ceil(len(e) / q))
        return n

    def edge_batch(
        self, edges: Mapping[Relation, np.ndarray], seed: int, index: int, *, _canon: bool = False
    ) -> PaddedBatch:
        """Batch ``index`` of an evaluation edge set (see :meth:`edge_batches`)."""
        spec = self.spec
        canon = edges if _canon else self._canon_eval(edges)
        n = self.num_edge_batches(canon)
        if not 0 <= index < n:
            raise IndexError(f"edge batch index {index} outside [0, {n}) for this edge set")
        pairs, pmask = {}, np.zeros(spec.num_positives, bool)
        for i, r in enumerate(spec.relations):
            q = int(spec.positives_per_relation[relation_name(r)])
            e = canon[r]
            lo = index * q
            take = e[lo : lo + q]
            pmask[self._rel_start[i] : self._rel_start[i] + take.shape[0]] = True
            if take.shape[0] < q:  # filler rows: valid ids, positive_mask False
                fill = e[:1] if e.shape[0] else self._filler_pair(r)
                take = np.concatenate([take, np.repeat(fill, q - take.shape[0], axis=0)])
            pairs[r] = take
        ss = np.random.SeedSequence([int(spec.seed), _TAG_EVAL, int(seed), int(index)])
        return self._assemble(pairs, pmask, ss, orient=False)

    def edge_batches(self, edges: Mapping[Relation, np.ndarray], seed: int = 0) -> Iterator[PaddedBatch]:
        """Batches over an evaluation edge set (e.g. the validation edges), in order, each edge once.

        Same spec ⇒ same shapes as training batches. A relation with fewer edges than the others is
        padded with filler rows (``positive_mask=False``); relations missing from ``edges`` are all
        filler. Edges in the set that are also graph edges are excluded from their own batch's
        message passing like training edges.
        """
        canon = self._canon_eval(edges)
        for i in range(self.num_edge_batches(canon)):
            yield self.edge_batch(canon, seed, i, _canon=True)

    def _canon_eval(self, edges: Mapping[Relation, np.ndarray]) -> dict[Relation, np.ndarray]:
        unknown = [r for r in edges if tuple(r) not in self.spec.relations]
        if unknown:
            raise ValueError(f"edge_batches: relation(s) {[relation_name(tuple(r)) for r in unknown]} not in the spec")
        return {
            r: canonical_edges(self.graph, r, edges[r], "edge_batches") if r in edges else np.zeros((0, 2), np.int64)
            for r in self.spec.relations
        }

    def _filler_pair(self, rel: Relation) -> np.ndarray:
        la, _ = self.graph.type_range(rel[0])
        lb, hb = self.graph.type_range(rel[1])
        b = lb + 1 if rel[0] == rel[1] and hb - lb > 1 else lb
        return np.array([[la, b]], np.int64)

    # ------------------------------------------------------------------ pieces (also timed separately)
    def supervision(
        self, pairs: Mapping[Relation, np.ndarray], rng: np.random.Generator | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(anchors, positives)`` int64 ``[P]`` in layout order; same-type pairs randomly oriented."""
        P = self.spec.num_positives
        anchors = np.empty(P, np.int64)
        positives = np.empty(P, np.int64)
        for i, r in enumerate(self.spec.relations):
            sl = slice(self._rel_start[i], self._rel_start[i + 1])
            e = pairs[r]
            a, b = e[:, 0], e[:, 1]
            if r[0] == r[1] and rng is not None:
                swap = rng.random(e.shape[0]) < 0.5
                a, b = np.where(swap, b, a), np.where(swap, a, b)
            anchors[sl], positives[sl] = a, b
        return anchors, positives

    def negatives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int32 ``[P, K]`` negatives (``Layout.negative`` column order)."""
        neg, _ = draw_negatives(
            self.graph,
            self.spec.negatives_per_type,
            anchors,
            self._anchor_type,
            rng,
            avoid_adj=self._avoid,
            max_retries=self.max_negative_retries,
        )
        return neg

    def holes(self, anchors: np.ndarray, positives: np.ndarray, keep: np.ndarray) -> dict[Direction, Holes | None]:
        """Per direction, the batch's supervision edges to drop from message passing."""
        out: dict[Direction, list[tuple[np.ndarray, np.ndarray]]] = {d: [] for d in self.layout.directions}
        for i, (a, b) in enumerate(self.spec.relations):
            sl = slice(self._rel_start[i], self._rel_start[i + 1])
            k = keep[sl]
            A, B = anchors[sl][k], positives[sl][k]
            out[(a, b)].append((A, B))
            out[(b, a)].append((B, A))  # same-type: both orientations land in (a, a)
        res: dict[Direction, Holes | None] = {}
        for d, lst in out.items():
            if not lst:
                res[d] = None
                continue
            u = np.concatenate([x for x, _ in lst])
            v = np.concatenate([y for _, y in lst])
            res[d] = make_holes(self.adjs[d], u, v) if u.size else None
        return res

    def neighborhood(
        self,
        seeds: Mapping[str, np.ndarray],
        rng: np.random.Generator,
        holes: Mapping[Direction, Holes | None] | None = None,
    ) -> tuple[tuple[dict[str, np.ndarray], ...], tuple[dict[str, np.ndarray], ...]]:
        """L-hop fixed fan-out sampling from the hop-0 frontier ``seeds`` (type -> ``[S_t]`` ids)."""
        lay = self.layout
        return sample_hops(
            self.adjs,
            seeds,
            lay.directions,
            lay.fanout,
            rng,
            pad_id=self.graph.pad_id,
            replace=self.spec.replace,
            holes=holes,
        )

    def _assemble(
        self,
        pairs: Mapping[Relation, np.ndarray],
        pmask: np.ndarray,
        ss: np.random.SeedSequence,
        *,
        orient: bool = True,
    ) -> PaddedBatch:
        lay, spec = self.layout, self.spec
        r_orient, r_neg, r_nbr = (np.random.default_rng(s) for s in ss.spawn(3))
        anchors, positives = self.supervision(pairs, r_orient if orient else None)
        neg = self.negatives(anchors, r_neg)
        hop0 = np.empty(lay.num_seeds, np.int32)
        hop0[lay.anchor] = anchors
        hop0[lay.positive] = positives
        hop0[lay.negative] = neg
        seeds = {t: hop0[lay.seed_offsets[t] : lay.seed_offsets[t] + lay.seeds_per_type[t]] for t in spec.node_types}
        holes = self.holes(anchors, positives, pmask) if spec.exclude_supervision_edges else None
        nbrs, masks = self.neighborhood(seeds, r_nbr, holes)
        return PaddedBatch(seeds=seeds, nbrs=nbrs, masks=masks, positive_mask=pmask.copy())


__all__ = ["NumpySampler", "canonical_edges", "remove_edges"]
