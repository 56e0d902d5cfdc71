"""The synthetic generator (:mod:`.synthetic`) written to Parquet chunk by chunk: never the whole log in memory.

Topics and items are drawn once (items fit in memory: 3.75M rows at the ``paper`` scale); users are drawn
in chunks of ``chunk_users``, and each chunk's engagements and events are written before the next chunk
is drawn, so peak memory follows ``chunk_users`` and the item count, not ``n_users``. Layout of ``out_dir``:

* ``items.parquet``: row ``i`` is item ``i`` (audiobooks first): item_id, item_type, title, description,
  language, genre (the items schema, :mod:`.schema`).
* ``item_vectors.npy``: float32 ``[n_items, content_dim]`` (``np.load(..., mmap_mode="r")``); absent when
  ``content_dim == 0``.
* ``users/part-CCCCC.parquet``: chunk ``C``'s users in order (user ``j`` of the data is row ``j`` over the
  parts in order): user_id, age, country, music_0 .. music_{d-1}.
* ``interactions/day=N/part-0.parquet``: the log in the layout of
  :func:`twotower_hgnn.logs.tables.write_interactions` (hive partition ``day = timestamp // 86400``;
  columns row_id, user_idx, item_idx, event_code, timestamp), so ``DuckDBEngine.register_parquet`` and
  the log queries read it as written. ``row_id`` is the row's position in the whole log ordered by
  (timestamp, user_idx, item_idx, event_code), as in ``Dataset.interactions``.
* ``staging/day=N/part-CCCCC.parquet``: while writing, each chunk's rows of day ``N``; once every chunk is
  written each day is read (one day of the log in memory), ordered, numbered and written to
  ``interactions/``, and its staging folder removed.
* ``manifest.json``: scale, seed, config, ``chunk_users``, per chunk its users and rows per day, per final
  file its rows, bytes and digest (BLAKE2b, :func:`twotower_hgnn.provenance.file_digest`), and
  ``complete``. It is rewritten atomically after each step and says ``complete: true`` only after the
  last file: a half-written folder is detectable, and running again with the same arguments resumes
  (items, chunks and days already listed are skipped; a different scale, seed or ``chunk_users`` in the
  same folder is an error).

**Randomness.** Topics, items, text and content vectors use the in-memory generator's streams, so
``items.parquet`` and ``item_vectors.npy`` equal ``generate(scale, seed)``'s whatever ``chunk_users``. With
one chunk (``chunk_users >= n_users``) the users, engagements and events streams are also
``generate``'s: the output is the same dataset (a test checks it). With several chunks, chunk ``c`` draws
its users, engagements and events on ``np_rng(seed, "synthetic", <step>, "chunk", c)``: a different draw
from the same calibrated model (each chunk scales its activity to ``mean_interactions``), deterministic for
a given ``(scale, seed, chunk_users)`` and independent of the order or the number of runs that wrote it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from twotower_hgnn.data import synthetic as syn
from twotower_hgnn.data.schema import EVENTS, Dataset
from twotower_hgnn.errors import DataError
from twotower_hgnn.io import _umask, atomic_write_json, atomic_write_stream
from twotower_hgnn.provenance import file_digest
from twotower_hgnn.rng import np_rng

FORMAT = "twotower_hgnn.synthetic_parquet/1"
MANIFEST = "manifest.json"
DEFAULT_CHUNK_USERS = 200_000
VECTOR_BLOCK = 1 << 18  # item rows per block of content vectors
MANIFEST_EVERY_S = 10.0  # while ordering the days: the manifest is rewritten at most this often


def chunk_ranges(n_users: int, chunk_users: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` user ranges of the chunks: ``chunk_users`` each, the last one shorter."""
    if int(chunk_users) < 1:
        raise ValueError(f"chunk_users must be >= 1, got {chunk_users}")
    c = int(chunk_users)
    return [(lo, min(lo + c, n_users)) for lo in range(0, n_users, c)]


def chunk_rng(seed: int, step: str, chunk: int, n_chunks: int) -> np.random.Generator:
    """The stream of ``step`` ("users", "engagements", "events") for chunk ``chunk`` of ``n_chunks``: the
    in-memory generator's own stream when there is one chunk, else one derived from the chunk index."""
    if n_chunks == 1:
        return np_rng(seed, "synthetic", step)
    return np_rng(seed, "synthetic", step, "chunk", int(chunk))


