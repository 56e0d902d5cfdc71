"""Real-time serving: raw user features -> user vector -> top-K items.

The export format (model directories, the self-contained export folder of a version) is documented in
``serving_export``; request validation in ``serving_requests``; batch top-K for every user in
``serving_batch``; the HTTP service in ``serving_http``. Everything a caller needs is importable from
here (``Recommender``, ``ServingError``, ``save_model``, ``load_model``).

**Loading.** ``Recommender.load(path)`` takes an export folder (``<version>/export``, its
``MANIFEST.json`` names the served model of each target type), a version folder, or a model directory.

**Requests.** ``Recommender.recommend(user_id=...)`` reads a known user's demographics, music vector
and log from the store; ``recommend(age=..., country=..., music=..., interactions=...)`` takes raw
features (a brand-new user may give none). ``interactions`` are ``(item_id, event, timestamp)``
triples (or ``{"item_id", "event", "timestamp"}`` dicts, or a DataFrame / dict with those columns; at
most ``MAX_INTERACTIONS`` rows). Features use exactly the training code path (``features.history_means``)
as of ``as_of`` (default: the snapshot time, or one second after the latest request interaction if
later). ``k`` is capped at the catalogue size and searched in a few compiled buckets
(``retrieval.k_bucket``). Every malformed value (types, ranges, unknown fields, sizes) raises
:class:`ServingError` (a ``UserError``) with a one-line reason naming the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twotower_hgnn.arrays import sorted_unique
from twotower_hgnn import features as F
from twotower_hgnn.data.schema import EVENTS, Dataset, event_mask
from twotower_hgnn.models.encode import encode_chunked, item_vectors
from twotower_hgnn.retrieval import ExcludeCSR, load_index, make_index
from twotower_hgnn.serving_export import (  # noqa: F401  (re-exported: the export API lives here too)
    EXPORT_FORMAT,
    FORMAT,
    load_model,
    read_meta,
    save_model,
    snapshot_time,
    store_dataset,
)
from twotower_hgnn.serving_requests import (  # noqa: F401
    MAX_INTERACTIONS,
    ServingError,
    UnknownUserError,
    check_bool,
    check_fields,
    check_id,
    check_k,
    check_timestamp,
    parse_demographics,
    parse_interactions,
)
from twotower_hgnn.train.two_tower import TwoTowerResult


# ---------------------------------------------------------------------------------- recommender
def served_model_dir(path: Path, target_type: str | None) -> Path:
    """The model directory a path names: itself, or the served model of an export / version folder."""
    if (path / "model.json").is_file():
        return path
    export = path if (path / "MANIFEST.json").is_file() else path / "export"
    mpath = export / "MANIFEST.json"
    if not mpath.is_file():
        raise ServingError(
            f"{path} is neither an export folder (MANIFEST.json), a version folder nor a model directory"
        )
    try:
        manifest = json.loads(mpath.read_text())
        served = manifest.get("served", {})
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ServingError(f"{mpath}: not a valid manifest ({e})") from None
    if target_type is None:
        target_type = manifest.get("default_target")
        if target_type not in served:
            target_type = "audiobook" if "audiobook" in served else next(iter(sorted(served)), None)
    if target_type not in served:
        raise ServingError(f"{mpath}: no served model for {target_type!r} (served: {sorted(served)})")
    entry = served[target_type]
    for candidate in (export / target_type, export.parent / str(entry.get("model", ""))):
        if (candidate / "model.json").is_file():
            return candidate
    raise ServingError(f"{mpath}: the model folder of {target_type!r} is missing; rerun the export stage")


class Recommender:
    """Top-K recommendations of one target type in real time.

    Args:
      result: a trained (or loaded) two-tower result.
      dataset: the catalogue and user store (items, users, music, interaction log).
      index: a retrieval index over ``item_vectors(result)`` rows (default: an exact index built here).
      as_of: the snapshot time user histories are read at by default (default: last log second + 1).
      max_interactions: the longest request history accepted.
    """

    def __init__(
        self,
        result: TwoTowerResult,
        dataset: Dataset,
        index: Any = None,
        as_of: int | None = None,
        max_interactions: int = MAX_INTERACTIONS,
    ) -> None:
        self.result = result
        self.dataset = dataset
        self.target_type = result.cfg.target_type
        self.start, self.stop = F.target_item_range(dataset, self.target_type)
        self.num_items = self.stop - self.start
        self.max_interactions = int(max_interactions)
        self.source: Path | None = None
        ids = np.asarray(result.item_table.item_idx, np.int64)
        if not np.array_equal(ids, np.arange(self.start, self.stop)):
            raise ServingError(
                f"model item table ({ids.size} {self.target_type}s) does not match the catalogue "
                f"({self.num_items} {self.target_type}s): retrain or re-export"
            )
        if result.history_emb.shape[0] != dataset.num_items:
            raise ServingError(
                f"model history table has {result.history_emb.shape[0]} items, catalogue {dataset.num_items}"
            )
        if index is None:
            index = make_index("exact", item_vectors(result)[0])
        if getattr(index, "num_items", self.num_items) != self.num_items:
            raise ServingError(f"index has {index.num_items} items, the {self.target_type} catalogue {self.num_items}")
        self.index = index
        self.as_of = int(as_of if as_of is not None else dataset.meta.get("as_of", snapshot_time(dataset)))
        self._item_pos = pd.Index(dataset.items["item_id"].astype(str))
        self._user_pos = pd.Index(dataset.users["user_id"].astype(str))
        self._titles = dataset.items["title"].astype(str).to_numpy()
        self._item_ids = dataset.items["item_id"].astype(str).to_numpy()
        # the user's log rows, grouped: one stable sort, then slices per request
        log = dataset.interactions
        order = np.argsort(log["user_idx"].to_numpy(), kind="stable")
        self._log = {c: log[c].to_numpy()[order] for c in ("user_idx", "item_idx", "timestamp", "event_code")}

    # -------------------------------------------------------------- constructors
    @classmethod
    def load(
        cls, path: str | os.PathLike, target_type: str | None = None, only_users: np.ndarray | None = None
    ) -> "Recommender":
        """A recommender from an export folder, a version folder or a model directory (module docstring);
        ``target_type`` picks the served model (default: the manifest's ``default_target``: audiobook if
        served, else the first served type). ``only_users``: user rows whose log rows are read from the
        store (``store_dataset``); the others are known but answered as if they had no history — for
        batch jobs over a user sample, not for serving."""
        path = Path(path)
        if not path.is_dir():
            raise ServingError(f"{path}: no such directory")
        model_dir = served_model_dir(path, target_type)
        rec = cls.from_model_dir(model_dir, only_users=only_users)
        if target_type is not None and rec.target_type != target_type:
            raise ServingError(f"{model_dir} serves {rec.target_type}s, not {target_type}s")
        return rec

    @classmethod
    def from_model_dir(
        cls,
        directory: str | os.PathLike,
        dataset: Dataset | None = None,
        index_dir: str | os.PathLike | None = None,
        only_users: np.ndarray | None = None,
    ) -> "Recommender":
        """A recommender from ``save_model``'s directory (its own user store unless ``dataset`` is given;
        ``only_users`` as in :meth:`load`)."""
        directory = Path(directory)
        meta = read_meta(directory)
        result = load_model(directory)
        ds = dataset if dataset is not None else store_dataset(directory, meta, only_users=only_users)
        index_dir = Path(index_dir) if index_dir is not None else directory / "index"
        try:
            index = load_index(index_dir)
        except (OSError, ValueError, KeyError) as e:
            raise ServingError(f"{index_dir}: unreadable index ({e})") from None
        rec = cls(result, ds, index=index, as_of=None if dataset is not None else int(meta["as_of"]))
        rec._check_index_ids(index_dir)
        rec.source = directory
        return rec

    @classmethod
    def from_version(
        cls, version_dir: str | os.PathLike, target_type: str | None = None, dataset: Dataset | None = None
    ) -> "Recommender":
        """The served model of a pipeline version (``export/MANIFEST.json``'s ``served[target_type]``;
        default: the manifest's ``default_target``)."""
        return cls.from_model_dir(served_model_dir(Path(version_dir), target_type), dataset=dataset)

    def _check_index_ids(self, index_dir: Path) -> None:
        ids_path = index_dir / "item_ids.parquet"
        if ids_path.is_file():
            ids = pd.read_parquet(ids_path)["item_id"].astype(str).to_numpy()
            if not np.array_equal(ids, self._item_ids[self.start : self.stop]):
                raise ServingError(f"{ids_path}: the index's item ids differ from the catalogue's; re-export")

    # -------------------------------------------------------------- request parsing
    def user_index(self, user_id: Any) -> int:
        pos = self._user_pos.get_indexer([check_id(user_id, "user_id")])[0]
        if pos < 0:
            raise UnknownUserError(
                f"unknown user_id {user_id!r}: not in the user store of {self.dataset.name} "
                f"({len(self._user_pos)} users); pass raw features for a new user"
            )
        return int(pos)

    def _known_user(self, user_idx: int) -> tuple[int, str, np.ndarray, float, tuple[np.ndarray, ...]]:
        users = self.dataset.users
        music = None
        if self.result.vocab.d_music and self.dataset.music is not None:
            m = np.asarray(self.dataset.music[user_idx], np.float32)
            music = m if np.isfinite(m).all() else None
        age, country, mvec, has = parse_demographics(
            int(users["age"].iloc[user_idx]), str(users["country"].iloc[user_idx]), music, self.result.vocab.d_music
        )
        lo, hi = np.searchsorted(self._log["user_idx"], [user_idx, user_idx + 1])
        log = tuple(self._log[c][lo:hi].astype(np.int64) for c in ("item_idx", "event_code", "timestamp"))
        return age, country, mvec, has, log

    # -------------------------------------------------------------- features and vectors
    def _features(
        self,
        age: int,
        country: str,
        music: np.ndarray,
        has_music: float,
        log: tuple[np.ndarray, np.ndarray, np.ndarray],
        as_of: int,
    ) -> F.UserFeatures:
        item, ev, ts = log
        vocab = self.result.vocab
        keep = event_mask(ev, [EVENTS.index(e) for e in vocab.history_events])
        window = None if vocab.history_days is None else vocab.history_days * F.DAY_S
        log = (
            np.zeros(int(keep.sum()), np.int64),
            ts[keep],
            item[keep],
            self.dataset.item_type_codes()[item[keep]].astype(np.int64),
        )
        q, at, n_types = np.zeros(1, np.int64), np.array([as_of]), len(self.dataset.item_types)
        means, counts = F.history_means(*log, self.result.history_emb, q, at, window, n_types)
        ids = F.history_id_tokens(*log, q, at, window, vocab.id_history_len, n_types)
        return F.assemble_user_features(vocab, [age], [country], music[None, :], [has_music], means, counts, ids)

    def _resolve(self, user_id: Any, age: Any, country: Any, music: Any, interactions: Any, as_of: Any):
        if user_id is not None:
            if any(v is not None for v in (age, country, music, interactions)):
                raise ServingError("give either user_id or raw features (age, country, music, interactions), not both")
            a, c, m, h, log = self._known_user(self.user_index(user_id))
        else:
            a, c, m, h = parse_demographics(age, country, music, self.result.vocab.d_music)
            log = parse_interactions(interactions, self._item_pos, self.max_interactions)
        if as_of is None:
            as_of = max(self.as_of, int(log[2].max()) + 1 if log[2].size else 0)
        else:
            as_of = check_timestamp(as_of, "as_of")
        return self._features(a, c, m, h, log, as_of), log, as_of

    def user_vector(
        self,
        user_id: Any = None,
        *,
        age: Any = None,
        country: Any = None,
        music: Any = None,
        interactions: Any = None,
        as_of: Any = None,
        **unknown: Any,
    ) -> np.ndarray:
        """float32 ``[d]`` user-tower output for a known user or raw features (module docstring)."""
        check_fields(unknown, ("user_id", "age", "country", "music", "interactions", "as_of"))
        feats, _, _ = self._resolve(user_id, age, country, music, interactions, as_of)
        return encode_chunked(self.result.model_cfg, self.result.params, feats, "user", chunk=1)[0]

    def recommend(
        self,
        user_id: Any = None,
        *,
        age: Any = None,
        country: Any = None,
        music: Any = None,
        interactions: Any = None,
        k: Any = 10,
        exclude_consumed: Any = True,
        as_of: Any = None,
        **unknown: Any,
    ) -> list[tuple[str, str, float]]:
        """Top-``k`` ``(item_id, title, score)`` of the target type, best first (at most the catalogue).

        ``exclude_consumed`` drops the target-type items the user streamed before ``as_of`` (weak
        signals are kept: a previewed audiobook is a good recommendation).
        """
        check_fields(unknown)
        k = min(check_k(k), self.num_items)
        exclude_consumed = check_bool(exclude_consumed, "exclude_consumed")
        feats, (item, ev, ts), as_of = self._resolve(user_id, age, country, music, interactions, as_of)
        u = encode_chunked(self.result.model_cfg, self.result.params, feats, "user", chunk=1)
        exclude = None
        if exclude_consumed:
            seen = item[(ev == EVENTS.index("stream")) & (ts < as_of) & (item >= self.start) & (item < self.stop)]
            exclude = ExcludeCSR.from_lists([sorted_unique(seen - self.start)])
        scores, rows = self.index.search(u, k, exclude)
        ok = rows[0] >= 0
        glob = rows[0][ok] + self.start
        return [(str(self._item_ids[g]), str(self._titles[g]), float(s)) for g, s in zip(glob, scores[0][ok])]

    def recommend_request(self, request: Any) -> list[tuple[str, str, float]]:
        """``recommend(**request)`` for a decoded JSON object (unknown or non-string keys are refused)."""
        if not isinstance(request, dict):
            raise ServingError(f"a request must be a JSON object, got {type(request).__name__}")
        check_fields(request)
        return self.recommend(**request)
