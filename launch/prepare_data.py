"""Loads a dataset, splits it, builds the co-listening graph and prints every statistic.

python -m launch.prepare_data                                   # MovieLens-1M, dataset defaults
python -m launch.prepare_data --dataset=synthetic --scale=small --graph_rule=any
python -m launch.prepare_data --dataset=files --interactions=i.csv --items=it.parquet --users=u.csv
"""

from __future__ import annotations

import json
import time

from absl import app, flags

flags.DEFINE_enum("dataset", "movielens1m", ["movielens1m", "synthetic", "files"], "Data source.")
flags.DEFINE_string("scale", "tiny", "Synthetic scale: tiny, small, medium, large, xlarge, paper.")
flags.DEFINE_integer("seed", 0, "Synthetic generator / holdout seed.")
flags.DEFINE_string("interactions", None, "--dataset=files: interactions CSV/Parquet.")
flags.DEFINE_string("items", None, "--dataset=files: items CSV/Parquet.")
flags.DEFINE_string("users", None, "--dataset=files: users CSV/Parquet.")
flags.DEFINE_string("cut_date", None, "Split date (ISO) or Unix seconds; default: the dataset's rule.")
flags.DEFINE_float("cut_quantile", None, "Split at this interaction-time quantile.")
flags.DEFINE_string("history_days", "auto", "History window before the cut in days, 'none', or 'auto'.")
flags.DEFINE_string("test_days", "auto", "Test window after the cut in days, 'none', or 'auto'.")
flags.DEFINE_integer("min_segment_users", 1, "Minimum warm and cold test users.")
flags.DEFINE_enum("graph_rule", None, ["any", "min_shared", "topk"], "Edge rule (default: the dataset's).")
flags.DEFINE_integer("min_shared", None, "Shared users for --graph_rule=min_shared.")
flags.DEFINE_integer("topk", None, "Neighbours per item for --graph_rule=topk.")
flags.DEFINE_string("window", None, "Pair window (items), or 'none' for all pairs.")
flags.DEFINE_string("max_items_per_user", None, "Per-user cap (items), or 'none'.")
flags.DEFINE_list("edge_events", None, "Events that create edges (default: stream).")
flags.DEFINE_float("holdout_frac", 0.1, "Fraction of edges held out for HGNN validation.")
flags.DEFINE_string("out", None, "Optional directory: writes graph/ (HeteroCSR) and stats.json.")
FLAGS = flags.FLAGS


def _opt(v: str | None, name: str):
    if v is None or v.lower() == "auto":
        return "auto"
    if v.lower() == "none":
        return None
    try:
        return float(v) if name.endswith("days") else int(v)
    except ValueError:
        raise app.UsageError(f"--{name}={v!r}: a number, 'none' or 'auto'") from None


def main(argv):
    del argv
    import dataclasses
    from pathlib import Path

    from twotower_hgnn.data import load_from_flags
    from twotower_hgnn.data.split import AUTO
    from twotower_hgnn.graph import default_graph_config, prepare_report
    from twotower_hgnn.io import atomic_write_json

    t0 = time.perf_counter()
    ds = load_from_flags(
        FLAGS.dataset,
        scale=FLAGS.scale,
        seed=FLAGS.seed,
        interactions=FLAGS.interactions,
        items=FLAGS.items,
        users=FLAGS.users,
    )
    load_s = time.perf_counter() - t0
    split_kw = {"min_segment_users": FLAGS.min_segment_users}
    for name in ("history_days", "test_days"):
        v = _opt(getattr(FLAGS, name), name)
        split_kw[name] = AUTO if v == "auto" else v
    if FLAGS.cut_date:
        split_kw["cut_date"] = int(FLAGS.cut_date) if FLAGS.cut_date.isdigit() else FLAGS.cut_date
    if FLAGS.cut_quantile is not None:
        split_kw["cut_quantile"] = FLAGS.cut_quantile
    over = {
        k: getattr(FLAGS, f)
        for k, f in (("rule", "graph_rule"), ("min_shared", "min_shared"), ("topk", "topk"))
        if getattr(FLAGS, f) is not None
    }
    for name in ("window", "max_items_per_user"):
        v = _opt(getattr(FLAGS, name), name)
        if v != "auto":
            over[name] = v
    if FLAGS.edge_events:
        over["edge_events"] = tuple(FLAGS.edge_events)
    gcfg = dataclasses.replace(default_graph_config(ds), **over)
    report, graph = prepare_report(ds, split_kw, gcfg, FLAGS.holdout_frac, FLAGS.seed)
    report["load_seconds"] = load_s
    print(json.dumps(report, indent=1, default=str))
    print(report["split"]["summary"])
    if FLAGS.out:
        out = Path(FLAGS.out)
        graph.save(out / "graph")
        atomic_write_json(out / "stats.json", report)
        print(f"wrote {out}/graph and {out}/stats.json")


def _main(argv):
    """Data errors end the run with their one-line message, not a traceback."""
    import sys

    from twotower_hgnn.data.readers import DataError
    from twotower_hgnn.data.split import SplitError
    from twotower_hgnn.graph import GraphError

    try:
        main(argv)
    except (DataError, SplitError, GraphError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(_main)
