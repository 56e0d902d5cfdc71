"""User and item features of the two-tower model, computed without label leakage.

User features (PAPER.md §1.3, §4): age (bucketed), country (vocabulary + OOV bucket), the optional music
vector, and the mean item embedding (HGNN, or content for the "2T" baseline) of the audiobooks and,
separately, of the podcasts the user streamed or weakly interacted with (follow / preview /
intent_to_pay) inside the history window.

**As-of semantics.** The history of a query (user u, time t) is every interaction of u with a counted
event and timestamp in ``[t - window, t)`` — strictly before t. A training example (u, target item,
t_target) is queried at t_target, so the target interaction (and anything at the same second or
later) can never be in its own input, and a user's first audiobook is a genuine cold-start example.
Evaluation and serving query at the split / request time.

**How (vectorised).** The log is sorted by (user, timestamp); a per-type running sum of embeddings
and counts turns every window sum into ``C[hi] - C[lo]`` with ``hi``/``lo`` found by one
``np.searchsorted`` on a composite (user, time) key. Running sums are float64 and restart every
``chunk_rows`` log rows (chunks end on user boundaries) so that memory stays bounded and the
difference of two large prefix sums does not lose precision.

Each interaction row counts once (a user who streamed a podcast five times weights it five times):
repeated engagement is signal, and a distinct-items-within-a-sliding-window mean cannot be done with
prefix sums. Documented in BUILD_NOTES.md, appendix E.

Encodings (PAPER.md §9 leaves them open):
* age -> bucket id: 0 unknown (age < 0), 1 "<18", 2 "18-24", 3 "25-34", 4 "35-44", 5 "45-54",
  6 "55-64", 7 "65+" (:data:`AGE_EDGES`).
* country, language, genre -> id: 0 is the OOV/unknown bucket (empty string or a value not in the
  vocabulary), 1.. are the vocabulary values sorted by descending frequency (ties by value), built
  from the training dataset.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

import jax
import numpy as np
import pandas as pd

from twotower_hgnn.data.schema import EVENTS, ITEM_TYPES, Dataset

AGE_EDGES: tuple[int, ...] = (18, 25, 35, 45, 55, 65)
N_AGE_BUCKETS = len(AGE_EDGES) + 2  # + unknown + the open last bucket
MAX_AGE = 130
DAY_S = 86_400
DEFAULT_HISTORY_EVENTS: tuple[str, ...] = EVENTS  # stream + all weak signals (PAPER.md §1.3)


class FeatureError(ValueError):
    """Malformed feature input (names the field and the offending value/row)."""


# ----------------------------------------------------------------------------------------------
# Bundles
# ----------------------------------------------------------------------------------------------
def _pytree(cls):
    """Registers a dataclass whose fields are all arrays as a jax pytree (data fields only)."""
    names = [f.name for f in dataclasses.fields(cls)]
    return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])


@_pytree
@dataclasses.dataclass
class UserFeatures:
    """User-tower inputs for B queries (NumPy on the host, jax arrays inside jit).

    Attributes:
      age_bucket: int32 ``[B]`` in ``[0, N_AGE_BUCKETS)`` (0 = unknown).
      country: int32 ``[B]`` in ``[0, n_countries]`` (0 = OOV/unknown).
      music: float32 ``[B, d_music]`` (zeros where absent; ``d_music`` may be 0).
      has_music: float32 ``[B]`` 1.0 where a music vector was given.
      history_mean: float32 ``[B, 2, d_hist]`` mean embedding of the audiobooks (index 0) and the
        podcasts (index 1) in the window; zeros where the user has none of that type.
      has_history: float32 ``[B, 2]`` 1.0 where the user has >= 1 interaction of that type.
      history_count: float32 ``[B, 2]`` log1p of the number of interactions of that type.
      history_ids: int32 ``[B, 2, L]`` id tokens (global item id + 1; 0 = padding) of the user's ``L``
        most recent audiobooks (index 0) and podcasts (index 1) in the window, newest first, for the
        learned item-id embedding shared with the item tower; ``L = 0`` when the model has none.
    """

    age_bucket: Any
    country: Any
    music: Any
    has_music: Any
    history_mean: Any
    has_history: Any
    history_count: Any
    history_ids: Any = None

    def __len__(self) -> int:
        return int(np.shape(self.age_bucket)[0])


@_pytree
@dataclasses.dataclass
class ItemFeatures:
    """Item-tower inputs for N items of the target type (row r = r-th item of that type).

    Attributes:
      item_idx: int32 ``[N]`` global item id (row of ``Dataset.items``).
      language: int32 ``[N]`` (0 = OOV/unknown).
      genre: int32 ``[N]`` (0 = OOV/unknown).
      content: float32 ``[N, d_content]`` text (SBERT) embedding.
      hgnn: float32 ``[N, d_hgnn]`` HGNN embedding; ``d_hgnn == 0`` for the 2T baseline.
      id_token: int32 ``[N]`` token of the learned item-id embedding (global id + 1), 0 for items with
        no training interaction (their id vector would be untrained noise) or when ids are off.
      log_prior: float32 ``[N]`` log of the smoothed training frequency of the item (the popularity prior
        of the item-bias coordinate; zeros until the trainer fills it in).
    """

    item_idx: Any
    language: Any
    genre: Any
    content: Any
    hgnn: Any
    id_token: Any = None
    log_prior: Any = None

    def __len__(self) -> int:
        return int(np.shape(self.item_idx)[0])


@_pytree
@dataclasses.dataclass
class TwoTowerBatch:
    """One training batch of B (padded) examples.

    Attributes:
      user: :class:`UserFeatures` with leading axis B.
      item_row: int32 ``[B]`` row of the positive item in the :class:`ItemFeatures` table.
      log_q: float32 ``[B]`` log of the smoothed training frequency of the positive item.
      mask: float32 ``[B]`` 1.0 for real examples, 0.0 for padding (padding is neither a row nor a
        negative column of the loss).
      weight: float32 ``[B]`` loss weight of each example (1.0 unless recency weighting is on; 0 on
        padding); the loss is ``sum(weight * ce) / sum(mask)``.
      prior_slot: int32 ``[B]`` row of each example's time slot in the time-aware popularity prior
        (:class:`PriorTable`); None when the prior is static.
    """

    user: UserFeatures
    item_row: Any
    log_q: Any
    mask: Any
    weight: Any = None
    prior_slot: Any = None

    def __len__(self) -> int:
        return int(np.shape(self.item_row)[0])


@dataclasses.dataclass
class FeatureVocab:
    """Categorical vocabularies and feature sizes, fixed at training time (id 0 = OOV, values from 1).

    Attributes:
      countries / languages / genres: vocabulary values; id of ``v`` is ``1 + index(v)``.
      d_music: music-vector length (0 when the dataset has none).
      d_hist: history-embedding dimension.
      history_days: window length in days (None = unbounded).
      history_events: events that count as history.
      id_history_len: L, the number of most recent history items per type fed to the learned
        item-id embedding (0 = no item-id features).
      n_items: size of the item-id vocabulary without the padding token (0 = no item-id features).
    """

    countries: tuple[str, ...]
    languages: tuple[str, ...]
    genres: tuple[str, ...]
    d_music: int
    d_hist: int
    history_days: float | None = 90.0
    history_events: tuple[str, ...] = DEFAULT_HISTORY_EVENTS
    id_history_len: int = 0
    n_items: int = 0

    @property
    def n_countries(self) -> int:
        return len(self.countries) + 1

    @property
    def n_languages(self) -> int:
        return len(self.languages) + 1

    @property
    def n_genres(self) -> int:
        return len(self.genres) + 1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "FeatureVocab":
        d = dict(d)
        for k in ("countries", "languages", "genres", "history_events"):
            d[k] = tuple(d[k])
        return cls(**d)


@dataclasses.dataclass
class TrainingExamples:
    """All training examples of one target type (host NumPy), one row per positive interaction.

    Attributes:
      user: :class:`UserFeatures` ``[E]`` as of each example's timestamp.
      user_idx: int32 ``[E]``; item_row: int32 ``[E]`` row in the item table; timestamp: int64 ``[E]``.
      item_counts: int64 ``[N]`` number of examples per item row (for the sampling-bias correction).
    """

    user: UserFeatures
    user_idx: np.ndarray
    item_row: np.ndarray
    timestamp: np.ndarray
    item_counts: np.ndarray

    def __len__(self) -> int:
        return int(self.item_row.shape[0])


# ----------------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------------
def _frequency_vocab(values: Iterable[str]) -> tuple[str, ...]:
    s = pd.Series(list(values), dtype=object).astype(str)
    s = s[s != ""]
    if s.empty:
        return ()
    counts = s.value_counts()
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(k for k, _ in order)


def encode_vocab(vocab: Sequence[str], values: Iterable[Any]) -> np.ndarray:
    """Strings -> int32 ids (1 + position in ``vocab``; 0 for "" / unseen)."""
    lookup = pd.Index(list(vocab))
    arr = pd.Index(pd.Series(list(values), dtype=object).fillna("").astype(str))
    pos = lookup.get_indexer(arr) if len(lookup) else np.full(len(arr), -1)
    return (np.asarray(pos, dtype=np.int64) + 1).astype(np.int32)


def age_buckets(ages: Any) -> np.ndarray:
    """int ages (-1 = unknown) -> int32 bucket ids (see module docstring)."""
    a = np.asarray(ages)
    if a.dtype.kind not in "iu":
        raise FeatureError(f"age must be integers (-1 = unknown), got dtype {a.dtype}")
    bad = np.flatnonzero(a > MAX_AGE)
    if bad.size:
        raise FeatureError(f"age {int(a[bad[0]])} at row {int(bad[0])} is above {MAX_AGE}; use -1 for unknown")
    b = np.searchsorted(np.asarray(AGE_EDGES), a, side="right") + 1
    return np.where(a < 0, 0, b).astype(np.int32)


def build_vocab(
    ds: Dataset, target_type: str, d_hist: int, history_days: float | None = 90.0,
    history_events: Sequence[str] = DEFAULT_HISTORY_EVENTS, id_history_len: int = 0,
) -> FeatureVocab:
    """Vocabularies from the dataset (countries of all users; language/genre of target-type items)."""
    _check_target_type(target_type)
    items = ds.items[ds.items["item_type"] == target_type]
    bad = [e for e in history_events if e not in EVENTS]
    if bad:
        raise FeatureError(f"history_events {bad} not in {EVENTS}")
    return FeatureVocab(
        countries=_frequency_vocab(ds.users["country"]),
        languages=_frequency_vocab(items["language"]),
        genres=_frequency_vocab(items["genre"]),
        d_music=0 if ds.music is None else int(ds.music.shape[1]),
        d_hist=int(d_hist),
        history_days=None if history_days is None else float(history_days),
        history_events=tuple(history_events),
        id_history_len=int(id_history_len),
    )


def _check_target_type(target_type: str) -> None:
    if target_type not in ITEM_TYPES:
        raise FeatureError(f"target_type must be one of {ITEM_TYPES}, got {target_type!r}")


def _interactions_frame(interactions: Any) -> pd.DataFrame:
    """Accepts an interactions DataFrame or anything with an ``.interactions`` DataFrame (Dataset)."""
    df = getattr(interactions, "interactions", interactions)
    if not isinstance(df, pd.DataFrame):
        raise FeatureError(f"expected an interactions DataFrame or Dataset, got {type(interactions).__name__}")
    missing = [c for c in ("user_idx", "item_idx", "timestamp", "event_code") if c not in df.columns]
    if missing:
        raise FeatureError(f"interactions table lacks columns {missing} (need an index-coded Dataset table)")
    return df


# ----------------------------------------------------------------------------------------------
# As-of history means (the core; shared by training, evaluation and serving)
# ----------------------------------------------------------------------------------------------
def _prefix_sum(x: np.ndarray, block: int = 256) -> np.ndarray:
    """float64 ``[m + 1, d]`` prefix sums of ``x`` ``[m, d]`` (row 0 = 0).

    Blocked: NumPy's cumsum along axis 0 of a wide C-order array was measured 4-8x slower than a
    cumsum inside blocks of ``block`` rows plus a cumsum of the block totals.
    """
    m, d = x.shape
    nb = -(-m // block)
    out = np.zeros((nb * block + 1, d), np.float64)
    body = out[1:].reshape(nb, block, d)
    body.reshape(-1, d)[:m] = x
    np.cumsum(body, axis=1, out=body)
    body[1:] += np.cumsum(body[:-1, -1, :], axis=0)[:, None, :]
    return out[: m + 1]


def _sorted_log(log_user, log_time, log_item, log_type, q_user: np.ndarray):
    """The log sorted by (user, time) as int64 arrays, plus ``t0`` and ``span`` of the composite key.

    Composite key ``user * span + (time - t0)``: sorted because rows are sorted by (user, time). Query
    times are clipped into ``[0, span - 1]``, which keeps "strictly before" exact (span > t_max - t0 + 1).
    """
    order = np.lexsort((np.asarray(log_time), np.asarray(log_user)))
    u, t, it, ty = (np.asarray(a, np.int64)[order] for a in (log_user, log_time, log_item, log_type))
    t0 = int(t.min())
    span = int(t.max()) - t0 + 2
    if (int(max(u.max(), q_user.max())) + 1) * span >= 2**62:
        raise FeatureError("user count x time span overflows the int64 (user, time) key")
    return u, t, it, ty, t0, span


def history_means(
    log_user: np.ndarray, log_time: np.ndarray, log_item: np.ndarray, log_type: np.ndarray,
    item_emb: np.ndarray, q_user: np.ndarray, q_time: np.ndarray, window_s: float | None,
    n_types: int = len(ITEM_TYPES), chunk_rows: int = 1 << 18,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-query, per-type mean embedding of the log rows of ``q_user`` with time in [q_time - w, q_time).

    Args:
      log_user/log_time/log_item/log_type: ``[M]`` interaction rows (any order; only counted rows).
      item_emb: float ``[n_items, d]`` (indexed by ``log_item``).
      q_user: int ``[Q]``; q_time: int64 ``[Q]`` (as-of times, exclusive).
      window_s: window length in seconds; None = everything before ``q_time``.

    Returns:
      means float32 ``[Q, n_types, d]`` (zeros where count is 0) and counts int64 ``[Q, n_types]``.
    """
    q_user = np.asarray(q_user, np.int64)
    q_time = np.asarray(q_time, np.int64)
    d = int(item_emb.shape[1])
    Q = q_user.shape[0]
    means = np.zeros((Q, n_types, d), np.float32)
    counts = np.zeros((Q, n_types), np.int64)
    if Q == 0 or len(log_user) == 0:
        return means, counts
    u, t, it, ty, t0, span = _sorted_log(log_user, log_time, log_item, log_type, q_user)
    q_order = np.argsort(q_user, kind="stable")
    qs_user = q_user[q_order]
    hi_t = np.clip(q_time[q_order] - t0, 0, span - 1)
    if window_s is None:
        lo_t = np.zeros_like(hi_t)
    else:
        lo_t = np.clip(q_time[q_order] - int(np.ceil(window_s)) - t0, 0, span - 1)
    # Chunks of whole users of about chunk_rows rows (at most chunk_rows + the largest user's rows).
    m = len(u)
    ustart = np.concatenate([[0], np.flatnonzero(np.diff(u)) + 1, [m]])
    cuts = ustart[np.searchsorted(ustart, np.arange(chunk_rows, m, chunk_rows), side="left")]
    bounds = np.unique(np.concatenate([[0], cuts, [m]]))
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        cu, ct, ci, cty = u[r0:r1], t[r0:r1], it[r0:r1], ty[r0:r1]
        qa = int(np.searchsorted(qs_user, cu[0], side="left"))
        qb = int(np.searchsorted(qs_user, cu[-1], side="right"))
        if qb <= qa:
            continue
        key = cu * span + (ct - t0)
        qu = qs_user[qa:qb]
        hi = np.searchsorted(key, qu * span + hi_t[qa:qb], side="left")
        lo = np.searchsorted(key, qu * span + lo_t[qa:qb], side="left")
        dst = q_order[qa:qb]
        for k in range(n_types):
            is_k = cty == k
            cnt = np.concatenate([[0], np.cumsum(is_k)])  # type-k rows among the first r rows
            c_hi, c_lo = cnt[hi], cnt[lo]
            c = c_hi - c_lo
            # prefix sums over this type's rows only; float64 so the difference of two prefixes is exact
            # enough (float32 would lose ~1e-3 after 1e5 rows). Gather first, then widen: never the table.
            csum = _prefix_sum(item_emb[ci[is_k]])
            counts[dst, k] = c
            means[dst, k] = ((csum[c_hi] - csum[c_lo]) / np.maximum(c, 1)[:, None]).astype(np.float32)
    return means, counts


