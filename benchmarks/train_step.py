"""HGNN training step: JAX (f32 / bf16) vs the same model in PyTorch (eager, torch.compile), the
roofline floor, end-to-end steps/s with the real sampler + loader, and full-graph inference.

Every contender runs on the *same* pre-sampled static batches (``NumpySampler`` on a synthetic
power-law audiobook/podcast graph), the same weights, the same maths (Eq. 2-3 + Eq. 4 + Adam):

* ``jax``: the project's jitted step (``train/hgnn.make_steps``: fwd + bwd + Adam), one device.
* ``torch_eager`` / ``torch_compile``: :class:`TorchHGNN` below, a small custom module computing
  Eq. 2-3 with the same dense ``[n, fanout, d]`` masked max (weights copied from the JAX init; the
  loss of both sides on the first batch is compared and reported as ``loss_rel_diff``). Equal
  precision: f32 vs f32 (TF32 allowed on both sides on a GPU, JAX's default), bf16 vs
  ``torch.autocast(bfloat16)``.
* ``floor``: FLOPs over the *valid* sampled slots (matmuls of Eq. 2-3, x2 for the first layer's
  fwd+weight-grad, x3 for later layers) against the measured matmul peak, and the bytes that must
  move (the valid feature rows gathered, the id/mask arrays, params + Adam state) against the
  measured copy bandwidth; floor = max of the two times.
* ``jax_e2e``: steps/s when the batches come from the sampler through the ``Loader`` (``--workers``
  threads) instead of being pre-sampled: a host sampler is expected to fall short.
* ``inference``: :func:`embed_items` over the whole graph: items/s and peak memory.

Run:
  .venv/bin/python -m benchmarks.train_step --quick                 # < 60 s on the 2-core CPU box
  .venv/bin/python -m benchmarks.train_step --quick --torch_compile # + torch.compile rows (inductor
                                                                    #   compiles for minutes on 2 cores)
  .venv/bin/python -m benchmarks.train_step --json=/tmp/step.json   # full sizes (GPU)
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from sampler.csr import direction_name  # noqa: E402
from twotower_hgnn.provenance import git_sha, utc_now  # noqa: E402
from sampler.loader import Loader  # noqa: E402
from sampler.numpy_backend import NumpySampler  # noqa: E402
from sampler.spec import Layout, make_spec  # noqa: E402
from sampler.synthetic import audiobook_podcast_graph, cached_graph  # noqa: E402
from twotower_hgnn.io import atomic_write_json  # noqa: E402
from twotower_hgnn.models.hgnn import SHARED, HGNNConfig, param_key  # noqa: E402
from twotower_hgnn.parallel import make_mesh, replicate, shard_batch  # noqa: E402
from twotower_hgnn.train.hgnn import StepSampler, init_state, make_steps, stack_batches  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool(
    "quick", False, "256 edges, small graph/dims, 3 reps, no torch.compile unless asked (< 60 s on 2 CPU cores)"
)
flags.DEFINE_list("edges", ["256", "2048"], "positive edges per step")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "compute dtypes")
flags.DEFINE_integer("negatives", 4, "K negatives per positive (spread over the two types)")
flags.DEFINE_list("fanouts", ["10", "5"], "fan-out per hop")
flags.DEFINE_integer("n_audiobooks", 200_000, "graph audiobooks")
flags.DEFINE_integer("n_podcasts", 800_000, "graph podcasts (1M nodes in total by default, as the H200 reference run)")
flags.DEFINE_integer("num_edges", 20_000_000, "graph edges")
flags.DEFINE_integer("feat_dim", 384, "feature dim (SBERT MiniLM size)")
flags.DEFINE_integer("hidden_dim", 256, "hidden dim")
flags.DEFINE_integer("out_dim", 128, "output dim")
flags.DEFINE_integer("reps", 20, "timed steps per row (median reported)")
flags.DEFINE_integer("warmup", 3, "untimed steps first (compile included)")
flags.DEFINE_bool("torch", True, "PyTorch rows")
flags.DEFINE_bool("torch_compile", True, "torch.compile rows")
flags.DEFINE_bool("e2e", True, "end-to-end rows with the sampler + loader")
flags.DEFINE_integer("workers", 2, "loader worker threads for the end-to-end rows")
flags.DEFINE_bool("train_rows", True, "training-step rows (off: inference row only)")
flags.DEFINE_bool("inference", True, "full-graph inference row")
flags.DEFINE_integer("inference_chunk", 65536, "embed_items chunk_size")
flags.DEFINE_string("cache_dir", str(ROOT / ".cache" / "train_step_bench"), "graph cache")
flags.DEFINE_string("json", None, "write results here")

QUICK = dict(
    edges=["256"],
    n_audiobooks=4000,
    n_podcasts=16000,
    num_edges=200_000,
    feat_dim=64,
    hidden_dim=32,
    out_dim=32,
    reps=3,
    warmup=1,
    workers=1,
    inference_chunk=8192,
    torch_compile=False,
)


# ---------------------------------------------------------------------------- PyTorch twin
def torch_model(params: Any, cfg: HGNNConfig, layout: Layout):
    import torch

    class TorchHGNN(torch.nn.Module):
        """Eq. 2-3 with the same dense masked max as ``hgnn_forward`` (weights from the JAX params)."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.ParameterDict()
            for name, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
                key = "__".join(str(getattr(k, "key", k)) for k in name)
                self.w[key.replace("<", "_").replace("-", "_")] = torch.nn.Parameter(torch.from_numpy(np.array(leaf)))

        def p(self, *path: str):
            return self.w["__".join(path).replace("<", "_").replace("-", "_")]

        def forward(self, feats, seeds, nbrs, masks, pmask, anchor, positive, negative, margin: float):
            act = torch.relu
            L, types = cfg.num_layers, list(layout.seeds_per_type)
            ids = [seeds]
            for k in range(L):
                ids.append(
                    {
                        t: torch.cat([nbrs[k][direction_name(d)].reshape(-1) for d, _, _, _ in parts])
                        for t, parts in layout.frontier_parts[k].items()
                        if parts
                    }
                )
            h = [{t: feats[ids[k][t]] for t in ids[k]} for k in range(L + 1)]
            for layer in range(L):
                last = layer == L - 1
                new_h = []
                for k in range(L - layer):
                    new = {}
                    for t in h[k]:
                        out = h[k][t] @ self.p(f"layer_{layer}", "self", SHARED if cfg.homogeneous else t)
                        for d in layout.directions_into(t):
                            off, rows, f = next(
                                (o, r, ff) for dd, o, r, ff in layout.frontier_parts[k][d[1]] if dd == d
                            )
                            key = SHARED if cfg.homogeneous else param_key(d)
                            x = h[k + 1][d[1]][off : off + rows * f]
                            msg = act(
                                x @ self.p(f"layer_{layer}", "nbr", key, "w")
                                + self.p(f"layer_{layer}", "nbr", key, "b")
                            )
                            msg = msg.reshape(rows, f, -1)
                            m = masks[k][direction_name(d)]
                            mx = msg.masked_fill(~m[..., None], float("-inf")).amax(dim=1)
                            out = out + torch.where(m.any(dim=1, keepdim=True), mx, torch.zeros_like(mx))
                        new[t] = out if last else act(out)
                    new_h.append(new)
                h = new_h
            z = torch.cat([h[0][t] for t in types]).float()
            z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
            za = z[anchor]
            s_pos = (za * z[positive]).sum(-1)
            s_neg = torch.einsum("pd,pkd->pk", za, z[negative])
            w = pmask.float()
            hinge = torch.relu(s_neg - s_pos[:, None] + margin) * w[:, None]
            return hinge.sum() / (w.sum() * s_neg.shape[1]).clamp_min(1.0)

    return TorchHGNN()


