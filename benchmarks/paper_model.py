"""The HGNN's model stages at the paper's graph size on this CPU box: graph, features, 200 training steps,
full-catalogue inference, each measured in its own child process.

**What is generated, not built by the pipeline.** The pipeline cannot yet build the paper-scale
co-listening graph here (its graph build runs for hours on 2 cores), so the graph is a **generated**
one of the paper's size: ``sampler.synthetic.powerlaw_hetero_graph`` (the project's power-law
generator, also behind ``benchmarks/sampler_throughput.py``) with 250,000 audiobooks + 3,500,000
podcasts and the three relations AB-AB, AB-PC, PC-PC. Its edge count keeps the edges per item of the
co-listening graph the pipeline built at the ``large`` synthetic scale (13,716,372 edges over 750,000
items, ``benchmarks/results/graph_engine.json``; read from that file when present). That file records
no per-relation split, so the split is the one the pipeline's graph stage measured at the ``small``
scale (same rule, top-20 per item, same 1 : 14 audiobook : podcast ratio; :data:`RELATION_EDGES_SMALL`).
As in the pipeline (``data_stages``), 10 % of each relation's edges are held out (``twotower_hgnn.
graph.holdout_edges``): training reads the rest, inference the full graph.

**Phases** (one fresh ``python -m benchmarks.paper_model --child=PHASE`` process each, so that each
has its own peak RSS, read with ``os.wait4``; intermediate files under ``--work_dir``):

* ``graph``: generate, save the full graph, hold out, save the training graph and the held-out edges.
* ``features`` (in the training child, before training): the paper synthetic scale's item vectors
  (``--item_vectors``, float32 ``[3.75M, 64]``) when that file exists, else seeded random unit vectors
  of ``--feat_dim``. ``--feat_storage=padded`` (default) reads the file into an in-memory float32
  ``[N + 1, d]`` with the zero padding row, which ``models.hgnn.padded_features`` (trainer and
  ``embed_items``) passes through without a copy; ``--feat_storage=mmap`` passes ``np.load(...,
  mmap_mode="r")``, which that function copies to float32 ``[N + 1, d]`` anyway (the mapping saves
  nothing there, and its pages read count in the RSS too). ``--feat_dtype=bfloat16`` keeps a bf16
  copy: the trainer and ``embed_items`` take NumPy floating arrays only (``ml_dtypes.bfloat16`` is not
  a NumPy floating type), so it is upcast to float32 at that boundary (``boundary_upcast`` says so).
  Bytes as stored on the host are recorded.
* ``training``: ``twotower_hgnn.train.hgnn.train_hgnn`` -- the pipeline hgnn stage's entry point, with
  its sampler factory -- under the ``--config`` preset's HGNN config (default ``scale``: 64-wide,
  fan-out (5, 3), 128 positives per step, validation every 50 steps on 500 held-out edges per
  relation, ``max_steps`` 200) for ``--steps`` steps; no checkpoints or TensorBoard (``workdir=None``).
  A hook times every step: first step (compiles), steps/s after it (validations included, and
  without the steps that validated), validation seconds, the jitted steps' traces after the first step
  (``train_hgnn``'s trace counter: a recompile would add one), and the feature table on the device.
* ``inference``: ``twotower_hgnn.inference.embed_items`` (as the pipeline's hgnn stage calls it) over
  every node of the full graph with the trained (best) parameters: seconds, items/s, finite and
  L2-normalised output.

Each row carries wall and CPU seconds (the phase proper, ``getrusage`` of the child) and the child's
peak RSS (its whole life: interpreter, jax, the memory-mapped graph pages it touched, the phase). The
machine is shared: the 1-minute load average is recorded at the start and at each phase; a run
started at load >= :data:`QUIET_LOAD` is marked ``noisy``.

  JAX_PLATFORMS=cpu .venv/bin/python -m benchmarks.paper_model                  # paper size, ~22 min on 2 cores
  JAX_PLATFORMS=cpu .venv/bin/python -m benchmarks.paper_model --dry_run --json=/tmp/p.json  # tiny, ~30 s
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.measure import dir_bytes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
QUIET_LOAD = 0.5  # 1-minute load average at the start below which a run counts as quiet
PAPER_COUNTS = {"audiobook": 250_000, "podcast": 3_500_000}
DRY_COUNTS = {"audiobook": 150, "podcast": 850}
# The co-listening graph of the large synthetic scale (graph_engine.json; used when that file is absent).
LARGE_EDGES, LARGE_ITEMS = 13_716_372, 750_000
# Per-relation edges of the pipeline's graph stage at the small synthetic scale (1,000 AB + 14,000 PC,
# rule top-20; .cache/scale_runs/synthetic-small-s0/default/graph/_STAGE.json, 2026-11-30).
RELATION_EDGES_SMALL = {
    ("audiobook", "audiobook"): 12_215,
    ("audiobook", "podcast"): 15_759,
    ("podcast", "podcast"): 240_126,
}
PHASES = ("graph", "training", "inference")
DEFAULT_VECTORS = "/tmp/synthetic-parquet/paper-seed0-chunk200000/item_vectors.npy"


# ------------------------------------------------------------------------------------ plan
def large_edges_per_item() -> tuple[float, str]:
    """Edges per item of the pipeline's co-listening graph at ``large`` and where the figure comes from."""
    path = RESULTS / "graph_engine.json"
    try:
        d = json.loads(path.read_text())
        for key, run in d.items():
            if run["meta"].get("scale") == "large":
                items = sum(run["meta"]["data"]["item_type_counts"].values())
                return run["rows"][0]["edges"] / items, f"{path.relative_to(ROOT)} [{key}]"
    except (OSError, KeyError, IndexError, ValueError):
        pass
    return LARGE_EDGES / LARGE_ITEMS, "constants LARGE_EDGES / LARGE_ITEMS (graph_engine.json, 2026-11-30)"