def history_id_tokens(
    log_user: np.ndarray, log_time: np.ndarray, log_item: np.ndarray, log_type: np.ndarray,
    q_user: np.ndarray, q_time: np.ndarray, window_s: float | None, length: int,
    n_types: int = len(ITEM_TYPES),
) -> np.ndarray:
    """int32 ``[Q, n_types, length]``: per query and type, the ``length`` most recent log items with time
    in ``[q_time - window, q_time)`` as tokens (global id + 1), newest first, 0-padded.

    Same as-of rule as :func:`history_means` (strictly before ``q_time``); ties in time keep log order.
    """
    q_user = np.asarray(q_user, np.int64)
    q_time = np.asarray(q_time, np.int64)
    out = np.zeros((q_user.shape[0], n_types, int(length)), np.int32)
    if length == 0 or q_user.size == 0 or len(log_user) == 0:
        return out
    u, t, it, ty, t0, span = _sorted_log(log_user, log_time, log_item, log_type, q_user)
    hi_q = q_user * span + np.clip(q_time - t0, 0, span - 1)
    lo_t = np.zeros_like(q_time) if window_s is None else np.clip(q_time - int(np.ceil(window_s)) - t0, 0, span - 1)
    lo_q = q_user * span + lo_t
    back = np.arange(1, int(length) + 1, dtype=np.int64)
    for k in range(n_types):
        rows = np.flatnonzero(ty == k)
        if rows.size == 0:
            continue
        key = u[rows] * span + (t[rows] - t0)
        hi = np.searchsorted(key, hi_q, side="left")
        lo = np.searchsorted(key, lo_q, side="left")
        pos = hi[:, None] - back[None, :]
        ok = pos >= lo[:, None]
        out[:, k, :] = np.where(ok, it[rows][np.maximum(pos, 0)] + 1, 0)
    return out


