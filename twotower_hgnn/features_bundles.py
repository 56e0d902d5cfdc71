"""The two-tower feature bundles: what the towers take as input, with documented shapes.

:class:`UserFeatures`, :class:`ItemFeatures` and :class:`TwoTowerBatch` are jax pytrees (host NumPy
arrays, jax arrays inside jit); :class:`FeatureVocab` (vocabularies and sizes fixed at training time),
:class:`TrainingExamples` and :class:`PriorTable` are plain dataclasses. Also the feature constants,
:class:`FeatureError` and row operations on a user bundle (:func:`take_users`, :func:`pad_users`).
What the features mean and how they are computed without label leakage: :mod:`twotower_hgnn.features`,
which re-exports every name here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from twotower_hgnn import errors
from twotower_hgnn.data.schema import EVENTS, MAX_AGE  # noqa: F401  (MAX_AGE: re-exported for the features)

AGE_EDGES: tuple[int, ...] = (18, 25, 35, 45, 55, 65)
N_AGE_BUCKETS = len(AGE_EDGES) + 2  # + unknown + the open last bucket
DAY_S = 86_400
DEFAULT_HISTORY_EVENTS: tuple[str, ...] = EVENTS  # stream + all weak signals (the paper, §1.3)


class FeatureError(errors.DataError):
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
      history_mean: float32 ``[B, T, d_hist]`` mean embedding of the items of each of the data's ``T``
        item types (``Dataset.item_types`` order: audiobooks index 0, podcasts index 1 on the paper's
        data) in the window; zeros where the user has none of that type.
      has_history: float32 ``[B, T]`` 1.0 where the user has >= 1 interaction of that type.
      history_count: float32 ``[B, T]`` log1p of the number of interactions of that type.
      history_ids: int32 ``[B, T, L]`` id tokens (global item id + 1; 0 = padding) of the user's ``L``
        most recent items of each type in the window, newest first, for the
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
      user: :class:`UserFeatures` as of each example's timestamp: ``[E]``, or, when ``built_rows`` is given,
        only of the examples a step budget reads (``[F]``, F <= E).
      user_idx: int32 ``[E]``; item_row: int32 ``[E]`` row in the item table; timestamp: int64 ``[E]``
        (``[F]``, the built rows' only, once :meth:`compact`).
      item_counts: int64 ``[N]`` number of examples per item row (for the sampling-bias correction).
      built_rows: None (``user`` has every example), or int64 ``[F]``: the sorted example rows whose
        features ``user`` holds, in its row order (the others' were not built: the budget never reads
        them; a sorted list, not an ``[E]`` map, which would be 1-2 GB at the paper's scale).
      n_examples: None (the arrays have every example), or E once :meth:`compact` kept only the built rows.
    """

    user: UserFeatures
    user_idx: np.ndarray
    item_row: np.ndarray
    timestamp: np.ndarray
    item_counts: np.ndarray
    built_rows: np.ndarray | None = None
    n_examples: int | None = None

    def __len__(self) -> int:
        return int(self.item_row.shape[0]) if self.n_examples is None else int(self.n_examples)

    def _built_positions(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        fr = np.searchsorted(self.built_rows, rows)
        ok = fr < len(self.built_rows)
        if not ok.all() or not np.array_equal(self.built_rows[fr], rows):
            raise FeatureError("training examples: features of an example outside the step budget were not built")
        return fr

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """Positions of example ``rows`` in ``item_row`` / ``timestamp`` / ``user_idx`` (the rows themselves
        unless :meth:`compact`-ed; then their places in ``built_rows``, a FeatureError outside it)."""
        return np.asarray(rows) if self.n_examples is None else self._built_positions(rows)

    def users_of(self, rows: np.ndarray) -> UserFeatures:
        """UserFeatures of example ``rows`` (a FeatureError for an example whose features were not built)."""
        if self.built_rows is None:
            return take_users(self.user, rows)
        return take_users(self.user, self._built_positions(rows))

    def compact(self) -> "TrainingExamples":
        """The same examples with ``user_idx`` / ``item_row`` / ``timestamp`` kept for the built rows only
        (``len`` unchanged; ``item_counts`` still counts every example): once the priors and weights are
        computed, a step budget reads nothing else. At the paper's scale the podcast model's 250M
        examples are ~4 GB of such columns, against ~0.8M read by 200 steps. Itself without a budget."""
        if self.built_rows is None or self.n_examples is not None:
            return self
        b = self.built_rows
        return dataclasses.replace(
            self,
            user_idx=self.user_idx[b],
            item_row=self.item_row[b],
            timestamp=self.timestamp[b],
            n_examples=int(self.item_row.shape[0]),
        )


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


# ----------------------------------------------------------------------------------------------
# Row operations on a user bundle
# ----------------------------------------------------------------------------------------------
def take_users(f: UserFeatures, idx: np.ndarray) -> UserFeatures:
    """Rows ``idx`` of a host bundle."""
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], f)


def pad_users(f: UserFeatures, n: int) -> UserFeatures:
    """Pads a host bundle with zero rows to length ``n`` (static shapes)."""
    b = len(f)
    if b > n:
        raise ValueError(f"cannot pad {b} rows down to {n}")
    return jax.tree_util.tree_map(lambda a: np.concatenate([a, np.zeros((n - b,) + a.shape[1:], a.dtype)]), f)