def relation_targets(counts: dict[str, int], edges_per_item: float) -> dict[tuple[str, str], int]:
    """Undirected edges per relation: ``edges_per_item`` x items, split as :data:`RELATION_EDGES_SMALL`."""
    total = edges_per_item * sum(counts.values())
    denom = sum(RELATION_EDGES_SMALL.values())
    return {rel: int(round(total * m / denom)) for rel, m in RELATION_EDGES_SMALL.items()}


def make_plan(a: argparse.Namespace) -> dict[str, Any]:
    counts = dict(DRY_COUNTS if a.dry_run else PAPER_COUNTS)
    if a.n_audiobooks is not None:
        counts["audiobook"] = a.n_audiobooks
    if a.n_podcasts is not None:
        counts["podcast"] = a.n_podcasts
    epi, src = large_edges_per_item()
    if a.edges_per_item is not None:
        epi, src = a.edges_per_item, "--edges_per_item"
    n = sum(counts.values())
    vec = a.item_vectors
    use_vec = bool(vec) and Path(vec).exists() and not a.dry_run
    if use_vec:
        shape = np.load(vec, mmap_mode="r").shape
        if shape[0] != n:
            print(f"[paper_model] {vec}: {shape[0]} rows != {n} nodes: random features instead", flush=True)
            use_vec = False
    overrides = parse_overrides(a.set)
    if a.dry_run:
        overrides.setdefault("hgnn.val_every_steps", "2")
        overrides.setdefault("hgnn.val_max_edges", "16")
    return {
        "counts": counts,
        "relation_edges": [[list(r), m] for r, m in relation_targets(counts, epi).items()],
        "edges_per_item": epi,
        "edges_per_item_source": src,
        "relation_split_source": "RELATION_EDGES_SMALL (pipeline graph stage at the small scale)",
        "alpha": a.alpha,
        "graph_seed": a.graph_seed,
        "holdout_frac": a.holdout_frac,
        "item_vectors": vec if use_vec else None,
        "feat_dim": a.feat_dim,
        "feat_dtype": a.feat_dtype,
        "feat_storage": a.feat_storage,
        "config": a.config,
        "overrides": overrides,
        "steps": a.steps if a.steps is not None else (3 if a.dry_run else None),
        "chunk_size": a.chunk_size,
        "work_dir": str(Path(a.work_dir).resolve()),
    }


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    from benchmarks.scale import parse_overrides as parse

    return parse(items)