def _counted_log(df: pd.DataFrame, ds: Dataset, history_events: Sequence[str]) -> tuple[np.ndarray, ...]:
    codes = np.asarray([EVENTS.index(e) for e in history_events], np.int64)
    keep = np.isin(df["event_code"].to_numpy(), codes)
    sub = df.loc[keep]
    item = sub["item_idx"].to_numpy(np.int64)
    return (sub["user_idx"].to_numpy(np.int64), sub["timestamp"].to_numpy(np.int64), item,
            ds.item_type_codes()[item].astype(np.int64))


def _music_rows(ds: Dataset, user_idx: np.ndarray, d_music: int) -> tuple[np.ndarray, np.ndarray]:
    if d_music == 0 or ds.music is None:
        return np.zeros((len(user_idx), d_music), np.float32), np.zeros(len(user_idx), np.float32)
    m = np.asarray(ds.music, np.float32)[user_idx]
    ok = np.isfinite(m).all(axis=1)  # a NaN row means "no music vector" for that user
    return np.where(ok[:, None], m, 0.0).astype(np.float32), ok.astype(np.float32)


def assemble_user_features(
    vocab: FeatureVocab, ages: Any, countries: Any, music: np.ndarray, has_music: np.ndarray,
    means: np.ndarray, counts: np.ndarray, ids: np.ndarray | None = None,
) -> UserFeatures:
    """Encodes raw demographics + history means (+ id tokens ``[B, T, L]``) into a :class:`UserFeatures`."""
    if ids is None:
        ids = np.zeros(counts.shape + (vocab.id_history_len,), np.int32)
    return UserFeatures(
        age_bucket=age_buckets(np.asarray(ages, np.int64)),
        country=encode_vocab(vocab.countries, countries),
        music=np.asarray(music, np.float32).reshape(len(counts), vocab.d_music),
        has_music=np.asarray(has_music, np.float32),
        history_mean=np.asarray(means, np.float32),
        has_history=(counts > 0).astype(np.float32),
        history_count=np.log1p(counts).astype(np.float32),
        history_ids=np.asarray(ids, np.int32),
    )


