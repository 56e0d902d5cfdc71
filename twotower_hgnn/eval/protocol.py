"""The offline evaluation protocol of the paper (§5.1), as arrays.

From a :class:`~twotower_hgnn.data.schema.Dataset` and a temporal split (anything with ``train`` and
``test`` interaction tables carrying ``user_idx``, ``item_idx``, ``event_code``; ``data.split.Split``
is one) :func:`build_protocol` builds, for every **target item type** (any of the data's item types;
on the paper's data "audiobook" = Tables 2-3, "podcast" = Table 4), a :class:`TargetProtocol`:

* **catalogue** — every item of the target type in the items table (global ids ``off[t] .. off[t+1]-1``),
  whether or not it was ever streamed; it is both the candidate set of every model and the
  denominator of Coverage.
* **relevant items** of a user — the distinct target-type items the user **streamed** in the test part
  (weak signals in the test part are not relevant items). With ``exclude_seen`` (default) the items the
  user already streamed before the split are removed from the relevant set too (they are removed from
  every ranking, so they could never be hit): the protocol measures the discovery of items new to the
  user. ``exclude_seen=False`` keeps them in both places.
* **evaluated users** — users with at least one relevant item, sorted by user row. Users without one are
  not scored (HR, MRR, Recall and NDCG are undefined for them).
* **exclusions** — per evaluated user, the target-type items with an ``exclude_events`` event (default
  ``stream``) in the train part; empty sets when ``exclude_seen=False``. Previews/follows are not
  excluded by default: a preview followed by a stream is exactly what the weak signals predict.
* **history** — per evaluated user, the target-type items with any ``history_events`` event (default:
  streams and the weak signals) in the train part: the input of the LLM-KNN and HGNN-KNN baselines.
* **segments** — ``warm``: the user has target-type history before the split (for audiobooks this is the
  paper's definition: streamed, previewed, showed intent to pay for or followed an audiobook); ``cold``:
  none (they may have history of other types); ``all``: both. For podcasts the segments use podcast
  history (so LLM-KNN/HGNN-KNN, which need history, serve the podcast ``warm`` segment); Table 4 is the
  ``all`` segment.
* **train_streams / tiers** — stream counts of every catalogue item in the train part (the Popularity
  baseline's ranking and the long-tail tiers, :func:`~twotower_hgnn.eval.metrics.popularity_tiers`).

The train part is the split's history window ("before the split"); for external splits it is the train
file, so nothing here looks at timestamps. Target types with an empty catalogue are skipped (homogeneous
mode). All building is vectorised (pandas/NumPy), no per-user Python loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from twotower_hgnn.data.schema import EVENTS, WEAK_EVENTS, Dataset
from twotower_hgnn.arrays import sorted_unique
from twotower_hgnn.eval.metrics import ItemSets, popularity_tiers

SEGMENTS: tuple[str, ...] = ("all", "warm", "cold")


@dataclasses.dataclass(frozen=True)
class Rankings:
    """One model's recommendations for one target type.

    Attributes:
      users: int64 ``[U]`` user rows (``Dataset.users`` index), unique, any order.
      items: int64 ``[U, L]`` global item ids of the target type, best first, ``-1`` = padding.
    """

    users: np.ndarray
    items: np.ndarray

    def __post_init__(self) -> None:
        users, items = np.asarray(self.users, dtype=np.int64), np.asarray(self.items, dtype=np.int64)
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "items", items)
        if users.ndim != 1 or items.ndim != 2 or items.shape[0] != users.shape[0]:
            raise ValueError(f"Rankings: users {users.shape} and items {items.shape} must be [U] and [U, L]")
        if sorted_unique(users).size != users.size:
            raise ValueError("Rankings: user rows must be unique")

    def rows_for(self, users: np.ndarray) -> np.ndarray:
        """int64 rows of ``self.items`` for ``users``; -1 where a user has no ranking here."""
        users = np.asarray(users, dtype=np.int64)
        order = np.argsort(self.users, kind="stable")
        srt = self.users[order]
        if srt.size == 0:
            return np.full(users.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(srt, users), srt.size - 1)
        return np.where(srt[pos] == users, order[pos], -1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class TargetProtocol:
    """Evaluation sets for one target item type (module docstring). ``U`` = number of evaluated users.

    Attributes:
      target_type: an entry of the dataset's ``item_types``.
      catalogue: int64 ``[n_cat]`` sorted global ids of all items of the type (contiguous range).
      users: int64 ``[U]`` sorted user rows of the evaluated users.
      warm: bool ``[U]`` the user has target-type history before the split.
      relevant: ItemSets, ``U`` rows, never empty.
      exclude: ItemSets, ``U`` rows (all empty when exclusion is off).
      history: ItemSets, ``U`` rows (empty for cold users).
      train_streams: int64 ``[n_cat]`` train stream count of ``catalogue[i]``.
      tiers: int8 ``[n_cat]`` popularity tier 1..n_tiers of ``catalogue[i]`` (1 = head).
    """

    target_type: str
    catalogue: np.ndarray
    users: np.ndarray
    warm: np.ndarray
    relevant: ItemSets
    exclude: ItemSets
    history: ItemSets
    train_streams: np.ndarray
    tiers: np.ndarray

    @property
    def n_users(self) -> int:
        return int(self.users.shape[0])

    @property
    def item_offset(self) -> int:
        """Global id of the first catalogue item (local id = global id - offset)."""
        return int(self.catalogue[0]) if self.catalogue.size else 0

    def segment(self, name: str) -> np.ndarray:
        """int64 positions (into ``users``) of segment ``name`` in ``SEGMENTS``."""
        if name == "all":
            return np.arange(self.n_users, dtype=np.int64)
        if name == "warm":
            return np.flatnonzero(self.warm).astype(np.int64)
        if name == "cold":
            return np.flatnonzero(~self.warm).astype(np.int64)
        raise ValueError(f"unknown segment {name!r}; expected one of {SEGMENTS}")

    def take(self, positions: np.ndarray) -> "TargetProtocol":
        """The protocol restricted to the users at sorted ``positions`` (into ``users``); the catalogue,
        stream counts and tiers (training-side facts) are unchanged."""
        pos = np.asarray(positions, dtype=np.int64)
        return dataclasses.replace(
            self,
            users=self.users[pos],
            warm=self.warm[pos],
            relevant=self.relevant.take(pos),
            exclude=self.exclude.take(pos),
            history=self.history.take(pos),
        )

    def tail_items(self, first_tail_tier: int = 3) -> np.ndarray:
        """Sorted global ids of the long-tail items (tier >= ``first_tail_tier``)."""
        return self.catalogue[self.tiers >= first_tail_tier]

    def stats(self) -> dict[str, Any]:
        warm = int(self.warm.sum())
        return {
            "catalogue": int(self.catalogue.size),
            "users": self.n_users,
            "warm_users": warm,
            "cold_users": self.n_users - warm,
            "relevant_pairs": self.relevant.nnz,
            "excluded_pairs": self.exclude.nnz,
            "history_pairs": self.history.nnz,
            "train_streams": int(self.train_streams.sum()),
            "tail_items": int((self.tiers >= 3).sum()),
        }


@dataclasses.dataclass(frozen=True)
class EvalProtocol:
    """The protocol for every target type with a non-empty catalogue, plus its settings (for the report)."""

    targets: Mapping[str, TargetProtocol]
    config: Mapping[str, Any]

    def __getitem__(self, target_type: str) -> TargetProtocol:
        if target_type not in self.targets:
            raise KeyError(f"no evaluation protocol for target type {target_type!r}; have {sorted(self.targets)}")
        return self.targets[target_type]

    def stats(self) -> dict[str, Any]:
        return {t: tp.stats() for t, tp in self.targets.items()}


def _event_mask(names: Sequence[str], flag: str) -> np.ndarray:
    """bool ``[len(EVENTS)]`` lookup table of the named events."""
    bad = [n for n in names if n not in EVENTS]
    if bad:
        raise ValueError(f"{flag}: unknown event(s) {bad}; expected a subset of {EVENTS}")
    mask = np.zeros(len(EVENTS), dtype=bool)
    mask[[EVENTS.index(n) for n in names]] = True
    return mask


def _columns(df: pd.DataFrame, part: str, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    missing = [c for c in ("user_idx", "item_idx", "event_code") if c not in df.columns]
    if missing:
        raise ValueError(f"split.{part}: missing column(s) {missing} (an index-coded interactions table is expected)")
    # the columns as stored (int32 ids, int8 events: views of the log, no copy): widening them to int64
    # would copy 3 x 8 bytes a row, ~6 GB of a 250M-row training part
    u, i, e = (np.asarray(df[c].to_numpy()) for c in ("user_idx", "item_idx", "event_code"))
    for name, arr, hi in (("user_idx", u, n_users), ("item_idx", i, n_items), ("event_code", e, len(EVENTS))):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"split.{part}: {name} has dtype {arr.dtype}; integer codes are expected")
        if arr.size and (arr.min() < 0 or arr.max() >= hi):  # two reductions; the row only on failure
            bad = np.flatnonzero((arr < 0) | (arr >= hi))
            raise ValueError(f"split.{part}: row {int(bad[0])} has {name}={int(arr[bad[0]])} outside [0, {hi})")
    return u, i, e


def build_protocol(
    dataset: Dataset,
    split: Any,
    target_types: Sequence[str] | None = None,
    exclude_seen: bool = True,
    exclude_events: Sequence[str] = ("stream",),
    history_events: Sequence[str] = ("stream",) + WEAK_EVENTS,
    n_tiers: int = 5,
    tier_mode: str = "count",
    sample: tuple[int, int] | None = None,
) -> EvalProtocol:
    """Builds the :class:`EvalProtocol` (module docstring) from a dataset and a split (``target_types``:
    default every item type of the dataset).

    ``sample=(per_segment, seed)`` with ``per_segment > 0`` returns what :func:`sample_users` would make
    of the whole protocol (the same users and tables), but builds the training-side tables (exclusions,
    history) for the sampled users only, reading the training part in chunks: at the paper's scale they
    are sorts of ~200M pairs for users who are then not scored."""
    target_types = dataset.item_types if target_types is None else tuple(target_types)
    bad = [t for t in target_types if t not in dataset.item_types]
    if bad:
        raise ValueError(f"target_types: unknown item type(s) {bad}; expected a subset of {list(dataset.item_types)}")
    n_users, n_items = dataset.num_users, dataset.num_items
    tr_u, tr_i, tr_e = _columns(split.train, "train", n_users, n_items)
    te_u, te_i, te_e = _columns(split.test, "test", n_users, n_items)
    type_code = dataset.item_type_codes().astype(np.int16)  # [n_items]; type_code[tr_i] is a log-sized array
    off = dataset.item_type_offsets()
    stream = EVENTS.index("stream")
    excl_ev = _event_mask(exclude_events, "exclude_events")
    hist_ev = _event_mask(history_events, "history_events")
    targets: dict[str, TargetProtocol] = {}
    per_segment = 0 if sample is None else int(sample[0])
    parts = _Parts((tr_u, tr_i, tr_e), type_code, excl_ev, hist_ev, n_users)
    population: dict[str, dict[str, int]] = {}
    for t in target_types:
        code = dataset.item_type_index(t)
        if off[code + 1] == off[code]:
            continue  # no item of this type (homogeneous mode): no table
        catalogue = np.arange(off[code], off[code + 1], dtype=np.int64)
        rel_m = (type_code[te_i] == code) & (te_e == stream)
        if per_segment > 0:
            tp, population[t] = _sampled_target(
                t, code, catalogue, te_u[rel_m], te_i[rel_m], parts, exclude_seen, per_segment, int(sample[1])
            )
        else:
            tp = _whole_target(t, code, catalogue, te_u[rel_m], te_i[rel_m], parts, exclude_seen)
        targets[t] = dataclasses.replace(tp, tiers=popularity_tiers(tp.train_streams, n_tiers=n_tiers, mode=tier_mode))
    config = {
        "target_types": [t for t in target_types if t in targets],
        "exclude_seen": bool(exclude_seen),
        "exclude_events": list(exclude_events),
        "history_events": list(history_events),
        "relevant_events": ["stream"],
        "n_tiers": int(n_tiers),
        "tier_mode": tier_mode,
        "long_tail_tiers": list(range(3, n_tiers + 1)),
        "catalogue": "all items of the target type",
    }
    if per_segment > 0:
        config["user_sample"] = {"per_segment": per_segment, "seed": int(sample[1]), "population": population}
    return EvalProtocol(targets=targets, config=config)


def sample_users(protocol: EvalProtocol, per_segment: int, seed: int) -> EvalProtocol:
    """The protocol on a seeded sample of at most ``per_segment`` users of each segment (warm, cold) of
    every target type; ``per_segment <= 0`` returns ``protocol`` unchanged.

    Full ranking costs users x catalogue, so at the paper's scale (10M users, 3.5M podcasts) it runs on a
    sample, the same users for every model (paired comparisons stay paired). Each target draws from its
    own stream (``rng.np_rng(seed, "eval-sample", target)``), so a target's sample does not depend on the
    other targets. ``config["user_sample"]`` records the sample size, the seed and each segment's
    population before sampling (the report shows it)."""
    from twotower_hgnn.rng import np_rng

    n = int(per_segment)
    if n <= 0:
        return protocol
    targets: dict[str, TargetProtocol] = {}
    population: dict[str, dict[str, int]] = {}
    for t, tp in protocol.targets.items():
        rng = np_rng(seed, "eval-sample", t)
        keep = []
        for seg in ("warm", "cold"):
            pos = tp.segment(seg)
            keep.append(pos if pos.size <= n else rng.choice(pos, size=n, replace=False))
        targets[t] = tp.take(np.sort(np.concatenate(keep)))
        population[t] = {"warm": int(tp.warm.sum()), "cold": int((~tp.warm).sum())}
    config = {**protocol.config, "user_sample": {"per_segment": n, "seed": int(seed), "population": population}}
    return EvalProtocol(targets=targets, config=config)


def _sets(users: np.ndarray, pair_users: np.ndarray, pair_items: np.ndarray, n_users: int) -> ItemSets:
    """ItemSets with one row per entry of sorted ``users``; pairs of other users are dropped."""
    row_of = np.full(n_users, -1, dtype=np.int64)  # dense lookup: O(rows), no binary search
    row_of[users] = np.arange(users.size, dtype=np.int64)
    rows = row_of[pair_users]
    ok = rows >= 0
    return ItemSets.from_pairs(rows[ok], pair_items[ok], int(users.size))


def _whole_target(
    t: str, code: int, catalogue: np.ndarray, rel_u: np.ndarray, rel_i: np.ndarray, parts: "_Parts", exclude_seen: bool
) -> TargetProtocol:
    """The protocol of target ``t`` on every user with a relevant item (tiers left to the caller);
    ``rel_u`` / ``rel_i``: the test part's target-type streams."""
    tr_u, tr_i, tr_e = parts.train
    n_users = parts.n_users
    tr_t = parts.type_code[tr_i] == code
    users = sorted_unique(rel_u).astype(np.int64)
    relevant = _sets(users, rel_u, rel_i, n_users)
    ex_m = tr_t & parts.excl_ev[tr_e]
    exclude = (
        _sets(users, tr_u[ex_m], tr_i[ex_m], n_users) if exclude_seen else _sets(users, rel_u[:0], rel_i[:0], n_users)
    )
    if exclude_seen:
        relevant = relevant.filter(~exclude.contains(relevant.row_ids(), relevant.indices))
        keep = np.flatnonzero(relevant.sizes() > 0)
        users, relevant, exclude = users[keep], relevant.take(keep), exclude.take(keep)
    h_m = tr_t & parts.hist_ev[tr_e]
    history = _sets(users, tr_u[h_m], tr_i[h_m], n_users)
    warm = np.zeros(n_users, dtype=bool)
    warm[tr_u[h_m]] = True
    s_m = tr_t & (tr_e == EVENTS.index("stream"))
    streams = np.bincount(tr_i[s_m] - catalogue[0], minlength=catalogue.size).astype(np.int64)
    no_tiers = np.zeros(catalogue.size, np.int8)
    return TargetProtocol(t, catalogue, users, warm[users], relevant, exclude, history, streams, no_tiers)