def torch_batch(b: dict, layout: Layout, device: str):
    import torch

    t = lambda a, dt=torch.long: torch.as_tensor(np.asarray(a), dtype=dt, device=device)  # noqa: E731
    return (
        {k: t(v) for k, v in b["seeds"].items()},
        [{k: t(v) for k, v in hop.items()} for hop in b["nbrs"]],
        [{k: t(v, torch.bool) for k, v in hop.items()} for hop in b["masks"]],
        t(b["positive_mask"], torch.bool),
        t(layout.anchor),
        t(layout.positive),
        t(layout.negative),
    )


def time_torch(
    model, feats, batches, layout, dtype: str, compiled: bool, lr: float, margin: float, reps: int, warmup: int
):
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # equal precision with JAX's default f32 matmuls on GPU
        torch.backends.cudnn.allow_tf32 = True
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    tb = [torch_batch(b, layout, dev) for b in batches]
    fx = torch.as_tensor(feats, device=dev)
    fwd = torch.compile(model) if compiled else model

    def step(i: int) -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = fwd(fx, *tb[i % len(tb)], margin)
        loss.backward()
        opt.step()
        return loss

    first = float(step(0).detach())
    for i in range(1, warmup):
        step(i)
    times = []
    for i in range(reps):
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step(i)
        if dev == "cuda":
            torch.cuda.synchronize()
        else:
            float(loss.detach())
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3, first