def user_features_as_of(
    ds: Dataset, interactions: Any, user_idx: Any, as_of_time: Any, item_emb: np.ndarray,
    vocab: FeatureVocab, chunk_rows: int = 1 << 18,
) -> UserFeatures:
    """User features of ``user_idx`` ``[Q]`` as of ``as_of_time`` (scalar or ``[Q]``; exclusive).

    ``interactions`` is the log the history is read from (the training part of a split at
    evaluation time, the full log at serving time); ``item_emb`` ``[n_items, d]`` over all items.
    """
    df = _interactions_frame(interactions)
    user_idx = np.asarray(user_idx, np.int64).reshape(-1)
    if user_idx.size and (user_idx.min() < 0 or user_idx.max() >= ds.num_users):
        raise FeatureError(f"user_idx out of range [0, {ds.num_users})")
    item_emb = np.asarray(item_emb)
    if item_emb.shape != (ds.num_items, vocab.d_hist):
        raise FeatureError(f"item_emb has shape {item_emb.shape}, expected ({ds.num_items}, {vocab.d_hist})")
    as_of = np.broadcast_to(np.asarray(as_of_time, np.int64), user_idx.shape)
    lu, lt, li, lty = _counted_log(df, ds, vocab.history_events)
    window = None if vocab.history_days is None else vocab.history_days * DAY_S
    means, counts = history_means(lu, lt, li, lty, item_emb, user_idx, as_of, window, chunk_rows=chunk_rows)
    ids = history_id_tokens(lu, lt, li, lty, user_idx, as_of, window, vocab.id_history_len)
    music, has_music = _music_rows(ds, user_idx, vocab.d_music)
    users = ds.users
    return assemble_user_features(vocab, users["age"].to_numpy()[user_idx], users["country"].to_numpy()[user_idx],
                                  music, has_music, means, counts, ids)


