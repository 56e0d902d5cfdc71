"""The chunked Parquet writer of the synthetic generator (twotower_hgnn.data.synthetic_parquet): one chunk is
``generate()``'s dataset, several chunks keep its calibration, users are split disjointly, the files are what
the log queries read, and an interrupted run resumes chunk by chunk to the same bytes."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from twotower_hgnn.data import synthetic as syn
from twotower_hgnn.data import synthetic_parquet as sp
from twotower_hgnn.data.schema import EVENTS
from twotower_hgnn.errors import DataError
from twotower_hgnn.io import _umask
from twotower_hgnn.logs.colisten import colisten_edges
from twotower_hgnn.logs.counts import log_bounds, timestamp_at
from twotower_hgnn.logs.engines import DuckDBEngine
from twotower_hgnn.logs.tables import interactions_frame

COLS = ["timestamp", "user_idx", "item_idx", "event_code"]


@pytest.fixture(scope="module")
def tiny_gen():
    return syn.generate("tiny", seed=3)


@pytest.fixture(scope="module")
def one_chunk(tmp_path_factory, tiny_gen):
    out = tmp_path_factory.mktemp("one") / "tiny"
    sp.write_synthetic("tiny", 3, out, chunk_users=10**6)
    return out


def test_one_chunk_is_generate(one_chunk, tiny_gen):
    ds = sp.load_dataset(one_chunk, verify=True)
    g = tiny_gen
    pd.testing.assert_frame_equal(ds.items, g.items)
    pd.testing.assert_frame_equal(ds.users, g.users)
    assert np.array_equal(ds.music, g.music) and np.array_equal(ds.item_vectors, g.item_vectors)
    assert np.array_equal(ds.interactions[COLS].to_numpy(), g.interactions[COLS].to_numpy())
    assert ds.item_type_counts == g.item_type_counts
    assert {k: ds.meta[k] for k in ("start", "end", "split", "seed")} == {
        k: g.meta[k] for k in ("start", "end", "split", "seed")
    }
    vec = np.load(one_chunk / "item_vectors.npy", mmap_mode="r")  # memory-mappable as written
    assert vec.dtype == np.float32 and vec.shape == g.item_vectors.shape
    assert oct((one_chunk / "items.parquet").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_the_log_queries_read_the_parquet_as_the_in_memory_log(one_chunk, tiny_gen):
    """row_id is the position in the time-ordered log: the co-listening pairs (first row per user and item,
    sequence order) and the split's timestamp_at equal the in-memory table's."""
    eng_pq, eng_mem = DuckDBEngine(memory_limit="512MB", threads=1), DuckDBEngine(threads=1)
    try:
        eng_pq.register_parquet("inter", one_chunk / "interactions")
        eng_mem.register_frame("inter", interactions_frame(tiny_gen.interactions))
        n, mx = log_bounds(eng_pq)
        assert (n, mx) == log_bounds(eng_mem) == (len(tiny_gen.interactions), tiny_gen.interactions.timestamp.max())
        for pos in (0, n // 3, n - 1):
            assert timestamp_at(eng_pq, pos) == int(tiny_gen.interactions.timestamp.iloc[pos])
        stream = [EVENTS.index("stream")]
        a = colisten_edges(eng_pq, stream, "topk", 1, 5, window=10, cap=50)
        b = colisten_edges(eng_mem, stream, "topk", 1, 5, window=10, cap=50)
        assert a[0].size > 100 and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    finally:
        eng_pq.close()
        eng_mem.close()


def _top_share(counts: np.ndarray, frac: float) -> float:
    c = np.sort(counts)[::-1]
    return float(c[: max(1, int(round(frac * c.size)))].sum() / max(c.sum(), 1))


def test_chunks_are_calibrated_disjoint_complete_and_readable(tmp_path):
    out = tmp_path / "small"
    man = sp.write_synthetic("small", 5, out, chunk_users=5_000, digest=False)
    assert man["complete"] and man["n_chunks"] == 4 and not (out / "staging").exists()
    ds = sp.load_dataset(out)
    g = syn.generate("small", seed=5)
    a, b = syn.calibration(ds), syn.calibration(g)
    assert abs(a["mean_interactions_per_user"] / b["mean_interactions_per_user"] - 1) < 0.03, (a, b)
    for k in ("top20_audiobooks_stream_share", "top25_users_stream_share", "frac_users_with_audiobooks"):
        assert abs(a[k] - b[k]) < 0.03, (k, a[k], b[k])
    assert abs(a["frac_ab_users_streaming_podcasts"] - b["frac_ab_users_streaming_podcasts"]) < 0.05
    n_ab = ds.item_type_counts["audiobook"]
    share = [float((d.interactions.item_idx.to_numpy() < n_ab).mean()) for d in (ds, g)]
    assert abs(share[0] - share[1]) < 0.01, share  # audiobook share of the log
    pop = [_top_share(np.bincount(d.interactions.item_idx, minlength=d.num_items), 0.2) for d in (ds, g)]
    assert abs(pop[0] - pop[1]) < 0.03, pop
    assert not np.array_equal(ds.users.age, g.users.age)  # several chunks: another draw of the same model

    # users: the chunks' ranges partition [0, n); every user is in exactly one users part and has rows
    ranges = [tuple(man["chunks"][str(c)]["users"]) for c in range(4)]
    assert ranges == sp.chunk_ranges(20_000, 5_000)
    ids = np.concatenate(
        [pq.read_table(out / f"users/part-{c:05d}.parquet").column("user_id").to_numpy() for c in range(4)]
    )
    assert np.array_equal(ids.astype(str), syn._ids("u", 20_000).to_numpy().astype(str))
    u = ds.interactions.user_idx.to_numpy()
    assert np.array_equal(np.unique(u), np.arange(20_000))
    per_chunk = np.bincount(u // 5_000, minlength=4)
    assert per_chunk.tolist() == [man["chunks"][str(c)]["interactions"] for c in range(4)]
    # ordered by (timestamp, user, item, event), row_id = position
    key = ds.interactions[COLS].to_numpy()
    assert (np.diff(key[:, 0]) >= 0).all()

    eng = DuckDBEngine(memory_limit="512MB", threads=1)
    try:
        eng.register_parquet("inter", out / "interactions", where="day >= 19600")
        got = eng.fetch(
            "SELECT COUNT(*) AS n, MIN(row_id) AS lo, MAX(row_id) AS hi, COUNT(DISTINCT day) AS d FROM inter"
        )
        eng.register_parquet("inter", out / "interactions")
        every = eng.fetch("SELECT COUNT(*) AS n, COUNT(DISTINCT row_id) AS r, MAX(row_id) AS hi FROM inter")
    finally:
        eng.close()
    days = {int(d): v["rows"] for d, v in man["days"].items()}
    assert int(got["n"][0]) == sum(n for d, n in days.items() if d >= 19600) and int(got["d"][0]) == 90 - 61
    assert int(every["n"][0]) == int(every["r"][0]) == len(ds.interactions) == man["rows"]["interactions"]
    assert int(every["hi"][0]) == len(ds.interactions) - 1


def test_an_interrupted_run_resumes_to_the_same_files(tmp_path, monkeypatch):
    whole = sp.write_synthetic("tiny", 7, tmp_path / "whole", chunk_users=300)
    real = sp._write_chunk
    calls, crash = [], [True]

    def crash_on_third(out, cfg, seed, c, *args):
        calls.append(c)
        if c == 2 and crash[0]:
            raise RuntimeError("killed")
        return real(out, cfg, seed, c, *args)

    real_vectors = sp._write_vectors

    def disk_full(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sp, "_write_vectors", disk_full)  # items.parquet written, the vectors not
    with pytest.raises(RuntimeError, match="disk full"):
        sp.write_synthetic("tiny", 7, tmp_path / "cut", chunk_users=300)
    assert (tmp_path / "cut" / "items.parquet").exists() and "items" not in json.loads(
        (tmp_path / "cut" / sp.MANIFEST).read_text()
    )
    monkeypatch.setattr(sp, "_write_vectors", real_vectors)
    monkeypatch.setattr(sp, "_write_chunk", crash_on_third)
    with pytest.raises(RuntimeError, match="killed"):
        sp.write_synthetic("tiny", 7, tmp_path / "cut", chunk_users=300)
    with pytest.raises(DataError, match="incomplete"):
        sp.read_manifest(tmp_path / "cut")
    assert sorted(json.loads((tmp_path / "cut" / sp.MANIFEST).read_text())["chunks"]) == ["0", "1"]
    calls.clear()
    crash[0] = False
    again = sp.write_synthetic("tiny", 7, tmp_path / "cut", chunk_users=300)
    assert calls == [2]  # chunks 0 and 1 were listed: skipped
    assert sp.final_files(again) == sp.final_files(whole)  # same rows, bytes and digests
    sp.read_manifest(tmp_path / "cut", verify=True)
    with pytest.raises(DataError, match="another synthetic dataset"):
        sp.write_synthetic("tiny", 8, tmp_path / "cut", chunk_users=300)
    (tmp_path / "cut" / "items.parquet").write_bytes(b"changed")
    with pytest.raises(DataError, match="changed"):
        sp.read_manifest(tmp_path / "cut", verify=True)


def test_prepare_data_writes_parquet_chunks_and_rejects_bad_flags(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(root)}

    def run(*args):
        cmd = [sys.executable, "-m", "launch.prepare_data", "--dataset=synthetic", "--scale=tiny", *args]
        return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)

    bad = run("--format=parquet_chunks")  # no --out_dir
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: --format=parquet_chunks needs --dataset=synthetic and --out_dir"
    ), bad.stderr
    p = run("--format=parquet_chunks", "--chunk_users=500", "--data_seed=3", f"--out_dir={tmp_path / 'x'}")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["chunks"] == 2 and summary["rows"]["users"] == 800
    man = sp.read_manifest(tmp_path / "x", verify=True)
    assert man["chunk_users"] == 500 and man["seed"] == 3 and man["rows"] == summary["rows"]


def test_the_pipeline_reads_parquet_scales_from_their_folder(tmp_path, monkeypatch, tiny_gen):
    """Scales in ``PARQUET_SCALES`` are written once under ``<out_dir>/synthetic-parquet/`` and read back: the
    first run writes the folder (one chunk: ``generate``'s data), the next one only reads it."""
    from twotower_hgnn.pipeline import config as pc

    monkeypatch.setattr(pc, "PARQUET_SCALES", ("tiny",))
    cfg = pc.PipelineConfig(dataset="synthetic", scale="tiny", data_seed=3, out_dir=str(tmp_path))
    ds = pc.load_data(cfg)
    folder = pc.synthetic_parquet_dir(cfg)
    assert folder.parent == tmp_path / "synthetic-parquet" and sp.read_manifest(folder)["complete"]
    assert np.array_equal(ds.interactions[COLS].to_numpy(), tiny_gen.interactions[COLS].to_numpy())
    stamp = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    again = pc.load_data(cfg)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == stamp  # read, not rewritten
    pd.testing.assert_frame_equal(again.interactions, ds.interactions)


def test_the_graph_read_from_the_parquet_log_is_the_in_memory_graph(tmp_path, monkeypatch, tiny_gen):
    """The graph stage's engine reads the training rows straight from the Parquet log (``row_id`` range
    and day partitions): the same graph and statistics as from the in-memory training frame, for the
    split's and the validation split's training rows; a dataset that is not the whole log has no source."""
    from twotower_hgnn.data.split import temporal_split, validation_split
    from twotower_hgnn.graph import build_graph, default_graph_config, parquet_source
    from twotower_hgnn.pipeline import config as pc

    monkeypatch.setattr(pc, "PARQUET_SCALES", ("tiny",))
    ds = pc.load_data(pc.PipelineConfig(dataset="synthetic", scale="tiny", data_seed=3, out_dir=str(tmp_path)))
    split = temporal_split(ds)
    cfg = dataclasses.replace(default_graph_config(ds), chunk_pairs=5_000)
    for s in (split, validation_split(ds, split)):
        src = parquet_source(ds, s.rows[:2])
        assert src is not None and src[1:3] == s.rows[:2]
        g_mem, st_mem = build_graph(ds, s.train, cfg)
        g_pq, st_pq = build_graph(ds, s.train, cfg, parquet=src)
        assert st_pq["source"] == "parquet" and st_mem["source"] == "memory" and st_pq["partitions"] > 1
        for rel in g_mem.relations:
            assert np.array_equal(g_mem.edges[rel], g_pq.edges[rel]), rel
        keys = ("distinct_pairs", "pairs_generated", "interactions_used", "users", "rows_dropped_by_user_cap")
        assert {k: st_pq[k] for k in keys} == {k: st_mem[k] for k in keys}
    part = dataclasses.replace(ds, interactions=ds.interactions.iloc[: len(ds.interactions) // 2])
    assert parquet_source(part, (0, 10)) is None


def test_graph_stage_lets_the_log_go_while_the_engine_reads_the_parquet(tmp_path, monkeypatch):
    """In the pipeline, the graph stage of a Parquet-backed dataset releases the in-memory log while the
    engine builds (a large log: ``context.RELEASE_BYTES``); its graph equals the in-memory build and the
    next stage that reads the data loads it again."""
    from twotower_hgnn import configs
    from twotower_hgnn.graph import build_graph
    from twotower_hgnn.pipeline import config as pc
    from twotower_hgnn.pipeline import context as C
    from twotower_hgnn.pipeline import driver as D
    from sampler.csr import HeteroCSR

    monkeypatch.setattr(pc, "PARQUET_SCALES", ("tiny",))
    cfg = pc.PipelineConfig(
        dataset="synthetic", scale="tiny", data_seed=3, out_dir=str(tmp_path), config=configs.load("test")
    )
    ctx = C.open_run(cfg)
    D.run_stage(ctx, "split")
    want, _ = build_graph(ctx.ds, ctx.train_split.train, cfg.config.graph)  # in memory, before any release
    monkeypatch.setattr(C, "RELEASE_BYTES", 0)
    D.run_stage(ctx, "graph")
    assert ctx._ds is None and ctx.reloads == 0  # released during the build, not needed since
    st = json.loads((ctx.path("graph") / "stats.json").read_text())
    assert st["source"] == "parquet"
    got = HeteroCSR.load(ctx.path("graph") / "full_graph")
    for rel in want.relations:
        assert np.array_equal(np.asarray(got.edges[rel]), np.asarray(want.edges[rel])), rel
    D.run_stage(ctx, "valid")
    assert ctx.reloads == 1 and ctx.split.rows is not None


def test_graph_parquet_benchmark_on_a_tiny_log(one_chunk, tiny_gen, tmp_path):
    """``benchmarks.graph_parquet`` reads a written log in place: its JSON row has the run's provenance
    and the same edge count as the in-memory build of the whole log (default rule, small partitions)."""
    import subprocess
    import sys

    from benchmarks.graph_numpy import build_graph_numpy
    from twotower_hgnn.graph import GraphConfig

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "gp.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.graph_parquet",
        f"--folder={one_chunk}",
        "--chunk_pairs=5000",
        f"--json={out}",
    ]
    p = subprocess.run(
        cmd, cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"}
    )
    assert p.returncode == 0, p.stderr[-2000:]
    row = json.loads(out.read_text())["tiny"]
    assert {"git_sha", "date", "load_average_start", "cpus"} <= set(row["meta"]) and row["partitions"] > 1
    assert row["interactions"] == len(tiny_gen.interactions) and row["seconds"] > 0 and row["peak_rss_mib"] > 0
    _, st = build_graph_numpy(tiny_gen, tiny_gen.interactions, GraphConfig())
    assert row["edges"] == st["edges"] and row["distinct_pairs"] == st["distinct_pairs"]
    bad = subprocess.run([*cmd[:3], f"--folder={tmp_path}"], cwd=root, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: --folder={tmp_path}: no manifest.json (a synthetic_parquet output folder)"
    ]