# ---------------------------------------------------------------------------- floor
def measure_ceilings(dtype: str, n: int | None = None) -> dict:
    """Matmul FLOP/s (``n x n`` operands; default 2048 on CPU, 8192 on an accelerator) and copy
    bandwidth of the default device (median of a few runs)."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jnp.ones((n, n), dtype)
    mm = jax.jit(lambda x: x @ x)
    mm(a).block_until_ready()
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        mm(a).block_until_ready()
        ts.append(time.perf_counter() - t0)
    flops = 2 * n**3 / float(np.median(ts))
    m = (64 if jax.default_backend() == "cpu" else 512) * (1 << 20) // 4
    m = min(m, max(n * n * 4, 1 << 20))  # small operands: a small copy too
    x = jnp.ones((m,), jnp.float32)
    cp = jax.jit(lambda v: v + 1.0)
    cp(x).block_until_ready()
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        cp(x).block_until_ready()
        ts.append(time.perf_counter() - t0)
    bw = 2 * x.nbytes / float(np.median(ts))
    return {"matmul_flops": flops, "copy_bytes_per_s": bw}


def step_cost(
    batch: dict, layout: Layout, cfg: HGNNConfig, in_dim: int, dtype: str, n_params: int
) -> tuple[float, float]:
    """(FLOPs, bytes) of one train step counted over valid slots (see module docstring)."""
    L = cfg.num_layers
    dims = cfg.layer_dims(in_dim)
    valid = [{t: int(np.asarray(v).size) for t, v in batch["seeds"].items()}]  # hop-0 rows all valid
    slots = []  # per hop: direction -> valid neighbour slots
    for k in range(L):
        slots.append({d: int(np.asarray(batch["masks"][k][direction_name(d)]).sum()) for d in layout.directions})
        nxt = {t: 0 for t in layout.seeds_per_type}
        for d in layout.directions:
            nxt[d[1]] += slots[k][d]
        valid.append(nxt)
    flops = 0.0
    for layer, (di, do) in enumerate(dims):
        f = 0.0
        for k in range(L - layer):
            f += sum(valid[k].values()) * 2 * di * do  # self term
            f += sum(slots[k].values()) * 2 * di * do  # messages
        flops += f * (2 if layer == 0 else 3)
    item = 2 if dtype == "bfloat16" else 4
    gathered = sum(sum(v.values()) for v in valid[: L + 1]) * in_dim * item
    idx = sum(np.asarray(a).nbytes for a in jax.tree_util.tree_leaves(batch))
    nbytes = gathered + idx + n_params * 4 * 7  # params r/w, grads, Adam m, v r/w
    return flops, float(nbytes)


# ---------------------------------------------------------------------------- JAX timing
def time_jax(train_step, state, feats, dev_batches, reps: int, warmup: int):
    st, first = state, None
    for i in range(warmup):
        st, loss = train_step(st, feats, dev_batches[i % len(dev_batches)])
        loss.block_until_ready()
        first = float(loss) if first is None else first
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        st, loss = train_step(st, feats, dev_batches[i % len(dev_batches)])
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3, first, st


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv) -> None:
    del argv
    if FLAGS.quick:
        for k, v in QUICK.items():
            if not FLAGS[k].present:
                setattr(FLAGS, k, v)
    t_all = time.perf_counter()
    fan = tuple(int(f) for f in FLAGS.fanouts)
    g = cached_graph(
        Path(FLAGS.cache_dir) / f"g_{FLAGS.n_audiobooks}_{FLAGS.n_podcasts}_{FLAGS.num_edges}",
        lambda: audiobook_podcast_graph(FLAGS.n_audiobooks, FLAGS.n_podcasts, FLAGS.num_edges, seed=0),
    )
    feats_np = np.random.default_rng(0).normal(size=(g.num_nodes + 1, FLAGS.feat_dim)).astype(np.float32)
    feats_np /= np.linalg.norm(feats_np, axis=1, keepdims=True)
    feats_np[-1] = 0.0
    mesh = make_mesh(1)
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    rows: list[dict] = []
    lr, margin = 1e-3, 0.2
    ceilings = {dt: measure_ceilings(dt) for dt in FLAGS.dtypes} if FLAGS.train_rows else {}

    def add(row: dict) -> None:
        rows.append(row)
        r = row.get("ratio_to_floor")
        print(
            f"{row['name']:<16} edges={row['edges']:<5} {row['dtype']:<9} median={row['median_ms']:9.2f} ms  "
            f"floor={row.get('floor_ms') or float('nan'):8.2f} ms  x floor={r if r is not None else float('nan'):6.1f}  "
            f"steps/s={row['steps_per_s']:8.2f}" + (f"  {row['note']}" if row.get("note") else ""),
            flush=True,
        )

    for e in [int(x) for x in FLAGS.edges] if FLAGS.train_rows else []:
        negs = {"audiobook": FLAGS.negatives // 2, "podcast": FLAGS.negatives - FLAGS.negatives // 2}
        spec = make_spec(g, positives_per_batch=e, fanouts=fan, negatives_per_type=negs)
        lay = spec.layout()
        sampler = NumpySampler(g, spec)
        n_b = min(3, sampler.num_batches(0))
        host = [stack_batches([sampler.batch(0, i)]) for i in range(n_b)]
        for dt in FLAGS.dtypes:
            cfg = HGNNConfig(hidden_dim=FLAGS.hidden_dim, out_dim=FLAGS.out_dim, compute_dtype=dt)
            train_step, _, opt = make_steps(cfg, spec, lr, margin, mesh)
            state = replicate(init_state(jax.random.key(0), cfg, spec, FLAGS.feat_dim, opt), mesh)
            params0 = jax.device_get(state["params"])
            feats = replicate(jnp.asarray(feats_np, jnp.bfloat16 if dt == "bfloat16" else jnp.float32), mesh)
            dev_b = [shard_batch(b, mesh) for b in host]
            n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params0))
            flops, nbytes = step_cost(
                jax.tree_util.tree_map(lambda a: a[0], host[0]), lay, cfg, FLAGS.feat_dim, dt, n_params
            )
            c = ceilings[dt]
            floor_ms = max(flops / c["matmul_flops"], nbytes / c["copy_bytes_per_s"]) * 1e3
            med, jloss, state = time_jax(train_step, state, feats, dev_b, FLAGS.reps, FLAGS.warmup)
            base = dict(edges=e, dtype=dt, floor_ms=floor_ms, flops=flops, bytes=nbytes, seeds=lay.num_seeds)
            add(
                dict(
                    name="jax", median_ms=med, steps_per_s=1e3 / med, ratio_to_floor=med / floor_ms, loss=jloss, **base
                )
            )
            if FLAGS.torch:
                modes = [False] + ([True] if FLAGS.torch_compile else [])
                for compiled in modes:
                    name = "torch_compile" if compiled else "torch_eager"
                    try:
                        model = torch_model(params0, cfg, lay)
                        tmed, tloss = time_torch(
                            model,
                            feats_np,
                            [jax.tree_util.tree_map(lambda a: a[0], b) for b in host],
                            lay,
                            dt,
                            compiled,
                            lr,
                            margin,
                            FLAGS.reps,
                            FLAGS.warmup,
                        )
                        add(
                            dict(
                                name=name,
                                median_ms=tmed,
                                steps_per_s=1e3 / tmed,
                                ratio_to_floor=tmed / floor_ms,
                                loss=tloss,
                                loss_rel_diff=abs(tloss - jloss) / max(abs(jloss), 1e-12),
                                jax_over_torch=med / tmed,
                                **base,
                            )
                        )
                    except Exception as ex:  # noqa: BLE001 - a row saying why beats a crashed benchmark
                        add(
                            dict(
                                name=name,
                                median_ms=float("nan"),
                                steps_per_s=float("nan"),
                                note=f"failed: {type(ex).__name__}: {str(ex)[:120]}",
                                **base,
                            )
                        )
            if FLAGS.e2e:
                src = StepSampler(sampler, 1)
                n_steps = min(src.num_batches(1), max(FLAGS.reps, 4))
                loader = Loader(src, 1, workers=FLAGS.workers, prefetch=4, device_put=lambda b: shard_batch(b, mesh))
                t0, done, st = time.perf_counter(), 0, state
                for b in loader:
                    st, loss = train_step(st, feats, b)
                    done += 1
                    if done >= n_steps:
                        break
                loss.block_until_ready()
                loader.close()
                wall = time.perf_counter() - t0
                add(
                    dict(
                        name="jax_e2e_loader",
                        median_ms=wall / done * 1e3,
                        steps_per_s=done / wall,
                        note=f"workers={FLAGS.workers} (device-only {1e3 / med:.2f} steps/s)",
                        **base,
                    )
                )
            del state, dev_b

    if FLAGS.inference:
        from twotower_hgnn.inference import embed_items
        from twotower_hgnn.models.hgnn import init_hgnn

        cfg = HGNNConfig(hidden_dim=FLAGS.hidden_dim, out_dim=FLAGS.out_dim)
        params = init_hgnn(jax.random.key(0), cfg, list(g.adj), g.node_types, FLAGS.feat_dim)
        rss0 = _peak_rss_mb()
        embed_items(params, cfg, g, feats_np, chunk_size=FLAGS.inference_chunk)  # compile
        t0 = time.perf_counter()
        z = embed_items(params, cfg, g, feats_np, chunk_size=FLAGS.inference_chunk)
        wall = time.perf_counter() - t0
        peak = None
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            peak = stats["peak_bytes_in_use"] / 2**20
        nnz = sum(c.nnz for c in g.adj.values())
        add(
            dict(
                name="inference_full",
                edges=nnz,
                dtype="float32",
                median_ms=wall * 1e3,
                floor_ms=None,
                steps_per_s=1.0 / wall,
                items_per_s=z.shape[0] / wall,
                peak_rss_mb=_peak_rss_mb(),
                rss_growth_mb=_peak_rss_mb() - rss0,
                device_peak_mb=peak,
                note=f"{z.shape[0] / wall:,.0f} items/s, {nnz:,} directed edges, peak RSS {_peak_rss_mb():,.0f} MB",
            )
        )

    meta = {
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})",
        "device": device,
        "date": utc_now(),
        "git_sha": git_sha(ROOT),
        "args": {
            k: FLAGS[k].value
            for k in (
                "quick",
                "edges",
                "dtypes",
                "negatives",
                "fanouts",
                "n_audiobooks",
                "n_podcasts",
                "num_edges",
                "feat_dim",
                "hidden_dim",
                "out_dim",
                "reps",
                "warmup",
                "workers",
                "torch",
                "torch_compile",
                "e2e",
                "train_rows",
                "inference",
                "inference_chunk",
            )
        },
        "ceilings": ceilings,
        "graph": {"nodes": g.num_nodes, "edges": {f"{a}-{b}": int(v.shape[0]) for (a, b), v in g.edges.items()}},
        "wall_s": time.perf_counter() - t_all,
    }
    print(
        f"total {meta['wall_s']:.1f} s on {device}; ceilings: "
        + ", ".join(
            f"{k} {v['matmul_flops'] / 1e9:.0f} GFLOP/s {v['copy_bytes_per_s'] / 1e9:.1f} GB/s"
            for k, v in ceilings.items()
        )
    )
    if FLAGS.json:
        atomic_write_json(FLAGS.json, {"meta": meta, "rows": rows})


if __name__ == "__main__":
    app.run(main)