# ------------------------------------------------------------------------------------ child helpers
def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_self() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _hgnn_cfg(plan: dict[str, Any]):
    import dataclasses

    from sampler.factory import resolve_sampler
    from twotower_hgnn import configs

    rc = configs.load(plan["config"], plan["overrides"])
    h = rc.hgnn
    over: dict[str, Any] = {"fused_sampling": resolve_sampler(rc.sampler) == "device"}  # as pipeline hgnn_config
    if plan["steps"] is not None:
        over["max_steps"] = int(plan["steps"])
    return dataclasses.replace(h, **over), rc.sampler


def _read_npy_rows(path: str, out: np.ndarray) -> None:
    """Reads a C-order ``.npy`` of ``out``'s dtype and shape into ``out`` with plain reads (no mapping,
    no second copy)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        if tuple(shape) != out.shape or fortran or np.dtype(dtype) != out.dtype:
            raise ValueError(f"{path}: {shape} {dtype} (fortran {fortran}) is not {out.shape} {out.dtype}")
        view, done = memoryview(out.reshape(-1).view(np.uint8)), 0
        while done < view.nbytes:
            n = fh.readinto(view[done : done + (64 << 20)])
            if not n:
                raise ValueError(f"{path}: truncated after {done} bytes")
            done += n


def open_features(plan: dict[str, Any], num_nodes: int) -> tuple[np.ndarray, dict[str, Any]]:
    """(features as stored on the host, figures): the item vectors or seeded random unit vectors.

    ``feat_storage``: ``padded`` (default) holds them in memory as float32 ``[N + 1, d]`` with the zero
    padding row, which ``padded_features`` (trainer and ``embed_items``) passes through without a copy;
    ``mmap`` passes ``np.load(mmap_mode="r")`` of the file (the project's code then copies it to a float32
    ``[N + 1, d]``, and the mapped pages it read count in the RSS too). ``feat_dtype=bfloat16``: an
    in-memory bf16 ``[N, d]`` copy (upcast at the trainer's boundary, :func:`for_trainer`)."""
    t0, c0 = time.perf_counter(), _cpu_self()
    vec, bf16 = plan["item_vectors"], plan["feat_dtype"] == "bfloat16"
    mmapped = False
    if vec and (plan["feat_storage"] == "mmap" or bf16):
        f = np.load(vec, mmap_mode="r")
        source, mmapped = f"{vec} (mmap_mode='r')", True
    elif vec:
        d = np.load(vec, mmap_mode="r").shape[1]
        f = np.zeros((num_nodes + 1, d), np.float32)
        _read_npy_rows(vec, f[:-1])
        source = f"{vec} (read into a padded float32 [N + 1, d])"
    else:
        rng = np.random.default_rng([plan["graph_seed"], 7])
        f = np.zeros((num_nodes + 1, plan["feat_dim"]), np.float32)
        f[:-1] = rng.standard_normal((num_nodes, plan["feat_dim"]), dtype=np.float32)
        f[:-1] /= np.linalg.norm(f[:-1], axis=1, keepdims=True)
        source = f"seeded random unit vectors (dim {plan['feat_dim']}, padded float32 [N + 1, d])"
    if bf16:
        import ml_dtypes

        f = np.asarray(f[:num_nodes]).astype(ml_dtypes.bfloat16)  # an in-memory bf16 copy (mapping dropped)
        mmapped = False
    info = {
        "source": source,
        "storage": "mmap" if mmapped else "memory",
        "dtype": str(f.dtype),
        "shape": list(f.shape),
        "bytes": int(f.nbytes),
        "memory_mapped": mmapped,
        "seconds": time.perf_counter() - t0,
        "cpu_s": _cpu_self() - c0,
    }
    return f, info


def for_trainer(f: np.ndarray) -> tuple[np.ndarray, bool]:
    """``f`` as the trainer / ``embed_items`` accept it (NumPy floating); bf16 is upcast (True) into a
    padded float32 ``[N + 1, d]``."""
    if np.issubdtype(f.dtype, np.floating):
        return f, False
    out = np.zeros((f.shape[0] + 1, f.shape[1]), np.float32)
    out[:-1] = f
    return out, True


def _per_relation(g, rel):
    """A view of ``g`` with the one relation ``rel`` (its edges and directions; arrays shared)."""
    from sampler.csr import HeteroCSR

    dirs = [d for d in g.adj if {d, d[::-1]} & {rel}]
    return HeteroCSR(g.node_types, g.type_offsets, {rel: g.edges[rel]}, {d: g.adj[d] for d in dirs})


def _merge_saved(parts: list[Path], dest: Path):
    """The relations saved one per folder in ``parts`` as one graph saved at ``dest`` (memory-mapped)."""
    import shutil

    from sampler.csr import HeteroCSR

    loaded = [HeteroCSR.load(p) for p in parts]
    g0 = loaded[0]
    edges = {r: e for p in loaded for r, e in p.edges.items()}
    adj = {d: c for p in loaded for d, c in p.adj.items()}
    HeteroCSR(g0.node_types, g0.type_offsets, edges, adj).save(dest)
    del loaded, edges, adj
    for p in parts:
        shutil.rmtree(p)
    return HeteroCSR.load(dest)


def generate_graph(plan: dict[str, Any], work: Path, log=print):
    """``sampler.synthetic.powerlaw_hetero_graph(counts, relation_edges, seed, alpha)`` -- the same
    random stream, hence the same graph -- built one relation at a time (``powerlaw_edges``, then
    ``HeteroCSR.from_edges`` of that relation alone, saved), so that the peak holds one relation's
    build, not every relation's edges beside the largest one's. Returns the graph, memory-mapped."""
    from sampler.csr import HeteroCSR, relation_name
    from sampler.synthetic import powerlaw_edges

    counts = {t: int(n) for t, n in plan["counts"].items()}
    node_types = tuple(counts)
    offsets = np.concatenate([[0], np.cumsum([counts[t] for t in node_types])]).astype(np.int64)
    rng = np.random.default_rng(plan["graph_seed"])
    perms = {t: rng.permutation(counts[t]) for t in node_types}  # powerlaw_hetero_graph's order of draws
    parts = []
    for i, (rel, m) in enumerate(plan["relation_edges"]):
        a, b = rel
        t0 = time.perf_counter()
        e = powerlaw_edges(
            rng, counts[a], counts[b], int(m), same_type=a == b, alpha=plan["alpha"], perm_a=perms[a], perm_b=perms[b]
        )
        e[:, 0] += offsets[node_types.index(a)]
        e[:, 1] += offsets[node_types.index(b)]
        part = HeteroCSR.from_edges(node_types, counts, {(a, b): e})
        del e
        parts.append(work / f"_part_{i}")
        part.save(parts[-1])
        del part
        took, peak = time.perf_counter() - t0, _peak_self() / 2**30
        log(f"[paper_model] {relation_name((a, b))}: {took:.1f} s, peak RSS so far {peak:.2f} GiB")
    return _merge_saved(parts, work / "full_graph")


def holdout_graph(g, frac: float, seed: int, work: Path):
    """``twotower_hgnn.graph.holdout_edges(g, frac, seed)`` one relation at a time (its draws are per
    relation, so the result is the same): (training graph saved and memory-mapped, held-out edges)."""
    from twotower_hgnn.graph import holdout_edges

    parts, held = [], {}
    for i, rel in enumerate(g.relations):
        part, h = holdout_edges(_per_relation(g, rel), frac=frac, seed=seed)
        held.update(h)
        parts.append(work / f"_train_part_{i}")
        part.save(parts[-1])
        del part
    return _merge_saved(parts, work / "train_graph"), held


def _child_graph(plan: dict[str, Any]) -> dict[str, Any]:
    from sampler.csr import relation_name

    work = Path(plan["work_dir"])
    rel = {tuple(r): int(m) for r, m in plan["relation_edges"]}
    t0, c0 = time.perf_counter(), _cpu_self()
    g = generate_graph(plan, work)
    gen_s, gen_cpu = time.perf_counter() - t0, _cpu_self() - c0
    peak_gen = _peak_self()
    t1 = time.perf_counter()
    g_train, held = holdout_graph(g, plan["holdout_frac"], plan["graph_seed"], work)
    hold_s = time.perf_counter() - t1
    np.savez(work / "val_edges.npz", **{f"{a}|{b}": e for (a, b), e in held.items()})
    degrees = {}
    for d, csr in g.adj.items():
        deg = np.diff(np.asarray(csr.indptr))
        degrees[f"{d[0]}<-{d[1]}"] = {
            "mean": float(deg.mean()),
            "max": int(deg.max()),
            "isolated": int((deg == 0).sum()),
        }
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_s": _cpu_self() - c0,
        "generate_seconds": gen_s,
        "generate_cpu_s": gen_cpu,
        "holdout_seconds": hold_s,
        "peak_rss_after_generate_bytes": peak_gen,
        "build_note": "one relation at a time (generate_graph, holdout_graph), each saved and memory-mapped; "
        "seconds include writing the full and the training graph to --work_dir",
        "nodes": dict(plan["counts"]),
        "edges_target": {relation_name(r): m for r, m in rel.items()},
        "edges": {relation_name(r): int(e.shape[0]) for r, e in g.edges.items()},
        "edges_total": int(sum(e.shape[0] for e in g.edges.values())),
        "edges_train": {relation_name(r): int(e.shape[0]) for r, e in g_train.edges.items()},
        "edges_held_out": {relation_name(r): int(e.shape[0]) for r, e in held.items()},
        "degree": degrees,
        "bytes_on_disk": {"full_graph": dir_bytes(work / "full_graph"), "train_graph": dir_bytes(work / "train_graph")},
    }


