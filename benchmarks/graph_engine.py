"""The co-listening graph build: NumPy (``benchmarks/graph_numpy.py``) vs the DuckDB queries (``twotower_hgnn.logs``) side by side.

The synthetic dataset of ``--scale`` is generated and split once (default temporal split); its training
part is written to Parquet. Each engine then builds the graph (default graph configuration, the
engine changed) in its own child process, so that each has its own memory: wall seconds of
``build_graph``, the peak RSS during the build (Linux ``VmHWM`` reset just before it through
``/proc/self/clear_refs``), the RSS before it, and for DuckDB the most bytes seen in its spill folder.
The engines' edges must be identical (sha256 of every relation's edge array). Goal (issue 15): DuckDB
at least 2x faster than NumPy at ``large``, with a lower peak::

    JAX_PLATFORMS=cpu .venv/bin/python -m benchmarks.graph_engine --scale=medium
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from absl import app, flags

from benchmarks.measure import dir_bytes, run_meta

SCALES = ("tiny", "small", "medium", "large")
ENGINES = ("numpy", "duckdb", "spark")
RESULTS = Path(__file__).resolve().parent / "results" / "graph_engine.json"

flags.DEFINE_enum("scale", "medium", SCALES, "synthetic scale")
flags.DEFINE_integer("seed", 0, "data seed")
flags.DEFINE_list("engines", ["numpy", "duckdb"], f"engines to compare, of {ENGINES}")
flags.DEFINE_string("memory_limit", None, "DuckDB memory_limit (e.g. 4GB; default DuckDB's 80 % of RAM)")
flags.DEFINE_string("json", str(RESULTS), "result file ('' = none)")
flags.DEFINE_string("machine", "dev box (2 cores, 24 GiB, shared)", "machine label for the JSON")
flags.DEFINE_string("child", None, "internal: run one engine on this prepared folder")
FLAGS = flags.FLAGS


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _prepare(folder: Path) -> dict:
    """Generates and splits the data once; the training part and the item types go to ``folder``."""
    from twotower_hgnn.data.split import temporal_split
    from twotower_hgnn.data.synthetic import generate

    t0 = time.perf_counter()
    ds = generate(FLAGS.scale, seed=FLAGS.seed)
    train = temporal_split(ds).train[["user_idx", "item_idx", "event_code", "timestamp"]]
    train.to_parquet(folder / "train.parquet")
    meta = {"item_type_counts": {t: int(n) for t, n in ds.item_type_counts.items()}, "train_rows": len(train)}
    (folder / "meta.json").write_text(json.dumps(meta))
    return {**meta, "prepare_s": round(time.perf_counter() - t0, 1)}


def _child(folder: Path, engine: str) -> dict:
    """Builds the graph with ``engine`` from the prepared folder; prints the measurement as JSON."""
    import dataclasses

    import numpy as np
    import pandas as pd

    from twotower_hgnn.data.schema import Dataset
    from benchmarks.graph_numpy import build_graph_numpy
    from twotower_hgnn.graph import GraphConfig, build_graph

    meta = json.loads((folder / "meta.json").read_text())
    train = pd.read_parquet(folder / "train.parquet")
    n_items = sum(meta["item_type_counts"].values())
    ds = Dataset(
        "synthetic-" + FLAGS.scale,
        pd.DataFrame(index=pd.RangeIndex(n_items)),
        pd.DataFrame(),
        train,
        meta["item_type_counts"],
    )
    build = build_graph_numpy if engine == "numpy" else build_graph
    cfg = (
        GraphConfig()
        if engine == "numpy"
        else dataclasses.replace(GraphConfig(), engine=engine, memory_limit=FLAGS.memory_limit)
    )
    spill_dir = Path(tempfile.gettempdir())  # build_graph's DuckDB spills into a fresh folder under TMPDIR
    peak_spill, stop = [0], threading.Event()

    def watch():
        while not stop.wait(0.2):
            peak_spill[0] = max(peak_spill[0], dir_bytes(spill_dir))

    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    g, st = build(ds, train, cfg)
    secs = time.perf_counter() - t0
    stop.set()
    watcher.join()
    h = hashlib.sha256()
    for rel in sorted(g.edges):
        h.update(np.ascontiguousarray(np.asarray(g.edges[rel], np.int64)).tobytes())
    return {
        "engine": engine,
        "seconds": round(secs, 2),
        "peak_rss_mib": round(_rss_kib("VmHWM") / 1024, 1),
        "rss_before_build_mib": round(before / 1024, 1),
        "spill_peak_bytes": int(peak_spill[0]),
        "edges": int(st["edges"]),
        "pairs_generated": int(st["pairs_generated"]),
        "distinct_pairs": int(st["distinct_pairs"]),
        "partitions": int(st["partitions"]),
        "phase_seconds": {k: round(float(v), 2) for k, v in st["phase_seconds"].items()},
        "edges_sha256": h.hexdigest(),
    }


def _run_child(folder: Path, engine: str) -> dict:
    spill = Path(tempfile.mkdtemp(prefix=f"graph-engine-{engine}-", dir=folder))
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.graph_engine",
        f"--child={folder}",
        f"--engines={engine}",
        f"--scale={FLAGS.scale}",
    ] + ([f"--memory_limit={FLAGS.memory_limit}"] if FLAGS.memory_limit else [])
    env = {**os.environ, "TMPDIR": str(spill), "JAX_PLATFORMS": "cpu"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    if res.returncode != 0:
        raise RuntimeError(f"{engine} child failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    bad = [e for e in FLAGS.engines if e not in ENGINES]
    if bad:
        print(f"error: --engines: {bad} not in {list(ENGINES)}", file=sys.stderr)
        sys.exit(2)
    if FLAGS.child:
        print(json.dumps(_child(Path(FLAGS.child), FLAGS.engines[0])))
        return

    with tempfile.TemporaryDirectory(prefix="graph-engine-") as tmp:
        folder = Path(tmp)
        data = _prepare(folder)
        print(f"[{FLAGS.scale}] {data['train_rows']:,} training rows, prepared in {data['prepare_s']} s")
        rows = []
        for engine in FLAGS.engines:
            rows.append(_run_child(folder, engine))
            r = rows[-1]
            print(
                f"  {engine:7s} {r['seconds']:8.2f} s  peak RSS {r['peak_rss_mib']:9.1f} MiB  "
                f"spill {r['spill_peak_bytes'] / 2**20:8.1f} MiB  edges {r['edges']:,}"
            )
    by = {r["engine"]: r for r in rows}
    same = len({r["edges_sha256"] for r in rows}) == 1
    summary = {"identical_edges": same}
    if "numpy" in by and "duckdb" in by:
        summary["duckdb_speedup"] = round(by["numpy"]["seconds"] / max(by["duckdb"]["seconds"], 1e-9), 2)
        summary["duckdb_peak_ratio"] = round(by["duckdb"]["peak_rss_mib"] / by["numpy"]["peak_rss_mib"], 3)
        summary["goal_met"] = bool(summary["duckdb_speedup"] >= 2 and summary["duckdb_peak_ratio"] < 1 and same)
    print(json.dumps(summary))
    if FLAGS.json:
        meta = {
            **run_meta(FLAGS.machine),
            "scale": FLAGS.scale,
            "seed": FLAGS.seed,
            "memory_limit": FLAGS.memory_limit,
            "data": data,
        }
        path = Path(FLAGS.json)
        doc = json.loads(path.read_text()) if path.exists() else {}
        key = FLAGS.scale + (f"-memory_limit={FLAGS.memory_limit}" if FLAGS.memory_limit else "")
        doc[key] = {"meta": meta, "rows": rows, "summary": summary}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
