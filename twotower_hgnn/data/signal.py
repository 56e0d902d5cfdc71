"""Strong signal per relation: which co-listening relations a training part can support.

The co-listening graph (``twotower_hgnn.graph``) joins two items a user interacted with through an
edge event (``stream`` by default: the strong signal; weak events are follow / preview /
intent_to_pay). Relation ``a-b`` (an unordered pair of item types that both have items) can only
have edges if some user has edge events on two distinct items of types ``a`` and ``b``.

The rule (applied at split time by the pipeline, and again on the built graph's edge counts before
the HGNN trains):

* a relation without that support (or without edges in the built graph) is **dropped with a note**
  naming the relation and why (e.g. "all 120 audiobook rows are weak events"), when another relation
  remains;
* when **no relation remains**, it is a :class:`DataError` (one line) naming every relation and why —
  caught before any model trains, instead of the sampler's ``audiobook-audiobook is empty``.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from twotower_hgnn.data.readers_checks import DataError
from twotower_hgnn.data.schema import Dataset, EVENTS, WEAK_EVENTS, event_mask

_log = logging.getLogger(__name__)
Relation = tuple[str, str]


def present_relations(type_counts: Mapping[str, int]) -> tuple[Relation, ...]:
    """Every unordered type pair (in ``type_counts`` order: the data's) whose two types both have items (the
    graph's relations)."""
    present = [t for t, c in type_counts.items() if int(c) > 0]
    return tuple((a, b) for i, a in enumerate(present) for b in present[i:])


def _name(rel: Relation) -> str:
    return f"{rel[0]}-{rel[1]}"


def relation_support(
    ds: Dataset, train: pd.DataFrame, edge_events: Sequence[str] = ("stream",), chunk_rows: int = 1 << 24
) -> dict[str, int]:
    """``{"a-b": number of users whose edge-event rows in train span two distinct items of types a, b}``.

    One pass over the rows in chunks of ``chunk_rows``, keeping per (user, type) the smallest and the
    largest item id met: a user has two distinct items of a type iff they differ. Memory is two int32
    ``[num_users, n_types]`` tables and one chunk, not the distinct (user, item) pairs of the log (a
    sort of ~8 GB at the paper's 250M training rows)."""
    codes = np.array([EVENTS.index(e) for e in edge_events], np.int8)
    n_t = len(ds.item_types)
    tcodes = ds.item_type_codes().astype(np.int64)
    lo = np.full(ds.num_users * n_t, np.iinfo(np.int32).max, np.int32)
    hi = np.full(ds.num_users * n_t, -1, np.int32)
    ev, users, items = (train[c].to_numpy() for c in ("event_code", "user_idx", "item_idx"))
    for a in range(0, len(ev), int(chunk_rows)):
        b = a + int(chunk_rows)
        sel = np.flatnonzero(event_mask(ev[a:b], codes))
        it = items[a:b][sel].astype(np.int64)
        key = users[a:b][sel].astype(np.int64) * n_t + tcodes[it]
        np.minimum.at(lo, key, it.astype(np.int32))
        np.maximum.at(hi, key, it.astype(np.int32))
    lo, hi = lo.reshape(ds.num_users, n_t), hi.reshape(ds.num_users, n_t)
    out = {}
    for a, b in present_relations(ds.item_type_counts):
        ia, ib = ds.item_type_index(a), ds.item_type_index(b)
        ok = hi[:, ia] > lo[:, ia] if a == b else (hi[:, ia] >= 0) & (hi[:, ib] >= 0)
        out[_name((a, b))] = int(ok.sum())
    return out


def _why(ds: Dataset, train: pd.DataFrame, rel: Relation, edge_events: Sequence[str]) -> str:
    """Why relation ``rel`` has no strong signal in ``train`` (counts of edge-event and weak rows per type)."""
    tcode = ds.item_type_codes()[train["item_idx"].to_numpy()] if len(train) else np.zeros(0, np.int8)
    ev = train["event_code"].to_numpy()
    strong = event_mask(ev, [EVENTS.index(e) for e in edge_events])
    weak = event_mask(ev, [EVENTS.index(e) for e in WEAK_EVENTS if e not in edge_events])
    parts = []
    for t in dict.fromkeys(rel):
        m = tcode == ds.item_type_index(t)
        n, s, w = int(m.sum()), int((m & strong).sum()), int((m & weak).sum())
        if n and s == 0 and w == n:
            parts.append(f"all {n:,} {t} rows are weak events ({'/'.join(WEAK_EVENTS)})")
        else:
            parts.append(f"{t}: {s:,} {'/'.join(edge_events)} rows of {n:,}")

    def art(t: str) -> str:
        return ("an " if t[:1] in "aeiou" else "a ") + t

    need = f"two distinct {rel[0]}s" if rel[0] == rel[1] else f"{art(rel[0])} and {art(rel[1])}"
    return f"no user has {'/'.join(edge_events)} events on {need} in the training part ({'; '.join(parts)})"


def _decide(reasons: dict[str, str], wanted: Sequence[str], where: str) -> tuple[list[str], list[str]]:
    kept = [r for r in wanted if r not in reasons]
    notes = [f"relation {r} dropped: {reasons[r]}" for r in wanted if r in reasons]
    if not kept:
        detail = "; ".join(f"{r}: {reasons[r]}" for r in wanted)
        raise DataError(f"{where}: no relation of the co-listening graph has strong signal ({detail})")
    for n in notes:
        _log.warning("%s: note: %s", where, n)
    return kept, notes


def check_relation_signal(
    ds: Dataset,
    train: pd.DataFrame,
    edge_events: Sequence[str] = ("stream",),
    relations: Sequence[str] | None = None,
    where: str = "split",
) -> tuple[list[str], list[str]]:
    """(relations kept, notes) of ``relations`` (default every present relation) by strong signal in
    ``train``; DataError when none is supported (module docstring)."""
    support = relation_support(ds, train, edge_events)
    wanted = list(support) if relations is None else [r for r in relations if r in support]
    reasons = {r: _why(ds, train, tuple(r.split("-")), edge_events) for r in wanted if support[r] == 0}
    return _decide(reasons, wanted, where)


def usable_relations(
    edge_counts: Mapping[str, int], relations: Sequence[str] | None = None, where: str = "graph"
) -> tuple[list[str], list[str]]:
    """(relations with edges, notes) of ``relations`` (default all of ``edge_counts``) in a built graph;
    DataError when none has an edge."""
    wanted = list(edge_counts) if relations is None else list(relations)
    reasons = {
        r: "no edges in the training graph (too few shared users under the graph rule)"
        for r in wanted
        if int(edge_counts.get(r, 0)) == 0
    }
    return _decide(reasons, wanted, where)


def targets_with_signal(ds: Dataset, targets: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    """(the target types with at least one ``stream`` in ``ds.interactions``, notes for the others).

    A target type whose items are only ever met through weak events can neither train its two-tower
    model (its labels are streams) nor be scored; it is dropped with a note. No target left is a
    :class:`DataError` naming each type and why.
    """
    inter = ds.interactions
    tcode = ds.item_type_codes()[inter["item_idx"].to_numpy()] if len(inter) else np.zeros(0, np.int8)
    strong = inter["event_code"].to_numpy() == EVENTS.index("stream")
    reasons = {}
    for t in targets:
        m = tcode == ds.item_type_index(t)
        if not (m & strong).any():
            reasons[t] = f"no {t} stream in the data ({int(m.sum()):,} {t} rows, all weak events or none)"
    kept = tuple(t for t in targets if t not in reasons)
    label = (ds.meta.get("paths") or {}).get("interactions") or ds.name
    if not kept:
        raise DataError(f"{label}: no target type has a stream to train on or score: {'; '.join(reasons.values())}")
    notes = [f"target {t} dropped: {why}" for t, why in reasons.items()]
    for n in notes:
        _log.warning("%s: note: %s", label, n)
    return kept, notes
