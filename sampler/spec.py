"""The sampling plan as data.

A :class:`SamplingSpec` fixes everything that determines array shapes: which relations are in use,
the fan-out per hop per relation, the positive-edge quota per relation, negatives per node type.
Every array of a :class:`~sampler.batch.PaddedBatch` has a shape that is a function of the spec alone
(see :meth:`SamplingSpec.layout`), so consumers compile once. The spec is a frozen dataclass that
round-trips through JSON (``to_dict`` / ``from_dict``); it does not know which backend samples.

Conventions (shared by every backend):

* **Directions** (message-passing slots): for a node type ``t`` and each relation in use touching
  ``t``, one direction ``(t, other)``; order = relation order in the spec, for ``(a, b)`` first
  ``(a, b)`` then ``(b, a)``.
* **Seed layout** (hop-0 frontier, per type, concatenated over ``node_types`` order to index the
  model output): for type ``t``, first for each relation ``(a, b)`` in order the ``q_r`` anchors if
  ``a == t`` then the ``q_r`` positives if ``b == t``; then the ``P * K_t`` negatives of type ``t``
  (positive-major: row ``p`` owns ``[p*K_t, (p+1)*K_t)``). ``P = sum_r q_r``.
* **Frontier k+1 of type s** = concatenation, in direction order, of ``nbrs[k][d].reshape(-1)`` over
  the directions ``d = (t, s)``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

import numpy as np

from sampler.csr import Direction, HeteroCSR, Relation, direction_name, relation_name

BALANCE_POLICIES = ("equal", "ratios", "off")


class SpecError(ValueError):
    """A sampling spec that cannot be used (names the offending field)."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Static shapes derived from a spec.

    Attributes:
      directions: message-passing slots, in order.
      seeds_per_type: type -> S_t, rows of the hop-0 frontier.
      frontier_sizes: per hop k in ``0..L`` a dict type -> N_k[t] (``frontier_sizes[0] == seeds_per_type``).
      fanout: per hop k a dict direction -> f_k.
      frontier_parts: per hop k in ``1..L`` (index k-1), type s -> list of (direction, offset, rows,
        fanout) telling which slice of frontier k came from ``nbrs[k-1][direction]``.
      anchor / positive: int32 ``[P]`` positions in the concatenated hop-0 frontier.
      negative: int32 ``[P, K]`` positions (columns grouped by type in ``node_types`` order).
      positive_relation: int32 ``[P]`` index into ``spec.relations`` of each positive.
      seed_offsets: type -> offset of that type's seeds in the concatenated hop-0 frontier.
    """

    directions: tuple[Direction, ...]
    seeds_per_type: dict[str, int]
    frontier_sizes: tuple[dict[str, int], ...]
    fanout: tuple[dict[Direction, int], ...]
    frontier_parts: tuple[dict[str, list[tuple[Direction, int, int, int]]], ...]
    anchor: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    positive_relation: np.ndarray
    seed_offsets: dict[str, int]

    @property
    def num_positives(self) -> int:
        return int(self.anchor.shape[0])

    @property
    def num_seeds(self) -> int:
        return int(sum(self.seeds_per_type.values()))

    def directions_into(self, dst_type: str) -> tuple[Direction, ...]:
        return tuple(d for d in self.directions if d[0] == dst_type)


@dataclasses.dataclass(frozen=True)
class SamplingSpec:
    """What to sample; all counts are per batch.

    Attributes:
      node_types: type names in global-id order (must equal the graph's).
      relations: undirected relations in use (subset of the graph's; ablations drop some).
      fanouts: neighbours per hop for every relation (hop 0 = the seeds' own neighbours).
      relation_fanouts: optional per-relation override, relation name -> per-hop fan-outs.
      positives_per_relation: relation name -> fixed quota of supervision edges per batch.
      negatives_per_type: node type -> negatives of that type per positive (uniform within type).
      balance: "equal" (undersample every relation to the smallest one each epoch), "ratios"
        (relation r gets ``ratios[r] * min_size`` edges per epoch), or "off" (all edges; ablation A).
      ratios: relation name -> ratio, for ``balance="ratios"``.
      replace: sample neighbours with replacement (default False: without).
      exclude_supervision_edges: drop the batch's own positive edges from message passing.
      avoid_known_positives: resample negatives that are neighbours of their anchor.
      seed: base RNG seed; epoch e / batch b streams derive from it.
    """

    node_types: tuple[str, ...]
    relations: tuple[Relation, ...]
    fanouts: tuple[int, ...]
    positives_per_relation: Mapping[str, int]
    negatives_per_type: Mapping[str, int]
    relation_fanouts: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    balance: str = "equal"
    ratios: Mapping[str, float] = dataclasses.field(default_factory=dict)
    replace: bool = False
    exclude_supervision_edges: bool = True
    avoid_known_positives: bool = False
    seed: int = 0

    # ------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        object.__setattr__(self, "node_types", tuple(self.node_types))
        object.__setattr__(self, "relations", tuple(tuple(r) for r in self.relations))
        object.__setattr__(self, "fanouts", tuple(int(f) for f in self.fanouts))
        object.__setattr__(self, "positives_per_relation", dict(self.positives_per_relation))
        object.__setattr__(self, "negatives_per_type", dict(self.negatives_per_type))
        object.__setattr__(
            self, "relation_fanouts", {k: tuple(int(x) for x in v) for k, v in self.relation_fanouts.items()}
        )
        object.__setattr__(self, "ratios", dict(self.ratios))
        self._validate_self()

    def _validate_self(self) -> None:
        if not self.node_types:
            raise SpecError("node_types: empty")
        if len(set(self.node_types)) != len(self.node_types):
            raise SpecError(f"node_types: duplicates in {self.node_types}")
        if not self.relations:
            raise SpecError("relations: at least one relation must be in use")
        seen = set()
        for rel in self.relations:
            if len(rel) != 2:
                raise SpecError(f"relations: {rel!r} is not a (type, type) pair")
            for t in rel:
                if t not in self.node_types:
                    raise SpecError(f"relations: unknown node type {t!r} in {rel}; node_types={list(self.node_types)}")
            if self.node_types.index(rel[0]) > self.node_types.index(rel[1]):
                raise SpecError(f"relations: {rel} must list its types in node_types order")
            if rel in seen:
                raise SpecError(f"relations: {rel} listed twice")
            seen.add(rel)
        if not self.fanouts:
            raise SpecError("fanouts: at least one hop is needed")
        names = {relation_name(r) for r in self.relations}
        for f in self.fanouts:
            if f <= 0:
                raise SpecError(f"fanouts: fan-out must be positive, got {list(self.fanouts)}")
        for name, fs in self.relation_fanouts.items():
            if name not in names:
                raise SpecError(f"relation_fanouts: {name!r} is not a relation in use ({sorted(names)})")
            if len(fs) != len(self.fanouts) or any(f <= 0 for f in fs):
                raise SpecError(
                    f"relation_fanouts[{name!r}]: need {len(self.fanouts)} positive fan-outs, got {list(fs)}"
                )
        for name in names:
            if name not in self.positives_per_relation:
                raise SpecError(f"positives_per_relation: missing quota for relation {name!r}")
        for name, q in self.positives_per_relation.items():
            if name not in names:
                raise SpecError(f"positives_per_relation: {name!r} is not a relation in use ({sorted(names)})")
            if int(q) <= 0:
                raise SpecError(f"positives_per_relation[{name!r}]: quota must be positive, got {q}")
        for t, k in self.negatives_per_type.items():
            if t not in self.node_types:
                raise SpecError(f"negatives_per_type: unknown node type {t!r}")
            if int(k) < 0:
                raise SpecError(f"negatives_per_type[{t!r}]: must be >= 0, got {k}")
        if sum(int(k) for k in self.negatives_per_type.values()) <= 0:
            raise SpecError("negatives_per_type: at least one negative per positive is needed")
        if self.balance not in BALANCE_POLICIES:
            raise SpecError(f"balance: {self.balance!r} is not one of {BALANCE_POLICIES}")
        if self.balance == "ratios":
            for name in names:
                r = self.ratios.get(name)
                if r is None or not (float(r) > 0):
                    raise SpecError(f"ratios[{name!r}]: balance='ratios' needs a positive ratio per relation")

    # ------------------------------------------------------------ derived
    @property
    def num_hops(self) -> int:
        return len(self.fanouts)

    @property
    def num_positives(self) -> int:
        return int(sum(self.positives_per_relation.values()))

    @property
    def negatives_per_positive(self) -> int:
        return int(sum(self.negatives_per_type.get(t, 0) for t in self.node_types))

    def fanout_of(self, rel: Relation, hop: int) -> int:
        return self.relation_fanouts.get(relation_name(rel), self.fanouts)[hop]

    def directions(self) -> tuple[Direction, ...]:
        out: list[Direction] = []
        for a, b in self.relations:
            out.append((a, b))
            if a != b:
                out.append((b, a))
        return tuple(out)

    @staticmethod
    def relation_of(d: Direction, node_types: tuple[str, ...]) -> Relation:
        a, b = d
        return (a, b) if node_types.index(a) <= node_types.index(b) else (b, a)

    def layout(self) -> Layout:
        """Static shapes and seed positions (see module docstring)."""
        nt = self.node_types
        dirs = self.directions()
        # --- seeds
        per_type_rows: dict[str, list[tuple[str, int, int]]] = {t: [] for t in nt}  # (role, rel_idx, count)
        for i, (a, b) in enumerate(self.relations):
            q = int(self.positives_per_relation[relation_name((a, b))])
            per_type_rows[a].append(("anchor", i, q))
            per_type_rows[b].append(("positive", i, q))
        P = self.num_positives
        seeds = {t: sum(c for _, _, c in per_type_rows[t]) + P * int(self.negatives_per_type.get(t, 0)) for t in nt}
        seed_off, acc = {}, 0
        for t in nt:
            seed_off[t] = acc
            acc += seeds[t]
        rel_start = np.cumsum([0] + [int(self.positives_per_relation[relation_name(r)]) for r in self.relations])
        anchor = np.zeros(P, np.int32)
        positive = np.zeros(P, np.int32)
        for t in nt:
            pos = seed_off[t]
            for role, i, q in per_type_rows[t]:
                sl = slice(rel_start[i], rel_start[i] + q)
                (anchor if role == "anchor" else positive)[sl] = np.arange(pos, pos + q, dtype=np.int32)
                pos += q
        neg_cols = []
        for t in nt:
            k = int(self.negatives_per_type.get(t, 0))
            if k == 0:
                continue
            start = seed_off[t] + sum(c for _, _, c in per_type_rows[t])
            neg_cols.append(start + np.arange(P * k, dtype=np.int32).reshape(P, k))
        negative = np.concatenate(neg_cols, axis=1).astype(np.int32)
        positive_relation = np.repeat(np.arange(len(self.relations), dtype=np.int32), np.diff(rel_start))
        # --- frontiers
        sizes = [dict(seeds)]
        fan, parts = [], []
        for k in range(self.num_hops):
            f_k = {d: self.fanout_of(self.relation_of(d, nt), k) for d in dirs}
            nxt = {t: 0 for t in nt}
            p_k: dict[str, list] = {t: [] for t in nt}
            for d in dirs:
                rows = sizes[k][d[0]]
                p_k[d[1]].append((d, nxt[d[1]], rows, f_k[d]))
                nxt[d[1]] += rows * f_k[d]
            fan.append(f_k)
            parts.append(p_k)
            sizes.append(nxt)
        return Layout(
            directions=dirs,
            seeds_per_type=seeds,
            frontier_sizes=tuple(sizes),
            fanout=tuple(fan),
            frontier_parts=tuple(parts),
            anchor=anchor,
            positive=positive,
            negative=negative,
            positive_relation=positive_relation,
            seed_offsets=seed_off,
        )

    # ------------------------------------------------------------ graph checks
    def validate_against(self, graph: HeteroCSR, epoch_edges: Mapping[Relation, int] | None = None) -> None:
        """Raises :class:`SpecError` if the spec cannot run on ``graph``.

        ``epoch_edges`` (relation -> supervision edges available per epoch, default the graph's
        edge counts) is used to reject a batch quota larger than an epoch.
        """
        if tuple(graph.node_types) != self.node_types:
            raise SpecError(f"node_types: spec {list(self.node_types)} != graph {list(graph.node_types)}")
        for rel in self.relations:
            if rel not in graph.edges:
                raise SpecError(
                    f"relations: {relation_name(rel)} is not in the graph (has {[relation_name(r) for r in graph.relations]})"
                )
            n = graph.num_edges(rel) if epoch_edges is None else int(epoch_edges[rel])
            if n == 0:
                raise SpecError(f"relations: {relation_name(rel)} is empty in the graph")
            q = int(self.positives_per_relation[relation_name(rel)])
            if q > n:
                raise SpecError(
                    f"positives_per_relation[{relation_name(rel)!r}]={q} is larger than an epoch of that relation ({n} edges)"
                )
        for t, k in self.negatives_per_type.items():
            if int(k) > 0 and graph.num_nodes_of(t) == 0:
                raise SpecError(f"negatives_per_type[{t!r}]: the graph has no {t} nodes")

    # ------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["relations"] = [list(r) for r in self.relations]
        d["node_types"] = list(self.node_types)
        d["fanouts"] = list(self.fanouts)
        d["relation_fanouts"] = {k: list(v) for k, v in self.relation_fanouts.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SamplingSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpecError(f"unknown spec field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "SamplingSpec":
        return cls.from_dict(json.loads(s))


def make_spec(
    graph: HeteroCSR,
    *,
    positives_per_batch: int,
    fanouts: tuple[int, ...] = (10, 5),
    negatives_per_type: Mapping[str, int] | None = None,
    relations: tuple[Relation, ...] | None = None,
    balance: str = "equal",
    ratios: Mapping[str, float] | None = None,
    epoch_edges: Mapping[Relation, int] | None = None,
    **kw: Any,
) -> SamplingSpec:
    """Builds a spec whose per-relation quotas follow the balance policy.

    ``equal``: the batch's positives split evenly across relations. ``ratios``: in proportion to the
    ratios. ``off``: in proportion to the relation sizes (``epoch_edges`` or the graph's), each at
    least 1, so that an epoch over all edges has about the same number of batches per relation.
    """
    rels = tuple(relations) if relations is not None else tuple(graph.relations)
    if not rels:
        raise SpecError("relations: the graph has no relations")
    if positives_per_batch < len(rels):
        raise SpecError(
            f"positives_per_batch={positives_per_batch} is smaller than the number of relations ({len(rels)})"
        )
    names = [relation_name(r) for r in rels]
    if balance == "equal":
        w = np.ones(len(rels))
    elif balance == "ratios":
        if not ratios:
            raise SpecError("ratios: balance='ratios' needs ratios")
        w = np.array([float(ratios[n]) for n in names])
    elif balance == "off":
        sizes = epoch_edges or {r: graph.num_edges(r) for r in rels}
        w = np.array([max(int(sizes[r]), 1) for r in rels], dtype=np.float64)
    else:
        raise SpecError(f"balance: {balance!r} is not one of {BALANCE_POLICIES}")
    q = np.maximum(1, np.floor(w / w.sum() * positives_per_batch)).astype(int)
    q[int(np.argmax(w))] += positives_per_batch - int(q.sum())  # exact total
    if negatives_per_type is None:
        negatives_per_type = {t: 0 for t in graph.node_types}
        present = sorted({t for r in rels for t in r}, key=graph.node_types.index)
        for i in range(4):  # 4 negatives per positive, spread over the types in use
            negatives_per_type[present[i % len(present)]] += 1
    spec = SamplingSpec(
        node_types=tuple(graph.node_types),
        relations=rels,
        fanouts=tuple(fanouts),
        positives_per_relation={n: int(x) for n, x in zip(names, q)},
        negatives_per_type=dict(negatives_per_type),
        balance=balance,
        ratios=dict(ratios or {}),
        **kw,
    )
    spec.validate_against(graph, epoch_edges)
    return spec


__all__ = ["SamplingSpec", "SpecError", "Layout", "make_spec", "direction_name", "relation_name"]
