"""Real-time serving: raw user features -> user vector -> top-K items, and the model export format.

**Export format** (``save_model(result, ds, dir)``; written whole into a temporary sibling and renamed
onto ``dir``, so a reader sees the old model or the complete new one):

    model.json          format tag, train config, model config (vocab sizes), vocabularies, step,
                        n_examples, as_of (serving snapshot time = last logged second + 1)
    params.npz          Flax variables, keys "params/user/mlp/dense_0/kernel", ...
    item_table.npz      ItemFeatures of the target type (item_idx, language, genre, content, hgnn)
    history_emb.npy     float32 [n_items, d_hist] embedding the user-history means are built from
    items.parquet       item_id, item_type, title of every item (global order: row = global id)
    users.parquet       user_id, age, country (the user store behind ``recommend(user_id=...)``)
    music.npy           float32 [n_users, d_music] (only when the dataset has music vectors)
    interactions.parquet user_idx, item_idx, timestamp, event_code: the log the user histories and the
                        consumed-item exclusions are read from (rows older than the history window
                        before ``as_of`` that are not streams of the target type are dropped)
    index/              retrieval index over the item-tower vectors (``retrieval``; exact by default)

``load_model(dir)`` returns a :class:`~twotower_hgnn.train.two_tower.TwoTowerResult` (for
``models.encode.user_vectors`` / ``item_vectors``); :meth:`Recommender.from_model_dir` builds the full server.

**Requests.** ``Recommender.recommend(user_id=...)`` reads a known user's demographics, music vector
and log from the store; ``recommend(age=..., country=..., music=..., interactions=...)`` takes raw
features (a brand-new user may give none). ``interactions`` are ``(item_id, event, timestamp)``
triples (or a DataFrame / dict with those columns). Features use exactly the training code path
(``features.history_means``) as of ``as_of`` (default: the snapshot time, or one second after the
latest request interaction if later). Unknown users/items and malformed values raise
:class:`ServingError` naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from flax import traverse_util

from twotower_hgnn import features as F
from twotower_hgnn.data.schema import EVENTS, ITEM_TYPES, Dataset
from twotower_hgnn.io import atomic_dir
from twotower_hgnn.models.encode import encode_chunked, item_vectors
from twotower_hgnn.models.two_tower import TwoTowerConfig
from twotower_hgnn.retrieval import ExcludeCSR, load_index, make_index
from twotower_hgnn.train.two_tower import TwoTowerResult, TwoTowerTrainConfig

FORMAT = "twotower_hgnn.two_tower/v1"


class ServingError(ValueError):
    """A request or a model directory that cannot be served; the message names the field or file."""


# ---------------------------------------------------------------------------------- export
def _snapshot_time(ds: Dataset) -> int:
    ts = ds.interactions["timestamp"]
    return int(ts.max()) + 1 if len(ts) else 0


def _serving_log(ds: Dataset, result: TwoTowerResult, as_of: int) -> pd.DataFrame:
    """Rows needed to serve as of ``as_of``: the history window plus all target-type streams (exclusions)."""
    df = ds.interactions[["user_idx", "item_idx", "timestamp", "event_code"]]
    start, stop = F.target_item_range(ds, result.cfg.target_type)
    item = df["item_idx"].to_numpy()
    consumed = (df["event_code"].to_numpy() == EVENTS.index("stream")) & (item >= start) & (item < stop)
    days = result.vocab.history_days
    recent = (
        np.ones(len(df), bool) if days is None else df["timestamp"].to_numpy() >= as_of - int(np.ceil(days * F.DAY_S))
    )
    return df.loc[recent | consumed].reset_index(drop=True)


def save_model(
    result: TwoTowerResult,
    ds: Dataset,
    directory: str | os.PathLike,
    with_store: bool = True,
    index_kind: str = "exact",
    **index_kw: Any,
) -> Path:
    """Writes the export format (module docstring) atomically; returns the directory.

    ``index_kind`` / ``index_kw`` go to ``retrieval.make_index`` (exact by default: the audiobook
    catalogue is small and the paper serves it by brute force; approximate kinds need enough items to
    train on).
    """
    as_of = _snapshot_time(ds)
    flat = traverse_util.flatten_dict(result.params, sep="/")
    iv, _ = item_vectors(result)
    meta = {
        "format": FORMAT,
        "train_config": result.cfg.to_json(),
        "model_config": dataclasses.asdict(result.model_cfg),
        "vocab": result.vocab.to_json(),
        "step": result.step,
        "n_examples": result.n_examples,
        "as_of": as_of,
        "dataset": ds.name,
        "n_items": ds.num_items,
        "n_users": ds.num_users,
        "has_store": bool(with_store),
    }
    with atomic_dir(directory) as d:
        np.savez(d / "params.npz", **{k: np.asarray(v) for k, v in flat.items()})
        np.savez(
            d / "item_table.npz",
            **{f.name: np.asarray(getattr(result.item_table, f.name)) for f in dataclasses.fields(F.ItemFeatures)},
        )
        np.save(d / "history_emb.npy", np.asarray(result.history_emb, np.float32))
        ds.items[["item_id", "item_type", "title"]].to_parquet(d / "items.parquet", index=False)
        if with_store:
            ds.users[["user_id", "age", "country"]].to_parquet(d / "users.parquet", index=False)
            if ds.music is not None:
                np.save(d / "music.npy", np.asarray(ds.music, np.float32))
            _serving_log(ds, result, as_of).to_parquet(d / "interactions.parquet", index=False)
        make_index(index_kind, iv, **index_kw).save(d / "index")
        (d / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return Path(directory)


def _read_meta(directory: Path) -> dict:
    path = directory / "model.json"
    if not path.is_file():
        raise ServingError(f"{directory} is not an exported two-tower model: {path.name} is missing")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ServingError(f"{path}: not valid JSON ({e})") from None
    if meta.get("format") != FORMAT:
        raise ServingError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_model(directory: str | os.PathLike) -> TwoTowerResult:
    """Reads the model part of an export (params, configs, vocabularies, item table, history table)."""
    directory = Path(directory)
    meta = _read_meta(directory)
    try:
        with np.load(directory / "params.npz") as z:
            params = traverse_util.unflatten_dict({k: z[k] for k in z.files}, sep="/")
        with np.load(directory / "item_table.npz") as z:
            table = F.ItemFeatures(**{k: z[k] for k in z.files})
        hist = np.load(directory / "history_emb.npy")
    except (OSError, KeyError, ValueError) as e:
        raise ServingError(f"{directory}: unreadable model file ({e})") from None
    m = dict(meta["model_config"])
    m["tower_dims"] = tuple(m["tower_dims"])
    return TwoTowerResult(
        params=params,
        cfg=TwoTowerTrainConfig.from_json(meta["train_config"]),
        model_cfg=TwoTowerConfig(**m),
        vocab=F.FeatureVocab.from_json(meta["vocab"]),
        item_table=table,
        history_emb=hist,
        history=[],
        step=int(meta["step"]),
        n_examples=int(meta["n_examples"]),
    )


def _store_dataset(directory: Path, meta: dict) -> Dataset:
    """The serving store of an export as a Dataset (items, users, music, the kept log)."""
    if not meta.get("has_store"):
        raise ServingError(f"{directory} was exported without a user store; pass dataset=...")
    items = pd.read_parquet(directory / "items.parquet")
    users = pd.read_parquet(directory / "users.parquet")
    inter = pd.read_parquet(directory / "interactions.parquet")
    music = np.load(directory / "music.npy") if (directory / "music.npy").is_file() else None
    codes = pd.Categorical(items["item_type"], categories=list(ITEM_TYPES)).codes
    counts = {t: int((codes == i).sum()) for i, t in enumerate(ITEM_TYPES)}
    return Dataset(
        name=str(meta.get("dataset", "export")),
        items=items,
        users=users,
        interactions=inter,
        item_type_counts=counts,
        music=music,
        meta={"as_of": meta["as_of"]},
    )


# ---------------------------------------------------------------------------------- recommender
class Recommender:
    """Top-K recommendations of one target type in real time.

    Args:
      result: a trained (or loaded) two-tower result.
      dataset: the catalogue and user store (items, users, music, interaction log).
      index: a retrieval index over ``item_vectors(result)`` rows (default: an exact index built here).
      as_of: the snapshot time user histories are read at by default (default: last log second + 1).
    """

    def __init__(self, result: TwoTowerResult, dataset: Dataset, index: Any = None, as_of: int | None = None) -> None:
        self.result = result
        self.dataset = dataset
        self.target_type = result.cfg.target_type
        self.start, self.stop = F.target_item_range(dataset, self.target_type)
        ids = np.asarray(result.item_table.item_idx, np.int64)
        if not np.array_equal(ids, np.arange(self.start, self.stop)):
            raise ServingError(
                f"model item table ({ids.size} {self.target_type}s) does not match the catalogue "
                f"({self.stop - self.start} {self.target_type}s): retrain or re-export"
            )
        if result.history_emb.shape[0] != dataset.num_items:
            raise ServingError(
                f"model history table has {result.history_emb.shape[0]} items, catalogue {dataset.num_items}"
            )
        if index is None:
            index = make_index("exact", item_vectors(result)[0])
        if getattr(index, "num_items", self.stop - self.start) != self.stop - self.start:
            raise ServingError(
                f"index has {index.num_items} items, the {self.target_type} catalogue {self.stop - self.start}"
            )
        self.index = index
        self.as_of = int(as_of if as_of is not None else dataset.meta.get("as_of", _snapshot_time(dataset)))
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
    def from_model_dir(
        cls, directory: str | os.PathLike, dataset: Dataset | None = None, index_dir: str | os.PathLike | None = None
    ) -> "Recommender":
        """A recommender from ``save_model``'s directory (its own user store unless ``dataset`` is given)."""
        directory = Path(directory)
        meta = _read_meta(directory)
        result = load_model(directory)
        ds = dataset if dataset is not None else _store_dataset(directory, meta)
        index = load_index(Path(index_dir) if index_dir is not None else directory / "index")
        return cls(result, ds, index=index, as_of=None if dataset is not None else int(meta["as_of"]))

    @classmethod
    def from_version(
        cls, version_dir: str | os.PathLike, target_type: str = "audiobook", dataset: Dataset | None = None
    ) -> "Recommender":
        """The served model of a pipeline version (``export/MANIFEST.json``'s ``served[target_type]``)."""
        vdir = Path(version_dir)
        mpath = vdir / "export" / "MANIFEST.json"
        if not mpath.is_file():
            raise ServingError(f"{vdir} has no export/MANIFEST.json; run the pipeline's export stage first")
        served = json.loads(mpath.read_text()).get("served", {})
        if target_type not in served:
            raise ServingError(f"{mpath}: no served model for {target_type!r} (served: {sorted(served)})")
        entry = served[target_type]
        index_dir = vdir / "export" / f"index-{target_type}"
        if not index_dir.is_dir():
            index_dir = vdir / entry["index"]
        return cls.from_model_dir(vdir / entry["model"], dataset=dataset, index_dir=index_dir)

    # -------------------------------------------------------------- request parsing
    def user_index(self, user_id: Any) -> int:
        pos = self._user_pos.get_indexer([str(user_id)])[0]
        if pos < 0:
            raise ServingError(
                f"unknown user_id {user_id!r}: not in the user store of {self.dataset.name} "
                f"({len(self._user_pos)} users); pass raw features for a new user"
            )
        return int(pos)

    def _parse_interactions(self, interactions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (global item idx int64, event code int64, timestamp int64), each ``[n]``."""
        if interactions is None:
            return (np.zeros(0, np.int64),) * 3
        if isinstance(interactions, pd.DataFrame):
            cols = interactions
        elif isinstance(interactions, dict):
            cols = pd.DataFrame(interactions)
        else:
            rows = list(interactions)
            bad = [i for i, r in enumerate(rows) if not (isinstance(r, (tuple, list)) and len(r) == 3)]
            if bad:
                raise ServingError(f"interactions[{bad[0]}] = {rows[bad[0]]!r}: expected (item_id, event, timestamp)")
            cols = pd.DataFrame(rows, columns=["item_id", "event", "timestamp"])
        missing = [c for c in ("item_id", "event", "timestamp") if c not in cols.columns]
        if missing:
            raise ServingError(f"interactions lack field(s) {missing}; expected item_id, event, timestamp")
        item = self._item_pos.get_indexer(cols["item_id"].astype(str))
        if (item < 0).any():
            i = int(np.flatnonzero(item < 0)[0])
            raise ServingError(f"interactions[{i}].item_id {cols['item_id'].iloc[i]!r} is not in the catalogue")
        ev = pd.Categorical(cols["event"], categories=list(EVENTS)).codes.astype(np.int64)
        if (ev < 0).any():
            i = int(np.flatnonzero(ev < 0)[0])
            raise ServingError(f"interactions[{i}].event {cols['event'].iloc[i]!r} is not one of {list(EVENTS)}")
        ts = pd.to_numeric(cols["timestamp"], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(ts) | (ts < 0) | (ts != np.floor(ts))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ServingError(
                f"interactions[{i}].timestamp {cols['timestamp'].iloc[i]!r} is not a non-negative "
                "integer (Unix seconds)"
            )
        return item.astype(np.int64), ev, ts.astype(np.int64)

    def _parse_demographics(self, age: Any, country: Any, music: Any) -> tuple[int, str, np.ndarray, float]:
        if age is None:
            age = -1
        if isinstance(age, bool) or not isinstance(age, (int, np.integer)):
            raise ServingError(f"age must be an integer number of years (or None/-1 = unknown), got {age!r}")
        if age > F.MAX_AGE or age < -1:
            raise ServingError(f"age {age} is out of range [-1, {F.MAX_AGE}]")
        if country is None:
            country = ""
        if not isinstance(country, str):
            raise ServingError(f"country must be a string (e.g. 'SE'; '' = unknown), got {country!r}")
        d = self.result.vocab.d_music
        if music is None:
            return int(age), country, np.zeros(d, np.float32), 0.0
        try:
            m = np.asarray(music, np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise ServingError(f"music must be a vector of {d} floats, got {type(music).__name__}") from None
        if m.shape != (d,) or not np.isfinite(m).all():
            raise ServingError(
                f"music must be {d} finite floats, got shape {m.shape}"
                + ("" if np.isfinite(m).all() else " with NaN/inf")
            )
        return int(age), country, m, 1.0

    def _known_user(self, user_idx: int) -> tuple[int, str, np.ndarray, float, tuple[np.ndarray, ...]]:
        users = self.dataset.users
        music = None
        if self.result.vocab.d_music and self.dataset.music is not None:
            m = np.asarray(self.dataset.music[user_idx], np.float32)
            music = m if np.isfinite(m).all() else None
        age, country, mvec, has = self._parse_demographics(
            int(users["age"].iloc[user_idx]), str(users["country"].iloc[user_idx]), music
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
        keep = np.isin(ev, [EVENTS.index(e) for e in vocab.history_events])
        window = None if vocab.history_days is None else vocab.history_days * F.DAY_S
        log = (
            np.zeros(int(keep.sum()), np.int64),
            ts[keep],
            item[keep],
            self.dataset.item_type_codes()[item[keep]].astype(np.int64),
        )
        means, counts = F.history_means(*log, self.result.history_emb, np.zeros(1, np.int64), np.array([as_of]), window)
        ids = F.history_id_tokens(*log, np.zeros(1, np.int64), np.array([as_of]), window, vocab.id_history_len)
        return F.assemble_user_features(vocab, [age], [country], music[None, :], [has_music], means, counts, ids)

    def _resolve(self, user_id: Any, age: Any, country: Any, music: Any, interactions: Any, as_of: Any):
        if user_id is not None:
            if any(v is not None for v in (age, country, music, interactions)):
                raise ServingError("give either user_id or raw features (age, country, music, interactions), not both")
            a, c, m, h, log = self._known_user(self.user_index(user_id))
        else:
            a, c, m, h = self._parse_demographics(age, country, music)
            log = self._parse_interactions(interactions)
        if as_of is None:
            as_of = max(self.as_of, int(log[2].max()) + 1 if log[2].size else 0)
        elif isinstance(as_of, bool) or not isinstance(as_of, (int, np.integer)):
            raise ServingError(f"as_of must be integer Unix seconds, got {as_of!r}")
        return self._features(a, c, m, h, log, int(as_of)), log, int(as_of)

    def user_vector(
        self,
        user_id: Any = None,
        *,
        age: Any = None,
        country: Any = None,
        music: Any = None,
        interactions: Any = None,
        as_of: Any = None,
    ) -> np.ndarray:
        """float32 ``[d]`` user-tower output for a known user or raw features (module docstring)."""
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
        k: int = 10,
        exclude_consumed: bool = True,
        as_of: Any = None,
    ) -> list[tuple[str, str, float]]:
        """Top-``k`` ``(item_id, title, score)`` of the target type, best first.

        ``exclude_consumed`` drops the target-type items the user streamed before ``as_of`` (weak
        signals are kept: a previewed audiobook is a good recommendation).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ServingError(f"k must be a positive integer, got {k!r}")
        feats, (item, ev, ts), as_of = self._resolve(user_id, age, country, music, interactions, as_of)
        u = encode_chunked(self.result.model_cfg, self.result.params, feats, "user", chunk=1)
        exclude = None
        if exclude_consumed:
            seen = item[(ev == EVENTS.index("stream")) & (ts < as_of) & (item >= self.start) & (item < self.stop)]
            exclude = ExcludeCSR.from_lists([np.unique(seen - self.start)])
        scores, rows = self.index.search(u, int(k), exclude)
        ok = rows[0] >= 0
        glob = rows[0][ok] + self.start
        return [(str(self._item_ids[g]), str(self._titles[g]), float(s)) for g, s in zip(glob, scores[0][ok])]
