"""Writes synthetic scales as chunked Parquet (``launch.prepare_data --format=parquet_chunks``) and builds the
co-listening graph from that Parquet with DuckDB under a memory limit; records seconds, peak RSS and bytes on
disk in ``benchmarks/results/synthetic_parquet.json``.

Each step runs in a child process whose own peak RSS is read from ``os.wait4`` (``ru_maxrss``). The graph
step registers ``interactions/`` as the log view (``DuckDBEngine.register_parquet``), keeps the training
window of the dataset's temporal split (``split_rules.cut_bounds`` with the dataset's rule: history start ..
cut, whole days pruned before any file is opened) and runs ``graph.config_colisten`` (the log queries) with the
dataset's default :class:`~twotower_hgnn.graph.GraphConfig` -- the queries ``build_graph`` runs on an
in-memory log (``build_graph`` itself takes a ``Dataset``, so it is not called: nothing is loaded in pandas).

    python -m benchmarks.synthetic_parquet --scales=large,xlarge --out_root=/tmp/synthetic-parquet
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from absl import app, flags

from benchmarks.measure import dir_bytes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "synthetic_parquet.json"

flags.DEFINE_list("scales", ["large"], "synthetic scales to write (synthetic_config.SCALES)")
flags.DEFINE_integer("seed", 0, "data seed", lower_bound=0)
flags.DEFINE_integer("chunk_users", 200_000, "users per chunk", lower_bound=1)
flags.DEFINE_string("out_root", "/tmp/synthetic-parquet", "folder for the outputs (one sub-folder per scale)")
flags.DEFINE_string("memory_limit", "2GB", "DuckDB memory_limit of the graph build")
flags.DEFINE_integer("threads", 2, "DuckDB threads of the graph build", lower_bound=1)
flags.DEFINE_boolean("graph", True, "also build the graph from the Parquet")
flags.DEFINE_string("json", str(RESULTS), "result file ('' = none)")
flags.DEFINE_string("machine", "dev box (2 cores, 24 GiB, shared)", "machine label for the JSON")
flags.DEFINE_string("child_graph", None, "internal: build the graph from this output folder, print JSON")
FLAGS = flags.FLAGS


def measured(cmd: list[str], env: dict | None = None) -> dict:
    """Runs ``cmd``; (seconds, the child's own peak RSS in MiB, stdout) -- a failure raises with its stderr."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), **(env or {})}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        secs = time.perf_counter() - t0
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{stderr[-3000:]}")
    return {"seconds": round(secs, 1), "peak_rss_mib": round(ru.ru_maxrss / 1024, 1), "stdout": stdout}


def graph_child(folder: Path) -> dict:
    """The training window's co-listening edges from ``folder/interactions`` on DuckDB (module docstring)."""
    import numpy as np

    from twotower_hgnn.data.split_rules import cut_bounds
    from twotower_hgnn.data.synthetic_parquet import read_manifest
    from twotower_hgnn.graph import config_colisten, default_graph_config
    from twotower_hgnn.logs.counts import log_bounds, timestamp_at
    from twotower_hgnn.logs.engines import DuckDBEngine
    from twotower_hgnn.logs.tables import day_window

    man = read_manifest(folder)
    cfg = default_graph_config("synthetic-" + man["scale"])
    spill = Path(tempfile.mkdtemp(prefix="duckdb-spill-", dir=folder.parent))
    peak_spill, stop = [0], threading.Event()

    def watch():
        while not stop.wait(0.5):
            peak_spill[0] = max(peak_spill[0], dir_bytes(spill))

    threading.Thread(target=watch, daemon=True).start()
    t0 = time.perf_counter()
    eng = DuckDBEngine(memory_limit=FLAGS.memory_limit, temp_directory=spill, threads=FLAGS.threads)
    try:
        eng.register_parquet("inter", folder / "interactions")
        n, mx = log_bounds(eng)
        cut, hist, _ = cut_bounds(man["meta"]["split"], n, mx, lambda p: timestamp_at(eng, p))
        lo = hist if hist is not None else 0
        where = f"{day_window(lo, cut)} AND timestamp >= {lo} AND timestamp < {cut}"
        eng.register_parquet("inter", folder / "interactions", where=where)
        train_rows = int(eng.fetch("SELECT COUNT(*) AS n FROM inter")["n"][0])
        a, b, st = config_colisten(eng, cfg)
    finally:
        eng.close()
        stop.set()
        shutil.rmtree(spill, ignore_errors=True)
    secs = time.perf_counter() - t0
    deg = np.bincount(np.concatenate([a, b]), minlength=1) if a.size else np.zeros(1, np.int64)
    return {
        "seconds": round(secs, 1),
        "log_rows": n,
        "train_rows": train_rows,
        "cut": int(cut),
        "graph_config": {k: getattr(cfg, k) for k in ("rule", "topk", "window", "max_items_per_user", "edge_events")},
        "edges": int(a.size),
        "mean_degree_nonisolated": round(float(deg[deg > 0].mean()), 2),
        "spill_peak_bytes": int(peak_spill[0]),
        **{k: int(v) for k, v in st.items() if k != "pairs"},
    }


def run_scale(scale: str) -> dict:
    out = Path(FLAGS.out_root) / f"{scale}-seed{FLAGS.seed}-chunk{FLAGS.chunk_users}"
    write = measured(
        [sys.executable, "-m", "launch.prepare_data", "--dataset=synthetic", f"--scale={scale}", "--format=parquet_chunks",
         f"--chunk_users={FLAGS.chunk_users}", f"--data_seed={FLAGS.seed}", f"--out_dir={out}"]
    )  # fmt: skip
    summary = json.loads(write.pop("stdout").strip().splitlines()[-1])
    from twotower_hgnn.data.synthetic_parquet import read_manifest

    man = read_manifest(out)
    parts = {k: dir_bytes(out / k) for k in ("users", "interactions")}
    parts.update({k: (out / k).stat().st_size for k in ("items.parquet", "item_vectors.npy") if (out / k).exists()})
    row = {
        "scale": scale,
        "folder": str(out),
        "chunk_users": FLAGS.chunk_users,
        "chunks": man["n_chunks"],
        "rows": man["rows"],
        "write": {**write, "seconds_in_writer": summary["seconds"]},
        "disk_bytes": {"total": dir_bytes(out), **parts},
        "day_partitions": len(man["days"]),
    }
    print(f"[{scale}] wrote {man['rows']['interactions']:,} rows: {write['seconds']} s, peak RSS "
          f"{write['peak_rss_mib']} MiB, {row['disk_bytes']['total'] / 2**20:.0f} MiB on disk", flush=True)  # fmt: skip
    if FLAGS.graph:
        g = measured([sys.executable, "-m", "benchmarks.synthetic_parquet", f"--child_graph={out}",
                      f"--memory_limit={FLAGS.memory_limit}", f"--threads={FLAGS.threads}"])  # fmt: skip
        row["graph"] = {**json.loads(g.pop("stdout").strip().splitlines()[-1]), **g, "memory_limit": FLAGS.memory_limit}
        print(f"[{scale}] graph: {row['graph']['edges']:,} edges from {row['graph']['train_rows']:,} rows, "
              f"{g['seconds']} s, peak RSS {g['peak_rss_mib']} MiB", flush=True)  # fmt: skip
    return row


def main(argv):
    del argv
    if FLAGS.child_graph:
        print(json.dumps(graph_child(Path(FLAGS.child_graph))))
        return
    from twotower_hgnn.data.synthetic_config import SCALES
    from twotower_hgnn.provenance import git_sha, utc_now

    bad = [s for s in FLAGS.scales if s not in SCALES]
    if bad:
        print(f"error: --scales: {bad} not in {list(SCALES)}", file=sys.stderr)
        sys.exit(2)
    meta = {
        "machine": FLAGS.machine,
        "date": utc_now(),
        "git_sha": git_sha(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "seed": FLAGS.seed,
    }
    rows = {}
    for scale in FLAGS.scales:
        rows[f"{scale}-chunk{FLAGS.chunk_users}"] = run_scale(scale)
        if FLAGS.json:  # after every scale: a later scale that fails keeps the earlier figures
            from twotower_hgnn.io import atomic_write_json

            path = Path(FLAGS.json)
            doc = json.loads(path.read_text()) if path.exists() else {}
            for k, r in rows.items():
                doc[k] = {"meta": {**meta, "load_average_end": os.getloadavg()}, **r}
            atomic_write_json(path, doc, indent=1)
    if FLAGS.json:
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    app.run(main)
