"""Trains the HGNN alone: dataset -> co-listening graph -> 10% held-out edges -> train (checkpoints,
resume) -> full-graph item embeddings (.npz with item ids).

  python -m launch.train_hgnn --dataset=synthetic --scale=tiny --out_dir=/tmp/hgnn       # test configuration
  python -m launch.train_hgnn --dataset=synthetic --scale=tiny --out_dir=/tmp/hgnn       # again: resumes
  python -m launch.train_hgnn --graph_dir=G --features=x.npy --config=paper --out_dir=W  # prepared inputs

The graph is built from all of the dataset's interactions (the pipeline builds it from the training
split instead). Multi-host: start one process per host with --num_processes/--process_id/--coordinator.
"""

from __future__ import annotations

import dataclasses
import os
import re

from absl import flags

from launch import common
from launch.common import (
    load_dataset_from_flags,
    define_config_flags,
    define_dataset_flags,
    define_input,
    define_output,
    define_range,
    define_renamed,
    run_config,
    run_main,
)

define_dataset_flags(None)  # or --graph_dir + --features
define_input("graph_dir", None, "A saved HeteroCSR (HeteroCSR.save) instead of building one.", kind="dir")
define_input("features", None, ".npy float [N, d] node features (default: the dataset's content vectors/text).")
flags.DEFINE_float("val_frac", 0.1, "Held-out edge fraction for validation (paper: 10%).")
define_range("val_frac", 0.0, 1.0, open_lo=True, open_hi=True)
define_output("out_dir", None, "Checkpoints, logs and outputs; an existing run here is resumed.", required=True)
define_renamed("workdir", "out_dir")
define_config_flags(
    "test",
    deprecated=(),
    aliases={
        "preset": None,
        "hidden_dim": "hgnn.model.hidden_dim",
        "out_dim": "hgnn.model.out_dim",
        "homogeneous": "hgnn.model.homogeneous",
        "dtype": "hgnn.model.compute_dtype",
        "batch_positives": "hgnn.batch_positives",
        "fanouts": "hgnn.fanouts",
        "margin": "hgnn.margin",
        "lr": "hgnn.lr",
        "epochs": "hgnn.max_epochs",
        "patience": "hgnn.patience",
        "max_steps": "hgnn.max_steps",
        "max_time_s": "hgnn.max_time_s",
        "relations": "hgnn.relations",
        "balance": "hgnn.balance",
        "workers": "hgnn.workers",
        "sampler": "sampler",
    },
    shortcuts=("text_model",),
)
flags.DEFINE_integer("seed", 0, "Training seed.", lower_bound=0)
flags.DEFINE_integer(
    "max_neighbors", None, "Inference: cap neighbours per node/direction (default: full).", lower_bound=1
)
define_output("export", None, "Embeddings .npz (default OUT_DIR/item_embeddings.npz).", is_dir=False)
flags.DEFINE_string("coordinator", None, "host:port of process 0 (multi-process).")
flags.register_validator(
    "coordinator",
    lambda v: v is None or bool(re.fullmatch(r"[^:\s]+:([1-9][0-9]{0,4})", v)) and int(v.rsplit(":", 1)[1]) < 65536,
    "not host:port (a port in 1..65535)",
)
flags.DEFINE_integer("num_processes", 1, "Processes in the job.", lower_bound=1)
flags.DEFINE_integer("process_id", 0, "This process's index (0 .. num_processes - 1).", lower_bound=0)
flags.register_multi_flags_validator(
    ["process_id", "num_processes"],
    lambda v: v["process_id"] < v["num_processes"],
    "--process_id must be < --num_processes",
)
flags.register_multi_flags_validator(
    ["dataset", "graph_dir", "features"],
    lambda v: bool(v["dataset"]) or bool(v["graph_dir"] and v["features"]),
    "give --dataset, or both --graph_dir and --features",
)
flags.adopt_module_key_flags(common)  # --help lists the shared flags too
FLAGS = flags.FLAGS