def _id_strings(prefix: str, lo: int, hi: int, n: int) -> np.ndarray:
    """Ids ``prefix0000123`` of rows ``lo..hi`` of ``n`` (the width of :func:`synthetic._ids`)."""
    width = max(1, len(str(max(n - 1, 0))))
    return np.char.add(prefix, np.char.zfill(np.arange(lo, hi).astype(f"U{width}"), width))


def _write_parquet(table: pa.Table, path: Path, durable: bool = True) -> None:
    """``table`` to ``path`` through a same-folder temporary; ``durable``: fsynced (:mod:`twotower_hgnn.io`),
    else only renamed (staging parts: temporary, recounted against the manifest before use)."""
    if durable:
        atomic_write_stream(path, lambda f: pq.write_table(table, f, compression="zstd"))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def _entry(out: Path, rel: str, rows: int, digest: bool) -> dict:
    p = out / rel
    return {"rows": int(rows), "bytes": p.stat().st_size, "digest": file_digest(p) if digest else None}


def _identity(cfg: syn.SyntheticConfig, seed: int, chunk_users: int) -> dict:
    ident = {"format": FORMAT, "config": dataclasses.asdict(cfg), "seed": int(seed), "chunk_users": int(chunk_users)}
    return json.loads(json.dumps(ident))


def _items_arrow(cfg: syn.SyntheticConfig, seed: int, topics: syn._Topics, items: syn._Items) -> pa.Table:
    n = items.item_topic.shape[0]
    ids = np.concatenate(
        [_id_strings("ab", 0, cfg.n_audiobooks, cfg.n_audiobooks), _id_strings("pc", 0, cfg.n_podcasts, cfg.n_podcasts)]
    )
    cols = syn._items_columns(np_rng(seed, "synthetic", "text"), cfg, topics, items.item_topic)
    assert ids.shape[0] == n
    return pa.table(
        {
            "item_id": pa.array(ids, pa.string()),
            "item_type": pa.array(cols["item_type"], pa.string()).dictionary_encode(),
            "title": pa.array(cols["title"], pa.string()),
            "description": pa.array(cols["description"], pa.string()),
            "language": pa.array(cols["language"], pa.string()).dictionary_encode(),
            "genre": pa.array(cols["genre"], pa.string()).dictionary_encode(),
        }
    )


def _write_vectors(path: Path, cfg: syn.SyntheticConfig, seed: int, topics: syn._Topics, items: syn._Items) -> None:
    """``item_vectors.npy`` in blocks of items on the ``content`` stream (its draws are sequential, so the
    blocks equal ``generate``'s one call), through a same-folder temporary renamed at the end."""
    n = items.item_topic.shape[0]
    rc = np_rng(seed, "synthetic", "content")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, cfg.content_dim))
        for lo in range(0, n, VECTOR_BLOCK):
            hi = min(lo + VECTOR_BLOCK, n)
            arr[lo:hi] = syn._content_vectors(rc, cfg, topics.direction, items.item_topic[lo:hi])
        arr.flush()
        del arr
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_items(out: Path, cfg, seed: int, topics, items, digest: bool) -> dict:
    _write_parquet(_items_arrow(cfg, seed, topics, items), out / "items.parquet")
    files = {"items.parquet": _entry(out, "items.parquet", items.item_topic.shape[0], digest)}
    if cfg.content_dim > 0:
        _write_vectors(out / "item_vectors.npy", cfg, seed, topics, items)
        files["item_vectors.npy"] = _entry(out, "item_vectors.npy", items.item_topic.shape[0], digest)
    return files


def _users_arrow(cfg: syn.SyntheticConfig, users: syn._Users, lo: int, hi: int) -> pa.Table:
    countries = np.array([c for c, _ in syn.COUNTRIES])
    cols = {
        "user_id": pa.array(_id_strings("u", lo, hi, cfg.n_users), pa.string()),
        "age": pa.array(users.age.astype(np.int64)),
        "country": pa.array(countries[users.country_idx], pa.string()),
    }
    for k in range(users.music.shape[1]):
        cols[f"music_{k}"] = pa.array(np.ascontiguousarray(users.music[:, k]))
    return pa.table(cols)


