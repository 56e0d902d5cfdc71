"""The co-listening graph built by DuckDB straight from a day-partitioned Parquet log, at any scale.

The input is a folder written by ``twotower_hgnn.data.synthetic_parquet`` (``launch.prepare_data
--format=parquet_chunks``, or the pipeline's ``<out_dir>/synthetic-parquet/<scale>-seed<s>-chunk<n>``):
its ``interactions/day=N/*.parquet`` are read in place -- the log is never in this process's memory.
The default graph configuration (:func:`twotower_hgnn.graph.default_graph_config`'s rule) runs over the
whole log (``--days=0``) or its first ``--days`` days, under DuckDB's ``--memory_limit``; only the
edges (not the CSR) are built. Recorded: wall and CPU seconds, peak RSS, the most bytes in the spill
folder (sampled every 0.5 s, and after each statement), pairs, edges, partitions, load average::

    JAX_PLATFORMS=cpu .venv/bin/python -m benchmarks.graph_parquet --folder=runs/synthetic-parquet/large-seed0-chunk200000

A ``paper`` log (300M rows) is the issue-15 measurement; rows go to ``benchmarks/results/graph_parquet.json``
keyed by the folder's scale.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from absl import app, flags

from benchmarks.measure import dir_bytes, run_meta

RESULTS = Path(__file__).resolve().parent / "results" / "graph_parquet.json"

flags.DEFINE_string("folder", None, "a synthetic_parquet output folder (manifest.json, interactions/)")
flags.DEFINE_integer("days", 0, "use the log's first N days (0 = all)")
flags.DEFINE_string("memory_limit", "4GB", "DuckDB memory_limit")
flags.DEFINE_integer("chunk_pairs", 8_000_000, "pairs per partition (GraphConfig.chunk_pairs)")
flags.DEFINE_string("spill_dir", None, "DuckDB temp_directory (default: a fresh folder under TMPDIR)")
flags.DEFINE_string("json", str(RESULTS), "result file ('' = none)")
flags.DEFINE_string("machine", "dev box (2 cores, 24 GiB, shared)", "machine label for the JSON")
FLAGS = flags.FLAGS


def build(folder: Path, spill: Path) -> dict:
    """Builds the edges from ``folder``'s log with DuckDB spilling to ``spill``; the measurement."""
    from twotower_hgnn.graph import GraphConfig, config_colisten
    from twotower_hgnn.logs.engines import DuckDBEngine

    man = json.loads((folder / "manifest.json").read_text())
    days = sorted(int(d) for d in man["days"])
    if FLAGS.days:
        days = days[: FLAGS.days]
    rows = sum(int(man["days"][str(d)]["rows"]) for d in days)
    cfg = GraphConfig(chunk_pairs=FLAGS.chunk_pairs)  # the rule of default_graph_config for two item types
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.wait(0.5):
            peak[0] = max(peak[0], dir_bytes(spill))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    eng = DuckDBEngine(memory_limit=FLAGS.memory_limit, temp_directory=spill)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        eng.register_parquet("inter", folder / "interactions", where=f"day >= {days[0]} AND day <= {days[-1]}")
        lo, _, st = config_colisten(eng, cfg)
    finally:
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        stop.set()
        watcher.join()
        eng_peak = eng.peak_spilled
        eng.close()
    return {
        "scale": man["scale"],
        "days": len(days),
        "interactions": rows,
        "seconds": round(secs, 1),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "spill_peak_bytes": int(max(peak[0], eng_peak)),
        "edges": int(lo.size),
        "config": {**cfg.to_dict(), "memory_limit": FLAGS.memory_limit},
        **st,
    }


def main(argv):
    del argv
    folder = Path(FLAGS.folder or "")
    if not (folder / "manifest.json").is_file():
        print(f"error: --folder={FLAGS.folder}: no manifest.json (a synthetic_parquet output folder)", file=sys.stderr)
        sys.exit(2)

    if FLAGS.spill_dir is not None:
        try:
            Path(FLAGS.spill_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"error: --spill_dir={FLAGS.spill_dir}: {e.strerror}", file=sys.stderr)
            sys.exit(2)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="graph-parquet-", dir=FLAGS.spill_dir) as tmp:
        row = build(folder, Path(tmp))
    print(
        f"[{row['scale']}] {row['interactions']:,} rows, {row['pairs_generated']:,} pairs: {row['seconds']} s "
        f"({row['cpu_seconds']} CPU s), peak RSS {row['peak_rss_mib']:,.0f} MiB, spill {row['spill_peak_bytes'] / 2**30:.2f} GiB, "
        f"{row['edges']:,} edges"
    )
    if FLAGS.json:
        meta = {**run_meta(FLAGS.machine, load), "load_average_end": os.getloadavg()}
        path = Path(FLAGS.json)
        doc = json.loads(path.read_text()) if path.exists() else {}
        doc[row["scale"] + (f"-days{row['days']}" if FLAGS.days else "")] = {"meta": meta, **row}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
