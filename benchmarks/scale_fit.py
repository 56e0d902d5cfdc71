"""Largest synthetic scale that "fits": generate + split + graph + one HGNN epoch under a memory cap.

Issue 2, item 4: "generate + build the graph + one HGNN epoch with peak memory under 20 GB on a
24 GB, 2-core machine". Everything runs in ONE process, as the pipeline would hold it (dataset,
split, full graph, training graph and the trainer all alive at once), phase by phase:

1. ``generate``: ``data.synthetic.generate(scale, seed)``
2. ``split``: ``data.split.temporal_split(ds)`` (the dataset's default: last 14 days, 90-day history)
3. ``graph``: ``graph.build_graph(ds, split.train)`` with the dataset's default ``GraphConfig``
   (``--window`` overrides the pair window, e.g. to bound memory at xlarge)
4. ``holdout``: ``graph.holdout_edges(g, 0.1, seed)``
5. ``hgnn``: ``train.hgnn.train_hgnn`` (paper-size model by default: 256/128, fan-out (10, 5), 256
   positives/step; features = ``ds.item_vectors``), capped at ``--max_steps`` optimisation steps plus
   the initial and the final validation.

Per phase: wall time, CPU time (``time.process_time``: all threads), the process peak RSS so far
(``getrusage(RUSAGE_SELF).ru_maxrss``) and the phase's own RSS high-water mark from a psutil sampler
thread (every ``--sample_s``).

**Measured vs extrapolated.** A full HGNN epoch at "large" is ~1.2M steps: far too long for 2 cores,
so only ``--max_steps`` are run. Memory of an epoch is flat after the first steps (static batch
shapes, no recompilation, the sampler draws the epoch's edge permutation up front), which the run
*checks*: the RSS high-water mark is recorded when the loader asks for batch k (k = 1, 5, 10, 20, ...),
and the growth between the middle and the last mark is reported. The epoch TIME is extrapolated from
the measured steady steps/s (between the 5th and the last batch request); it is labelled as such in
the table and the JSON. The loader prefetches ``cfg.prefetch`` steps, so "batch k requested" is
about "step k - prefetch done".

Run:
  .venv/bin/python -m benchmarks.scale_fit --scale=medium --max_steps=30 --json=/tmp/fit_medium.json
  .venv/bin/python -m benchmarks.scale_fit --scale=large --max_steps=30 --json=/tmp/fit_large.json
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FLAGS = flags.FLAGS
flags.DEFINE_string("scale", "medium", "synthetic scale (data.synthetic.SCALES)")
flags.DEFINE_integer("seed", 0, "data, holdout and training seed")
flags.DEFINE_integer("max_steps", 30, "HGNN optimisation steps actually run (the epoch time is extrapolated)")
flags.DEFINE_enum(
    "preset",
    "paper",
    ["paper", "cpu_small"],
    "HGNN config: paper = HGNNTrainConfig() defaults "
    "(256/128, fan-out (10, 5), 256 positives/step); cpu_small = HGNNTrainConfig.cpu_small()",
)
flags.DEFINE_integer("window", None, "override GraphConfig.window (pair window per user); None = dataset default")
flags.DEFINE_float("cap_gb", 20.0, "the memory cap of the verdict (GB = 1e9 bytes)")
flags.DEFINE_float("sample_s", 0.05, "RSS sampling period of the background thread")
flags.DEFINE_string("json", None, "write the results here (atomically)")

GB = 1e9
GIB = 2**30
RSS_MARKS = (1, 5, 10, 20, 30, 50, 100)


class RssSampler:
    """Background thread: the process RSS every ``period`` s as (perf_counter, bytes) samples."""

    def __init__(self, period: float):
        import psutil

        self._proc, self._period = psutil.Process(), period
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self._proc.memory_info().rss))
            self._stop.wait(self._period)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def now(self) -> int:
        return self._proc.memory_info().rss

    def peak(self, t0: float, t1: float) -> int:
        """RSS high-water mark of the samples in [t0, t1] (and the current RSS if t1 is now)."""
        return max((r for t, r in self.samples if t0 <= t <= t1), default=0)


def ru_maxrss_bytes() -> int:
    """Process peak RSS so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class TimedSampler:
    """Delegates to a real sampler (the ``train_hgnn`` ``sampler_factory`` seam) and records when each
    training batch is requested, with the RSS at that moment: the per-step time series."""

    def __init__(self, inner: Any, rss: RssSampler):
        self._inner, self._rss = inner, rss
        self.requests: list[tuple[int, float, int]] = []  # (batch index, perf_counter, rss bytes)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def num_batches(self, epoch: int = 0) -> int:
        return self._inner.num_batches(epoch)

    def batch(self, epoch: int, index: int):
        with self._lock:
            self.requests.append((index, time.perf_counter(), self._rss.now()))
        return self._inner.batch(epoch, index)


@dataclasses.dataclass
class Phase:
    """One measured phase: wall/CPU seconds, sampled RSS high-water mark and process peak RSS (bytes)."""

    name: str
    wall_s: float
    cpu_s: float
    rss_start: int
    rss_peak_sampled: int
    ru_maxrss_after: int
    rss_end: int