def _load_val(work: Path) -> dict[tuple[str, str], np.ndarray]:
    with np.load(work / "val_edges.npz") as z:
        return {tuple(k.split("|")): z[k] for k in z.files}


def _child_training(plan: dict[str, Any]) -> dict[str, Any]:
    from sampler.csr import HeteroCSR
    from sampler.factory import sampler_factory
    from twotower_hgnn.train import hgnn as H
    from twotower_hgnn.train.hgnn_loop import Hook

    work = Path(plan["work_dir"])
    g = HeteroCSR.load(work / "train_graph")
    val = _load_val(work)
    feats, finfo = open_features(plan, g.num_nodes)
    feats_in, upcast = for_trainer(feats)
    finfo["boundary_upcast"] = upcast
    finfo["bytes_passed_to_trainer"] = int(feats_in.nbytes)
    finfo["peak_rss_after_bytes"] = _peak_self()
    cfg, sampler_name = _hgnn_cfg(plan)

    class StepTimer(Hook):
        """Per step: wall seconds from this hook's ``before_step`` to its ``after_step`` (the feed, the
        jitted step and the built-in hooks, validation included) and whether the step validated."""

        def __init__(self) -> None:
            self.rows: list[tuple[int, float, bool]] = []
            self.traces_after_first: dict[str, int] | None = None

        def on_start(self, ctx, s) -> None:
            self.t_on_start = time.perf_counter()
            self.n_hist = len(s.history)
            self.table = {"dtype": str(ctx.feats.dtype), "shape": list(ctx.feats.shape), "bytes": int(ctx.feats.nbytes)}
            self.epoch_steps = int(ctx.steps_src.num_batches(1))

        def before_step(self, ctx, s) -> None:
            self._t0 = time.perf_counter()

        def after_step(self, ctx, s) -> None:
            validated = len(s.history) > self.n_hist
            self.n_hist = len(s.history)
            self.rows.append((s.step, time.perf_counter() - self._t0, validated))
            if self.traces_after_first is None:
                self.traces_after_first = dict(H._TRACES)

    timer = StepTimer()
    traces0 = dict(H._TRACES)
    t0, c0 = time.perf_counter(), _cpu_self()
    res = H.train_hgnn(g, feats_in, val, cfg, None, sampler_factory=sampler_factory(sampler_name), hooks=[timer])
    wall, cpu = time.perf_counter() - t0, _cpu_self() - c0
    with open(work / "params.pkl", "wb") as fh:
        pickle.dump(res.params, fh)
    steps = timer.rows
    after = steps[1:]
    plain = [dt for _, dt, v in after if not v]
    val_rows = [dt for _, dt, v in steps if v]
    med = float(np.median(plain)) if plain else None
    traces_end = {k: H._TRACES[k] - traces0[k] for k in H._TRACES}
    first = timer.traces_after_first or {}
    return {
        "seconds": wall,
        "cpu_s": cpu,
        "features": finfo,
        "config": cfg.to_dict(),
        "sampler": sampler_name,
        "setup_seconds": timer.t_on_start - t0,
        "setup_note": "spec, padded features on the device, sampler build (holdout), validation batches, "
        "random baseline, and the epoch-0 validation (compiles the eval step)",
        "steps": res.steps,
        "steps_per_epoch": timer.epoch_steps,
        "stop_reason": res.stop_reason,
        "first_step_seconds": steps[0][1] if steps else None,
        "steps_per_s_after_first": (len(after) / sum(dt for _, dt, _ in after)) if after else None,
        "steps_per_s_after_first_without_validation_steps": (len(plain) / sum(plain)) if plain else None,
        "median_step_seconds": med,
        "validations_in_loop": len(val_rows),
        "validation_seconds_est": (sum(val_rows) - med * len(val_rows)) if (val_rows and med) else None,
        "traces": traces_end,
        "recompiles_after_first_step": {k: H._TRACES[k] - first[k] for k in first} if first else None,
        "feature_table_on_device": timer.table,
        "best_val_mrr": res.best_metric,
        "random_baseline_val_mrr": res.baseline.get("val_mrr"),
        "history": [
            {k: r.get(k) for k in ("step", "val_mrr", "train_loss", "wall_s", "steps_per_s")} for r in res.history
        ],
    }


