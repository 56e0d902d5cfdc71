"""The model export format and the self-contained export of a pipeline version.

**Model directory** (``save_model(result, ds, dir)``; written whole into a temporary sibling and renamed
onto ``dir``, so a reader sees the old model or the complete new one; files 0644, folders 0755):

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
    index/              retrieval index over the item-tower vectors, with ``item_ids.parquet`` (row i of
                        the index = that item id)

**Export folder** of a version (``<version>/export/``, the pipeline's export stage; everything needed to
serve, nothing read from the rest of the run folder; ``Recommender.load(export_dir)``):

    MANIFEST.json       format, version, dataset, package version, the data's item types (global id
                        order), per target type the model folder, the index kind and its recall@k
                        measured at export time against exact search
    <target type>/      a model directory (above) per served target type, index of the configured kind
    item_ids.parquet    item_id, item_type of every item (rows of hgnn_embeddings.npy)
    hgnn_embeddings.npy float32 [n_items, d] HGNN item embeddings
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from flax import traverse_util

from twotower_hgnn import features as F
from twotower_hgnn.data.schema import EVENTS, Dataset, item_type_order
from twotower_hgnn.io import atomic_dir, atomic_write_parquet
from twotower_hgnn.models.encode import item_vectors, user_vectors
from twotower_hgnn.models.two_tower import TwoTowerConfig
from twotower_hgnn.retrieval import exact_topk, make_index, resolve_index_kind
from twotower_hgnn.serving_requests import ServingError
from twotower_hgnn.train.two_tower import TwoTowerResult, TwoTowerTrainConfig

FORMAT = "twotower_hgnn.two_tower/v1"
EXPORT_FORMAT = "twotower_hgnn.export/v2"
MODEL_FILES = ("model.json", "params.npz", "item_table.npz", "history_emb.npy", "items.parquet")
STORE_FILES = ("users.parquet", "music.npy", "interactions.parquet")


def snapshot_time(ds: Dataset) -> int:
    ts = ds.interactions["timestamp"]
    return int(ts.max()) + 1 if len(ts) else 0


def _write_serving_log(ds: Dataset, result: TwoTowerResult, as_of: int, path: Path, chunk_rows: int = 1 << 24) -> int:
    """Writes the rows needed to serve as of ``as_of`` (the history window plus all target-type streams:
    the exclusions) to ``path`` as Parquet, ``chunk_rows`` log rows at a time (memory: one chunk, not a
    copy of the log: ~275M rows before the cut at the paper's scale). Returns the rows written."""
    import pyarrow as pa

    df = ds.interactions
    cols = {c: df[c].to_numpy() for c in ("user_idx", "item_idx", "timestamp", "event_code")}
    start, stop = F.target_item_range(ds, result.cfg.target_type)
    days = result.vocab.history_days
    since = None if days is None else as_of - int(np.ceil(days * F.DAY_S))
    stream, n = EVENTS.index("stream"), 0
    with pq.ParquetWriter(path, pa.schema([(c, pa.from_numpy_dtype(v.dtype)) for c, v in cols.items()])) as w:
        for a in range(0, max(len(df), 1), int(chunk_rows)):
            part = {c: v[a : a + int(chunk_rows)] for c, v in cols.items()}
            item = part["item_idx"]
            keep = (part["event_code"] == stream) & (item >= start) & (item < stop)
            if since is None:
                keep[:] = True
            else:
                keep |= part["timestamp"] >= since
            w.write_table(pa.table({c: v[keep] for c, v in part.items()}))
            n += int(keep.sum())
    return n


def save_index(index: Any, item_ids: np.ndarray, path: Path) -> Path:
    """``index.save(path)`` with ``item_ids.parquet`` (row i of the index = item_ids[i]) beside the vectors."""
    index.save(path)
    atomic_write_parquet(pd.DataFrame({"item_id": np.asarray(item_ids).astype(str)}), path / "item_ids.parquet")
    return path


def save_model(
    result: TwoTowerResult,
    ds: Dataset,
    directory: str | os.PathLike,
    with_store: bool = True,
    index_kind: str = "exact",
    **index_kw: Any,
) -> Path:
    """Writes the model directory (module docstring) atomically; returns the directory.

    ``index_kind`` / ``index_kw`` go to ``retrieval.make_index`` (exact by default: the audiobook
    catalogue is small and the paper serves it by brute force; approximate kinds need enough items to
    train on).
    """
    as_of = snapshot_time(ds)
    flat = traverse_util.flatten_dict(result.params, sep="/")
    iv, gids = item_vectors(result)
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
            _write_serving_log(ds, result, as_of, d / "interactions.parquet")
        item_ids = ds.items["item_id"].to_numpy()[gids]
        save_index(make_index(index_kind, iv, **index_kw), item_ids, d / "index")
        (d / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return Path(directory)


def read_meta(directory: Path) -> dict:
    path = directory / "model.json"
    if not path.is_file():
        raise ServingError(f"{directory} is not an exported two-tower model: {path.name} is missing")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ServingError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ServingError(
            f"{path}: format {meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r}"
        )
    return meta


def load_model(directory: str | os.PathLike) -> TwoTowerResult:
    """Reads the model part of an export (params, configs, vocabularies, item table, history table)."""
    directory = Path(directory)
    meta = read_meta(directory)
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


def store_user_count(directory: Path) -> int:
    """The number of users in a model directory's user store (``users.parquet``'s footer; nothing else read)."""
    try:
        return int(pq.ParquetFile(directory / "users.parquet").metadata.num_rows)
    except (OSError, ValueError) as e:
        raise ServingError(f"{directory}: unreadable user store ({e})") from None


def store_dataset(directory: Path, meta: dict, only_users: np.ndarray | None = None) -> Dataset:
    """The serving store of a model directory as a Dataset (items, users, music, the kept log).

    ``only_users``: user rows whose log rows are read (the others' are left on disk; every user stays in
    the users table, so user rows keep their meaning): the export's recall queries need 1,000 users' history,
    not a log of ~250M rows at the paper's scale."""
    if not meta.get("has_store"):
        raise ServingError(f"{directory} was exported without a user store; pass dataset=...")
    try:
        items = pd.read_parquet(directory / "items.parquet")
        users = pd.read_parquet(directory / "users.parquet")
        rows = None if only_users is None else [("user_idx", "in", [int(u) for u in only_users])]
        inter = pd.read_parquet(directory / "interactions.parquet", filters=rows)
        music = np.load(directory / "music.npy") if (directory / "music.npy").is_file() else None
    except (OSError, ValueError) as e:
        raise ServingError(f"{directory}: unreadable user store ({e})") from None
    types = item_type_order(pd.unique(items["item_type"]))  # the rule that ordered the rows when trained
    codes = pd.Categorical(items["item_type"], categories=list(types)).codes
    if (codes < 0).any() or (np.diff(codes) < 0).any():
        raise ServingError(f"{directory}/items.parquet: items are not ordered by type {list(types)}; re-export")
    counts = {t: int((codes == i).sum()) for i, t in enumerate(types)}
    return Dataset(
        name=str(meta.get("dataset", "export")),
        items=items,
        users=users,
        interactions=inter,
        item_type_counts=counts,
        music=music,
        meta={"as_of": meta["as_of"]},
    )


# ---------------------------------------------------------------------------------- version export
def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows it (model files are immutable once written: a rerun
    replaces its folder, the export keeps the old inode), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def measure_recall(index: Any, queries: np.ndarray, vectors: np.ndarray, k: int = 100) -> dict:
    """recall@k of ``index`` against exact search over ``vectors`` for ``queries`` ``[Q, d]``."""
    k = int(min(k, vectors.shape[0]))
    if len(queries) == 0:
        return {"k": k, "queries": 0, "recall": None}
    _, got = index.search(queries, k)
    want = exact_topk(queries, vectors, k)
    hits = sum(len(set(g[g >= 0].tolist()) & set(w.tolist())) for g, w in zip(got, want))
    return {"k": k, "queries": int(len(queries)), "recall": round(hits / (k * len(queries)), 6)}


def export_model(
    model_dir: str | os.PathLike,
    dest: str | os.PathLike,
    index: str = "exact",
    recall_queries: int = 1000,
    seed: int = 0,
) -> dict:
    """Copies a model directory to ``dest`` with an index of kind ``index`` (``retrieval.resolve_index_kind``:
    ``exact``, ``ivf``, ``auto`` or a concrete kind); returns the manifest entry (kind, recall@100 measured
    on the user vectors of up to ``recall_queries`` users of the store, as of the snapshot time)."""
    src, dest = Path(model_dir), Path(dest)
    meta = read_meta(src)
    result = load_model(src)
    iv, gids = item_vectors(result)
    kind = resolve_index_kind(index, iv.shape[0])
    with atomic_dir(dest) as d:
        for name in MODEL_FILES + STORE_FILES:
            if (src / name).is_file():
                _link_or_copy(src / name, d / name)
        item_ids = pd.read_parquet(d / "items.parquet", columns=["item_id"])["item_id"].to_numpy()[gids]
        idx = make_index(kind, iv, seed=seed) if kind != "exact" else make_index(kind, iv)
        save_index(idx, item_ids, d / "index")
        queries = np.zeros((0, iv.shape[1]), np.float32)
        n_users = pq.ParquetFile(d / "users.parquet").metadata.num_rows if meta.get("has_store") else 0
        if n_users:
            rng = np.random.default_rng(seed)
            users = np.sort(rng.choice(n_users, min(recall_queries, n_users), replace=False))
            ds = store_dataset(d, meta, only_users=users)  # only the query users' log rows are read
            queries = user_vectors(result, ds, ds.interactions, users, int(meta["as_of"]))
        entry = {
            "items": int(iv.shape[0]),
            "index": {"kind": kind, "requested": index, **measure_recall(idx, queries, iv)},
        }
    return entry
