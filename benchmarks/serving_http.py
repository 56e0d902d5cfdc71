"""HTTP serving latency: ``launch/serve.py`` on 127.0.0.1 under concurrent clients, with malformed requests and a
version switch in the middle; p50/p90/p99 per request kind, throughput, status counts.

  python -m benchmarks.serving_http                         # builds the tiny test-preset run first (~1-2 min)
  python -m benchmarks.serving_http --run=runs/movielens1m/default --requests=5000 --clients=16

The server runs in its own process (as deployed); latencies are measured by the clients (request sent to
answer read, keep-alive connections). Before the server starts, ``--k_sweep`` distinct ``k`` values are asked
of the podcast model in this process: programs compiled (at most one per k bucket) and RSS growth (<= 50 MB).
Writes ``benchmarks/results/serving_http.json`` with the machine, date
and git sha. The run fails (exit 1) on any 5xx answer, any malformed request not answered 4xx, or a k sweep over its bounds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
flags.DEFINE_string("run", None, "Version folder to serve (default: a fresh tiny run of the test preset).")
flags.DEFINE_integer("requests", 2000, "Requests in all.")
flags.DEFINE_integer("clients", 8, "Concurrent clients (one keep-alive connection each).")
flags.DEFINE_float("malformed_frac", 0.25, "Share of malformed requests.")
flags.DEFINE_boolean("switch", True, "Reload a copy of the export half-way through.")
flags.DEFINE_integer("k_sweep", 1000, "In-process: this many distinct k values (RSS growth, programs compiled).")
flags.DEFINE_string("out", str(ROOT / "benchmarks" / "results" / "serving_http.json"), "JSON output ('' = none).")
FLAGS = flags.FLAGS


def _tiny_run(tmp: Path) -> Path:
    from twotower_hgnn import configs
    from twotower_hgnn.pipeline import PipelineConfig, run_pipeline

    cfg = PipelineConfig(
        dataset="synthetic", scale="tiny", out_dir=str(tmp / "runs"), config=configs.load("test", {"sampler": "numpy"})
    )
    run_pipeline(cfg)
    return cfg.version_dir()


def _start(source: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, str(ROOT / "launch" / "serve.py"), f"--run={source}", "--port=0", "--max_concurrency=32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    for line in proc.stdout:
        m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if m:  # keep reading its output so that the pipe never fills
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, m.group(1)
        if time.time() > deadline:
            break
    proc.kill()
    raise RuntimeError("the server did not start")


def _plan(users: list[str], item: str, n: int, frac: float) -> list[tuple[str, str, str, bytes | None]]:
    """(kind, method, path, body) with malformed ones spread evenly."""
    bad = [
        ("GET", "/recommend?user_id=nobody&k=10", None),
        ("GET", f"/recommend?user_id={users[0]}&k=abc", None),
        ("POST", "/recommend", b'{"age": 30,'),
        ("POST", "/recommend", json.dumps({"interactions": [[item, "stream", 1e30]]}).encode()),
        ("POST", "/recommend", json.dumps({"k": 5, "colour": "red"}).encode()),
    ]
    every = max(1, round(1 / frac)) if frac > 0 else n + 1
    out, valid = [], 0
    for i in range(n):
        if i % every == every - 1:
            out.append(("malformed", *bad[i % len(bad)]))
            continue
        valid += 1
        if valid % 2:
            out.append(("GET known user", "GET", f"/recommend?user_id={users[i % len(users)]}&k=10", None))
        else:
            body = {"age": 20 + i % 50, "country": "SE", "interactions": [[item, "preview", 1694000000]], "k": 10}
            out.append(("POST new user", "POST", "/recommend", json.dumps(body).encode()))
    return out


def _client(url: str, part: list, reload_to: Path | None) -> list[tuple[str, int, float]]:
    import httpx

    got = []
    with httpx.Client(base_url=url, timeout=60) as c:
        for j, (kind, method, path, body) in enumerate(part):
            if reload_to is not None and j == len(part) // 2:
                t = time.perf_counter()
                r = c.post("/admin/reload", json={"path": str(reload_to)})
                got.append(("reload", r.status_code, time.perf_counter() - t))
            t = time.perf_counter()
            r = c.request(method, path, content=body)
            got.append((kind, r.status_code, time.perf_counter() - t))
    return got


def _k_sweep(export: Path, n: int) -> dict:
    """``n`` distinct k values against the podcast model in this process: programs lowered, RSS growth."""
    import jax
    import numpy as np
    import psutil

    from twotower_hgnn.retrieval import k_bucket
    from twotower_hgnn.serving import Recommender

    rec = Recommender.load(export, "podcast")
    uid = rec.dataset.users["user_id"].iloc[0]
    rec.recommend(user_id=uid, k=1)  # the user tower and the first bucket
    lowered = []

    def listener(event: str, secs: float, **kw) -> None:
        if event.endswith("jaxpr_to_mlir_module_duration"):
            lowered.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    rng = np.random.default_rng(0)
    ks = sorted(set(range(1, n // 2 + 1)) | set(int(x) for x in rng.integers(n // 2 + 1, 10**9, n)))[:n]
    rss0, t0 = psutil.Process().memory_info().rss, time.perf_counter()
    for k in ks:
        rec.recommend(user_id=uid, k=k)
    seconds, rss1 = time.perf_counter() - t0, psutil.Process().memory_info().rss
    jax.monitoring.unregister_event_duration_listener(listener)
    buckets = sorted({k_bucket(k, rec.num_items) for k in ks})
    return {
        "distinct_k": len(ks),
        "catalogue": rec.num_items,
        "buckets": buckets,
        "programs_lowered": len(lowered),
        "rss_growth_mb": round((rss1 - rss0) / 2**20, 1),
        "ms_per_request": round(1000 * seconds / len(ks), 2),
    }


def _summary(results: list[tuple[str, int, float]], seconds: float) -> dict:
    import numpy as np

    out = {"requests": len(results), "seconds": round(seconds, 2), "per_s": round(len(results) / seconds, 1)}
    for kind in sorted({k for k, _, _ in results}):
        lat = np.array([t for k, _, t in results if k == kind]) * 1000
        codes: dict[str, int] = {}
        for k, s, _ in results:
            if k == kind:
                codes[str(s)] = codes.get(str(s), 0) + 1
        out[kind] = {"n": int(lat.size), "status": codes}
        out[kind].update({f"p{q}_ms": round(float(np.percentile(lat, q)), 2) for q in (50, 90, 99)})
        out[kind]["max_ms"] = round(float(lat.max()), 2)
    return out


def main(argv) -> None:
    del argv
    import logging

    import pandas as pd

    logging.getLogger("httpx").setLevel(logging.WARNING)

    from benchmarks.quality import machine
    from twotower_hgnn.io import atomic_write_json

    tmp = Path(tempfile.mkdtemp(prefix="serving_http."))
    try:
        vdir = Path(FLAGS.run) if FLAGS.run else _tiny_run(tmp)
        export = vdir / "export"
        users = pd.read_parquet(export / "audiobook" / "users.parquet")["user_id"].astype(str).tolist()[:200]
        item = pd.read_parquet(export / "audiobook" / "index" / "item_ids.parquet")["item_id"].iloc[0]
        sweep = _k_sweep(export, FLAGS.k_sweep) if FLAGS.k_sweep else None
        copy = tmp / "v2"
        shutil.copytree(export, copy)
        proc, url = _start(vdir)
        plan = _plan(users, item, FLAGS.requests, FLAGS.malformed_frac)
        t0 = time.perf_counter()
        sequential = _client(url, [p for p in plan if p[0] != "malformed"][:300], None)  # one client: no queueing
        sequential = _summary(sequential, time.perf_counter() - t0)
        parts = [plan[i :: FLAGS.clients] for i in range(FLAGS.clients)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(FLAGS.clients) as pool:
            futs = [
                pool.submit(_client, url, p, copy if (FLAGS.switch and i == 0) else None) for i, p in enumerate(parts)
            ]
            results = [r for f in futs for r in f.result()]
        seconds = time.perf_counter() - t0
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = _summary(results, seconds)
    five = sum(1 for _, s, _ in results if s >= 500)
    bad_ok = sum(1 for k, s, _ in results if k == "malformed" and not 400 <= s < 500)
    summary["one_client"] = sequential
    summary["k_sweep"] = sweep
    summary.update({"5xx": five, "malformed_not_4xx": bad_ok, "server_exit_code": rc})
    meta = {
        "machine": machine(),
        "args": {k: FLAGS[k].value for k in ("run", "requests", "clients", "malformed_frac", "switch", "k_sweep")},
    }
    print(json.dumps(summary, indent=1))
    if FLAGS.out:
        atomic_write_json(FLAGS.out, {"meta": meta, "summary": summary})
        print(f"wrote {FLAGS.out}")
    if five or bad_ok or rc != 0:
        raise SystemExit(f"FAIL: {five} 5xx, {bad_ok} malformed requests not answered 4xx, server exit code {rc}")
    if sweep and (sweep["programs_lowered"] > len(sweep["buckets"]) or sweep["rss_growth_mb"] > 50):
        raise SystemExit(f"FAIL: k sweep {sweep}")


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    app.run(main)