def _child_inference(plan: dict[str, Any]) -> dict[str, Any]:
    from sampler.csr import HeteroCSR
    from twotower_hgnn.inference import embed_items

    work = Path(plan["work_dir"])
    g = HeteroCSR.load(work / "full_graph")
    feats, finfo = open_features(plan, g.num_nodes)
    feats_in, upcast = for_trainer(feats)
    with open(work / "params.pkl", "rb") as fh:
        params = pickle.load(fh)
    cfg, _ = _hgnn_cfg(plan)
    rss0 = _peak_self()
    t0, c0 = time.perf_counter(), _cpu_self()
    z = embed_items(params, cfg.model, g, feats_in, chunk_size=plan["chunk_size"], progress=False)
    wall, cpu = time.perf_counter() - t0, _cpu_self() - c0
    z = np.asarray(z)
    norms = np.linalg.norm(z.astype(np.float64), axis=1)
    return {
        "seconds": wall,
        "cpu_s": cpu,
        "items": int(z.shape[0]),
        "items_per_s": z.shape[0] / wall,
        "out_shape": list(z.shape),
        "out_dtype": str(z.dtype),
        "finite": bool(np.isfinite(z).all()),
        "norm_min": float(norms.min()),
        "norm_max": float(norms.max()),
        "l2_normalised": bool(np.all(np.abs(norms - 1.0) < 1e-3)),
        "chunk_size": plan["chunk_size"],
        "features_boundary_upcast": upcast,
        "peak_rss_before_bytes": rss0,
    }