# ----------------------------------------------------------------------------------------------
# Item table and training examples
# ----------------------------------------------------------------------------------------------
def target_item_range(ds: Dataset, target_type: str) -> tuple[int, int]:
    """[start, stop) global ids of the target type (items are ordered by type)."""
    _check_target_type(target_type)
    off = ds.item_type_offsets()
    k = ITEM_TYPES.index(target_type)
    return int(off[k]), int(off[k + 1])


def item_feature_table(
    ds: Dataset, content_emb: np.ndarray, hgnn_emb: np.ndarray | None, target_type: str, vocab: FeatureVocab,
    known_items: np.ndarray | None = None,
) -> ItemFeatures:
    """Item-tower inputs of every target-type item; ``hgnn_emb=None`` gives ``d_hgnn = 0`` (2T).

    ``known_items`` (global ids with a training interaction) get an id token when the vocabulary has
    item-id features; the others get token 0 (no id vector: content/HGNN inputs only).
    """
    start, stop = target_item_range(ds, target_type)
    for name, e in (("content_emb", content_emb), ("hgnn_emb", hgnn_emb)):
        if e is None:
            continue
        if np.ndim(e) != 2 or np.shape(e)[0] != ds.num_items:
            raise FeatureError(f"{name} has shape {np.shape(e)}, expected ({ds.num_items}, d): one row per item")
        if not np.isfinite(np.asarray(e[start:stop])).all():
            raise FeatureError(f"{name} has non-finite values among the {target_type} rows")
    rows = ds.items.iloc[start:stop]
    hg = np.zeros((stop - start, 0), np.float32) if hgnn_emb is None else np.asarray(hgnn_emb[start:stop], np.float32)
    return ItemFeatures(
        item_idx=np.arange(start, stop, dtype=np.int32),
        language=encode_vocab(vocab.languages, rows["language"]),
        genre=encode_vocab(vocab.genres, rows["genre"]),
        content=np.asarray(content_emb[start:stop], np.float32),
        hgnn=hg,
        id_token=_id_tokens(np.arange(start, stop), vocab, known_items),
        log_prior=np.zeros(stop - start, np.float32),
    )


