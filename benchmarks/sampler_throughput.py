"""Throughput of the static-shape NumPy sampler vs a naive Python loop, DGL and PyTorch Geometric.

All contenders sample, in one run, on the same cached synthetic power-law graph, for the same seed
batches: 2 hops, fan-out 10 then 5 per relation direction, without replacement.

Timed scope of the comparable rows ("neighbourhood"): L-hop sampling for given seeds. Ours produces
the padded static ``[n_dst, fanout]`` global-id arrays + masks; DGL's ``NeighborSampler`` produces
compacted blocks (it de-duplicates each frontier, so it samples fewer rows than a padded layout);
PyG's sampler produces relabelled local-id edge lists. Negatives, supervision-edge exclusion, a full
training batch and the ``Loader`` end to end are timed in separate rows (``scope`` says which).

Run:
  .venv/bin/python -m benchmarks.sampler_throughput --quick            # < 60 s, small graph
  .venv/bin/python -m benchmarks.sampler_throughput --json=/tmp/s.json # full: 200K AB + 1M PC, ~20M edges
Peers come from ``benchmarks/install_peers.sh`` (.peers_venv/dgl, .peers_venv/pyg); a missing peer
gives a row saying why.

Noise: the 1-minute load average is recorded at the start; a run started at load >= 0.5
(:data:`QUIET_LOAD`) is marked ``noisy`` (meta, summary and every scaling row) and its ratios are
figures, not verdicts. Every row carries ``cpu_s``, the CPU seconds of this process and its finished
children (``getrusage``) over the row's measurement (warm-up included), ``span_seeds`` (seeds sampled
in it) and ``seeds_per_cpu_s``: per batch from the sampling thread's or process's CPU time where a row
has one (``cpu_source`` says which), else ``span_seeds / cpu_s``. The ``scaling`` rows divide the
seeds/s of N workers by that of 1 worker in the same mode and harness (goal on a quiet run: 2 workers
>= 1.8x); the thread and process harnesses alternate rounds between worker counts, so that a drift of
the shared machine's speed falls on both sides of a ratio. A control in the process harness -- random
sorts of an in-cache array, nothing shared, nothing sent back -- measures what the machine's cores give
work that needs only a core, 2 vs 1, in the same run (``machine_ratio``; each sampler ratio carries
``share_of_machine``): a 2-vCPU VM's cores need not be independent.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sampler.csr import HeteroCSR  # noqa: E402
from sampler.loader import Loader  # noqa: E402
from sampler.negatives import draw_negatives  # noqa: E402
from sampler.neighbors import build_dir_adjs, sample_hops  # noqa: E402
from sampler.numpy_backend import NumpySampler  # noqa: E402
from sampler.spec import make_spec  # noqa: E402
from sampler.synthetic import audiobook_podcast_graph, cached_graph  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "small graph and few batches (< 60 s on 2 cores, peers included)")
flags.DEFINE_integer("n_audiobooks", 200_000, "audiobook nodes")
flags.DEFINE_integer("n_podcasts", 1_000_000, "podcast nodes")
flags.DEFINE_integer(
    "num_edges", 20_000_000, "undirected edges over the three relations (5% AB-AB, 25% AB-PC, 70% PC-PC)"
)
flags.DEFINE_integer("graph_seed", 0, "synthetic graph seed")
flags.DEFINE_string("cache_dir", str(ROOT / ".cache" / "sampler_bench"), "where the generated graph is cached")
flags.DEFINE_integer("batch_seeds", 1024, "seed nodes per batch (split over types in proportion to their sizes)")
flags.DEFINE_list("fanouts", ["10", "5"], "fan-out per hop (seeds' hop first), per relation direction")
flags.DEFINE_integer("batches", 30, "timed batches per contender (after warm-up)")
flags.DEFINE_integer("warmup", 3, "untimed batches first")
flags.DEFINE_list("workers", ["1", "2"], "worker counts for our sampler")
flags.DEFINE_list("modes", ["thread", "process"], "parallel modes for our sampler")
flags.DEFINE_integer("naive_seeds", 48, "seeds of the per-node Python loop subset (extrapolated)")
flags.DEFINE_list("peers", ["dgl", "pyg"], "peers to run (subprocesses in .peers_venv/<peer>)")
flags.DEFINE_list("peer_threads", ["1", "2"], "thread counts for the peers")
flags.DEFINE_string("peers_venv", str(ROOT / ".peers_venv"), "base directory of the peer venvs")
flags.DEFINE_integer("peer_timeout", 1200, "seconds before a peer run is abandoned (row says so)")
flags.DEFINE_float(
    "gpu_seeds_per_s",
    1.8e6,
    "seeds/s of one GPU training step (an H200 reference run), for the workers-needed estimate",
)
flags.DEFINE_string("json", None, "write the result JSON here (atomically)")
flags.DEFINE_bool(
    "device",
    True,
    "device-backend rows (benchmarks/device_sampler.py), labelled with the platform, e.g. 'device (XLA:CPU)'",
)
flags.DEFINE_list(
    "device_full_batch_seeds", None, "full-batch sizes for the device rows (default: batch_seeds and 12 x batch_seeds)"
)
flags.DEFINE_integer(
    "device_epoch_batches", 20, "batches timed for the device whole-epoch row (0 = the whole epoch; else extrapolated)"
)

QUIET_LOAD = 0.5  # 1-minute load average at the start below which a run counts as quiet
CONTROL_NAME = "control: in-cache NumPy sorts, processes (what the machine's cores give)"
SCALING_GOAL = 1.8  # 2 workers vs 1, on a quiet run

_DIRS = (("audiobook", "audiobook"), ("audiobook", "podcast"), ("podcast", "audiobook"), ("podcast", "podcast"))


# ---------------------------------------------------------------------------- setup
def _graph_path() -> Path:
    return Path(FLAGS.cache_dir) / f"ab{FLAGS.n_audiobooks}_pc{FLAGS.n_podcasts}_e{FLAGS.num_edges}_s{FLAGS.graph_seed}"


def load_graph() -> tuple[HeteroCSR, Path, float]:
    path = _graph_path()
    t0 = time.perf_counter()
    g = cached_graph(
        path,
        lambda: audiobook_podcast_graph(FLAGS.n_audiobooks, FLAGS.n_podcasts, FLAGS.num_edges, seed=FLAGS.graph_seed),
    )
    return g, path, time.perf_counter() - t0


def make_seed_batches(g: HeteroCSR, n_batches: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Uniform seeds within type; per-type counts fixed, proportional to the type sizes."""
    n = FLAGS.batch_seeds
    sizes = {t: g.num_nodes_of(t) for t in g.node_types}
    counts = {t: int(round(n * s / g.num_nodes)) for t, s in sizes.items()}
    counts[g.node_types[-1]] += n - sum(counts.values())
    out = []
    for _ in range(n_batches):
        b = {}
        for t in g.node_types:
            lo, hi = g.type_range(t)
            b[t] = (
                rng.choice(np.arange(lo, hi, dtype=np.int64), size=counts[t], replace=False).astype(np.int32)
                if counts[t]
                else np.zeros(0, np.int32)
            )
        out.append(b)
    return out