CHILDREN = {"graph": _child_graph, "training": _child_training, "inference": _child_inference}


def child_main(phase: str, plan_path: str, out_path: str) -> None:
    from twotower_hgnn.io import atomic_write_json

    plan = json.loads(Path(plan_path).read_text())
    out = CHILDREN[phase](plan)
    out["load_avg_end"] = os.getloadavg()[0]
    atomic_write_json(out_path, json.loads(json.dumps(out, default=float)))


# ------------------------------------------------------------------------------------ parent
def run_phase(phase: str, plan_path: Path, timeout_s: float) -> dict[str, Any]:
    """One phase in a fresh child; its result plus the child's peak RSS and CPU seconds (``wait4``)."""
    work = plan_path.parent
    out = work / f"{phase}.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("JAX_PLATFORMS", "cpu")
    cmd = [sys.executable, "-m", "benchmarks.paper_model", f"--child={phase}", f"--plan={plan_path}", f"--out={out}"]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - t0 > timeout_s:
            proc.kill()
            _, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.5)
    proc.returncode = os.waitstatus_to_exitcode(status)
    child = {
        "child_wall_s": time.perf_counter() - t0,
        "child_cpu_s": ru.ru_utime + ru.ru_stime,
        "peak_rss_bytes": ru.ru_maxrss * 1024,
        "load_avg_start": load0,
        "exit_code": proc.returncode,
    }
    if proc.returncode != 0 or not out.exists():
        return {**child, "failed": f"child exited {proc.returncode}" + (" (timeout)" if proc.returncode < 0 else "")}
    return {**json.loads(out.read_text()), **child}