def _id_tokens(item_idx: np.ndarray, vocab: FeatureVocab, known_items: np.ndarray | None) -> np.ndarray:
    if vocab.n_items == 0:
        return np.zeros(len(item_idx), np.int32)
    ok = np.ones(len(item_idx), bool) if known_items is None else np.isin(item_idx, known_items)
    return np.where(ok, np.asarray(item_idx, np.int64) + 1, 0).astype(np.int32)


def build_training_examples(
    ds: Dataset, split: Any, target_type: str, item_emb: np.ndarray, vocab: FeatureVocab,
    positive_events: Sequence[str] = ("stream",), first_only: bool = False, chunk_rows: int = 1 << 18,
    example_history: str = "as_of",
) -> TrainingExamples:
    """One example per positive (user, target-type item) interaction of ``split.train``.

    Positives are ``positive_events`` of target-type items (streams by default: the paper's "user-
    audiobook pairs the user listened to"). ``first_only`` keeps the first such interaction of each
    (user, item) pair — the discovery we want to predict; later re-streams would add duplicate pairs.

    ``example_history`` is the history each example's user features are built from:
      * ``"as_of"`` — everything in ``split.train`` strictly before the example's timestamp (the
        next-item view; the paper's real-time setting).
      * ``"leave_one_out"`` — the user's whole training history (as of the end of ``split.train``)
        without the target item (every row of it removed): the held-out-item view, whose features
        match those the model sees at evaluation/serving time (a full history), and which does not
        learn the within-session rating order of logs such as MovieLens. Uses only training rows.
    """
    train = _interactions_frame(getattr(split, "train", split))
    start, stop = target_item_range(ds, target_type)
    codes = np.asarray([EVENTS.index(e) for e in positive_events], np.int64)
    item = train["item_idx"].to_numpy(np.int64)
    keep = np.isin(train["event_code"].to_numpy(), codes) & (item >= start) & (item < stop)
    pos = train.loc[keep, ["user_idx", "item_idx", "timestamp"]]
    pos = pos.sort_values(["timestamp", "user_idx", "item_idx"], kind="stable")
    if first_only:
        pos = pos.drop_duplicates(["user_idx", "item_idx"], keep="first")
    u = pos["user_idx"].to_numpy(np.int64)
    ts = pos["timestamp"].to_numpy(np.int64)
    row = (pos["item_idx"].to_numpy(np.int64) - start).astype(np.int32)
    if example_history == "as_of":
        feats = user_features_as_of(ds, train, u, ts, item_emb, vocab, chunk_rows=chunk_rows)
    elif example_history == "leave_one_out":
        feats = _leave_one_out_features(ds, train, u, row.astype(np.int64) + start, item_emb, vocab, target_type)
    else:
        raise FeatureError(f"example_history must be 'as_of' or 'leave_one_out', got {example_history!r}")
    return TrainingExamples(
        user=feats, user_idx=u.astype(np.int32), item_row=row, timestamp=ts,
        item_counts=np.bincount(row, minlength=stop - start).astype(np.int64),
    )


