"""Benchmark rows of the device sampling backend, for ``benchmarks/sampler_throughput.py``.

Library functions only (the harness owns flags, the graph, the seed batches and the table); rows use
the harness's schema (``name``, ``workers``, ``replace``, ``scope``, ``seeds_per_s``, ``edges_per_s``,
``median_ms``, ``p10_ms``, ``p90_ms``, ``cpu_median_ms``, ...). Every row name starts with
``device (<platform>)`` — ``device (XLA:CPU)`` on a CPU-only machine — so CPU figures are never
mistaken for accelerator figures. Timings block on the result (``block_until_ready``); compilation
happens in the untimed warm-up and is reported separately (``compile_s``).
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from sampler import device as dev
from sampler.csr import HeteroCSR
from sampler.spec import make_spec


def platform_label() -> str:
    """``XLA:CPU`` or the accelerator's device kind (e.g. ``NVIDIA H100 80GB HBM3``)."""
    d = jax.devices()[0]
    return "XLA:CPU" if d.platform == "cpu" else f"{d.platform.upper()} {d.device_kind}"


def _stats(times: Sequence[float], cpu: Sequence[float], seeds: int, edges: Sequence[int] | None) -> dict[str, Any]:
    t = np.asarray(times)
    med = float(np.median(t))
    row = {
        "seeds_per_s": seeds / med,
        "median_ms": med * 1e3,
        "p10_ms": float(np.percentile(t, 10) * 1e3),
        "p90_ms": float(np.percentile(t, 90) * 1e3),
        "min_ms": float(t.min() * 1e3),
        "n_batches": int(t.size),
        "edges_per_s": float(np.median(edges)) / med if edges else None,
    }
    if cpu:  # process CPU time: XLA:CPU runs on its own threads, so thread_time would miss it
        c = float(np.median(cpu))
        row["cpu_median_ms"] = c * 1e3
        row["seeds_per_cpu_s"] = seeds / c if c > 0 else None
        row["cpu_s"] = float(np.sum(cpu))  # over the timed calls (compile and warm-up excluded)
        row["cpu_source"] = "per-call process CPU time (all threads)"
    return row