def _fan(L: list[int]) -> list[dict]:
    return [{d: f for d in _DIRS} for f in L]


def _stats(times: list[float], seeds: int, edges: list[int] | None, cpu: list[float] | None = None) -> dict[str, Any]:
    """Wall-clock medians and spread; with ``cpu`` (CPU seconds of the sampling thread/process per
    batch) also CPU-time throughput, which time slices lost to other tenants of the machine do not inflate."""
    t = np.asarray(times)
    med = float(np.median(t))
    row = {
        "seeds_per_s": seeds / med,
        "median_ms": med * 1e3,
        "p10_ms": float(np.percentile(t, 10) * 1e3),
        "p90_ms": float(np.percentile(t, 90) * 1e3),
        "min_ms": float(t.min() * 1e3),
        "n_batches": int(t.size),
    }
    row["edges_per_s"] = float(np.median(edges)) / med if edges else None
    if cpu:
        c = float(np.median(cpu))
        row["cpu_median_ms"] = c * 1e3
        row["seeds_per_cpu_s"] = seeds / c if c > 0 else None
    return row


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and its waited-for children."""
    me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


class Span:
    """CPU seconds (:func:`cpu_seconds`) and wall seconds of one row's measurement."""

    def __enter__(self) -> "Span":
        self.c0, self.t0 = cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu_s, self.wall_s = cpu_seconds() - self.c0, time.perf_counter() - self.t0

    def fields(self, seeds: int, row: dict | None = None) -> dict[str, Any]:
        """``cpu_s``, ``span_wall_s``, ``span_seeds`` and, unless ``row`` has a per-batch one, ``seeds_per_cpu_s``."""
        out: dict[str, Any] = {"cpu_s": self.cpu_s, "span_wall_s": self.wall_s, "span_seeds": int(seeds)}
        if row is not None and row.get("seeds_per_cpu_s"):
            out["cpu_source"] = "per-batch median CPU time of the sampling thread/process"
        else:
            out["seeds_per_cpu_s"] = seeds / self.cpu_s if self.cpu_s > 0 else None
            out["cpu_source"] = "getrusage self + children over the row"
        return out


