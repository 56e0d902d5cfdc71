"""Every GPU figure the project claims, in one run on one accelerator, written to one JSON.

Rows (``rows[i]``: ``name``, ``figure``, ``unit``, ``goal``, ``met``, ``skipped``, ``note``, extras):

* ``graph``: a random heterogeneous CSR of the paper's size (250K audiobooks + 3.5M podcasts) and the
  project's benchmark degree distribution (power law, ``alpha`` 2.5; 5 / 25 / 70 % of the edges
  AB-AB / AB-PC / PC-PC; ``--edges_per_node`` undirected edges per node), generated and sorted **on
  the device** (the built graph cannot travel with the repository), then copied to the host once.
* ``hgnn_step_jax_<dtype>``: the project's jitted HGNN train step (fwd + bwd + Adam) on pre-placed
  batches, median ms; ``hgnn_step_floor_<dtype>``: its compute floor (FLOPs over valid slots at the
  measured matmul peak vs bytes at the measured copy bandwidth, ``benchmarks.train_step.step_cost``);
  ``hgnn_step_over_floor_<dtype>``: goal <= 3.
* ``hgnn_step_torch_<dtype>``: the same maths in PyTorch (``benchmarks.train_step.torch_model``),
  ``torch.compile``'d on an accelerator (eager in ``--dry_run``), equal precision (f32 with TF32
  allowed on both sides / bf16 autocast); ``hgnn_step_jax_over_torch_<dtype>``: goal <= 0.25.
  Skipped with a note when torch is absent.
* ``device_sampler_e2e_<dtype>``: steps/s with sampling fused into the train step's jit
  (``sampler.device.FusedSampler``), as a fraction of the device-only steps/s measured the same way
  (consecutive steps, one block at the end); goal >= 0.95 (f32) / 0.90 (bf16).
* ``pyg_sampler_peer``: PyTorch Geometric's ``NeighborSampler`` on the same graph and fan-outs
  (seeds/s; skipped with a note when torch_geometric is absent), beside the device sampler's
  neighbourhood seeds/s (``device_sampler_neighbourhood``).
* ``inference_full_catalogue``: ``twotower_hgnn.inference.embed_items`` over every item of the graph
  (paper-size model 256/128), seconds; goal < 60 s at 3.75M items. The first run includes compilation;
  the figure is the second (warm) run when ``--inference_runs=2``.
* ``retrieval_device_batch1`` / ``retrieval_device_batch``: exact top-100 (``twotower_hgnn.retrieval.
  ExactIndex``, chunked matmul + running top-k on the device) over the inference's item embeddings:
  single-query p50/p99 ms and batched queries/s.

Imports: jax, optax, jraph, numpy and this repository's ``sampler`` / ``twotower_hgnn`` modules that
need nothing else (no pandas, duckdb or sentence-transformers); torch / torch_geometric only for the
peer rows. Run through ``benchmarks/accelerator_suite.sh`` (sets the path, installs a missing jraph /
optax from a wheel folder):

  bash benchmarks/accelerator_suite.sh OUT_DIR             # one GPU, < 5 min
  bash benchmarks/accelerator_suite.sh --dry_run OUT_DIR   # tiny sizes, CPU, < 30 s (tests)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from sampler.csr import CSR, HeteroCSR  # noqa: E402

PAPER = {"audiobook": 250_000, "podcast": 3_500_000}
SHARES = {("audiobook", "audiobook"): 0.05, ("audiobook", "podcast"): 0.25, ("podcast", "podcast"): 0.70}
GOALS = {"over_floor": 3.0, "jax_over_torch": 0.25, "e2e": {"float32": 0.95, "bfloat16": 0.90}, "inference_s": 60.0}
SIZES = {  # full run (one GPU) / --dry_run (CPU, tiny)
    "full": dict(
        n_audiobooks=PAPER["audiobook"],
        n_podcasts=PAPER["podcast"],
        edges_per_node=16.0,
        feat_dim=384,
        hidden_dim=256,
        out_dim=128,
        edges=2048,
        reps=20,
        e2e_steps=50,
        inference_chunk=65536,
        retrieval_batch=1024,
        retrieval_requests=200,
    ),
    "dry_run": dict(
        n_audiobooks=150,
        n_podcasts=850,
        edges_per_node=4.0,
        feat_dim=16,
        hidden_dim=16,
        out_dim=8,
        edges=16,
        reps=2,
        e2e_steps=3,
        inference_chunk=512,
        retrieval_batch=64,
        retrieval_requests=10,
    ),
}


# ------------------------------------------------------------------------------------ graph on the device
def _pairs_fn(n_a: int, n_b: int, m: int, same: bool, alpha: float):
    """Jitted: key, perm_a, perm_b -> (a, b sorted by (a, b), count) of at most ``m`` unique pairs.

    Endpoint ``i`` of a type with ``n`` nodes is ``perm[floor(n * u**alpha)]`` (``sampler.synthetic``'s
    power law); duplicates and self loops are dropped, and when more than ``m`` unique pairs remain a
    uniform random ``m`` of them are kept. Local ids, int32."""
    over = int(m * 1.15) + 16

    def fn(key, perm_a, perm_b):
        ka, kb, kp = jax.random.split(key, 3)
        a = perm_a[jnp.minimum(jnp.floor(n_a * jax.random.uniform(ka, (over,)) ** alpha).astype(jnp.int32), n_a - 1)]
        b = perm_b[jnp.minimum(jnp.floor(n_b * jax.random.uniform(kb, (over,)) ** alpha).astype(jnp.int32), n_b - 1)]
        if same:
            a, b = jnp.minimum(a, b), jnp.maximum(a, b)
        valid = a != b if same else jnp.ones((over,), bool)
        a, b = jnp.where(valid, a, n_a), jnp.where(valid, b, n_b)  # invalid pairs sort last
        a, b = jax.lax.sort((a, b), num_keys=2)
        first = jnp.concatenate([jnp.ones((1,), bool), (a[1:] != a[:-1]) | (b[1:] != b[:-1])]) & (a < n_a)
        pri = jnp.where(first, jax.random.uniform(kp, (over,)), 2.0)  # random priority of unique pairs
        pri, a, b = jax.lax.sort((pri, a, b), num_keys=1)
        keep = pri[:m] < 2.0
        a, b = jnp.where(keep, a[:m], n_a), jnp.where(keep, b[:m], n_b)
        a, b = jax.lax.sort((a, b), num_keys=2)
        return a, b, keep.sum()

    return jax.jit(fn)


@jax.jit
def _csr_fn(dst_local: jax.Array, src_global: jax.Array, row_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    d, s = jax.lax.sort((dst_local, src_global), num_keys=2)
    return jnp.searchsorted(d, row_ids, side="left").astype(jnp.int32), s


def _csr(dst_local: jax.Array, src_global: jax.Array, n_rows: int) -> CSR:
    indptr, indices = _csr_fn(dst_local, src_global, jnp.arange(n_rows + 1, dtype=jnp.int32))
    return CSR(np.asarray(indptr).astype(np.int64), np.asarray(indices, np.int32))


def device_powerlaw_graph(
    type_counts: dict[str, int], relation_edges: dict[tuple[str, str], int], *, alpha: float = 2.5, seed: int = 0
) -> HeteroCSR:
    """The heterogeneous power-law graph of ``sampler.synthetic.powerlaw_hetero_graph`` (same endpoint
    law, same canonical layout: sorted unique edges, ``col0 < col1`` within a type, one CSR per
    direction with sorted rows), drawn and sorted on the default device; different random streams."""
    key = jax.random.key(seed)
    node_types = tuple(type_counts)
    offsets = np.zeros(len(node_types) + 1, np.int64)
    offsets[1:] = np.cumsum([int(type_counts[t]) for t in node_types])
    if offsets[-1] >= 2**31 - 1:
        raise ValueError(f"{offsets[-1]} nodes: int32 ids on the device need fewer than 2**31")
    perms = {
        t: jax.random.permutation(jax.random.fold_in(key, i), int(type_counts[t])) for i, t in enumerate(node_types)
    }
    edges, adj = {}, {}
    for ri, ((a, b), m) in enumerate(relation_edges.items()):
        ta, tb = node_types.index(a), node_types.index(b)
        n_a, n_b = int(type_counts[a]), int(type_counts[b])
        ea, eb, cnt = _pairs_fn(n_a, n_b, int(m), a == b, alpha)(
            jax.random.fold_in(key, 1000 + ri), perms[a].astype(jnp.int32), perms[b].astype(jnp.int32)
        )
        k = int(cnt)
        ea, eb = ea[:k], eb[:k]
        ga, gb = ea + int(offsets[ta]), eb + int(offsets[tb])  # global ids (int32)
        edges[(a, b)] = np.stack([np.asarray(ga), np.asarray(gb)], axis=1).astype(np.int64)
        if a == b:
            adj[(a, a)] = _csr(jnp.concatenate([eb, ea]), jnp.concatenate([ga, gb]), n_a)
        else:
            adj[(a, b)] = _csr(ea, gb, n_a)
            adj[(b, a)] = _csr(eb, ga, n_b)
    return HeteroCSR(node_types=node_types, type_offsets=offsets, edges=edges, adj=adj)


# ------------------------------------------------------------------------------------ rows
def row(name: str, figure: float | None, unit: str, *, goal: str | None = None, met: bool | None = None, **extra):
    return {
        "name": name,
        "figure": figure,
        "unit": unit,
        "goal": goal,
        "met": met,
        "skipped": False,
        "note": "",
        **extra,
    }


def judged(a: argparse.Namespace, ok: bool) -> bool | None:
    """A goal's verdict, or None where the figure is not the goal's setting (a dry run, a CPU)."""
    return None if (a.dry_run or jax.default_backend() == "cpu") else bool(ok)


def skipped(name: str, unit: str, why: str, goal: str | None = None) -> dict:
    return {"name": name, "figure": None, "unit": unit, "goal": goal, "met": None, "skipped": True, "note": why}


def _time_consecutive(
    fn: Callable[[Any, int], tuple[Any, Any]], state: Any, steps: int, warmup: int
) -> tuple[float, Any]:
    """(steps/s of ``steps`` consecutive ``fn(state, j)`` calls blocked once at the end, after ``warmup``;
    the final state). On an accelerator the train step donates its state: only the returned one lives."""
    st, loss = state, None
    for j in range(warmup):
        st, loss = fn(st, j)
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for j in range(steps):
        st, loss = fn(st, warmup + j)
    jax.block_until_ready(loss)
    return steps / (time.perf_counter() - t0), st


def torch_status() -> tuple[Any, str]:
    """(torch module or None, why not)."""
    try:
        import torch
    except Exception as ex:  # noqa: BLE001 - any import failure means: no peer
        return None, f"torch not importable ({type(ex).__name__}: {ex})"
    return torch, ""


def train_rows(a: argparse.Namespace, g: HeteroCSR, feats_np: np.ndarray, log) -> list[dict]:
    """The HGNN step (JAX, floor, PyTorch peer) and the fused device sampler rows, per dtype."""
    from benchmarks.device_sampler import bench_fused_train_rows
    from benchmarks.train_step import measure_ceilings, step_cost, time_jax, time_torch, torch_model
    from sampler.numpy_backend import NumpySampler
    from sampler.spec import make_spec
    from twotower_hgnn.models.hgnn import HGNNConfig
    from twotower_hgnn.parallel import make_mesh, replicate, shard_batch
    from twotower_hgnn.train.hgnn import init_state, make_steps, stack_batches

    out: list[dict] = []
    mesh = make_mesh(1)
    negs = {"audiobook": 2, "podcast": 2}
    spec = make_spec(g, positives_per_batch=a.edges, fanouts=(10, 5), negatives_per_type=negs)
    lay = spec.layout()
    sampler = NumpySampler(g, spec)
    host = [stack_batches([sampler.batch(0, i % sampler.num_batches(0))]) for i in range(3)]
    torch, why = torch_status()
    on_accel = jax.default_backend() != "cpu"
    for dt in a.dtypes:
        cfg = HGNNConfig(hidden_dim=a.hidden_dim, out_dim=a.out_dim, compute_dtype=dt)
        train_step, _, opt = make_steps(cfg, spec, 1e-3, 0.2, mesh)
        state = replicate(init_state(jax.random.key(0), cfg, spec, a.feat_dim, opt), mesh)
        params0 = jax.device_get(state["params"])
        feats = replicate(jnp.asarray(feats_np, jnp.bfloat16 if dt == "bfloat16" else jnp.float32), mesh)
        dev_b = [shard_batch(b, mesh) for b in host]
        n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params0))
        flops, nbytes = step_cost(jax.tree_util.tree_map(lambda x: x[0], host[0]), lay, cfg, a.feat_dim, dt, n_params)
        c = measure_ceilings(dt, 256 if a.dry_run else None)
        floor_ms = max(flops / c["matmul_flops"], nbytes / c["copy_bytes_per_s"]) * 1e3
        med, jloss, state = time_jax(train_step, state, feats, dev_b, a.reps, 2)
        extra = dict(dtype=dt, edges_per_step=a.edges, seeds_per_step=lay.num_seeds)
        out.append(row(f"hgnn_step_jax_{dt}", med, "ms", loss=jloss, **extra))
        out.append(row(f"hgnn_step_floor_{dt}", floor_ms, "ms", flops=flops, bytes=nbytes, ceilings=c, **extra))
        out.append(
            row(
                f"hgnn_step_over_floor_{dt}",
                med / floor_ms,
                "x",
                goal=f"<= {GOALS['over_floor']}",
                met=judged(a, med / floor_ms <= GOALS["over_floor"]),
                **extra,
            )
        )
        log(f"{dt}: jax {med:.2f} ms, floor {floor_ms:.3f} ms ({med / floor_ms:.1f}x)")
        mode = "compile" if (on_accel and not a.torch_eager) else "eager"
        if torch is None:
            out.append(skipped(f"hgnn_step_torch_{dt}", "ms", why))
            out.append(skipped(f"hgnn_step_jax_over_torch_{dt}", "x", why, goal=f"<= {GOALS['jax_over_torch']}"))
        else:
            try:
                tmed, tloss = time_torch(
                    torch_model(params0, cfg, lay),
                    feats_np,
                    [jax.tree_util.tree_map(lambda x: x[0], b) for b in host],
                    lay,
                    dt,
                    mode == "compile",
                    1e-3,
                    0.2,
                    a.reps,
                    2,
                )
                rel = abs(tloss - jloss) / max(abs(jloss), 1e-12)
                note = f"torch {torch.__version__}, {mode}" + (
                    " (eager: not the goal's torch.compile peer)" if mode == "eager" else ""
                )
                out.append(row(f"hgnn_step_torch_{dt}", tmed, "ms", note=note, loss=tloss, loss_rel_diff=rel, **extra))
                r = med / tmed
                out.append(
                    row(
                        f"hgnn_step_jax_over_torch_{dt}",
                        r,
                        "x",
                        goal=f"<= {GOALS['jax_over_torch']} (torch.compile)",
                        met=judged(a, r <= GOALS["jax_over_torch"]) if mode == "compile" else None,
                        note=note,
                        **extra,
                    )
                )
                log(f"{dt}: torch {mode} {tmed:.2f} ms (jax/torch {r:.2f}), loss rel diff {rel:.1e}")
            except Exception as ex:  # noqa: BLE001 - a row saying why beats a crashed suite
                msg = f"torch peer failed: {type(ex).__name__}: {str(ex)[:200]}"
                out.append(skipped(f"hgnn_step_torch_{dt}", "ms", msg))
                out.append(skipped(f"hgnn_step_jax_over_torch_{dt}", "x", msg, goal=f"<= {GOALS['jax_over_torch']}"))
        # device-only vs fused sampler, both as consecutive steps blocked once at the end
        n_b = len(dev_b)
        dev_only, state = _time_consecutive(
            lambda st, j, f=feats, b=dev_b: train_step(st, f, b[j % n_b]), state, a.e2e_steps, 2
        )
        fused = bench_fused_train_rows(
            train_step,
            state,
            feats,
            g,
            spec,
            steps=a.e2e_steps,
            warmup=2,
            device_only_ms=1e3 / dev_only,
            variants=("fused",),
        )[0]
        ratio = fused["e2e_over_device_only"]
        goal = GOALS["e2e"].get(dt, 0.95)
        out.append(
            row(
                f"device_sampler_e2e_{dt}",
                ratio,
                "fraction of device-only steps/s",
                goal=f">= {goal}",
                met=judged(a, ratio >= goal),
                e2e_steps_per_s=fused["steps_per_s"],
                device_only_steps_per_s=dev_only,
                steps=a.e2e_steps,
                **extra,
            )
        )
        log(f"{dt}: fused sampler {fused['steps_per_s']:.1f} steps/s vs device-only {dev_only:.1f} ({ratio:.3f})")
        del state, dev_b, feats
    return out


def sampler_rows(a: argparse.Namespace, g: HeteroCSR, log) -> list[dict]:
    """Device-sampler neighbourhood seeds/s and the PyG peer on the same graph, seeds and fan-outs."""
    from benchmarks.device_sampler import bench_device_rows

    rng = np.random.default_rng(0)
    n_seeds, n_batches = a.sampler_seeds, a.reps + 2
    seed_batches = []
    for _ in range(n_batches):
        b = {}
        for t in g.node_types:
            lo, hi = g.type_range(t)
            k = max(1, int(round(n_seeds * (hi - lo) / g.num_nodes)))
            b[t] = rng.integers(lo, hi, size=k).astype(np.int32)
        seed_batches.append(b)
    dev_rows = bench_device_rows(
        g, seed_batches, fanouts=(10, 5), batches=a.reps, warmup=2, full_batch_seeds=(), epoch_draw_rows=False
    )
    d = dev_rows[0]
    out = [row("device_sampler_neighbourhood", d["seeds_per_s"], "seeds/s", note=d["name"], median_ms=d["median_ms"])]
    log(f"device sampler: {d['seeds_per_s']:,.0f} seeds/s (neighbourhood scope)")
    try:
        import torch
        import torch_geometric
        from torch_geometric.data import HeteroData
        from torch_geometric.sampler import NeighborSampler, NodeSamplerInput
    except Exception as ex:  # noqa: BLE001
        out.append(
            skipped("pyg_sampler_peer", "seeds/s", f"torch_geometric not importable ({type(ex).__name__}: {ex})")
        )
        return out
    data = HeteroData()
    off = g.type_offsets
    for i, t in enumerate(g.node_types):
        data[t].num_nodes = int(off[i + 1] - off[i])
    for (s, t), e in g.edges.items():
        ls = e[:, 0] - off[g.node_types.index(s)]
        lt = e[:, 1] - off[g.node_types.index(t)]
        if s == t:
            data[(s, f"{s}-{t}", t)].edge_index = torch.from_numpy(
                np.stack([np.concatenate([ls, lt]), np.concatenate([lt, ls])])
            )
        else:
            data[(s, f"{s}-{t}", t)].edge_index = torch.from_numpy(np.stack([ls, lt]))
            data[(t, f"{t}-{s}", s)].edge_index = torch.from_numpy(np.stack([lt, ls]))
    ps = NeighborSampler(data, num_neighbors={et: [10, 5] for et in data.edge_types}, replace=False)
    times = []
    for i, b in enumerate(seed_batches):
        t0 = time.perf_counter()
        for t, v in b.items():
            local = torch.from_numpy((v - off[g.node_types.index(t)]).astype(np.int64))
            ps.sample_from_nodes(NodeSamplerInput(input_id=None, node=local, input_type=t))
        if i >= 2:
            times.append(time.perf_counter() - t0)
    n = sum(v.size for v in seed_batches[0].values())
    sps = n / float(np.median(times))
    out.append(
        row(
            "pyg_sampler_peer",
            sps,
            "seeds/s",
            note=f"torch_geometric {torch_geometric.__version__} NeighborSampler (host CPU)",
            device_over_pyg=d["seeds_per_s"] / sps,
        )
    )
    log(f"pyg sampler: {sps:,.0f} seeds/s")
    return out


def inference_retrieval_rows(a: argparse.Namespace, g: HeteroCSR, feats_np: np.ndarray, log) -> list[dict]:
    from twotower_hgnn.inference import embed_items
    from twotower_hgnn.models.hgnn import HGNNConfig, init_hgnn
    from twotower_hgnn.retrieval import ExactIndex

    cfg = HGNNConfig(hidden_dim=a.hidden_dim, out_dim=a.out_dim)
    params = init_hgnn(jax.random.key(0), cfg, list(g.adj), g.node_types, a.feat_dim)
    walls = []
    for _ in range(a.inference_runs):
        t0 = time.perf_counter()
        z = embed_items(params, cfg, g, feats_np, chunk_size=a.inference_chunk)
        walls.append(time.perf_counter() - t0)
    fig = walls[-1]
    n = g.num_nodes
    out = [
        row(
            "inference_full_catalogue",
            fig,
            "s",
            goal=f"< {GOALS['inference_s']:.0f} s at {sum(PAPER.values()):,} items",
            met=judged(a, fig < GOALS["inference_s"]) if n >= sum(PAPER.values()) else None,
            items=n,
            items_per_s=n / fig,
            runs_s=walls,
            note=("warm (second run); first run incl. compile " if len(walls) > 1 else "one run, incl. compile ")
            + f"{walls[0]:.1f} s",
        )
    ]
    log(f"inference: {n:,} items in {fig:.2f} s (runs {', '.join(f'{w:.2f}' for w in walls)})")
    if not np.isfinite(z).all():
        raise RuntimeError("inference produced non-finite embeddings")
    t0 = time.perf_counter()
    idx = ExactIndex(z, chunk_size=min(65536, max(1024, n // 8)), max_batch=a.retrieval_batch)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    q = rng.normal(size=(a.retrieval_batch, a.out_dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = min(100, n)
    idx.search(q[:1], k)  # compile
    lat = []
    for i in range(a.retrieval_requests):
        t0 = time.perf_counter()
        idx.search(q[i % len(q) : i % len(q) + 1], k)
        lat.append(time.perf_counter() - t0)
    p50, p99 = float(np.percentile(lat, 50) * 1e3), float(np.percentile(lat, 99) * 1e3)
    idx.search(q, k)  # compile the batch bucket
    reps = max(3, a.reps // 4)
    t0 = time.perf_counter()
    for _ in range(reps):
        _, top = idx.search(q, k)
    qps = reps * len(q) / (time.perf_counter() - t0)
    # exactness check on a few queries against NumPy
    ref = np.argsort(-(q[:4] @ z.T), axis=1, kind="stable")[:, :k]
    agree = float(np.mean([len(set(ref[i]) & set(top[i])) / k for i in range(4)]))
    common = dict(items=n, dim=a.out_dim, k=k, index_build_s=build_s, recall_vs_numpy=agree)
    out.append(row("retrieval_device_batch1", p50, "ms p50", p99_ms=p99, requests=len(lat), **common))
    out.append(row("retrieval_device_batch", qps, "queries/s", batch=len(q), **common))
    log(
        f"retrieval: batch-1 p50 {p50:.2f} ms p99 {p99:.2f} ms; batch {len(q)}: {qps:,.0f} queries/s (recall {agree:.3f})"
    )
    return out


# ------------------------------------------------------------------------------------ main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir", help="folder for accelerator_suite.json")
    p.add_argument("--dry_run", action="store_true", help="tiny sizes on CPU (< 30 s), for the test suite")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--torch_eager", action="store_true", help="PyTorch peer without torch.compile")
    p.add_argument("--inference_runs", type=int, default=2, help="1 = cold only (includes compilation)")
    p.add_argument("--sampler_seeds", type=int, default=None, help="seeds per neighbourhood batch")
    p.add_argument("--seed", type=int, default=0)
    for k, v in SIZES["full"].items():
        p.add_argument(f"--{k}", type=type(v), default=None, help=f"default {v} ({SIZES['dry_run'][k]} in --dry_run)")
    a = p.parse_args(argv)
    sizes = SIZES["dry_run" if a.dry_run else "full"]
    for k, v in sizes.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.dtypes = [d for d in a.dtypes.split(",") if d]
    if a.sampler_seeds is None:
        a.sampler_seeds = 64 if a.dry_run else 1024
    return a


def imported_packages() -> list[str]:
    """Top-level non-standard-library packages this process imported (the suite's dependency check)."""
    names = {m.split(".")[0] for m in list(sys.modules)}
    return sorted(n for n in names if n not in sys.stdlib_module_names and not n.startswith("_"))


def _git_sha() -> str:
    from twotower_hgnn.provenance import git_sha

    return git_sha(ROOT) if (ROOT / ".git").exists() else "unknown"


def main(argv: list[str] | None = None) -> dict:
    a = parse(argv)
    t_all, load0 = time.perf_counter(), os.getloadavg()[0]
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[suite {time.perf_counter() - t_all:6.1f}s] {msg}", flush=True)

    dev = jax.devices()[0]
    counts = {"audiobook": a.n_audiobooks, "podcast": a.n_podcasts}
    n_edges = int(a.edges_per_node * sum(counts.values()))
    rel = {r: int(n_edges * s) for r, s in SHARES.items()}
    log(f"{dev.platform}:{dev.device_kind}; graph {counts} with {n_edges:,} undirected edges")
    t0 = time.perf_counter()
    g = device_powerlaw_graph(counts, rel, seed=a.seed)
    gen_s = time.perf_counter() - t0
    nnz = sum(c.nnz for c in g.adj.values())
    deg = {d[0] + "<-" + d[1]: int(c.degrees().max()) for d, c in g.adj.items()}
    rows = [
        row(
            "graph",
            gen_s,
            "s",
            note="generated and sorted on the device, copied to the host once",
            nodes=g.num_nodes,
            edges={f"{x}-{y}": int(e.shape[0]) for (x, y), e in g.edges.items()},
            directed_entries=nnz,
            max_degree=deg,
        )
    ]
    log(f"graph: {g.num_nodes:,} nodes, {nnz:,} directed entries in {gen_s:.1f} s")
    kf = jax.random.normal(jax.random.key(a.seed + 1), (g.num_nodes + 1, a.feat_dim), jnp.float32)
    kf = kf / jnp.linalg.norm(kf, axis=1, keepdims=True)
    feats_np = np.asarray(kf.at[-1].set(0.0))
    del kf
    sections = (
        ("train", lambda: train_rows(a, g, feats_np, log)),
        ("sampler", lambda: sampler_rows(a, g, log)),
        ("inference", lambda: inference_retrieval_rows(a, g, feats_np, log)),
    )
    for name, fn in sections:
        t0 = time.perf_counter()
        rows.extend(fn())
        log(f"section {name}: {time.perf_counter() - t0:.1f} s")
    import optax

    result = {
        "meta": {
            "benchmark": "accelerator_suite",
            "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()})",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git_sha": _git_sha(),
            "jax": jax.__version__,
            "optax": optax.__version__,
            "python": platform.python_version(),
            "backend": jax.default_backend(),
            "device_kind": dev.device_kind,
            "device_count": jax.device_count(),
            "dry_run": a.dry_run,
            "args": {k: v for k, v in vars(a).items() if k != "out_dir"},
            "load_avg_start": load0,
            "imported_packages": imported_packages(),
            "wall_s": time.perf_counter() - t_all,
        },
        "rows": rows,
    }
    path = out_dir / "accelerator_suite.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=_jsonable))
    os.replace(tmp, path)
    print(f"\n{'row':<34} {'figure':>14} {'unit':<34} goal / note")
    for r in rows:
        f = "skipped" if r["skipped"] else _fmt(r["figure"])
        verdict = "" if r["met"] is None else (" MET" if r["met"] else " MISSED")
        print(f"{r['name']:<34} {f:>14} {r['unit']:<34} {(r['goal'] or '')}{verdict} {r['note']}")
    log(f"wrote {path}")
    return result


def _fmt(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return str(x)
    return f"{x:,.4g}" if abs(x) < 1e5 else f"{x:,.0f}"


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


if __name__ == "__main__":
    main()