# ---------------------------------------------------------------------------------- sampled build
CHUNK_ROWS = 1 << 24  # training rows read at a time by the sampled build


@dataclasses.dataclass(frozen=True)
class _Parts:
    """The training part's columns as stored, the item types and the event masks."""

    train: tuple[np.ndarray, np.ndarray, np.ndarray]  # user_idx, item_idx, event_code
    type_code: np.ndarray
    excl_ev: np.ndarray
    hist_ev: np.ndarray
    n_users: int

    def chunks(self, code: int, events: np.ndarray):
        """Per chunk of ``CHUNK_ROWS`` training rows: (users, items) of its rows of type ``code`` with an
        event in ``events`` (bool ``[len(EVENTS)]``)."""
        u, i, e = self.train
        for a in range(0, len(u), CHUNK_ROWS):
            b = a + CHUNK_ROWS
            m = events[e[a:b]] & (self.type_code[i[a:b]] == code)
            yield u[a:b][m], i[a:b][m]


def _sampled_target(
    t: str,
    code: int,
    catalogue: np.ndarray,
    rel_u: np.ndarray,
    rel_i: np.ndarray,
    parts: _Parts,
    exclude_seen: bool,
    per_segment: int,
    seed: int,
) -> tuple[TargetProtocol, dict[str, int]]:
    """(the protocol of target ``t`` on its sampled users (tiers left to the caller), the segments'
    populations): ``sample_users(build_protocol(...))`` of one target, the training-side sets built for
    the sampled users only. ``rel_u`` / ``rel_i``: the test part's target-type streams."""
    from twotower_hgnn.rng import np_rng

    n_users = parts.n_users
    users = sorted_unique(rel_u).astype(np.int64)
    relevant = _sets(users, rel_u, rel_i, n_users)
    if exclude_seen:  # relevant items streamed before the split: marked by key lookups, chunk by chunk
        row_of = np.full(n_users, -1, np.int64)
        row_of[users] = np.arange(users.size)
        stride = int(catalogue[-1]) + 1
        keys = relevant.row_ids() * stride + relevant.indices  # sorted: rows, then items
        seen = np.zeros(keys.size, bool)
        for u, i in parts.chunks(code, parts.excl_ev):
            r = row_of[u]
            # sorted first: NumPy's binary search starts from the previous answer for increasing needles,
            # ~20x faster than random lookups of ~14M rows per chunk into ~30M keys (paper's podcasts)
            k = np.sort(r[r >= 0] * stride + i[r >= 0])
            pos = np.minimum(np.searchsorted(keys, k), max(keys.size - 1, 0))
            if keys.size:
                seen[pos[keys[pos] == k]] = True
        relevant = relevant.filter(~seen)
        keep = np.flatnonzero(relevant.sizes() > 0)
        users, relevant = users[keep], relevant.take(keep)
    has_hist = np.zeros(n_users, bool)
    for u, _ in parts.chunks(code, parts.hist_ev):
        has_hist[u] = True
    warm = has_hist[users]
    streams = np.zeros(catalogue.size, np.int64)
    stream_ev = np.arange(len(EVENTS)) == EVENTS.index("stream")
    for _, i in parts.chunks(code, stream_ev):
        streams += np.bincount(i - catalogue[0], minlength=catalogue.size)
    rng, keep = np_rng(seed, "eval-sample", t), []
    for pos in (np.flatnonzero(warm), np.flatnonzero(~warm)):  # sample_users' draws, in its order
        keep.append(pos if pos.size <= per_segment else rng.choice(pos, size=per_segment, replace=False))
    pos = np.sort(np.concatenate(keep)).astype(np.int64)
    users_s, member = users[pos], np.zeros(n_users, bool)
    member[users_s] = True

    def sets(events: np.ndarray) -> ItemSets:
        pairs = [(u[member[u]], i[member[u]]) for u, i in parts.chunks(code, events)]
        pu = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
        pi = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.int64)
        return _sets(users_s, pu, pi, n_users)

    empty = _sets(users_s, np.zeros(0, np.int64), np.zeros(0, np.int64), n_users)
    tp = TargetProtocol(
        t,
        catalogue,
        users_s,
        warm[pos],
        relevant.take(pos),
        sets(parts.excl_ev) if exclude_seen else empty,
        sets(parts.hist_ev),
        streams,
        np.zeros(catalogue.size, np.int8),
    )
    return tp, {"warm": int(warm.sum()), "cold": int((~warm).sum())}