def scaling_rows(rows: list[dict], noisy: bool) -> list[dict]:
    """Per mode (same name): seeds/s of N > 1 workers over 1 worker, from rows of the same harness.

    The control (:data:`CONTROL_NAME`: work that needs only a core) gives the machine's own N-vs-1 ratio
    in the same run; every sampler ratio also carries it (``machine_ratio``) and its share of it."""
    out, machine = [], {}
    prefixes = (CONTROL_NAME, "numpy static-shape sampler, threads", "numpy static-shape sampler, processes")
    for prefix in prefixes + ("Loader end to end",):
        for mode_name in sorted({r["name"] for r in rows if r["name"].startswith(prefix)}):
            same = {r["workers"]: r for r in rows if r["name"] == mode_name and r.get("seeds_per_s")}
            if 1 not in same:
                continue
            for w, r in sorted(same.items()):
                if w == 1:
                    continue
                ratio = r["seeds_per_s"] / same[1]["seeds_per_s"]
                control = mode_name == CONTROL_NAME
                if control:
                    machine[w] = ratio
                goal = SCALING_GOAL if w == 2 and not control else None
                row = {
                    "name": f"scaling: {mode_name}, {w} vs 1 workers",
                    "workers": w,
                    "replace": False,
                    "scope": "ratio of units/s" if control else "ratio of seeds/s",
                    "seeds_per_s": None,
                    "edges_per_s": None,
                    "median_ms": None,
                    "ratio": ratio,
                    "goal": f">= {goal} on a quiet run" if goal else None,
                    "met": None if (noisy or goal is None) else bool(ratio >= goal),
                    "noisy": noisy,
                    "note": f"{r['seeds_per_s']:,.0f} vs {same[1]['seeds_per_s']:,.0f} seeds/s"
                    + (" (noisy run: not a verdict)" if noisy else ""),
                }
                if not control and w in machine:
                    row["machine_ratio"] = machine[w]
                    row["share_of_machine"] = ratio / machine[w]
                    row["note"] += f"; the control's {w}-vs-1 in this run: {machine[w]:.2f}x"
                out.append(row)
    return out


# ---------------------------------------------------------------------------- our sampler
def _time_ours(adjs, g, batches, fan, replace: bool, warmup: int) -> tuple[list[float], list[int], list[float]]:
    rng = np.random.default_rng(0)
    times, edges, cpu = [], [], []
    for i, s in enumerate(batches):
        c0, t0 = time.thread_time(), time.perf_counter()
        _, masks = sample_hops(adjs, s, _DIRS, fan, rng, pad_id=g.pad_id, replace=replace)
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        if i >= warmup:
            times.append(dt)
            cpu.append(dc)
            edges.append(int(sum(m.sum() for h in masks for m in h.values())))
    return times, edges, cpu


