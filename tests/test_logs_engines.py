"""The log queries (``twotower_hgnn.logs``) on DuckDB and Spark against the golden digests of the NumPy
code (``tests/golden/log_digests.json``, written by ``benchmarks/log_golden.py``).

Integer outputs (split, pair counts, edges, popularity, weak-event counts, relation support) must be
identical; the graph's float summaries equal within 1e-6 relative. Spark runs in local mode (one
SparkSession for the module; the test needs Java 17+).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.graph_numpy import build_graph_numpy
from twotower_hgnn.data.split import temporal_split
from twotower_hgnn.data.synthetic import generate
from twotower_hgnn.graph import GraphConfig, GraphError, build_graph, default_graph_config
from twotower_hgnn.logs.colisten import colisten_edges
from twotower_hgnn.logs.digest import compare_digests, digest_outputs
from twotower_hgnn.logs.engines import DuckDBEngine, EngineError, open_engine
from twotower_hgnn.logs.outputs import engine_outputs
from twotower_hgnn.logs.tables import day_window, write_interactions

GOLDEN = json.loads((Path(__file__).parent / "golden" / "log_digests.json").read_text())["datasets"]
FLOATS = ("graph.density", "graph.degree.")


@pytest.fixture(scope="module")
def tiny():
    return generate("tiny", seed=0)


def _graph_floats(ds, cfg) -> dict:
    _, st = build_graph(ds, temporal_split(ds).train, cfg)
    return {"graph.density": st["density"], **{f"graph.degree.{k}": v for k, v in st["degree"].items()}}


def test_duckdb_gives_the_golden_outputs_on_tiny(tiny):
    cfg = default_graph_config(tiny)
    engine = DuckDBEngine(memory_limit="1GB")
    try:
        got = digest_outputs(engine_outputs(engine, tiny, cfg))
    finally:
        engine.close()
    got.update(digest_outputs(_graph_floats(tiny, cfg)))  # build_graph: DuckDB by default
    assert cfg.engine == "duckdb"
    assert set(got) == set(GOLDEN["tiny"])
    assert compare_digests(GOLDEN["tiny"], got) == []


@pytest.mark.parametrize(
    "cfg",
    [
        GraphConfig(rule="any", window=None, max_items_per_user=None),
        GraphConfig(rule="min_shared", min_shared=3, window=5, max_items_per_user=30),
        GraphConfig(rule="topk", topk=3, window=None, max_items_per_user=8, chunk_pairs=2000),
        GraphConfig(edge_events=("stream", "preview", "follow"), rule="topk", topk=7, window=2),
    ],
)
def test_duckdb_graph_is_the_numpy_graph(tiny, cfg):
    train = temporal_split(tiny).train
    g_n, st_n = build_graph_numpy(tiny, train, cfg)
    g_d, st_d = build_graph(tiny, train, cfg)
    assert st_d["engine"] == "duckdb" and st_n["engine"] == "numpy"
    for rel in g_n.relations:
        assert np.array_equal(g_n.edges[rel], g_d.edges[rel]), rel
        for d, adj in g_n.adj.items():
            assert np.array_equal(adj.indptr, g_d.adj[d].indptr) and np.array_equal(adj.indices, g_d.adj[d].indices)
    skip = {"build_seconds", "phase_seconds", "rss_mib", "peak_rss_mib", "engine", "waves"}  # waves: DuckDB's
    assert st_d["waves"] >= 1 and "waves" not in st_n
    assert {k: v for k, v in st_n.items() if k not in skip} == {k: v for k, v in st_d.items() if k not in skip}


def test_both_forms_of_the_topk_rule_agree(tiny, monkeypatch):
    """DuckDB's top-n aggregate and the window ranking Spark runs select the same edges, in one
    partition and in several written in waves (~20,000 keys a wave here), which give the one-partition edges."""
    from twotower_hgnn.logs import colisten
    from twotower_hgnn.logs.tables import interactions_frame

    monkeypatch.setattr(colisten, "WAVE_KEYS", 20_000)
    engine = DuckDBEngine()
    try:
        engine.register_frame("inter", interactions_frame(temporal_split(tiny).train))
        one = colisten_edges(engine, [0], "topk", 1, 3, 20, 1000)
        for k, chunk in ((3, 500), (20, None)):
            heap = colisten_edges(engine, [0], "topk", 1, k, 20, 1000, chunk_pairs=chunk, topn_aggregate=True)
            window = colisten_edges(engine, [0], "topk", 1, k, 20, 1000, chunk_pairs=chunk, topn_aggregate=False)
            assert heap[0].size > 0 and all(np.array_equal(a, b) for a, b in zip(heap[:2], window[:2])), k
            if chunk:
                assert window[2]["partitions"] > 20 and all(np.array_equal(a, b) for a, b in zip(one[:2], heap[:2]))
    finally:
        engine.close()


def test_topk_candidates_compacted_or_not_give_the_one_partition_edges(tiny, monkeypatch):
    """The top-k rule over many partitions keeps per item the candidates of every partition; cutting them
    to the top k whenever they pass the bound (here after every partition) or never changes no edge."""
    from twotower_hgnn.logs import colisten
    from twotower_hgnn.logs.tables import interactions_frame

    engine = DuckDBEngine()
    made = []
    real = engine.materialize
    monkeypatch.setattr(engine, "materialize", lambda name, sql: (made.append(name), real(name, sql))[1])
    try:
        engine.register_frame("inter", interactions_frame(temporal_split(tiny).train))
        one = colisten_edges(engine, [0], "topk", 1, 4, 20, 1000)
        for per_item, compactions in ((0, True), (10**9, False)):
            monkeypatch.setattr(colisten, "COMPACT_PER_ITEM", per_item)
            made.clear()
            lo, hi, st = colisten_edges(engine, [0], "topk", 1, 4, 20, 1000, chunk_pairs=4000)
            assert st["partitions"] >= 8 and ("g_compact" in made) is compactions
            assert ("g_bar" in made) is compactions  # after a cut, candidates past an item's k-th are not kept
            assert np.array_equal(lo, one[0]) and np.array_equal(hi, one[1]) and lo.size > 0
        # a disk that holds a quarter of the keys: equal waves, each a pass over the sequences; same edges
        monkeypatch.setattr(engine, "wave_keys", lambda: st["pairs_generated"] // 4)
        lo, hi, waved = colisten_edges(engine, [0], "topk", 1, 4, 20, 1000, chunk_pairs=4000)
        assert st["waves"] == 1 and 4 <= waved["waves"] <= 5 and waved["partitions"] == st["partitions"]
        assert np.array_equal(lo, one[0]) and np.array_equal(hi, one[1])
    finally:
        engine.close()


def test_a_day_partitioned_parquet_log_read_by_window(tiny, tmp_path):
    """The training window of the full log, read from day partitions, gives the golden edges."""
    sp = temporal_split(tiny)
    path = write_interactions(tiny.interactions, tmp_path / "log")
    days = sorted(int(p.name.split("=")[1]) for p in path.iterdir())
    assert len(days) > 50 and all(p.name.startswith("day=") for p in path.iterdir())
    cfg = default_graph_config(tiny)
    engine = DuckDBEngine()
    try:
        engine.register_parquet("inter_all", path, where=day_window(sp.history_start, sp.cut_time))
        seen = engine.fetch("SELECT MIN(day) AS lo, MAX(day) AS hi FROM inter_all")
        assert seen["lo"][0] >= sp.history_start // 86_400 and seen["hi"][0] <= (sp.cut_time - 1) // 86_400
        engine.materialize(
            "inter", f"SELECT * FROM inter_all WHERE timestamp >= {sp.history_start} AND timestamp < {sp.cut_time}"
        )
        lo, hi, _ = colisten_edges(engine, [0], cfg.rule, cfg.min_shared, cfg.topk, cfg.window, cfg.max_items_per_user)
    finally:
        engine.close()
    g, _ = build_graph_numpy(tiny, sp.train, cfg)
    want = np.concatenate([np.asarray(e) for e in g.edges.values()])
    want = want[np.lexsort((want[:, 1], want[:, 0]))]
    assert np.array_equal(np.stack([lo, hi], axis=1), want)


def _random_log(users: int = 8000, per_user: int = 25, items: int = 200_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = users * per_user
    return pd.DataFrame(
        {
            "user_idx": np.repeat(np.arange(users), per_user).astype(np.int32),
            "item_idx": rng.integers(0, items, n).astype(np.int32),
            "event_code": np.zeros(n, np.int8),
            "timestamp": np.arange(n, dtype=np.int64) * 10,
        }
    )


def test_duckdb_spills_under_its_memory_limit_and_gives_the_same_answer(tmp_path):
    path = write_interactions(_random_log(), tmp_path / "log")
    got = {}
    for limit in ("64MB", None):
        engine = DuckDBEngine(memory_limit=limit, temp_directory=tmp_path / f"spill-{limit}", threads=1)
        try:
            engine.register_parquet("inter", path)
            *_, st = colisten_edges(engine, [0], "any", 1, 1, 20, None, with_pairs=True)
            got[limit] = (st, st.pop("pairs"), engine.peak_spilled)
        finally:
            engine.close()
    assert got["64MB"][2] > 0 and got[None][2] == 0  # the limited run spilled to its temp_directory
    assert got["64MB"][0] == got[None][0] and got["64MB"][0]["distinct_pairs"] > 2_000_000
    for col in ("lo", "hi", "count"):
        assert np.array_equal(got["64MB"][1][col], got[None][1][col])


def test_engine_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(EngineError, match="not one of"):
        open_engine("sqlite")
    with pytest.raises(GraphError, match="engine"):
        GraphConfig(engine="polars")
    with pytest.raises(GraphError, match="memory_limit"):
        GraphConfig(memory_limit="lots")
    engine = DuckDBEngine(memory_limit="1MB", threads=1)
    try:
        engine.register_frame("inter", _random_log(users=2000).assign(row_id=lambda d: np.arange(len(d))))
        with pytest.raises(EngineError, match="out of memory under memory_limit=1MB"):
            colisten_edges(engine, [0], "any", 1, 1, 20, None)
    finally:
        engine.close()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    engine = DuckDBEngine(temp_directory=blocker / "spill", threads=1)
    try:
        engine.register_frame("inter", _random_log(users=200).assign(row_id=lambda d: np.arange(len(d))))
        with pytest.raises(EngineError, match="cannot create the spill folder"):
            colisten_edges(engine, [0], "topk", 1, 3, 20, None, chunk_pairs=1000)
    finally:
        engine.close()


@pytest.mark.parametrize("window_days", [None, 3])
def test_examples_and_history_ranges_are_the_numpy_ones(tiny, window_days):
    """The positives (both ``first_only`` forms) and, for every example plus edge-case queries (users
    without rows, times before the first and after the last row, a time equal to a row's), the history
    ranges give the NumPy code's counts and id tokens exactly and its means within 1e-6, in chunks of
    queries smaller than one user's history."""
    from twotower_hgnn.data.schema import EVENTS
    from twotower_hgnn.features_encoding import target_item_range
    from twotower_hgnn.features_examples import _positives
    from twotower_hgnn.history import _counted_log, history_id_tokens, history_means
    from twotower_hgnn.logs import examples as ex
    from twotower_hgnn.logs.tables import interactions_frame, items_frame

    train = temporal_split(tiny).train
    n_types, window = len(tiny.item_types), None if window_days is None else window_days * 86_400.0
    emb = np.random.default_rng(1).standard_normal((tiny.num_items, 5)).astype(np.float32)
    engine = DuckDBEngine()
    try:
        engine.register_frame("items", items_frame(tiny.item_type_codes()))
        engine.register_frame("inter", interactions_frame(train))
        codes = np.asarray([EVENTS.index("stream")])
        start, stop = target_item_range(tiny, "podcast")
        sizes = []
        for first_only in (True, False):
            want = _positives(train, codes, start, stop, tiny.num_items, first_only)
            got = ex.positives(engine, codes, start, stop, first_only)
            assert all(np.array_equal(w, g) and w.dtype == g.dtype for w, g in zip(want, got))
            sizes.append(len(got[0]))
        assert sizes[0] < sizes[1]  # first_only removed re-streams
        u, ts, _ = want  # every stream
        ts_all = train["timestamp"].to_numpy()
        q_user = np.concatenate([u, [tiny.num_users - 1, 0, u[7], u[7]]])
        q_time = np.concatenate([ts, [ts_all.max() + 1, ts_all.min() - 1, ts_all.max() + 10**7, ts[7]]])
        hist = [EVENTS.index(e) for e in ("stream", "preview")]
        log = _counted_log(train, tiny, ("stream", "preview"))
        means, counts = history_means(*log, emb, q_user, q_time, window, n_types)
        ids = history_id_tokens(*log, q_user, q_time, window, 6, n_types)
        r = ex.history_ranges(engine, q_user, q_time, hist, window, n_types)
        # by chunks of users (37 users, 250, all): the same answers, the means bit for bit
        chunked = [
            ex.history_features(engine, q_user, q_time, hist, window, n_types, emb, 6, c) for c in (37, 250, None)
        ]
    finally:
        engine.close()
    asked = np.isin(log[0], q_user)
    assert r.items.size == asked.sum() < len(log[0])  # only the queried users' rows are sequenced
    assert np.array_equal(r.counts, counts) and counts.sum() > 1000
    assert np.array_equal(ex.id_tokens_from_ranges(r, 6), ids)
    for chunk in (7, 1 << 20):
        np.testing.assert_allclose(ex.means_from_ranges(r, emb, chunk_rows=chunk), means, rtol=1e-6, atol=1e-7)
    for h in chunked:
        assert np.array_equal(h.counts, counts) and np.array_equal(h.ids, ids)
        assert np.array_equal(h.means, chunked[-1].means)
    np.testing.assert_allclose(chunked[-1].means, means, rtol=1e-6, atol=1e-7)
    assert counts[-3].sum() == 0  # before every row
    assert (counts[-2].sum() > 0) == (window is None)  # long after every row: only an unbounded window reaches back


# ------------------------------------------------------------------------------------------ Spark
@pytest.fixture(scope="module")
def spark_engine():
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java 17+ on PATH")
    from twotower_hgnn.logs.engines import SparkEngine

    # tiny data: one shuffle partition, no adaptive re-planning, no whole-stage code generation (compile
    # time dominates at this size)
    small = {"spark.sql.adaptive.enabled": "false", "spark.sql.codegen.wholeStage": "false"}
    engine = SparkEngine(master="local[2]", shuffle_partitions=1, conf=small, memory="1GiB")
    yield engine
    engine.close()  # after test_spark_driver_out_of_heap_is_one_line: the driver is gone, close still works


def test_spark_gives_the_golden_outputs_on_tiny(tiny, spark_engine):
    got = digest_outputs(engine_outputs(spark_engine, tiny, default_graph_config(tiny)))
    want = {k: v for k, v in GOLDEN["tiny"].items() if not k.startswith(FLOATS)}
    assert set(got) == set(want)
    assert compare_digests(want, got) == []
    # the session's warehouse is the engine's own temporary folder, not spark-warehouse/ in the cwd
    warehouse = spark_engine.spark.conf.get("spark.sql.warehouse.dir")
    assert "twotower-spark-warehouse-" in warehouse and not (Path.cwd() / "spark-warehouse").exists()


def test_spark_memory_sizes_are_whole_mebibytes():
    from twotower_hgnn.logs.engines import spark_memory

    assert [spark_memory(x) for x in ("4GB", "512MiB", "1.5 GiB", "1TB", "100B")] == [
        "3814m",
        "512m",
        "1536m",
        "953674m",
        "1m",
    ]
    for bad in ("4G", "lots", "-1GB", ""):
        with pytest.raises(EngineError, match="is not a size"):
            spark_memory(bad)


def test_spark_errors_are_one_line_and_the_engine_goes_on(spark_engine):
    """A query Spark rejects is one EngineError line with Spark's reason; the session stays usable."""
    with pytest.raises(EngineError) as e:
        spark_engine.fetch("SELECT x FROM no_such_table")
    assert str(e.value).startswith("spark: [TABLE_OR_VIEW_NOT_FOUND]") and "\n" not in str(e.value)
    assert spark_engine.fetch("SELECT 41 + 1 AS n")["n"].tolist() == [42]
    conf = spark_engine.spark.sparkContext.getConf()
    assert conf.get("spark.driver.memory") == "1024m"
    assert "-XX:+ExitOnOutOfMemoryError" in conf.get("spark.driver.extraJavaOptions")


def test_spark_driver_out_of_heap_is_one_line(spark_engine):
    """A local driver out of heap exits at once (a JVM left alive after an OutOfMemoryError hung the
    caller) and reads as one EngineError naming the heap; the engine then refuses work and still closes.
    Ends the module's session: the last Spark test of the file."""
    import threading

    got: list = []

    def run():
        try:
            got.append(spark_engine.fetch("SELECT length(repeat('x', 1500000000)) AS n"))  # 1.5 GB in a 1 GiB heap
        except BaseException as e:
            got.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(120)
    if worker.is_alive():  # the hang this guards against: end the JVM so that the module can finish
        spark_engine.spark.sparkContext._gateway.proc.kill()
        pytest.fail("a Spark driver out of heap did not exit within 120 s")
    assert len(got) == 1 and isinstance(got[0], EngineError), got
    msg = str(got[0])
    assert msg.startswith("spark: the Spark driver stopped") and "heap: 1024m" in msg and "\n" not in msg
    with pytest.raises(EngineError, match="has stopped"):
        spark_engine.fetch("SELECT 1 AS n")
    spark_engine.drop("anything")  # cleanup after the failure is a no-op, not a second error
    spark_engine.close()


def test_a_wave_of_partitions_is_sized_for_the_disk_it_spills_to(tmp_path, monkeypatch):
    """A wave's disk use at ~24 bytes per key (its partitions and the COPY's spill, the paper-scale
    measure) takes at most 70 % of the free disk: sized at 6 bytes per key, the paper log's first wave
    filled a 72 GB disk."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(100 << 30, 0, 40 << 30))
    engine = DuckDBEngine(temp_directory=tmp_path / "spill")  # not created yet: its parent's disk counts
    try:
        keys = engine.wave_keys()
        assert keys * 24 <= 0.7 * (40 << 30) < (keys + 1) * 24
    finally:
        engine.close()


def test_the_default_memory_limit_is_half_the_memory_available(monkeypatch):
    """GraphConfig.memory_limit=None gives DuckDB half of MemAvailable at the build (at least 1 GB), not
    DuckDB's 80 % of RAM, which ignores what the process holds; unknown memory leaves DuckDB's default.
    With engine spark the same size is the local driver's heap."""
    from twotower_hgnn.logs import engines

    assert engines.available_memory_bytes() > 0  # Linux: /proc/meminfo
    monkeypatch.setattr(engines, "available_memory_bytes", lambda: 6 << 30)
    assert engines.auto_memory_limit() == "3072MiB"
    monkeypatch.setattr(engines, "available_memory_bytes", lambda: 100 << 20)
    assert engines.auto_memory_limit() == "1024MiB"
    monkeypatch.setattr(engines, "available_memory_bytes", lambda: None)
    assert engines.auto_memory_limit() is None
    monkeypatch.setattr(engines, "available_memory_bytes", lambda: 3 << 30)
    seen = []
    real = engines.DuckDBEngine.__init__

    def spy(self, memory_limit=None, **kw):
        real(self, memory_limit=memory_limit, **kw)
        seen.append(self.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])

    monkeypatch.setattr(engines.DuckDBEngine, "__init__", spy)
    tiny = generate("tiny", seed=0)
    build_graph(tiny, temporal_split(tiny).train, GraphConfig())
    assert seen == ["1.5 GiB"]
    # engine spark: the same size is the local driver's heap (the build itself then runs on DuckDB here)
    asked = []
    monkeypatch.setattr(engines, "open_engine", lambda name, **kw: asked.append((name, kw)) or engines.DuckDBEngine())
    for limit, want in ((None, "1536MiB"), ("2GB", "2GB")):
        build_graph(tiny, temporal_split(tiny).train, GraphConfig(engine="spark", memory_limit=limit))
        assert asked.pop() == ("spark", {"memory": want})


