"""Batch top-K memory and throughput: ``serving_batch.batch_recommend`` over user stores of growing size.

  python -m benchmarks.batch_topk                                  # 100K and 1M users (tiny run built first)
  python -m benchmarks.batch_topk --users=100000,300000 --run=runs/synthetic-tiny-s0/default

A user store of N users is synthesised from a finished version's export (its model and catalogue; users
with the export's age/country mix and ``--rows_per_user`` log rows drawn from its log's items, events and
times); the batch then streams every user's top-``k`` to Parquet in chunks of ``--chunk_users``. Peak RSS is
sampled every 10 ms; the row that matters is the peak *above* the loaded store (what the batch itself
holds), which must stay flat as N grows. Writes ``benchmarks/results/batch_topk.json``.
"""

from __future__ import annotations

import json
import os
import sys
import subprocess
import tempfile
import threading
import tracemalloc
import time
from pathlib import Path

from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
flags.DEFINE_string("run", None, "Version folder whose export is used (default: a fresh tiny run of the test preset).")
flags.DEFINE_list("users", ["100000", "1000000"], "User-store sizes.")
flags.DEFINE_integer("rows_per_user", 8, "Log rows per synthetic user.")
flags.DEFINE_integer("k", 10, "Top-k per user.")
flags.DEFINE_integer("chunk_users", 4096, "Users per chunk.")
flags.DEFINE_string("target_type", "podcast", "Served target type.")
flags.DEFINE_integer("one", None, "Internal: measure one store size in this process and print its JSON row.")
flags.DEFINE_string("out", str(ROOT / "benchmarks" / "results" / "batch_topk.json"), "JSON output ('' = none).")
FLAGS = flags.FLAGS


def _tiny_run(tmp: Path) -> Path:
    from twotower_hgnn import configs
    from twotower_hgnn.pipeline import PipelineConfig, run_pipeline

    cfg = PipelineConfig(
        dataset="synthetic", scale="tiny", out_dir=str(tmp / "runs"), config=configs.load("test", {"sampler": "numpy"})
    )
    run_pipeline(cfg)
    return cfg.version_dir()


def _store(rec, n: int, rows_per_user: int, seed: int = 0):
    """A Dataset of ``n`` users shaped like ``rec``'s store (same catalogue)."""
    import dataclasses

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    src = rec.dataset
    users = pd.DataFrame(
        {
            "user_id": [f"b{i:08d}" for i in range(n)],
            "age": rng.choice(src.users["age"].to_numpy(), n),
            "country": rng.choice(src.users["country"].astype(str).to_numpy(), n),
        }
    )
    log = src.interactions
    pick = rng.integers(0, len(log), n * rows_per_user)
    inter = pd.DataFrame(
        {
            "user_idx": np.repeat(np.arange(n, dtype=np.int64), rows_per_user),
            "item_idx": log["item_idx"].to_numpy()[pick],
            "timestamp": log["timestamp"].to_numpy()[pick],
            "event_code": log["event_code"].to_numpy()[pick],
        }
    )
    music = None
    if src.music is not None:
        music = rng.standard_normal((n, src.music.shape[1])).astype(np.float32)
    return dataclasses.replace(src, users=users, interactions=inter, music=music)


class _PeakRSS:
    def __init__(self) -> None:
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def _one(rec, n: int, tmp: Path) -> dict:
    import gc

    import psutil

    from twotower_hgnn.serving import Recommender
    from twotower_hgnn.serving_batch import batch_recommend

    t0 = time.perf_counter()
    big = Recommender(rec.result, _store(rec, n, FLAGS.rows_per_user), index=rec.index, as_of=rec.as_of)
    build_s = time.perf_counter() - t0
    gc.collect()
    base = psutil.Process().memory_info().rss
    out = tmp / f"top{n}.parquet"
    tracemalloc.start()
    with _PeakRSS() as peak:
        summary = batch_recommend(big, out, k=FLAGS.k, chunk_users=FLAGS.chunk_users)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    row = {
        "users": n,
        "rows": summary["rows"],
        "store_build_s": round(build_s, 1),
        "batch_s": round(summary["seconds"], 1),
        "users_per_s": round(n / summary["seconds"]),
        "rss_store_mb": round(base / 2**20),
        "peak_above_store_mb": round((peak.peak - base) / 2**20, 1),
        "peak_traced_mb": round(traced / 2**20, 1),
        "parquet_mb": round(out.stat().st_size / 2**20, 1),
    }
    out.unlink()
    print(json.dumps(row), flush=True)
    return row


def _child(n: int) -> dict:
    """One store size in a fresh process (so no size inherits another's freed pages)."""
    args = [f"--{k}={FLAGS[k].value}" for k in ("rows_per_user", "k", "chunk_users", "target_type")]
    cmd = [sys.executable, "-m", "benchmarks.batch_topk", f"--one={n}", f"--run={FLAGS.run}", *args]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv) -> None:
    del argv
    from benchmarks.quality import machine
    from twotower_hgnn.io import atomic_write_json
    from twotower_hgnn.serving import Recommender

    with tempfile.TemporaryDirectory(prefix="batch_topk.") as d:
        tmp = Path(d)
        if FLAGS.one is not None:  # child: warm-up (every chunk shape compiled), then the measured size
            rec = Recommender.load(Path(FLAGS.run) / "export", FLAGS.target_type)
            _one(rec, 5000, tmp)
            _one(rec, FLAGS.one, tmp)
            return
        built = FLAGS.run is None
        if built:
            FLAGS.run = str(_tiny_run(tmp))
        rows = [_child(int(n)) for n in FLAGS.users]
        catalogue = Recommender.load(Path(FLAGS.run) / "export", FLAGS.target_type).num_items
    peaks = [r["peak_above_store_mb"] for r in rows]
    traced = [r["peak_traced_mb"] for r in rows]
    spread = (max(traced) - min(traced)) / max(min(traced), 1e-9)
    meta = {
        "machine": machine(),
        "args": {k: FLAGS[k].value for k in ("users", "rows_per_user", "k", "chunk_users", "target_type")},
        "catalogue": catalogue,
        "export": "the tiny test-preset run, built in a temporary folder" if built else FLAGS.run,
        "traced_peak_spread": round(spread, 4),
        "note": "peak_traced_mb: tracemalloc high-water mark (NumPy + Python) during the batch; "
        "peak_above_store_mb: RSS high-water mark above the RSS after the store was built (fresh process per row)",
    }
    print(f"peak above the store: RSS {peaks} MB, traced {traced} MB (spread {100 * spread:.1f} %)")
    if FLAGS.out:
        atomic_write_json(FLAGS.out, {"meta": meta, "rows": rows})
        print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    app.run(main)
