"""Batch top-K for every user of a served model, streamed to Parquet in chunks of users.

``batch_recommend(rec, path, k)`` writes ``user_id, rank, item_id, score`` (rank 1 = best; at most ``k``
rows per user, fewer where the user streamed most of the catalogue) for every user of the recommender's
store, as of the store's snapshot time, with the same features and exclusions as
``Recommender.recommend(user_id=...)``. Users are processed ``chunk_users`` at a time: one contiguous
slice of the user-sorted log, one feature bundle, one index search, one Parquet row group; nothing grows
with the number of users beyond the store itself. The file is written atomically (a reader sees no file
or the complete one).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twotower_hgnn.arrays import sorted_unique
from twotower_hgnn import features as F
from twotower_hgnn.data.schema import EVENTS, event_mask
from twotower_hgnn.io import atomic_write_stream
from twotower_hgnn.models.encode import encode_chunked
from twotower_hgnn.retrieval import ExcludeCSR
from twotower_hgnn.serving_requests import ServingError, check_bool, check_int, check_k, check_timestamp

SCHEMA = pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()), ("score", pa.float32())])


def _log_rows(rec: Any, users: np.ndarray) -> dict[str, np.ndarray]:
    """The recommender's user-sorted log rows of the sorted ``users`` (a contiguous slice for a range)."""
    log_users = rec._log["user_idx"]
    if users.size and users[-1] - users[0] + 1 == users.size:  # a range of rows: one slice
        lo, hi = np.searchsorted(log_users, [users[0], users[-1] + 1])
        return {c: v[lo:hi].astype(np.int64) for c, v in rec._log.items()}
    lo, hi = np.searchsorted(log_users, users), np.searchsorted(log_users, users, side="right")
    n = hi - lo
    idx = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(int(n.sum()))
    return {c: v[idx].astype(np.int64) for c, v in rec._log.items()}


def chunk_features(rec: Any, users: np.ndarray, as_of: int, log: dict | None = None) -> F.UserFeatures:
    """UserFeatures of the sorted user rows ``users`` as of ``as_of``: the serving path's features, many
    users at once (``log``: their rows, :func:`_log_rows`, when the caller has them already)."""
    users = np.asarray(users, dtype=np.int64)
    log = _log_rows(rec, users) if log is None else log
    vocab, ds = rec.result.vocab, rec.dataset
    keep = event_mask(log["event_code"], [EVENTS.index(e) for e in vocab.history_events])
    window = None if vocab.history_days is None else vocab.history_days * F.DAY_S
    item = log["item_idx"][keep]
    rows = (log["user_idx"][keep], log["timestamp"][keep], item, ds.item_type_codes()[item].astype(np.int64))
    q_time = np.full(len(users), as_of, np.int64)
    n_types = len(ds.item_types)
    means, counts = F.history_means(*rows, rec.result.history_emb, users, q_time, window, n_types)
    ids = F.history_id_tokens(*rows, users, q_time, window, vocab.id_history_len, n_types)
    if vocab.d_music and ds.music is not None:
        m = np.asarray(ds.music[users], np.float32)
        ok = np.isfinite(m).all(axis=1)  # a NaN row means "no music vector"
        music, has = np.where(ok[:, None], m, 0.0).astype(np.float32), ok.astype(np.float32)
    else:
        music, has = np.zeros((len(users), vocab.d_music), np.float32), np.zeros(len(users), np.float32)
    ages = ds.users["age"].to_numpy()[users].astype(np.int64)
    countries = ds.users["country"].iloc[users].astype(str).to_numpy()  # the chunk first: O(chunk), not O(users)
    return F.assemble_user_features(vocab, ages, countries, music, has, means, counts, ids)


def chunk_exclusions(rec: Any, users: np.ndarray, as_of: int, log: dict | None = None) -> ExcludeCSR:
    """Per user of the sorted ``users`` the target-type items streamed before ``as_of`` (index rows;
    ``log``: their rows, as in :func:`chunk_features`)."""
    users = np.asarray(users, dtype=np.int64)
    log = _log_rows(rec, users) if log is None else log
    item = log["item_idx"]
    seen = (
        (log["event_code"] == EVENTS.index("stream"))
        & (log["timestamp"] < as_of)
        & (item >= rec.start)
        & (item < rec.stop)
    )
    owners = log["user_idx"][seen]
    indptr = np.concatenate([np.searchsorted(owners, users), [owners.size]]).astype(np.int64)
    return ExcludeCSR(indptr, item[seen] - rec.start)


def chunk_table(rec: Any, users: np.ndarray, k: int, as_of: int, exclude_consumed: bool) -> pa.Table:
    """The top-``k`` rows of the sorted user rows ``users`` as an Arrow table of :data:`SCHEMA`."""
    users = np.asarray(users, dtype=np.int64)
    log = _log_rows(rec, users)  # gathered once for the features and the exclusions
    feats = chunk_features(rec, users, as_of, log)
    uv = encode_chunked(rec.result.model_cfg, rec.result.params, feats, "user")
    excl = chunk_exclusions(rec, users, as_of, log) if exclude_consumed else None
    scores, rows = rec.index.search(uv, k, excl)
    ok = rows >= 0
    user_rows = np.repeat(users, ok.sum(axis=1))
    ranks = np.broadcast_to(np.arange(1, k + 1, dtype=np.int32), rows.shape)[ok]  # survivors stay best-first
    glob = rows[ok] + rec.start
    return pa.table(
        {
            "user_id": pa.array(rec._user_pos[user_rows].to_numpy().astype(str), pa.string()),
            "rank": pa.array(ranks, pa.int32()),
            "item_id": pa.array(rec._item_ids[glob], pa.string()),
            "score": pa.array(scores[ok].astype(np.float32), pa.float32()),
        },
        schema=SCHEMA,
    )


