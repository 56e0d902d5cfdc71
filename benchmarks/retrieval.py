"""Serving latency and recall of the retrieval indexes on ONE pinned CPU core.

A request = user features -> user tower forward (jax) -> top-100 over the item index, excluding the
user's consumed items. For each index configuration this measures single-request latency (p50,
p99), batch scoring throughput (users/s, batches of --batch users) and recall@100 against exact
float32 search with the same exclusions.

One core, one compute thread (set before jax / faiss start any threads):
  os.sched_setaffinity(0, {--core}); OMP_NUM_THREADS=1, MKL/OPENBLAS threads 1;
  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1;
  faiss.omp_set_num_threads(1). Index builds are offline work: they run on all allowed cores
  (build_s column), then the process is pinned again before anything is timed.

Synthetic but structured data (not i.i.d. Gaussian): items come from a topic model — 500 topics
with Zipf-like sizes, a 32-d latent (topic centre + within-topic spread) mapped to 128-d by a fixed
random matrix, plus isotropic noise, L2-normalised. Each user has 1-3 preferred topics, a taste
vector in the same latent space and a history of 5-40 consumed items drawn from those topics (these
are excluded at search time). The user tower is a stand-in with the real shapes (input 352 =
history mean 128 + podcast mean 128 + age 1 + country 16 + music 64 + flags 2 + pad; 512-256-128,
ReLU): the first two layers are random, the last is fitted by least squares so the tower maps a
user's features to her taste vector — the queries are therefore genuine tower outputs that live
where real trained queries live (near the item manifold), and their dot products have structure.

    python -m benchmarks.retrieval --json=/tmp/retrieval.json          # full: 250K x 128
    python -m benchmarks.retrieval --quick                              # < 60 s smoke run
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_items", 250_000, "catalogue size")
flags.DEFINE_integer("dim", 128, "embedding size")
flags.DEFINE_integer("k", 100, "top-k per request")
flags.DEFINE_integer("requests", 500, "single-user requests timed per configuration")
flags.DEFINE_integer("recall_users", 1000, "users for recall@k")
flags.DEFINE_integer("batch", 256, "users per batch for throughput")
flags.DEFINE_float("throughput_s", 3.0, "seconds of batch scoring per configuration (at least one batch)")
flags.DEFINE_integer("core", -1, "CPU core to pin to (-1: the last core this process may use)")
flags.DEFINE_integer("seed", 0, "data seed")
flags.DEFINE_list("configs", [], "subset of configuration names to run (default: all)")
flags.DEFINE_float("max_row_s", 30.0, "time budget for the single-request loop of one row (after 100 requests)")
flags.DEFINE_integer("fit_users", 20_000, "users used to fit the stand-in tower's last layer")
flags.DEFINE_bool("quick", False, "smoke run under 60 s: 50K items, few requests, fewer configs")
flags.DEFINE_string("json", None, "write the results JSON here")
flags.DEFINE_string("machine", "2-core CPU dev box, shared/noisy", "machine description for the JSON meta")
flags.DEFINE_float("min_recall", 0.95, "recall@k a serving default must reach")
flags.DEFINE_float("max_p99_ms", 10.0, "p99 latency budget of the serving default")

RECALL_USERS_QUICK = 300


def pin_one_core(core: int) -> tuple[int, str]:
    """Pins this process to one core with one compute thread; must run before jax/faiss import."""
    allowed = sorted(os.sched_getaffinity(0))
    core = allowed[-1] if core < 0 else core
    if core not in allowed:
        raise app.UsageError(f"--core={core} is not one of the cores this process may use: {allowed}")
    os.sched_setaffinity(0, {core})
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    ).strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if "jax" in sys.modules:
        raise RuntimeError("jax was imported before pinning; XLA would already have its thread pool")
    return core, (
        f"sched_setaffinity(0, {{{core}}}); OMP/MKL/OPENBLAS_NUM_THREADS=1; XLA_FLAGS=--xla_cpu_multi_thread_eigen=false "
        "intra_op_parallelism_threads=1; faiss.omp_set_num_threads(1) (index builds: all cores)"
    )


# ----------------------------------------------------------------------------------- data


def make_world(num_items: int, dim: int, num_users: int, seed: int):
    """Items [N, dim] (L2-normalised), user features [U, 352], taste targets [U, dim], histories."""
    import numpy as np

    from twotower_hgnn.retrieval import ExcludeCSR
    from twotower_hgnn.rng import np_rng

    rng = np_rng(seed, "retrieval-bench")
    n_topics, rank = 500, 32
    pop = 1.0 / np.arange(1, n_topics + 1) ** 0.8
    pop /= pop.sum()
    centres = rng.normal(size=(n_topics, rank))
    proj = rng.normal(size=(rank, dim)) / np.sqrt(rank)
    topic = rng.choice(n_topics, size=num_items, p=pop)
    z = centres[topic] + 0.6 * rng.normal(size=(num_items, rank))
    items = z @ proj + 0.35 * rng.normal(size=(num_items, dim))
    items = (items / np.linalg.norm(items, axis=1, keepdims=True)).astype(np.float32)

    # Users: 1-3 topics; taste = mean topic centre + spread, in the items' output space.
    n_pref = rng.integers(1, 4, size=num_users)
    prefs = rng.choice(n_topics, size=(num_users, 3), p=pop)
    w = (np.arange(3)[None, :] < n_pref[:, None]).astype(np.float64)
    zu = (centres[prefs] * w[..., None]).sum(1) / n_pref[:, None] + 0.4 * rng.normal(size=(num_users, rank))
    taste = (zu @ proj).astype(np.float32)
    taste /= np.linalg.norm(taste, axis=1, keepdims=True)

    # Histories: 5-40 items from the preferred topics (vectorised: sample topic, then an item of it).
    order = np.argsort(topic, kind="stable")
    starts = np.searchsorted(topic[order], np.arange(n_topics))
    counts = np.bincount(topic, minlength=n_topics)
    lengths = rng.integers(5, 41, size=num_users)
    owner = np.repeat(np.arange(num_users), lengths)
    pick_topic = prefs[owner, (rng.random(owner.size) * n_pref[owner]).astype(np.int64)]
    ok = counts[pick_topic] > 0
    pick_topic = np.where(ok, pick_topic, topic[0])
    hist = order[starts[pick_topic] + (rng.random(owner.size) * counts[pick_topic]).astype(np.int64)]
    indptr = np.zeros(num_users + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    exclude = ExcludeCSR(indptr, hist.astype(np.int64))
    hist_mean = np.add.reduceat(items[hist], indptr[:-1], axis=0) / lengths[:, None]

    feats = np.zeros((num_users, 352), np.float32)
    feats[:, :dim] = hist_mean
    feats[:, dim : 2 * dim] = 0.3 * rng.normal(size=(num_users, dim))  # podcast history mean
    feats[:, 256] = rng.uniform(-1, 1, size=num_users)  # age, standardised
    feats[:, 257 + rng.integers(0, 16, size=num_users)] = 1.0  # country one-hot (16)
    feats[:, 273:337] = rng.normal(size=(num_users, 64)) * 0.1 + zu @ rng.normal(size=(rank, 64)) / np.sqrt(
        rank
    )  # music
    feats[:, 337] = 1.0  # has audiobook history
    return items, feats, taste, exclude


def make_tower(feats, taste, seed: int):
    """Stand-in user tower 352-512-256-128 (ReLU); last layer fitted to the taste vectors."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from twotower_hgnn.rng import np_rng

    rng = np_rng(seed, "tower")
    d_in = feats.shape[1]
    w1 = (rng.normal(size=(d_in, 512)) * np.sqrt(2.0 / d_in)).astype(np.float32)
    w2 = (rng.normal(size=(512, 256)) * np.sqrt(2.0 / 512)).astype(np.float32)
    b1, b2 = np.zeros(512, np.float32), np.zeros(256, np.float32)
    h = np.maximum(np.maximum(feats @ w1 + b1, 0) @ w2 + b2, 0)
    h1 = np.concatenate([h, np.ones((len(h), 1), np.float32)], 1)
    sol = np.linalg.solve(h1.T @ h1 + 1e-2 * np.eye(h1.shape[1]), h1.T @ taste)  # ridge fit
    params = {
        "w1": w1,
        "b1": b1,
        "w2": w2,
        "b2": b2,
        "w3": sol[:-1].astype(np.float32),
        "b3": sol[-1].astype(np.float32),
    }
    params = jax.device_put(params)

    @jax.jit
    def tower(p, x):
        x = jax.nn.relu(x @ p["w1"] + p["b1"])
        x = jax.nn.relu(x @ p["w2"] + p["b2"])
        return x @ p["w3"] + p["b3"]

    def forward(x):
        return np.asarray(tower(params, jnp.asarray(x)))

    return forward