def _thread_round(adjs, g, batches, fan, workers: int, seed: int) -> float:
    """Wall time of ``workers`` threads each sampling its share of ``batches`` once."""

    def run(share, s):
        rng = np.random.default_rng(s)
        for b in share:
            sample_hops(adjs, b, _DIRS, fan, rng, pad_id=g.pad_id)

    ts = [threading.Thread(target=run, args=(batches[w::workers], seed * 100 + w)) for w in range(workers)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


_P_STATE: dict[str, Any] = {}


def _proc_init(path: str, fan: list[int]) -> None:
    g = HeteroCSR.load(path)
    _P_STATE.update(g=g, adjs=build_dir_adjs(g, _DIRS), fan=_fan(fan))


def _proc_task(args: tuple[list[dict], int]) -> float:
    """Samples ``share``; returns this process's CPU seconds doing it."""
    share, seed = args
    st, c0 = _P_STATE, time.process_time()
    rng = np.random.default_rng(seed)
    for s in share:
        sample_hops(st["adjs"], s, _DIRS, st["fan"], rng, pad_id=st["g"].pad_id)
    return time.process_time() - c0


CONTROL_ROWS = 1 << 14  # the control sorts 128 KiB of int64: in a core's L2, so memory bandwidth is no factor
CONTROL_SORTS = 16  # sorts per unit: about one sampler batch of CPU time


def _control_task(args: tuple[int, int]) -> float:
    """The control: ``units`` x :data:`CONTROL_SORTS` sorts of a shuffled in-cache array (no sampler, no
    shared state, nothing sent back) -- what the machine's cores give work that only needs a core;
    returns this process's CPU seconds."""
    units, seed = args
    c0 = time.process_time()
    x = np.random.default_rng(seed).permutation(CONTROL_ROWS).astype(np.int64)
    for _ in range(units * CONTROL_SORTS):
        np.sort(x, kind="quicksort")
    return time.process_time() - c0


def round_order(workers: list[int], r: int) -> list[int]:
    """The worker counts of round ``r``, alternating (1, 2, 2, 1, 1, 2, ...) so that a drift of the shared
    machine's speed (other tenants, frequency) falls on every count alike."""
    return workers if r % 2 == 0 else workers[::-1]


def interleaved_process_rounds(
    task, tasks_for, workers: list[int], rounds: int, init_args: tuple | None
) -> tuple[dict[int, list[float]], dict[int, float]]:
    """Per worker count: the wall seconds of ``rounds`` rounds and the workers' CPU seconds summed.

    One spawn pool per worker count stays open for the whole measurement and the rounds alternate
    between the counts (:func:`round_order`): the 2-vs-1 ratios are side by side, not sequential.
    ``tasks_for(w, r)``: the ``w`` task arguments of round ``r``; ``init_args``: the sampler workers'
    graph and fan-out (:func:`_proc_init`), None for tasks that need no state."""
    ctx = mp.get_context("spawn")
    init = {} if init_args is None else {"initializer": _proc_init, "initargs": init_args}
    pools = {w: ctx.Pool(w, **init) for w in workers}
    walls: dict[int, list[float]] = {w: [] for w in workers}
    cpu = {w: 0.0 for w in workers}
    try:
        for w, pool in pools.items():  # warm-up: start every process, page in the graph
            pool.map(task, tasks_for(w, -1), chunksize=1)
        for r in range(rounds):
            for w in round_order(workers, r):
                t0 = time.perf_counter()
                got = pools[w].map(task, tasks_for(w, r), chunksize=1)
                walls[w].append(time.perf_counter() - t0)
                cpu[w] += float(sum(got))
    finally:
        for pool in pools.values():
            pool.terminate()
            pool.join()
    return walls, cpu


# ---------------------------------------------------------------------------- naive loop
def _naive_sample(g: HeteroCSR, seeds: dict[str, np.ndarray], fan: list[int], rnd: random.Random) -> int:
    """Per-node Python loop: the obvious implementation (random.sample per row)."""
    front = {t: [int(x) for x in v] for t, v in seeds.items()}
    n_edges = 0
    for f in fan:
        nxt: dict[str, list[int]] = {t: [] for t in g.node_types}
        for d in _DIRS:
            csr = g.adj[d]
            lo, _ = g.type_range(d[0])
            for u in front[d[0]]:
                a, b = int(csr.indptr[u - lo]), int(csr.indptr[u - lo + 1])
                deg = b - a
                picks = range(deg) if deg <= f else rnd.sample(range(deg), f)
                nb = [int(csr.indices[a + p]) for p in picks]
                n_edges += len(nb)
                nxt[d[1]].extend(nb)
        front = nxt
    return n_edges


# ---------------------------------------------------------------------------- peers
def run_peer(peer: str, graph_path: Path, seeds_file: Path, threads: int) -> dict[str, Any]:
    venv = Path(FLAGS.peers_venv) / peer
    py = venv / "bin" / "python"
    base = {
        "name": f"{peer} (peer)",
        "workers": threads,
        "replace": False,
        "seeds_per_s": None,
        "edges_per_s": None,
        "scope": "neighbourhood",
    }
    if not py.exists() or not (venv / ".ok").exists():
        return {**base, "status": f"not installed ({venv} missing or incomplete: run benchmarks/install_peers.sh)"}
    cmd = [
        str(py),
        str(ROOT / "benchmarks" / "peers" / f"{peer}_runner.py"),
        "--graph",
        str(graph_path),
        "--seeds",
        str(seeds_file),
        "--fanouts",
        ",".join(FLAGS.fanouts),
        "--warmup",
        str(FLAGS.warmup),
        "--threads",
        str(threads),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONPATH", None)
    try:
        p = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=FLAGS.peer_timeout,
            env=env,
            cwd=str(ROOT / "benchmarks" / "peers"),
        )
    except subprocess.TimeoutExpired:
        return {**base, "status": f"timed out after {FLAGS.peer_timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return {**base, "status": f"failed (exit {p.returncode}): {' | '.join(tail)}"}
    res = json.loads(lines[-1])
    row = {
        **base,
        "name": res["name"],
        "status": "ok",
        **_stats(res["times"], res["seeds_per_batch"], res["edges"], res.get("cpu")),
    }
    return row


# ---------------------------------------------------------------------------- main
def _meta(argv_flags: dict, load0: float) -> dict[str, Any]:
    from twotower_hgnn.provenance import git_sha, utc_now

    return {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, load avg {load0:.2f} at start",
        "date": utc_now(),
        "git_sha": git_sha(ROOT),
        "args": argv_flags,
    }


def _apply_quick() -> None:
    if not FLAGS.quick:
        return
    for name, val in (
        ("n_audiobooks", 20_000),
        ("n_podcasts", 100_000),
        ("num_edges", 2_000_000),
        ("batches", 20),
        ("warmup", 2),
        ("naive_seeds", 16),
        ("peer_threads", ["1"]),
        ("workers", ["1", "2"]),
        ("peer_timeout", 40),
        ("device_epoch_batches", 5),
        # the 12x-seed device batch alone costs ~40 s on XLA:CPU: keep --quick under 60 s
        ("device_full_batch_seeds", [str(FLAGS.batch_seeds)]),
    ):
        if not FLAGS[name].present:
            FLAGS[name].value = val


def _print_table(rows: list[dict]) -> None:
    print(
        f"\n{'name':<62} {'wk':>3} {'seeds/s':>10} {'edges/s':>10} {'med ms':>8} {'p10-p90 ms':>15} {'cpu ms':>7}  scope / status"
    )
    for r in rows:
        s = f"{r['seeds_per_s']:>10.0f}" if r.get("seeds_per_s") else f"{'-':>10}"
        e = f"{r['edges_per_s'] / 1e6:>9.2f}M" if r.get("edges_per_s") else f"{'-':>10}"
        m = f"{r['median_ms']:>8.2f}" if r.get("median_ms") is not None else f"{'-':>8}"
        sp = f"{r['p10_ms']:>6.1f}-{r['p90_ms']:<7.1f}" if r.get("p10_ms") is not None else f"{'':>15}"
        st = r.get("status", "ok")
        if "ratio" in r:
            st = f"{r['ratio']:.2f}x (goal {r['goal'] or '-'}, met {r['met']}) {r['note']}"
        c = f"{r['cpu_median_ms']:>7.2f}" if r.get("cpu_median_ms") is not None else f"{'':>7}"
        print(
            f"{r['name']:<62} {r['workers']:>3} {s} {e} {m} {sp} {c}  {r.get('scope', '')}{'' if st == 'ok' else ' / ' + st}"
        )


def main(argv: list[str]) -> None:
    del argv
    load0 = os.getloadavg()[0]  # before this run adds its own load
    noisy = load0 >= QUIET_LOAD
    _apply_quick()
    t_start = time.perf_counter()
    print(
        f"load average {load0:.2f} at start: "
        + (f"NOISY run (>= {QUIET_LOAD}): ratios are figures, not verdicts" if noisy else "quiet run")
    )
    fan_list = [int(x) for x in FLAGS.fanouts]
    fan = _fan(fan_list)
    g, gpath, t_graph = load_graph()
    st = g.stats()
    print(
        f"graph {gpath.name}: {st['nodes']} edges "
        + ", ".join(f"{k}={v['edges']:,}" for k, v in st["relations"].items())
        + f" (load/build {t_graph:.1f} s)"
    )
    rng = np.random.default_rng(1234)
    n_b = FLAGS.warmup + FLAGS.batches
    batches = make_seed_batches(g, n_b, rng)
    seeds_file = Path(FLAGS.cache_dir) / f"seeds_{gpath.name}_{FLAGS.batch_seeds}_{n_b}.npz"
    np.savez(seeds_file, **{t: np.stack([b[t] for b in batches]).astype(np.int64) for t in g.node_types})
    adjs = build_dir_adjs(g, _DIRS)
    rows: list[dict] = []
    nseed = FLAGS.batch_seeds

    # 1. ours, 1 worker, neighbourhood scope
    with Span() as sp:
        times, edges, cpu = _time_ours(adjs, g, batches, fan, False, FLAGS.warmup)
    ours1 = {
        "name": "numpy static-shape sampler (this repo)",
        "workers": 1,
        "replace": False,
        "scope": "neighbourhood",
        **_stats(times, nseed, edges, cpu),
    }
    ours1.update(sp.fields(len(batches) * nseed, ours1))
    rows.append(ours1)
    with Span() as sp:
        times_r, edges_r, cpu_r = _time_ours(adjs, g, batches, fan, True, FLAGS.warmup)
    r = {
        "name": "numpy static-shape sampler, WITH replacement",
        "workers": 1,
        "replace": True,
        "scope": "neighbourhood",
        **_stats(times_r, nseed, edges_r, cpu_r),
    }
    rows.append({**r, **sp.fields(len(batches) * nseed, r)})
    edges_per_batch = float(np.median(edges))
    # 2. ours, N workers: every worker count, 1 included, in alternating rounds of one harness per mode
    rounds = 9 if FLAGS.quick else 15  # many short alternating rounds: their median resists bursts
    workers = [int(x) for x in FLAGS.workers]
    timed = batches[FLAGS.warmup :]
    if "thread" in FLAGS.modes:
        t_walls: dict[int, list[float]] = {w: [] for w in workers}
        with Span() as sp:
            for r in range(rounds):
                for w in round_order(workers, r):
                    t_walls[w].append(_thread_round(adjs, g, timed, fan, w, r))
        for w in workers:
            rows.append(
                {
                    "name": "numpy static-shape sampler, threads",
                    "workers": w,
                    "replace": False,
                    "scope": "neighbourhood",
                    **_stats([x / len(timed) for x in t_walls[w]], nseed, [edges_per_batch]),
                    **sp.fields(rounds * len(timed) * nseed * len(workers)),
                    "note": "per-batch time = round wall / batches; rounds alternate between worker counts",
                }
            )
    if "process" in FLAGS.modes:
        seeds = rounds * len(timed) * nseed

        def process_row(name, scope, w, walls, cpu_s, edges_, note):
            return {
                "name": name,
                "workers": w,
                "replace": False,
                "scope": scope,
                **_stats([x / len(timed) for x in walls], nseed, edges_),
                "cpu_s": cpu_s,
                "span_seeds": seeds,
                "seeds_per_cpu_s": seeds / cpu_s if cpu_s > 0 else None,
                "cpu_source": "per-call CPU seconds of the worker processes over the timed rounds",
                "note": note + "; rounds alternate between worker counts, each count's pool open throughout",
            }

        p_walls, p_cpu = interleaved_process_rounds(
            _proc_task,
            lambda w, r: [(timed[:2] if r < 0 else timed[i::w], (r + 1) * 100 + i) for i in range(w)],
            workers,
            rounds,
            (str(gpath), fan_list),
        )
        # the control, same harness: work that needs only a core, shares nothing and sends nothing back
        c_walls, c_cpu = interleaved_process_rounds(
            _control_task,
            lambda w, r: [(1 if r < 0 else len(timed[i::w]), (r + 1) * 100 + i) for i in range(w)],
            workers,
            rounds,
            None,
        )
        for w in workers:
            rows.append(
                process_row(
                    "numpy static-shape sampler, processes",
                    "neighbourhood",
                    w,
                    p_walls[w],
                    p_cpu[w],
                    [edges_per_batch],
                    "results stay in the workers (no transfer); see Loader rows for end to end",
                )
            )
        for w in workers:
            rows.append(
                process_row(
                    CONTROL_NAME,
                    "control",
                    w,
                    c_walls[w],
                    c_cpu[w],
                    None,
                    f"per unit: {CONTROL_SORTS} sorts of {CONTROL_ROWS:,} int64 (no sampler); seeds/s = units/s x "
                    "batch_seeds, so its 2-vs-1 ratio is comparable",
                )
            )
    # 3. separately timed pieces of a training batch: supervision edges, negatives, exclusion
    P = max(1, nseed // 6)  # 2 + 4 negatives per positive: ~batch_seeds seeds
    spec = make_spec(g, positives_per_batch=P, fanouts=tuple(fan_list), seed=0)
    sampler = NumpySampler(g, spec)
    lay = sampler.layout
    sampler.batch(0, 0)
    pieces = {"supervision": [], "negatives": [], "negatives_avoid": [], "exclusion": [], "full": []}
    avoid = {d: adjs[d] for d in _DIRS}
    pieces_span = Span().__enter__()
    piece_cpu = {k: 0.0 for k in pieces}  # this thread's CPU seconds per piece, summed over the batches
    for i in range(FLAGS.batches):
        c = [time.thread_time()]
        t0 = time.perf_counter()
        pairs = sampler.batch_edges(0, i % sampler.num_batches(0))
        a, p = sampler.supervision(pairs, np.random.default_rng(i))
        t1 = time.perf_counter()
        c.append(time.thread_time())
        draw_negatives(g, spec.negatives_per_type, a, sampler._anchor_type, np.random.default_rng(i))
        t2 = time.perf_counter()
        c.append(time.thread_time())
        draw_negatives(g, spec.negatives_per_type, a, sampler._anchor_type, np.random.default_rng(i), avoid_adj=avoid)
        t3 = time.perf_counter()
        c.append(time.thread_time())
        sampler.holes(a, p, np.ones(P, bool))
        t4 = time.perf_counter()
        c.append(time.thread_time())
        sampler.batch(0, i % sampler.num_batches(0))
        t5 = time.perf_counter()
        c.append(time.thread_time())
        for j, (k, v) in enumerate(zip(pieces, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4))):
            pieces[k].append(v)
            piece_cpu[k] += c[j + 1] - c[j]
    pieces_span.__exit__(None, None, None)
    for k, scope in (
        ("supervision", "supervision edges only"),
        ("negatives", "negatives only"),
        ("negatives_avoid", "negatives avoiding known positives only"),
        ("exclusion", "supervision-edge exclusion (holes) only"),
    ):
        rows.append(
            {
                "name": f"  piece: {scope}",
                "workers": 1,
                "replace": False,
                "scope": f"piece, {P} positives",
                **_stats(pieces[k], lay.num_seeds, None),
                "cpu_s": piece_cpu[k],
                "span_seeds": FLAGS.batches * lay.num_seeds,
                "seeds_per_cpu_s": FLAGS.batches * lay.num_seeds / piece_cpu[k] if piece_cpu[k] > 0 else None,
                "cpu_source": "per-batch thread CPU time of the piece, summed",
            }
        )
    rows.append(
        {
            "name": "NumpySampler.batch (full training batch)",
            "workers": 1,
            "replace": False,
            "scope": f"full batch: {P} pos x (2+4 neg) = {lay.num_seeds} seeds, exclusion on",
            **_stats(pieces["full"], lay.num_seeds, None),
            **pieces_span.fields(FLAGS.batches * lay.num_seeds),
            "note": "cpu_s covers the pieces above and the full batches, timed in one loop",
        }
    )
    # 4. Loader end to end (full training batches, result delivered to the consumer)
    n_load = min(sampler.num_batches(0), max(FLAGS.batches, 8))
    for mode in FLAGS.modes:
        for w in (int(x) for x in FLAGS.workers):
            if mode == "process":
                sl = NumpySampler(HeteroCSR.load(gpath), spec)  # memmapped: pickles by file name
            else:
                sl = sampler
            sp = Span().__enter__()
            with Loader(sl, 0, workers=w, mode=mode, prefetch=2 * w) as L:
                first = time.perf_counter()
                next(L)  # start-up (process spawn, graph paging) excluded
                t0 = time.perf_counter()
                k = 0
                for _ in L:
                    k += 1
                    if k >= n_load:
                        break
                wall = time.perf_counter() - t0
            sp.__exit__(None, None, None)
            rows.append(
                {
                    "name": f"Loader end to end, {mode} mode",
                    "workers": w,
                    "replace": False,
                    "scope": f"full batch ({lay.num_seeds} seeds) delivered to consumer",
                    "seeds_per_s": k * lay.num_seeds / wall,
                    "edges_per_s": None,
                    "median_ms": wall / k * 1e3,
                    "p10_ms": None,
                    "p90_ms": None,
                    "n_batches": k,
                    **sp.fields((k + 1) * lay.num_seeds),
                    "note": f"start-up {t0 - first:.2f} s excluded from seeds/s, included in cpu_s",
                }
            )
    # 5. naive loop on a subset, extrapolated
    sub = {t: v[: max(1, int(round(FLAGS.naive_seeds * v.size / nseed)))] for t, v in batches[FLAGS.warmup].items()}
    ns = sum(v.size for v in sub.values())
    rnd = random.Random(0)
    tn = []
    naive_span = Span().__enter__()
    for rep in range(3):
        t0 = time.perf_counter()
        ne = _naive_sample(g, sub, fan_list, rnd)
        tn.append(time.perf_counter() - t0)
    med = float(np.median(tn))
    naive_span.__exit__(None, None, None)
    rows.append(
        {
            "name": f"naive per-node Python loop ({ns}-seed subset, EXTRAPOLATED)",
            "workers": 1,
            "replace": False,
            "scope": "neighbourhood",
            "seeds_per_s": ns / med,
            "edges_per_s": ne / med,
            "median_ms": med * nseed / ns * 1e3,
            "p10_ms": None,
            "p90_ms": None,
            "n_batches": 3,
            **naive_span.fields(3 * ns),
        }
    )
    # 5b. the device backend (benchmarks/device_sampler.py, owned by the device-sampler area)
    if FLAGS.device:
        from benchmarks.device_sampler import bench_device_rows

        sizes = [int(x) for x in (FLAGS.device_full_batch_seeds or [nseed, 12 * nseed])]
        rows.extend(
            bench_device_rows(
                g,
                batches,
                fanouts=fan_list,
                batches=FLAGS.batches,
                warmup=FLAGS.warmup,
                full_batch_seeds=sizes,
                epoch_batches=FLAGS.device_epoch_batches,
            )
        )
    # 6. peers
    for peer in FLAGS.peers:
        for th in (int(x) for x in FLAGS.peer_threads):
            print(f"running {peer} with {th} thread(s) ...", flush=True)
            with Span() as sp:
                pr = run_peer(peer, gpath, seeds_file, th)
            if pr.get("seeds_per_s"):  # cpu_s includes the peer's start-up (imports, graph build)
                pr.update(sp.fields(n_b * nseed, pr))
            rows.append(pr)
    # 7. ours again after the peers: the shared machine's load drifts; a second measurement brackets it
    with Span() as sp:
        times2, edges2, cpu2 = _time_ours(adjs, g, batches, fan, False, FLAGS.warmup)
    ours1b = {
        "name": "numpy static-shape sampler (this repo), repeated after peers",
        "workers": 1,
        "replace": False,
        "scope": "neighbourhood",
        **_stats(times2, nseed, edges2, cpu2),
    }
    ours1b.update(sp.fields(len(batches) * nseed, ours1b))
    rows.append(ours1b)
    rows.extend(scaling_rows(rows, noisy))
    # ratios + GPU feeding estimate
    for r in rows:
        r.setdefault("status", "ok")
    summary: dict[str, Any] = {}
    dgl1 = next((r for r in rows if r["name"].startswith("dgl") and r["workers"] == 1 and r.get("seeds_per_s")), None)
    pyg1 = next((r for r in rows if r["name"].startswith("pyg") and r["workers"] == 1 and r.get("seeds_per_s")), None)
    slow = min(ours1["seeds_per_s"], ours1b["seeds_per_s"])  # conservative: the worse of the two runs
    slow_cpu = min(ours1.get("seeds_per_cpu_s") or 0, ours1b.get("seeds_per_cpu_s") or 0)
    for key, peer in (("dgl", dgl1), ("pyg", pyg1)):
        if peer:
            summary[f"ours_1worker_over_{key}_1thread"] = slow / peer["seeds_per_s"]
            if peer.get("seeds_per_cpu_s") and slow_cpu:
                summary[f"ours_1worker_over_{key}_1thread_cpu_time"] = slow_cpu / peer["seeds_per_cpu_s"]
    for r in rows:
        if r["name"].startswith(("dgl", "pyg")) and r.get("seeds_per_s"):
            r["ours_1worker_over_this"] = slow / r["seeds_per_s"]
    full = next(r for r in rows if r["name"].startswith("NumpySampler.batch"))
    summary["workers_for_gpu_step_neighbourhood"] = FLAGS.gpu_seeds_per_s / ours1["seeds_per_s"]
    summary["workers_for_gpu_step_full_batch"] = FLAGS.gpu_seeds_per_s / full["seeds_per_s"]
    summary["load_avg_start"] = load0
    summary["noisy"] = noisy
    summary["scaling"] = {r["name"]: r["ratio"] for r in rows if r["name"].startswith("scaling:")}
    summary["machine_ratio"] = {r["name"]: r["ratio"] for r in rows if r["name"].startswith(f"scaling: {CONTROL_NAME}")}
    summary["load_avg_end"] = os.getloadavg()[0]
    summary["wall_s"] = time.perf_counter() - t_start
    _print_table(rows)
    print("\nsummary:", json.dumps(summary, indent=1))
    out = {
        "meta": {
            **_meta({f.name: f.value for f in FLAGS.get_flags_for_module(sys.modules[__name__])}, load0),
            "load_avg_start": load0,
            "noisy": noisy,
            "quiet_load_below": QUIET_LOAD,
        },
        "rows": rows,
        "summary": summary,
        "graph": st,
    }
    if FLAGS.json:
        path = Path(FLAGS.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=1, default=str))
        os.replace(tmp, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