def _write_chunk(
    out: Path, cfg, seed: int, c: int, bounds: tuple[int, int], n_chunks: int, topics, items, draw, digest
):
    """Draws chunk ``c``'s users, engagements and events; writes its users part and its staging rows per day.
    Returns the chunk's manifest entry."""
    lo, hi = bounds
    users = syn._gen_users(chunk_rng(seed, "users", c, n_chunks), cfg, topics, hi - lo)
    eng = syn._gen_engagements(chunk_rng(seed, "engagements", c, n_chunks), cfg, topics, items, users, draw)
    ev, e_user, e_item, e_time = syn._gen_events(chunk_rng(seed, "events", c, n_chunks), cfg, eng)
    del eng
    rel_users = f"users/part-{c:05d}.parquet"
    _write_parquet(_users_arrow(cfg, users, lo, hi), out / rel_users)
    day = e_time // syn.DAY
    order = np.argsort(day, kind="stable")
    day = day[order]
    cols = {
        "user_idx": (e_user[order] + lo).astype(np.int32),
        "item_idx": e_item[order].astype(np.int32),
        "event_code": ev[order].astype(np.int8),
        "timestamp": e_time[order].astype(np.int64),
    }
    del ev, e_user, e_item, e_time, order
    days, starts = np.unique(day, return_index=True)
    ends = np.append(starts[1:], day.shape[0])
    per_day = {}
    for d, a, b in zip(days.tolist(), starts.tolist(), ends.tolist()):
        table = pa.table({k: v[a:b] for k, v in cols.items()})
        _write_parquet(table, out / "staging" / f"day={d}" / f"part-{c:05d}.parquet", durable=False)
        per_day[str(d)] = int(b - a)
    return {
        "users": [lo, hi],
        "interactions": int(day.shape[0]),
        "days": per_day,
        "files": {rel_users: _entry(out, rel_users, hi - lo, digest)},
    }


def _finalize_day(out: Path, d: int, n_chunks: int, offset: int, expected: int, digest: bool) -> dict:
    """Day ``d``'s staging parts (one per chunk with rows that day) -> ``interactions/day=d/part-0.parquet``
    ordered by (timestamp, user_idx, item_idx, event_code), ``row_id`` from ``offset``."""
    folder = out / "staging" / f"day={d}"
    parts = sorted(folder.glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None
    if table is None or table.num_rows != expected:
        got = 0 if table is None else table.num_rows
        raise DataError(f"{folder}: {got} staged rows, the manifest's chunks list {expected} (remove {out} and rerun)")
    cols = {k: table.column(k).to_numpy() for k in ("user_idx", "item_idx", "event_code", "timestamp")}
    del table
    order = np.lexsort((cols["event_code"], cols["item_idx"], cols["user_idx"], cols["timestamp"]))
    final = {"row_id": np.arange(offset, offset + expected, dtype=np.int64)}
    final.update({k: v[order] for k, v in cols.items()})
    rel = f"interactions/day={d}/part-0.parquet"
    _write_parquet(pa.table(final), out / rel)
    return {"rows": expected, "row_id_start": int(offset), "files": {rel: _entry(out, rel, expected, digest)}}


def _finalize(out: Path, man: dict, digest: bool, log: Callable[[str], None]) -> None:
    totals: dict[int, int] = {}
    for ch in man["chunks"].values():
        for d, n in ch["days"].items():
            totals[int(d)] = totals.get(int(d), 0) + int(n)
    offset, pending, last = 0, [], time.monotonic()

    def flush():  # the manifest lists the finished days first, then their staging parts go
        atomic_write_json(out / MANIFEST, man)
        for day in pending:
            shutil.rmtree(out / "staging" / f"day={day}", ignore_errors=True)
        pending.clear()

    for d in sorted(totals):
        if str(d) not in man["days"]:
            man["days"][str(d)] = _finalize_day(out, d, man["n_chunks"], offset, totals[d], digest)
        pending.append(d)
        offset += totals[d]
        if time.monotonic() - last > MANIFEST_EVERY_S:
            flush()
            last = time.monotonic()
    flush()
    shutil.rmtree(out / "staging", ignore_errors=True)
    log(f"interactions: {offset:,} rows in {len(totals)} day partitions")


def _start_manifest(out: Path, cfg, seed: int, chunk_users: int, n_chunks: int) -> dict:
    """The folder's manifest to resume from (same identity), or a new one; a different dataset is an error."""
    ident = _identity(cfg, seed, chunk_users)
    path = out / MANIFEST
    if path.exists():
        man = json.loads(path.read_text())
        if {k: man.get(k) for k in ident} != ident:
            raise DataError(
                f"{out} holds another synthetic dataset (manifest: scale {man.get('scale')!r}, seed {man.get('seed')}, "
                f"chunk_users {man.get('chunk_users')}); write to a new folder or remove it"
            )
        return man
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} is not empty and has no {MANIFEST}: write to a new or empty folder")
    return {**ident, "scale": cfg.name, "n_chunks": n_chunks, "meta": syn._dataset_meta(cfg, seed), "complete": False}