# ----------------------------------------------------------------------------------- configs


def configs(quick: bool) -> list[tuple[str, dict, list[tuple[str, dict]]]]:
    """(index kind, build params, [(row name, search params), ...]): one build per index."""
    groups = [
        ("exact", {"chunk_size": 16384}, [("exact_f32", {})]),
        ("none", {}, [("tower_only", {})]),  # the request path without search: the machine's noise floor
        ("exact_bf16", {"chunk_size": 16384}, [("exact_bf16", {})]),
        ("flat", {}, [("faiss_flat_f32", {})]),
        ("flat_fp16", {}, [("faiss_flat_fp16", {})]),
        ("flat_sq8", {}, [("faiss_flat_sq8", {})]),
        ("hnsw", {"M": 16, "ef_construction": 100}, [(f"hnsw_M16_ef{ef}", {"ef_search": ef}) for ef in (256, 512)]),
        (
            "hnsw",
            {"M": 32, "ef_construction": 200},
            [(f"hnsw_M32_ef{ef}", {"ef_search": ef}) for ef in (128, 256, 512)],
        ),
        ("ivf_flat", {}, [(f"ivf_flat_np{n}", {"nprobe": n}) for n in (8, 16, 32, 48, 64)]),
        ("ivf_sq8", {}, [(f"ivf_sq8_np{n}", {"nprobe": n}) for n in (16, 32, 48, 64, 96)]),
    ]
    if quick:  # smoke run: cheap builds only
        groups = [g for g in groups if g[0] in ("exact", "none", "flat_sq8", "ivf_sq8")]
        groups[-1] = ("ivf_sq8", {}, [("ivf_sq8_np64", {"nprobe": 64})])
    return groups