def test_the_split_comes_back_as_runs_of_rows_and_refuses_a_log_out_of_time_order(tiny):
    """``split_parts`` rebuilds the per-row part from each part's run of ``row_id`` (equal to the NumPy
    split's parts, whose rows are contiguous in time order); rows out of time order are refused."""
    from twotower_hgnn.logs.counts import split_parts
    from twotower_hgnn.logs.tables import interactions_frame, items_frame

    sp = temporal_split(tiny)
    frame = interactions_frame(tiny.interactions)
    engine = DuckDBEngine()
    try:
        engine.register_frame("items", items_frame(tiny.item_type_codes()))
        engine.register_frame("inter", frame)
        got = split_parts(engine, sp.cut_time, sp.history_start, sp.test_end, 0)
        ts = frame["timestamp"].to_numpy()
        assert got["part"].shape == ts.shape and np.all(np.diff(got["part"]) >= 0)
        assert np.array_equal(
            got["part"] == 1,
            ts < sp.cut_time if sp.history_start is None else (ts >= sp.history_start) & (ts < sp.cut_time),
        )
        assert got["sizes"]["train_interactions"] == len(sp.train)
        shuffled = frame.assign(timestamp=np.random.default_rng(0).permutation(ts))
        engine.register_frame("inter", shuffled)
        with pytest.raises(ValueError, match="not runs of row_id"):
            split_parts(engine, sp.cut_time, sp.history_start, sp.test_end, 0)
    finally:
        engine.close()