def _leave_one_out_features(
    ds: Dataset, train: pd.DataFrame, users: np.ndarray, items: np.ndarray, item_emb: np.ndarray,
    vocab: FeatureVocab, target_type: str,
) -> UserFeatures:
    """Features of ``users[e]`` from their whole training history minus every row of ``items[e]`` ``[E]``."""
    end = int(train["timestamp"].max()) + 1 if len(train) else 0
    uniq, inv = np.unique(users, return_inverse=True)
    f = take_users(user_features_as_of(ds, train, uniq, end, item_emb, vocab), inv)
    lu, lt, li, _ = _counted_log(train, ds, vocab.history_events)
    if vocab.history_days is not None:
        inside = lt >= end - int(np.ceil(vocab.history_days * DAY_S))
        lu, li = lu[inside], li[inside]
    # rows of (user, target item) in the counted history: removed from the target type's mean and count
    n_items = int(ds.num_items)
    pair_keys, pair_counts = np.unique(lu * n_items + li, return_counts=True)
    q = users.astype(np.int64) * n_items + items
    n_ui = np.zeros(len(q), np.int64)
    if pair_keys.size:
        pos = np.minimum(np.searchsorted(pair_keys, q), pair_keys.size - 1)
        n_ui = np.where(pair_keys[pos] == q, pair_counts[pos], 0)
    k = ITEM_TYPES.index(target_type)
    c = np.rint(np.expm1(f.history_count[:, k])).astype(np.int64)
    rest = c - n_ui
    total = f.history_mean[:, k] * c[:, None] - n_ui[:, None] * np.asarray(item_emb, np.float32)[items]
    f.history_mean[:, k] = np.where(rest[:, None] > 0, total / np.maximum(rest, 1)[:, None], 0.0)
    f.history_count[:, k] = np.log1p(rest).astype(np.float32)
    f.has_history[:, k] = (rest > 0).astype(np.float32)
    if f.history_ids.shape[-1]:
        f.history_ids[:, k] = np.where(f.history_ids[:, k] == (items + 1)[:, None], 0, f.history_ids[:, k])
    return f