def summary_rows(phases: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per phase: the figure, its unit, wall / CPU seconds and peak RSS."""
    g, t, i = phases.get("graph", {}), phases.get("training", {}), phases.get("inference", {})
    f = t.get("features", {})
    rows = [
        {
            "phase": "graph build",
            "figure": g.get("edges_total"),
            "unit": "undirected edges",
            "seconds": g.get("seconds"),
            "cpu_s": g.get("cpu_s"),
            "peak_rss_bytes": g.get("peak_rss_bytes"),
            "failed": g.get("failed"),
        },
        {
            "phase": "features",
            "figure": f.get("bytes"),
            "unit": f"bytes ({f.get('dtype')}{', memory-mapped' if f.get('memory_mapped') else ''})",
            "seconds": f.get("seconds"),
            "cpu_s": f.get("cpu_s"),
            "peak_rss_bytes": f.get("peak_rss_after_bytes"),
            "failed": t.get("failed"),
        },
        {
            "phase": "training",
            "figure": t.get("steps_per_s_after_first"),
            "unit": f"steps/s after the first ({t.get('steps')} steps)",
            "seconds": t.get("seconds"),
            "cpu_s": t.get("cpu_s"),
            "peak_rss_bytes": t.get("peak_rss_bytes"),
            "failed": t.get("failed"),
        },
        {
            "phase": "inference",
            "figure": i.get("items_per_s"),
            "unit": f"items/s ({i.get('items')} items)",
            "seconds": i.get("seconds"),
            "cpu_s": i.get("cpu_s"),
            "peak_rss_bytes": i.get("peak_rss_bytes"),
            "failed": i.get("failed"),
        },
    ]
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    def fmt(v, p=1):
        return "-" if v is None else (f"{v:,.{p}f}" if isinstance(v, float) else f"{v:,}")

    print(f"\n{'phase':12s} {'figure':>16s} {'unit':44s} {'wall s':>9s} {'cpu s':>9s} {'peak RSS GiB':>12s}")
    for r in rows:
        rss = None if r["peak_rss_bytes"] is None else r["peak_rss_bytes"] / 2**30
        print(
            f"{r['phase']:12s} {fmt(r['figure']):>16s} {r['unit'][:44]:44s} {fmt(r['seconds']):>9s} "
            f"{fmt(r['cpu_s']):>9s} {fmt(rss, 2):>12s}" + (f"  FAILED: {r['failed']}" if r.get("failed") else "")
        )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry_run", action="store_true", help="tiny graph (1,000 nodes), 3 steps: seconds")
    p.add_argument("--n_audiobooks", type=int, default=None, help="default 250,000 (dry run 150)")
    p.add_argument("--n_podcasts", type=int, default=None, help="default 3,500,000 (dry run 850)")
    p.add_argument("--edges_per_item", type=float, default=None, help="default: the large scale's (graph_engine.json)")
    p.add_argument("--alpha", type=float, default=2.5, help="power-law knob of sampler.synthetic")
    p.add_argument("--graph_seed", type=int, default=0)
    p.add_argument("--holdout_frac", type=float, default=0.1, help="held-out edges per relation (the pipeline's)")
    p.add_argument("--item_vectors", default=DEFAULT_VECTORS, help="float [N, d] .npy ('' = random features)")
    p.add_argument("--feat_dim", type=int, default=64, help="width of the random features")
    p.add_argument("--feat_dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument(
        "--feat_storage",
        default="padded",
        choices=("padded", "mmap"),
        help="item vectors read into a padded float32 [N + 1, d] (no copy in the trainer) or memory-mapped",
    )
    p.add_argument("--config", default="scale", help="preset whose HGNN config trains (twotower_hgnn.configs)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="override, e.g. hgnn.lr=1e-3")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's max_steps)")
    p.add_argument("--chunk_size", type=int, default=8192, help="embed_items chunk (the pipeline's default)")
    p.add_argument("--phases", default=",".join(PHASES), help="subset to run (later ones reuse --work_dir files)")
    p.add_argument("--work_dir", default=str(ROOT / ".cache" / "paper_model"), help="graph, params (kept)")
    p.add_argument("--timeout_s", type=float, default=3600.0, help="per phase child")
    p.add_argument("--json", default=str(RESULTS / "paper_model.json"), help="result file ('' = none)")
    p.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    a = parse(argv)
    if a.child:
        child_main(a.child, a.plan, a.out)
        return None
    from twotower_hgnn.io import atomic_write_json
    from twotower_hgnn.provenance import git_sha, utc_now

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    plan = make_plan(a)
    work = Path(plan["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    plan_path = work / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=1))
    wanted = [p for p in a.phases.split(",") if p]
    phases: dict[str, Any] = {}
    for ph in PHASES:
        if ph not in wanted:
            continue
        print(f"[paper_model] {ph} ...", flush=True)
        phases[ph] = run_phase(ph, plan_path, a.timeout_s)
        r = phases[ph]
        print(
            f"[paper_model] {ph}: {r.get('seconds', float('nan')):.1f} s, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB"
            + (f"  FAILED: {r['failed']}" if r.get("failed") else ""),
            flush=True,
        )
        if r.get("failed"):
            break
    rows = summary_rows(phases)
    print_table(rows)
    noisy = load0 >= QUIET_LOAD
    out = {
        "benchmark": "paper_model",
        "meta": {
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, load avg {load0:.2f} at start",
            "cpus": os.cpu_count(),
            "date": utc_now(),
            "git_sha": git_sha(ROOT),
            "load_avg_start": load0,
            "load_avg_end": os.getloadavg()[0],
            "noisy": noisy,
            "quiet_load_below": QUIET_LOAD,
            "dry_run": a.dry_run,
            "wall_s": time.perf_counter() - t0,
            "what": "a GENERATED power-law graph of the paper's size (not the pipeline's co-listening graph, "
            "whose build at the paper scale is hours on 2 cores); the project's trainer and inference on it",
        },
        "plan": plan,
        "rows": rows,
        "phases": phases,
    }
    if a.json:
        atomic_write_json(a.json, json.loads(json.dumps(out, default=float)))
        print(f"wrote {a.json}")
    return out


if __name__ == "__main__":
    main()