def _load_graph(path: str):
    """``--graph_dir``: a saved HeteroCSR (a DataError naming the folder otherwise)."""
    from sampler.csr import HeteroCSR
    from twotower_hgnn.errors import DataError

    try:
        return HeteroCSR.load(path)
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"--graph_dir={path}: not a saved graph (HeteroCSR.save): {e}") from None


def _load_features(path: str, n: int):
    """``--features``: a float ``[n, d]`` .npy with one row per graph node (a DataError otherwise)."""
    import numpy as np

    from twotower_hgnn.errors import DataError

    try:
        feats = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"--features={path}: not a .npy array ({e})") from None
    if feats.ndim != 2 or feats.shape[0] != n or not np.issubdtype(feats.dtype, np.floating):
        raise DataError(
            f"--features={path}: {feats.dtype} {list(feats.shape)}, expected float [{n}, d] (one row per node)"
        )
    return feats


def main(argv) -> None:
    del argv
    from twotower_hgnn.parallel import init_distributed

    run = run_config()  # refuses a bad value before any work
    init_distributed(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)  # before any other jax call
    import numpy as np

    from sampler.factory import resolve_sampler, sampler_factory
    from twotower_hgnn.checkpoint import save_params
    from twotower_hgnn.graph import build_graph, holdout_edges
    from twotower_hgnn.inference import embed_items, export_embeddings
    from twotower_hgnn.io import atomic_write_json
    from twotower_hgnn.train.hgnn import train_hgnn

    ds = None
    if FLAGS.dataset:
        ds = load_dataset_from_flags()
    graph = _load_graph(FLAGS.graph_dir) if FLAGS.graph_dir else build_graph(ds)[0]
    if FLAGS.features:
        feats = _load_features(FLAGS.features, graph.num_nodes)
    else:
        from twotower_hgnn.text import item_features

        feats = item_features(ds, model=run.text.model)
    train_graph, val = holdout_edges(graph, FLAGS.val_frac, FLAGS.seed)
    # the device backend samples inside the jitted step (only step indices cross from the host)
    fused = resolve_sampler(run.sampler) == "device" and FLAGS.num_processes == 1
    cfg = dataclasses.replace(run.hgnn, seed=FLAGS.seed, progress=True, fused_sampling=fused)

    res = train_hgnn(train_graph, feats, val, cfg, FLAGS.out_dir, sampler_factory=sampler_factory(run.sampler))
    print(
        f"[hgnn] {res.stop_reason} after {res.epochs_run} epochs / {res.steps} steps, {res.wall_s:.0f} s; "
        f"best val_mrr {res.best_metric:.4f} (epoch {res.best_epoch}), random baseline {res.baseline['val_mrr']:.4f}"
    )
    if FLAGS.process_id != 0:
        return
    rels = [tuple(r.split("-")) for r in cfg.relations] if cfg.relations else None
    emb = embed_items(res.params, cfg.model, graph, feats, max_neighbors=FLAGS.max_neighbors, relations=rels)
    ids = ds.items["item_id"].to_numpy() if ds is not None else np.array([str(i) for i in range(graph.num_nodes)])
    out = FLAGS.export or os.path.join(FLAGS.out_dir, "item_embeddings.npz")
    export_embeddings(out, ids, emb)
    save_params(os.path.join(FLAGS.out_dir, "params.npz"), res.params)
    atomic_write_json(
        os.path.join(FLAGS.out_dir, "history.json"),
        {"history": res.history, "baseline": res.baseline, "config": cfg.to_dict(), "stop_reason": res.stop_reason},
    )
    print(f"[hgnn] wrote {out}: {emb.shape[0]:,} x {emb.shape[1]} embeddings; params + history in {FLAGS.out_dir}")


if __name__ == "__main__":
    run_main(main)