@dataclasses.dataclass
class PriorTable:
    """Time-aware popularity prior: the log frequency of each item among the positives of a trailing window.

    Time is cut into slots of ``slot_days`` days from the first example; row ``s`` of ``log_prior`` is
    the smoothed log frequency (:func:`smoothed_log_q`) of every item over the ``window_slots`` slots
    *before* slot ``s`` — what was popular just before an example of slot ``s``, never including it.
    The last row (slot ``n_slots``, just after the training data) is the prior at serving time.

    Attributes:
      log_prior: float32 ``[n_slots + 1, N]``; slot: int32 ``[E]`` each example's slot.
    """

    log_prior: np.ndarray
    slot: np.ndarray
    slot_days: float

    @property
    def at_end(self) -> np.ndarray:
        """float32 ``[N]``: the prior just after the training data (for serving / evaluation)."""
        return self.log_prior[-1]


def prior_table(timestamps: np.ndarray, item_row: np.ndarray, n_items: int, window_days: float,
                alpha: float = 1.0, max_cells: int = 1 << 25) -> PriorTable:
    """:class:`PriorTable` of examples (``timestamps`` int64 ``[E]`` seconds, ``item_row`` ``[E]``).

    Slots are one day unless ``n_slots * n_items`` would exceed ``max_cells`` (then the slot widens so
    that the table stays under it); the window is ``ceil(window_days / slot_days)`` slots.
    """
    ts = np.asarray(timestamps, np.int64)
    if ts.size == 0:
        return PriorTable(np.full((1, n_items), -np.log(max(n_items, 1)), np.float32), np.zeros(0, np.int32), 1.0)
    span_days = (int(ts.max()) - int(ts.min())) / DAY_S + 1
    slot_days = max(1.0, float(np.ceil(span_days * n_items / max_cells)))
    slot = ((ts - ts.min()) // int(slot_days * DAY_S)).astype(np.int64)
    n_slots = int(slot.max()) + 1
    counts = np.zeros((n_slots + 1, n_items), np.float64)
    np.add.at(counts, (slot + 1, np.asarray(item_row, np.int64)), 1.0)
    cum = np.cumsum(counts, axis=0)  # cum[s] = examples in slots < s
    w = max(1, int(np.ceil(window_days / slot_days)))
    lagged = np.concatenate([np.zeros((w, n_items)), cum[:-w]]) if w <= n_slots else np.zeros_like(cum)
    window = cum - lagged  # examples in slots [s - w, s)
    log_prior = np.log((window + alpha) / (window.sum(1, keepdims=True) + alpha * n_items)).astype(np.float32)
    return PriorTable(log_prior, slot.astype(np.int32), slot_days)


def smoothed_log_q(item_counts: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """log of the additively smoothed training frequency q_i = (c_i + a) / (sum c + a N), float32 [N]."""
    c = np.asarray(item_counts, np.float64)
    return np.log((c + alpha) / (c.sum() + alpha * len(c))).astype(np.float32)


def take_users(f: UserFeatures, idx: np.ndarray) -> UserFeatures:
    """Rows ``idx`` of a host bundle."""
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], f)


def pad_users(f: UserFeatures, n: int) -> UserFeatures:
    """Pads a host bundle with zero rows to length ``n`` (static shapes)."""
    b = len(f)
    if b > n:
        raise ValueError(f"cannot pad {b} rows down to {n}")
    return jax.tree_util.tree_map(lambda a: np.concatenate([a, np.zeros((n - b,) + a.shape[1:], a.dtype)]), f)