def test_user_chunks_partition_the_queries_by_whole_users():
    """Every query in exactly one chunk, a user's queries in one chunk and in their order, chunks of at most
    ``n`` distinct users in ascending user order; None or no queries: one chunk of all."""
    from twotower_hgnn.logs.examples import user_chunks

    q_user = np.random.default_rng(3).integers(0, 50, size=500)
    for n in (1, 7, 50, 1000):
        chunks = user_chunks(q_user, n)
        allq = np.concatenate(chunks)
        assert np.array_equal(np.sort(allq), np.arange(q_user.size))
        users = [np.unique(q_user[c]) for c in chunks]
        assert all(0 < len(u) <= n for u in users)
        assert all(a.max() < b.min() for a, b in zip(users[:-1], users[1:]))
        assert all(np.all(np.diff(c[q_user[c] == u]) > 0) for c in chunks for u in np.unique(q_user[c]))
        assert len(chunks) == -(-len(np.unique(q_user)) // n)
    assert [c.tolist() for c in user_chunks(q_user[:5], None)] == [[0, 1, 2, 3, 4]]
    assert [c.size for c in user_chunks(np.zeros(0, np.int64), 3)] == [0]
    with pytest.raises(ValueError, match="users_per_chunk"):
        user_chunks(q_user, 0)
