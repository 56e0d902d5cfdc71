"""Loads a dataset, splits it, builds the co-listening graph and prints every statistic.

python -m launch.prepare_data                                   # MovieLens-1M, dataset defaults
python -m launch.prepare_data --dataset=synthetic --scale=small --graph_rule=any
python -m launch.prepare_data --dataset=files --interactions=i.csv --items=it.parquet --users=u.csv
python -m launch.prepare_data --dataset=synthetic --scale=large --format=parquet_chunks --chunk_users=200000 \
    --out_dir=/data/synthetic-large       # the data only, as chunked Parquet (resumable; no split or graph)
"""

from __future__ import annotations

import json
import time

from absl import app, flags

from launch import common
from launch.common import (
    load_dataset_from_flags,
    define_dataset_flags,
    define_output,
    define_range,
    define_renamed,
    run_main,
)

define_dataset_flags("movielens1m")
flags.DEFINE_integer("seed", 0, "Holdout seed (and the synthetic seed unless --data_seed is given).", lower_bound=0)
flags.DEFINE_string("cut_date", None, "Split date (ISO YYYY-MM-DD) or Unix seconds; default: the dataset's rule.")
flags.DEFINE_float("cut_quantile", None, "Split at this interaction-time quantile, in (0, 1).")
define_range("cut_quantile", 0.0, 1.0, open_lo=True, open_hi=True)
flags.DEFINE_string("history_days", "auto", "History window before the cut in days (> 0), 'none', or 'auto'.")
flags.DEFINE_string("test_days", "auto", "Test window after the cut in days (> 0), 'none', or 'auto'.")
flags.DEFINE_integer("min_segment_users", 1, "Minimum warm and cold test users.", lower_bound=0)
flags.DEFINE_enum("graph_rule", None, ["any", "min_shared", "topk"], "Edge rule (default: the dataset's).")
flags.DEFINE_integer("min_shared", None, "Shared users for --graph_rule=min_shared.", lower_bound=1)
flags.DEFINE_integer("topk", None, "Neighbours per item for --graph_rule=topk.", lower_bound=1)
flags.DEFINE_string("window", None, "Pair window (items, >= 1), or 'none' for all pairs.")
flags.DEFINE_string("max_items_per_user", None, "Per-user cap (items, >= 2), or 'none'.")
flags.DEFINE_list("edge_events", None, "Events that create edges (default: stream).")
flags.DEFINE_float("holdout_frac", 0.1, "Fraction of edges held out for HGNN validation, in [0, 1).")
define_range("holdout_frac", 0.0, 1.0, open_hi=True)
define_output("out_dir", None, "Optional directory: writes graph/ (HeteroCSR) and stats.json.")
define_renamed("out", "out_dir")
flags.DEFINE_enum(
    "format",
    "report",
    ["report", "parquet_chunks"],
    "report: split, build the graph and print the statistics (--out_dir: graph/ and stats.json). parquet_chunks: "
    "write the synthetic dataset to --out_dir as Parquet in chunks of --chunk_users users (items.parquet, users/, "
    "interactions/day=N/, manifest.json; rerun to resume) and stop there.",
)
flags.DEFINE_integer(
    "chunk_users", 200_000, "--format=parquet_chunks: users per chunk (peak memory follows it).", lower_bound=1
)
flags.adopt_module_key_flags(common)  # --help lists the shared flags too
FLAGS = flags.FLAGS
_MINIMUM = {"history_days": 0, "test_days": 0, "window": 1, "max_items_per_user": 2}


def _opt(v: str | None, name: str):
    if v is None or v.lower() == "auto":
        return "auto"
    if v.lower() == "none":
        return None
    try:
        x = float(v) if name.endswith("days") else int(v)
    except ValueError:
        raise app.UsageError(f"--{name}={v}: a number, 'none' or 'auto'") from None
    if x <= _MINIMUM[name] if name.endswith("days") else x < _MINIMUM[name]:
        raise app.UsageError(f"--{name}={v}: must be {'>' if name.endswith('days') else '>='} {_MINIMUM[name]}")
    return x


def _check_opt(name: str):
    def check(v):
        try:
            _opt(v, name)
        except app.UsageError as e:
            raise flags.ValidationError(str(e).split(": ", 1)[-1]) from None
        return True

    return check


def _check_cut_date(v: str | None) -> bool:
    if v is not None and not v.isdigit():
        common.check_iso_date("cut_date", v)
    return True


def _check_events(v: list[str] | None) -> bool:
    if v is None:
        return True
    from twotower_hgnn.data.schema import EVENTS

    bad = [e for e in v if e not in EVENTS]
    if bad or not v:
        raise flags.ValidationError(f"not a non-empty list of {', '.join(EVENTS)}")
    return True


for _name in _MINIMUM:
    flags.register_validator(_name, _check_opt(_name))
flags.register_validator("cut_date", _check_cut_date)
flags.register_validator("edge_events", _check_events)


def _check_format(v: dict) -> bool:
    if v["format"] == "parquet_chunks" and (v["dataset"] != "synthetic" or not v["out_dir"]):
        raise flags.ValidationError("--format=parquet_chunks needs --dataset=synthetic and --out_dir")
    return True


flags.register_multi_flags_validator(["format", "dataset", "out_dir"], _check_format)


def _write_parquet_chunks() -> None:
    """--format=parquet_chunks: the synthetic scale written (or resumed) as chunked Parquet."""
    from twotower_hgnn.data.synthetic_parquet import write_synthetic

    seed = FLAGS.data_seed if FLAGS["data_seed"].present else FLAGS.seed
    t0 = time.perf_counter()
    man = write_synthetic(FLAGS.scale, seed, FLAGS.out_dir, chunk_users=FLAGS.chunk_users, log=print)
    summary = {"out_dir": FLAGS.out_dir, "scale": FLAGS.scale, "seed": seed, "chunk_users": FLAGS.chunk_users}
    summary.update(rows=man["rows"], chunks=man["n_chunks"], seconds=round(time.perf_counter() - t0, 1))
    print(json.dumps(summary))


def main(argv):
    del argv
    import dataclasses
    from pathlib import Path

    from twotower_hgnn.data.split import AUTO
    from twotower_hgnn.graph import default_graph_config, prepare_report
    from twotower_hgnn.io import atomic_write_json

    if FLAGS.format == "parquet_chunks":
        return _write_parquet_chunks()
    t0 = time.perf_counter()
    ds = load_dataset_from_flags(FLAGS.data_seed if FLAGS["data_seed"].present else FLAGS.seed)
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
    if FLAGS.out_dir:
        out = Path(FLAGS.out_dir)
        graph.save(out / "graph")
        atomic_write_json(out / "stats.json", report)
        print(f"wrote {out}/graph and {out}/stats.json")


if __name__ == "__main__":
    run_main(main)