def run_phase(name: str, fn: Callable[[], Any], rss: RssSampler, phases: list[Phase], t_origin: float) -> Any:
    t0, c0, r0 = time.perf_counter(), time.process_time(), rss.now()
    out = fn()
    t1, c1, r1 = time.perf_counter(), time.process_time(), rss.now()
    ph = Phase(name, t1 - t0, c1 - c0, r0, max(rss.peak(t0, t1), r0, r1), ru_maxrss_bytes(), r1)
    phases.append(ph)
    print(
        f"[scale_fit] {name:8s} wall {ph.wall_s:8.1f} s  cpu {ph.cpu_s:8.1f} s  rss peak {ph.rss_peak_sampled / GIB:6.2f} GiB"
        f"  process peak {ph.ru_maxrss_after / GIB:6.2f} GiB  (t+{t1 - t_origin:.0f} s, {_dt.datetime.now():%H:%M:%S})",
        flush=True,
    )
    return out


def hgnn_config(preset: str, max_steps: int, seed: int):
    from twotower_hgnn.train.hgnn import HGNNTrainConfig

    base = HGNNTrainConfig.cpu_small() if preset == "cpu_small" else HGNNTrainConfig()
    return dataclasses.replace(base, max_steps=max_steps, seed=seed, progress=False, log_every_steps=10)


def step_series(requests: list[tuple[int, float, int]], rss: RssSampler, t_first: float) -> list[dict]:
    """RSS high-water mark (since the first training batch request) when batch k was requested."""
    out = []
    by_index = {i: (t, r) for i, t, r in requests}
    for k in RSS_MARKS:
        if k - 1 in by_index:  # batch index k - 1 = the k-th batch
            t, r = by_index[k - 1]
            out.append(
                {"batch": k, "t_s": t - t_first, "rss_gib": r / GIB, "hwm_gib": max(rss.peak(t_first, t), r) / GIB}
            )
    last_i = max(by_index)
    t, r = by_index[last_i]
    if last_i + 1 not in RSS_MARKS:
        out.append(
            {"batch": last_i + 1, "t_s": t - t_first, "rss_gib": r / GIB, "hwm_gib": max(rss.peak(t_first, t), r) / GIB}
        )
    return out


def timeline(rss: RssSampler, t0: float, t_first: float) -> list[list[float]]:
    """Per-second RSS maximum (GiB) of the HGNN phase: [seconds since the first batch request, GiB]."""
    buckets: dict[int, int] = {}
    for t, r in rss.samples:
        if t >= t0:
            k = int(t - t_first) if t >= t_first else int(t - t_first) - 1
            buckets[k] = max(buckets.get(k, 0), r)
    return [[k, round(v / GIB, 4)] for k, v in sorted(buckets.items())]


def relation_sizes(graph) -> dict[str, int]:
    return {k: int(v["edges"]) for k, v in graph.stats()["relations"].items()}