def batch_recommend(
    rec: Any,
    path: str | os.PathLike,
    k: Any = 10,
    chunk_users: Any = 4096,
    exclude_consumed: Any = True,
    as_of: Any = None,
    progress: Callable[[int, int, float], None] | None = None,
    users: np.ndarray | None = None,
) -> dict:
    """Writes the top-``k`` of every user of ``rec``'s store to ``path`` (module docstring); returns a summary.

    ``users``: the user rows to score instead (unique; written in row order), e.g. a seeded sample
    (:func:`sample_rows`). ``progress(done_users, total_users, seconds)`` is called after each chunk."""
    k = min(check_k(k), rec.num_items)
    chunk_users = check_int(chunk_users, "chunk_users", 1, 1 << 20)
    exclude_consumed = check_bool(exclude_consumed, "exclude_consumed")
    as_of = rec.as_of if as_of is None else check_timestamp(as_of, "as_of")
    if rec.dataset.num_users == 0:
        raise ServingError(f"{rec.dataset.name}: the user store is empty; nothing to recommend")
    rows_of = np.arange(rec.dataset.num_users, dtype=np.int64) if users is None else sorted_unique(users)
    n_users = int(rows_of.size)
    t0, rows = time.perf_counter(), 0

    def write(f: Any) -> None:
        nonlocal rows
        with pq.ParquetWriter(f, SCHEMA, compression="zstd") as w:
            for u0 in range(0, n_users, chunk_users):
                u1 = min(u0 + chunk_users, n_users)
                table = chunk_table(rec, rows_of[u0:u1], k, as_of, exclude_consumed)
                w.write_table(table)
                rows += table.num_rows
                if progress is not None:
                    progress(u1, n_users, time.perf_counter() - t0)

    atomic_write_stream(path, write)
    return {
        "path": str(Path(path)),
        "users": n_users,
        "rows": rows,
        "k": k,
        "as_of": as_of,
        "seconds": time.perf_counter() - t0,
    }


def sample_rows(n_users: int, n: int, seed: int) -> np.ndarray | None:
    """Sorted user rows of a seeded sample of ``n`` of ``n_users`` users (``rng.np_rng(seed, "topk-sample")``),
    or None (every user) when ``n`` is 0 or at least ``n_users``."""
    from twotower_hgnn.rng import np_rng

    if n <= 0 or n >= n_users:
        return None
    return np.sort(np_rng(seed, "topk-sample").choice(n_users, size=n, replace=False)).astype(np.int64)


def console_progress(desc: str, enabled: bool | None = None) -> Callable[[int, int, float], None]:
    """A ``progress`` callback for :func:`batch_recommend` showing ``desc done/total (%) users/s ETA`` on the
    console (``tracking.Progress``: every few seconds, quiet unless a terminal or ``enabled``)."""
    from twotower_hgnn.tracking import Progress

    state: dict[str, Any] = {}

    def progress(done: int, total: int, seconds: float) -> None:
        if "p" not in state:
            state["p"] = Progress(total, desc=desc, unit="users", enabled=enabled, final="shown")
        p = state["p"]
        p.update(done - p.n)
        if done >= total:
            p.close()

    return progress


def batch_recommend_export(
    export_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    k: Any = 10,
    chunk_users: Any = 4096,
    progress: Any = None,
    sample: tuple[int, int] = (0, 0),
) -> dict:
    """Every served target type of an export folder: ``<out_dir>/top<k>-<target>.parquet`` (a pipeline stage's
    body: ``Recommender.load(export_dir, target)`` then :func:`batch_recommend`); returns per target the summary.
    ``progress``: a :func:`batch_recommend` callback, or ``"console"`` for :func:`console_progress` per target;
    ``sample``: (users, seed) of a seeded sample of the store's users (:func:`sample_rows`; 0 = every user)."""
    import json

    from twotower_hgnn.serving import Recommender, served_model_dir
    from twotower_hgnn.serving_export import store_user_count

    manifest = Path(export_dir) / "MANIFEST.json"
    try:
        served = sorted(json.loads(manifest.read_text())["served"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ServingError(f"{manifest}: not a readable export manifest ({e})") from None
    out = {}
    for target in served:
        n_users = store_user_count(served_model_dir(Path(export_dir), target))
        users = sample_rows(n_users, int(sample[0]), int(sample[1]))
        rec = Recommender.load(export_dir, target, only_users=users)  # a sample reads only its users' log rows
        path = Path(out_dir) / f"top{min(check_k(k), rec.num_items)}-{target}.parquet"
        prog = console_progress(f"[topk] {target}") if progress == "console" else progress
        out[target] = batch_recommend(rec, path, k=k, chunk_users=chunk_users, progress=prog, users=users)
    return out