def recall_at(found, truth) -> float:
    import numpy as np

    hits = [np.intersect1d(f[f >= 0], t[t >= 0]).size / max(int((t >= 0).sum()), 1) for f, t in zip(found, truth)]
    return float(np.mean(hits))


def rows_slice(ex, lo: int, hi: int):
    from twotower_hgnn.retrieval import ExcludeCSR

    a, b = ex.indptr[lo], ex.indptr[hi]
    return ExcludeCSR(ex.indptr[lo : hi + 1] - a, ex.indices[a:b])


def main(argv):
    del argv
    all_cores = sorted(os.sched_getaffinity(0))
    core, how = pin_one_core(FLAGS.core)
    import datetime
    import platform
    import time

    import faiss
    import jax
    import numpy as np

    faiss.omp_set_num_threads(1)
    from twotower_hgnn.io import atomic_write_json
    from twotower_hgnn.retrieval import DEFAULT_KIND, DEFAULT_PARAMS, make_index

    quick = FLAGS.quick
    n_items = 50_000 if quick and FLAGS.num_items == 250_000 else FLAGS.num_items
    n_req = min(FLAGS.requests, 60) if quick else FLAGS.requests
    n_rec = min(FLAGS.recall_users, RECALL_USERS_QUICK) if quick else FLAGS.recall_users
    thr_s = min(FLAGS.throughput_s, 0.5) if quick else FLAGS.throughput_s
    k = FLAGS.k
    t0 = time.perf_counter()
    n_users = n_rec + n_req + FLAGS.batch + (min(FLAGS.fit_users, 4000) if quick else FLAGS.fit_users)
    items, feats, taste, exclude = make_world(n_items, FLAGS.dim, n_users, FLAGS.seed)
    fit = slice(n_rec + n_req + FLAGS.batch, n_users)  # tower's last layer is fitted on these users only
    tower = make_tower(feats[fit], taste[fit], FLAGS.seed)
    print(
        f"data: {n_items} items x {FLAGS.dim}, {n_users} users, {time.perf_counter() - t0:.1f} s; pinning: {how}",
        flush=True,
    )

    rec_users = np.arange(n_rec)
    req_users = np.arange(n_rec, n_rec + n_req)
    bat_users = np.arange(n_rec + n_req, n_rec + n_req + FLAGS.batch)
    q_rec = tower(feats[rec_users])
    ex_rec = rows_slice(exclude, 0, n_rec)
    for b in (1, FLAGS.batch):  # compile the tower's two shapes before timing
        tower(feats[:b])

    def measure(name, kind, params, index, build_s):
        # Recall set (vs exact f32, same exclusions), in batches of 256.
        found = None
        if index is not None:
            found = np.concatenate(
                [
                    index.search(q_rec[i : i + 256], k, rows_slice(ex_rec, i, min(i + 256, n_rec)))[1]
                    for i in range(0, n_rec, 256)
                ]
            )

        def request(u):  # features -> tower -> search with the user's exclusions
            q = tower(feats[u : u + 1])
            if index is not None:
                index.search(q, k, rows_slice(exclude, u, u + 1))

        for u in req_users[:5]:
            request(u)
        lat, cpu, start = [], [], time.perf_counter()
        for u in req_users:
            ts, tc = time.perf_counter(), time.process_time()
            request(u)
            lat.append(time.perf_counter() - ts)
            cpu.append(time.process_time() - tc)  # excludes time this process was preempted
            if len(lat) >= 100 and time.perf_counter() - start > FLAGS.max_row_s:
                break  # slow configurations: at least 100 requests, then the time budget
        # Batch scoring throughput.
        ex_b = rows_slice(exclude, bat_users[0], bat_users[-1] + 1)

        def batch():
            return index.search(tower(feats[bat_users]), k, ex_b) if index is not None else tower(feats[bat_users])

        batch()
        n_done, tt = 0, time.perf_counter()
        while n_done == 0 or time.perf_counter() - tt < thr_s:
            batch()
            n_done += len(bat_users)
        lat_ms, cpu_ms = np.asarray(lat) * 1e3, np.asarray(cpu) * 1e3
        serving_default = kind == DEFAULT_KIND and all(params.get(key) == v for key, v in DEFAULT_PARAMS.items())
        return {
            "name": name,
            "kind": kind,
            "params": params,
            "p50_ms": float(np.percentile(lat_ms, 50)),
            "p99_ms": float(np.percentile(lat_ms, 99)),
            "users_per_s": float(n_done / (time.perf_counter() - tt)),
            "recall_at_100": None,
            "p50_cpu_ms": float(np.percentile(cpu_ms, 50)),
            "p99_cpu_ms": float(np.percentile(cpu_ms, 99)),
            "requests": len(lat),
            "build_s": round(build_s, 2),
            "serving_default": serving_default,
            "_found": found,
        }

    truth = None
    rows = []
    wanted = set(FLAGS.configs)
    known = {name for _, _, variants in configs(False) for name, _ in variants}
    if wanted - known:
        raise app.UsageError(f"--configs: unknown {sorted(wanted - known)}; known: {sorted(known)}")
    for kind, build_params, variants in configs(quick):
        variants = [v for v in variants if not wanted or v[0] in wanted or v[0] in ("exact_f32", "tower_only")]
        if not variants:
            continue
        # Builds are offline work: they may use every allowed core; measurement is on one core.
        os.sched_setaffinity(0, all_cores)
        faiss.omp_set_num_threads(len(all_cores))
        tb = time.perf_counter()
        index = None if kind == "none" else make_index(kind, items, **build_params)
        build_s = time.perf_counter() - tb
        os.sched_setaffinity(0, {core})
        faiss.omp_set_num_threads(1)
        for name, search_params in variants:
            if search_params:
                index.set_search_params(**search_params)
            r = measure(name, kind, {**build_params, **search_params}, index, build_s)
            found = r.pop("_found")
            if truth is None:
                truth = found
            if found is not None:
                r["recall_at_100"] = recall_at(found, truth)
            rows.append(r)
            rec = "   n/a" if r["recall_at_100"] is None else f"{r['recall_at_100']:.4f}"
            print(
                f"{name:18s} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  (cpu p50 {r['p50_cpu_ms']:6.2f} p99 "
                f"{r['p99_cpu_ms']:6.2f})  {r['users_per_s']:8.0f} users/s  recall@{k} {rec}  build {build_s:6.1f} s  "
                f"({r['requests']} requests)",
                flush=True,
            )
        del index

    def meets(r, key):
        return r["recall_at_100"] is not None and r["recall_at_100"] >= FLAGS.min_recall and r[key] < FLAGS.max_p99_ms

    ok = [r for r in rows if r["name"] != "exact_f32" and meets(r, "p99_ms")]
    best = min(ok, key=lambda r: r["p99_ms"]) if ok else None
    for r in rows:
        r["meets_goal"] = bool(meets(r, "p99_ms"))
        r["meets_goal_cpu_time"] = bool(meets(r, "p99_cpu_ms"))
        r["fastest_meeting_goal"] = best is not None and r is best
    print(f"\n| name | p50 ms | p99 ms | p99 cpu ms | users/s | recall@{k} | build s | goal (wall / cpu) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rec = "n/a" if r["recall_at_100"] is None else f"{r['recall_at_100']:.4f}"
        mark = ("yes" if r["meets_goal"] else "no") + " / " + ("yes" if r["meets_goal_cpu_time"] else "no")
        name = r["name"] + (" **(serving default)**" if r["serving_default"] else "")
        print(
            f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p99_cpu_ms']:.2f} | {r['users_per_s']:.0f} | {rec} | "
            f"{r['build_s']:.1f} | {mark} |"
        )
    dflt = [r for r in rows if r["serving_default"]]
    if dflt and not dflt[0]["meets_goal"]:
        d = dflt[0]
        print(
            f"\nMISS: serving default {d['name']}: p99 {d['p99_ms']:.2f} ms (cpu-time p99 {d['p99_cpu_ms']:.2f} ms), "
            f"recall@{k} {d['recall_at_100']:.4f}; goal p99 < {FLAGS.max_p99_ms} ms with recall >= {FLAGS.min_recall}"
        )
    from twotower_hgnn.provenance import git_sha

    sha = git_sha()
    meta = {
        "machine": FLAGS.machine,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": sha,
        "args": {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])},
        "num_items": n_items,
        "pinning": how,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "faiss": faiss.__version__,
        "data": "topic-model items (500 Zipf topics, 32-d latent -> 128-d + noise, L2-normalised); "
        "users with 1-3 topics, 5-40 history items excluded; stand-in 352-512-256-128 tower",
        "fastest_meeting_goal": best["name"] if best else None,
        "serving_default": {"kind": DEFAULT_KIND, **DEFAULT_PARAMS},
        "cpu_time_note": "p*_cpu_ms = process CPU time per request (excludes time preempted by other processes)",
        "total_s": round(time.perf_counter() - t0, 1),
    }
    if FLAGS.json:
        atomic_write_json(FLAGS.json, {"meta": meta, "rows": rows})
        print(f"wrote {FLAGS.json}")
    print(f"total {meta['total_s']} s")


if __name__ == "__main__":
    app.run(main)