def main(argv) -> None:
    del argv
    import numpy as np

    from twotower_hgnn.data.split import temporal_split
    from twotower_hgnn.data.synthetic import SCALES, generate
    from twotower_hgnn.graph import build_graph, default_graph_config, holdout_edges
    from twotower_hgnn.io import atomic_write_json
    from sampler.factory import numpy_sampler
    from twotower_hgnn.train.hgnn import train_hgnn

    if FLAGS.scale not in SCALES:
        raise app.UsageError(f"--scale={FLAGS.scale!r} is not one of {list(SCALES)}")
    if FLAGS.max_steps < 6:
        raise app.UsageError(f"--max_steps={FLAGS.max_steps}: need >= 6 (the steady rate is measured after step 5)")
    rss = RssSampler(FLAGS.sample_s).start()
    phases: list[Phase] = []
    t_origin = time.perf_counter()

    ds = run_phase("generate", lambda: generate(FLAGS.scale, FLAGS.seed), rss, phases, t_origin)
    split = run_phase("split", lambda: temporal_split(ds), rss, phases, t_origin)
    gcfg = default_graph_config(ds)
    if FLAGS.window is not None:
        gcfg = dataclasses.replace(gcfg, window=FLAGS.window)
    graph, gstats = run_phase("graph", lambda: build_graph(ds, split.train, gcfg), rss, phases, t_origin)
    train_graph, val = run_phase("holdout", lambda: holdout_edges(graph, 0.1, FLAGS.seed), rss, phases, t_origin)

    feats = np.asarray(ds.item_vectors, np.float32)
    cfg = hgnn_config(FLAGS.preset, FLAGS.max_steps, FLAGS.seed)
    samplers: list[TimedSampler] = []

    def factory(g, spec, holdout):
        s = TimedSampler(numpy_sampler(g, spec, holdout), rss)
        samplers.append(s)
        return s

    res = run_phase(
        "hgnn", lambda: train_hgnn(train_graph, feats, val, cfg, None, sampler_factory=factory), rss, phases, t_origin
    )
    rss.stop()

    ts = samplers[0]
    req = sorted(ts.requests)
    n_sub = cfg.sub_batches or 1
    steps_per_epoch = -(-ts.num_batches(0) // n_sub)
    t_first = req[0][1]
    series = step_series(req, rss, t_first)
    # steady rate: requests between the 5th and the last batch (the queue is full, so requests follow steps)
    i5 = next(j for j, (i, _, _) in enumerate(req) if i == 4)
    steady_sps = (len(req) - 1 - i5) / max(req[-1][1] - req[i5][1], 1e-9) / n_sub
    setup_s = t_first - (t_origin + sum(p.wall_s for p in phases[:-1]))  # trainer setup + initial validation
    val_s = [h for h in res.history if h["epoch"] == 0]
    mid = next((s for s in series if s["batch"] >= 10), series[0])
    growth = series[-1]["hwm_gib"] - mid["hwm_gib"]
    peak = max(p.ru_maxrss_after for p in phases)
    fits = peak < FLAGS.cap_gb * GB
    sizes = {
        "users": int(ds.num_users),
        "items": {k: int(v) for k, v in ds.item_type_counts.items()},
        "interactions": int(len(ds.interactions)),
        "train_interactions": int(len(split.train)),
        "item_vector_dim": int(feats.shape[1]),
        "edges": relation_sizes(graph),
        "edges_total": int(sum(relation_sizes(graph).values())),
        "train_edges": relation_sizes(train_graph),
        "val_edges": {f"{a}-{b}": int(len(e)) for (a, b), e in val.items()},
        "graph_pairs_generated": gstats.get("pairs_generated"),
        "graph_distinct_pairs": gstats.get("distinct_pairs"),
        "graph_phase_seconds": gstats.get("phase_seconds"),
        "graph_degree": gstats.get("degree"),
    }
    result = {
        "benchmark": "scale_fit",
        "scale": FLAGS.scale,
        "seed": FLAGS.seed,
        "preset": FLAGS.preset,
        "graph_config": gcfg.to_dict(),
        "hgnn_config": cfg.to_dict(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "sizes": sizes,
        "phases": [dataclasses.asdict(p) for p in phases],
        "hgnn": {
            "measured_steps": int(res.steps),
            "stop_reason": res.stop_reason,
            "traces": res.traces,
            "steps_per_epoch": int(steps_per_epoch),
            "batch_requests": len(req),
            "setup_and_initial_validation_s": setup_s,
            "first_step_to_last_request_s": req[-1][1] - t_first,
            "steady_steps_per_s": steady_sps,
            "trainer_steps_per_s_incl_compile": res.history[-1].get("steps_per_s"),
            "val_edges_used": cfg.val_max_edges,
            "history": res.history,
            "initial_val_mrr": val_s[0]["val_mrr"] if val_s else None,
            "rss_by_batch": series,
            "rss_timeline_1s": timeline(rss, t_origin + sum(p.wall_s for p in phases[:-1]), t_first),
            "hwm_growth_gib_after_batch": {"from_batch": mid["batch"], "to_batch": series[-1]["batch"], "gib": growth},
            "extrapolated_epoch_s": steps_per_epoch / steady_sps,
            "extrapolated_epoch_h": steps_per_epoch / steady_sps / 3600,
        },
        "peak_rss_bytes": peak,
        "peak_rss_gib": peak / GIB,
        "peak_rss_gb": peak / GB,
        "cap_gb": FLAGS.cap_gb,
        "fits": fits,
    }
    print(
        f"\nscale={FLAGS.scale} users={sizes['users']:,} items={sizes['items']} interactions={sizes['interactions']:,}"
    )
    print("edges: " + ", ".join(f"{k} {v:,}" for k, v in sizes["edges"].items()) + f" (total {sizes['edges_total']:,})")
    print(f"{'phase':10s} {'wall s':>9s} {'cpu s':>9s} {'rss hwm GiB':>12s} {'proc peak GiB':>14s}")
    for p in phases:
        print(
            f"{p.name:10s} {p.wall_s:9.1f} {p.cpu_s:9.1f} {p.rss_peak_sampled / GIB:12.2f} {p.ru_maxrss_after / GIB:14.2f}"
        )
    print(
        "RSS by batch request: " + ", ".join(f"#{s['batch']} {s['hwm_gib']:.2f}" for s in series) + " GiB (high-water)"
    )
    h = result["hgnn"]
    print(
        f"hgnn: {h['measured_steps']} steps measured, steady {steady_sps:.2f} steps/s (MEASURED); "
        f"{steps_per_epoch:,} steps/epoch -> epoch ~{h['extrapolated_epoch_h']:.1f} h (EXTRAPOLATED); "
        f"hwm growth from batch {mid['batch']} to {series[-1]['batch']}: {growth * 1024:.0f} MiB"
    )
    print(
        f"peak RSS {peak / GIB:.2f} GiB ({peak / GB:.2f} GB) vs cap {FLAGS.cap_gb} GB: {'FITS' if fits else 'DOES NOT FIT'}"
    )
    if FLAGS.json:
        atomic_write_json(FLAGS.json, json.loads(json.dumps(result, default=float)))
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    app.run(main)