def _timed(fn, n: int, warmup: int, count_edges=None) -> tuple[list[float], list[float], list[int], float]:
    """Calls ``fn(i)`` ``warmup + n`` times; returns per-call wall/CPU seconds, valid slots, compile s."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(0))
    compile_s = time.perf_counter() - t0
    for i in range(1, warmup):
        jax.block_until_ready(fn(i))
    times, cpu, edges = [], [], []
    for i in range(n):
        c0, t0 = time.process_time(), time.perf_counter()
        out = jax.block_until_ready(fn(warmup + i))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if count_edges is not None:
            edges.append(count_edges(out))
    return times, cpu, edges, compile_s


def _valid_slots(masks) -> int:
    return int(sum(int(np.asarray(m).sum()) for h in masks for m in h.values()))


def bench_device_rows(
    graph: HeteroCSR,
    seed_batches: Sequence[Mapping[str, np.ndarray]],
    *,
    fanouts: Sequence[int],
    batches: int,
    warmup: int,
    full_batch_seeds: Sequence[int] = (1024, 12288),
    epoch_batches: int = 0,
    numpy_batches: int = 10,
    epoch_draw_rows: bool = True,
) -> list[dict[str, Any]]:
    """Device-backend rows on the harness's graph and seed batches.

    1. ``neighbourhood`` scope — the same seeds and fan-outs as the NumPy rows (no negatives, no
       exclusion): ``sample_neighbourhoods`` jitted, one call per seed batch.
    2. ``full batch`` — ``DeviceSampler.batch`` for each size in ``full_batch_seeds`` (``P = seeds/6``
       positives: anchor + positive + 4 negatives each; exclusion on), including the per-step
       dispatch from the host.
    3. epoch-draw rows — the balanced per-epoch choice of supervision edges on the host (NumPy
       permutation + upload, what ``epoch_draw="host"`` does once per epoch) and on the device.
    4. ``epoch`` — whole-epoch time for the largest full-batch size: measured over ``epoch_batches``
       batches (all of the epoch when 0 or larger) plus the epoch draw, extrapolated to the epoch's
       length when only part of it ran (the row says so); next to it the NumPy backend's epoch
       estimate from ``numpy_batches`` full batches of the same spec in the same run (1 worker, and
       divided by the core count: ideal scaling over every host core, a lower bound).
    ``epoch_draw_rows=False`` skips step 3 (the device permutation is slow to compile on XLA:CPU).
    """
    label = f"device ({platform_label()})"
    rows: list[dict[str, Any]] = []
    fan = tuple(int(f) for f in fanouts)
    n_need = warmup + batches
    seeds = [dict(seed_batches[i % len(seed_batches)]) for i in range(n_need)]
    n_seeds = int(sum(v.shape[0] for v in seeds[0].values()))
    t0 = time.perf_counter()
    dg = dev.DeviceGraph.from_host(graph)
    jax.block_until_ready(dg)
    upload_s = time.perf_counter() - t0
    # 1. neighbourhood scope
    spec_n = make_spec(graph, positives_per_batch=len(graph.relations), fanouts=fan, seed=0)
    lay_n = spec_n.layout()
    nb = jax.jit(lambda g, s, k: dev.sample_neighbourhoods(g, s, k, None, spec=spec_n, layout=lay_n))
    placed = [{t: jax.device_put(np.asarray(v, np.int32)) for t, v in s.items()} for s in seeds]
    key = jax.random.key(0)
    times, cpu, edges, comp = _timed(
        lambda i: nb(dg, placed[i], jax.random.fold_in(key, i)), batches, warmup, lambda out: _valid_slots(out[1])
    )
    rows.append(
        {
            "name": f"{label} jitted sampler",
            "workers": 1,
            "replace": False,
            "scope": "neighbourhood",
            **_stats(times, cpu, n_seeds, edges),
            "compile_s": comp,
            "graph_upload_s": upload_s,
            "device_bytes": dg.nbytes(),
        }
    )
    # 2. full training batches, 3. epoch draws, 4. epoch
    for size in full_batch_seeds:
        P = max(len(graph.relations), int(size) // 6)
        spec = make_spec(graph, positives_per_batch=P, fanouts=fan, seed=0)
        ds = dev.DeviceSampler(graph, spec)
        nbt = ds.num_batches(0)
        times, cpu, edges, comp = _timed(
            lambda i: ds.batch(0, i % nbt).as_dict(), batches, warmup, lambda out: _valid_slots(out["masks"])
        )
        lay = ds.layout
        full = {
            "name": f"{label} DeviceSampler.batch (full training batch)",
            "workers": 1,
            "replace": False,
            "scope": f"full batch: {P} pos x (2+4 neg) = {lay.num_seeds} seeds, exclusion on",
            **_stats(times, cpu, lay.num_seeds, edges),
            "compile_s": comp,
            "batch_seeds": lay.num_seeds,
        }
        rows.append(full)
        # epoch draws (host permutation + upload vs on device), for the largest size only; a
        # sort-based device permutation of a large relation is slow on XLA:CPU: fewer repetitions
        if epoch_draw_rows and size == max(full_batch_seeds):
            reps = 3 if sum(ds.fused.edge_counts.values()) <= 2_000_000 else 1
            th, td = [], []
            draw = ds._draw
            t0 = time.perf_counter()
            jax.block_until_ready(draw(dev.epoch_key(0, 99)))
            draw_compile = time.perf_counter() - t0
            for e in range(reps):
                t0 = time.perf_counter()
                jax.block_until_ready(ds.fused.place_order(ds.fused.host_order(100 + e)))
                th.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                jax.block_until_ready(draw(dev.epoch_key(0, 100 + e)))
                td.append(time.perf_counter() - t0)
            n_sup = sum(ds.fused.sizes.values())
            for where, tt in (("host (NumPy permutation + upload)", th), ("device (jax.random.permutation)", td)):
                rows.append(
                    {
                        "name": f"{label} epoch draw on the {where}",
                        "workers": 1,
                        "replace": False,
                        "scope": f"once per epoch: {n_sup:,} of {sum(ds.fused.edge_counts.values()):,} edges",
                        "seeds_per_s": None,
                        "edges_per_s": None,
                        "median_ms": float(np.median(tt)) * 1e3,
                        "p10_ms": None,
                        "p90_ms": None,
                        "n_batches": len(tt),
                        **({"compile_s": draw_compile} if where.startswith("device") else {}),
                    }
                )
        # the NumPy backend on the same spec, same run (1 worker), for the epoch comparison
        n_np = max(3, min(batches, numpy_batches))
        tn, cn = [], []
        ds.host.batch(0, 0)
        for i in range(n_np):
            c0, t0 = time.process_time(), time.perf_counter()
            ds.host.batch(0, (i + 1) % nbt)
            tn.append(time.perf_counter() - t0)
            cn.append(time.process_time() - c0)
        np_row = {
            "name": "numpy NumpySampler.batch (same spec, for the device comparison)",
            "workers": 1,
            "replace": False,
            "scope": full["scope"],
            **_stats(tn, cn, lay.num_seeds, None),
            "batch_seeds": lay.num_seeds,
        }
        rows.append(np_row)
        if size != max(full_batch_seeds):
            continue
        k = nbt if epoch_batches <= 0 else min(nbt, int(epoch_batches))
        t0 = time.perf_counter()
        ds._orders.clear()
        for i in range(k):
            out = ds.batch(1, i)
        jax.block_until_ready(out.as_dict())
        wall = time.perf_counter() - t0
        est = wall / k * nbt
        row = {
            "name": f"{label} whole epoch" + ("" if k == nbt else f" (EXTRAPOLATED from {k} of {nbt} batches)"),
            "workers": 1,
            "replace": False,
            "scope": f"epoch: {nbt} full batches of {lay.num_seeds} seeds, incl. epoch draw",
            "seeds_per_s": nbt * lay.num_seeds / est,
            "edges_per_s": None,
            "median_ms": None,
            "p10_ms": None,
            "p90_ms": None,
            "epoch_s": est,
            "epoch_batches": nbt,
            "n_batches": k,
        }
        np_epoch = np_row["median_ms"] / 1e3 * nbt
        cores = os.cpu_count() or 1
        row["numpy_epoch_s_1_worker_estimate"] = np_epoch
        row[f"numpy_epoch_s_{cores}_workers_ideal"] = np_epoch / cores  # perfect scaling: a lower bound
        row["numpy_1_worker_over_device_epoch"] = np_epoch / est
        row["numpy_all_cores_ideal_over_device_epoch"] = np_epoch / cores / est
        rows.append(row)
    return rows


def bench_fused_train_rows(
    train_step,
    state: Any,
    features: jax.Array,
    graph: HeteroCSR,
    spec,
    *,
    steps: int,
    warmup: int = 2,
    device_only_ms: float | None = None,
    variants: Sequence[str] = ("fused", "two jits"),
) -> list[dict[str, Any]]:
    """End-to-end training steps/s with the device backend, for ``benchmarks/train_step.py``.

    ``train_step(state, features, batch) -> (state, loss)`` is the HGNN trainer's jitted step
    (``make_steps``; batch = one sub-batch stacked on a leading axis); injected so this floor-1
    module imports nothing from ``twotower_hgnn``. Two rows, each timing ``steps`` consecutive steps
    of epoch 1 (after ``warmup`` untimed ones, compile included there):

    * ``fused``: sampling inside the train step's jit — per step only the step index crosses;
    * ``two jits``: a jitted ``FusedSampler.step`` then the train step (no host round trip either).

    With ``device_only_ms`` (the same step on pre-placed batches) each row carries the ratio
    ``e2e_over_device_only`` — the issue's goal is >= 0.95 (f32) / 0.90 (bf16) on a GPU.
    ``variants`` picks the rows (a subset of ``("fused", "two jits")``, in that order).
    """
    label = f"device ({platform_label()})"
    ds = dev.DeviceSampler(graph, spec)
    fused = dev.FusedSampler(spec, ds.host.edge_counts, sub_batches=1)
    order, ek = ds.epoch_order(1), dev.epoch_key(spec.seed, 1)
    n = fused.num_steps()

    @jax.jit
    def fused_step(st, f, g, o, j, k):
        return train_step(st, f, fused.step(g, o, j, k))

    sample = jax.jit(fused.step)
    fns = {
        "fused": lambda st, j: fused_step(st, features, ds.dgraph, order, np.int32(j % n), ek),
        "two jits": lambda st, j: train_step(st, features, sample(ds.dgraph, order, np.int32(j % n), ek)),
    }
    rows = []
    st = state  # carried from variant to variant: on an accelerator the train step donates its state
    for name, fn in ((k, v) for k, v in fns.items() if k in variants):
        t0 = time.perf_counter()
        for j in range(warmup):
            st, loss = fn(st, j)
        jax.block_until_ready(loss)
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for j in range(steps):
            st, loss = fn(st, warmup + j)
        jax.block_until_ready(loss)
        wall = time.perf_counter() - t0
        row = {
            "name": f"jax_e2e_{label} sampler, {name}",
            "median_ms": wall / steps * 1e3,
            "steps_per_s": steps / wall,
            "warmup_s": warm_s,
            "note": f"{steps} steps, mean; sampling on the device, only the step index crosses",
        }
        if device_only_ms:
            row["e2e_over_device_only"] = row["steps_per_s"] / (1e3 / device_only_ms)
        rows.append(row)
    return rows


__all__ = ["bench_device_rows", "bench_fused_train_rows", "platform_label"]