def write_synthetic(
    cfg_or_scale: syn.SyntheticConfig | str,
    seed: int,
    out_dir: str | os.PathLike,
    chunk_users: int = DEFAULT_CHUNK_USERS,
    digest: bool = True,
    log: Callable[[str], None] | None = None,
    **overrides,
) -> dict:
    """Writes (or resumes writing) the synthetic dataset as chunked Parquet under ``out_dir`` (module
    docstring); returns the manifest. ``digest``: record each final file's BLAKE2b (off: sizes only)."""
    cfg = syn._resolve_config(cfg_or_scale, overrides)
    log = log or (lambda msg: None)
    out = Path(out_dir)
    ranges = chunk_ranges(cfg.n_users, chunk_users)
    man = _start_manifest(out, cfg, seed, chunk_users, len(ranges))
    if man.get("complete"):
        log(f"{out}: complete, nothing to do")
        return man
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MANIFEST).exists():  # first: a folder interrupted at any later point is resumable
        atomic_write_json(out / MANIFEST, man)
    t0 = time.perf_counter()
    topics = syn._gen_topics(np_rng(seed, "synthetic", "topics"), cfg)
    items = syn._gen_items(np_rng(seed, "synthetic", "items"), cfg, topics.p)
    if "items" not in man:
        man["items"] = _write_items(out, cfg, seed, topics, items, digest)
        man.setdefault("chunks", {})
        man.setdefault("days", {})
        atomic_write_json(out / MANIFEST, man)
        log(f"items: {items.item_topic.shape[0]:,} rows ({time.perf_counter() - t0:.1f} s)")
    draw = syn._ItemDraw.build(cfg, topics, items)
    for c, bounds in enumerate(ranges):
        if str(c) in man["chunks"]:
            continue
        man["chunks"][str(c)] = _write_chunk(out, cfg, seed, c, bounds, len(ranges), topics, items, draw, digest)
        atomic_write_json(out / MANIFEST, man)
        n = man["chunks"][str(c)]["interactions"]
        log(
            f"chunk {c + 1}/{len(ranges)}: users {bounds[0]:,}..{bounds[1]:,}, {n:,} rows ({time.perf_counter() - t0:.1f} s)"
        )
    del draw, items
    _finalize(out, man, digest, log)
    man["rows"] = {
        "items": cfg.n_audiobooks + cfg.n_podcasts,
        "users": cfg.n_users,
        "interactions": sum(int(d["rows"]) for d in man["days"].values()),
    }
    man["complete"] = True  # the last write: a folder without it is incomplete
    atomic_write_json(out / MANIFEST, man)
    log(f"{out}: complete ({time.perf_counter() - t0:.1f} s this run)")
    return man


def final_files(man: Mapping) -> dict[str, dict]:
    """Relative path -> entry of every file of a complete output (items, vectors, users parts, day files)."""
    files = dict(man["items"])
    for part in (man["chunks"], man["days"]):
        for v in part.values():
            files.update(v["files"])
    return files


def read_manifest(out_dir: str | os.PathLike, verify: bool = False) -> dict:
    """The manifest of a complete output; ``verify``: every listed file's size and digest rechecked."""
    out = Path(out_dir)
    path = out / MANIFEST
    if not path.exists():
        raise DataError(f"{out}: no {MANIFEST} (not a synthetic Parquet output, or not started)")
    man = json.loads(path.read_text())
    if man.get("format") != FORMAT or not man.get("complete"):
        raise DataError(f"{out}: incomplete synthetic Parquet output (run write_synthetic again to resume)")
    if verify:
        for rel, e in final_files(man).items():
            p = out / rel
            if not p.exists() or p.stat().st_size != e["bytes"] or (e["digest"] and file_digest(p) != e["digest"]):
                raise DataError(f"{p}: missing or changed since it was written (manifest {e})")
    return man


LOG_DTYPES = {"user_idx": np.int32, "item_idx": np.int32, "event_code": np.int8, "timestamp": np.int64}


def _read_log(out: Path, man: Mapping) -> dict[str, np.ndarray]:
    """The whole log as NumPy columns (:data:`LOG_DTYPES`), read one day file at a time into arrays sized
    from the manifest: peak memory is the columns plus one day, not the columns twice or more (an
    Arrow table of every day, then its NumPy copy)."""
    days = sorted(man["days"], key=int)
    n = sum(int(man["days"][d]["rows"]) for d in days)
    col = {k: np.empty(n, dtype=t) for k, t in LOG_DTYPES.items()}
    at = 0
    for d in days:
        t = pq.read_table(out / f"interactions/day={d}/part-0.parquet", columns=list(LOG_DTYPES))
        m = t.num_rows
        if m != int(man["days"][d]["rows"]):
            raise DataError(f"{out}/interactions/day={d}: {m} rows, the manifest lists {man['days'][d]['rows']}")
        for k in LOG_DTYPES:
            col[k][at : at + m] = t.column(k).to_numpy()
        at += m
    return col


def load_dataset(out_dir: str | os.PathLike, verify: bool = False) -> Dataset:
    """A complete output read back into memory as a :class:`Dataset` (small scales, tests): the tables of
    ``generate`` (``truth`` is not written, so None)."""
    out = Path(out_dir)
    man = read_manifest(out, verify)
    items = pq.read_table(out / "items.parquet").to_pandas()
    for k in items.columns:
        items[k] = items[k].astype(object)
    items["item_id"] = pd.arrays.ArrowStringArray(pa.array(items["item_id"].to_numpy().astype(str)))
    parts = [pq.read_table(out / f"users/part-{c:05d}.parquet") for c in range(man["n_chunks"])]
    ut = pa.concat_tables(parts)
    music_cols = [k for k in ut.column_names if k.startswith("music_")]
    music = np.stack([ut.column(k).to_numpy() for k in music_cols], axis=1) if music_cols else None
    users = pd.DataFrame(
        {
            "user_id": pd.arrays.ArrowStringArray(ut.column("user_id").combine_chunks()),
            "age": ut.column("age").to_numpy(),
            "country": ut.column("country").to_numpy(zero_copy_only=False).astype(object),
        }
    )
    col = _read_log(out, man)
    # copy=False: the id columns' codes are the index columns themselves (int32 / int8 codes are used as
    # given), so the frame holds each log column once (18 bytes a row)
    inter = pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(col["user_idx"], categories=pd.Index(users["user_id"])),
            "item_id": pd.Categorical.from_codes(col["item_idx"], categories=pd.Index(items["item_id"])),
            "timestamp": col["timestamp"],
            "event": pd.Categorical.from_codes(col["event_code"], categories=list(EVENTS)),
            "user_idx": col["user_idx"],
            "item_idx": col["item_idx"],
            "event_code": col["event_code"],
        },
        copy=False,
    )
    vec_path = out / "item_vectors.npy"
    cfg = man["config"]
    return Dataset(
        name=f"synthetic-{man['scale']}",
        items=items,
        users=users,
        interactions=inter,
        item_type_counts={"audiobook": int(cfg["n_audiobooks"]), "podcast": int(cfg["n_podcasts"])},
        music=music,
        # memory-mapped (read-only): the content stage reads them once; ~1 GB at the paper's 3.75M items
        item_vectors=np.load(vec_path, mmap_mode="r") if vec_path.exists() else None,
        meta={
            **man["meta"],
            "parquet_dir": str(out),
            "parquet_rows": int(len(col["timestamp"])),
            "chunk_users": man["chunk_users"],
        },
    )
