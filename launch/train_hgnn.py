"""Trains the HGNN alone: dataset -> co-listening graph -> 10% held-out edges -> train (checkpoints,
resume) -> full-graph item embeddings (.npz with item ids).

  python -m launch.train_hgnn --dataset=synthetic --scale=tiny --workdir=/tmp/hgnn       # test configuration
  python -m launch.train_hgnn --dataset=synthetic --scale=tiny --workdir=/tmp/hgnn       # again: resumes
  python -m launch.train_hgnn --graph_dir=G --features=x.npy --config=paper --workdir=W  # prepared inputs

The graph is built from all of the dataset's interactions (the pipeline builds it from the training
split instead). Multi-host: start one process per host with --num_processes/--process_id/--coordinator.
"""

from __future__ import annotations

import dataclasses
import os

import sys

from absl import app, flags

from launch.common import define_config_flags, run_config, run_main

flags.DEFINE_enum("dataset", None, ["movielens1m", "synthetic", "files"], "Data source (or --graph_dir + --features).")
flags.DEFINE_string("scale", "tiny", "Synthetic scale.")
flags.DEFINE_integer("data_seed", 0, "Synthetic seed.")
flags.DEFINE_string("interactions", None, "--dataset=files: interactions file.")
flags.DEFINE_string("items", None, "--dataset=files: items file.")
flags.DEFINE_string("users", None, "--dataset=files: users file.")
flags.DEFINE_string("graph_dir", None, "A saved HeteroCSR (HeteroCSR.save) instead of building one.")
flags.DEFINE_string("features", None, ".npy float [N, d] node features (default: the dataset's content vectors/text).")
flags.DEFINE_string("text_model", None, "sentence-transformers model for text features.")
flags.DEFINE_float("val_frac", 0.1, "Held-out edge fraction for validation (paper: 10%).")
flags.DEFINE_string("workdir", None, "Checkpoints, logs and outputs; an existing run here is resumed.", required=True)
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
)
flags.adopt_module_key_flags(sys.modules["launch.common"])  # --help lists the configuration flags too
flags.DEFINE_integer("seed", 0, "Training seed.")
flags.DEFINE_integer("max_neighbors", None, "Inference: cap neighbours per node/direction (default: full).")
flags.DEFINE_string("export", None, "Embeddings .npz (default WORKDIR/item_embeddings.npz).")
flags.DEFINE_string("coordinator", None, "host:port of process 0 (multi-process).")
flags.DEFINE_integer("num_processes", 1, "Processes in the job.")
flags.DEFINE_integer("process_id", 0, "This process's index.")
FLAGS = flags.FLAGS


def main(argv) -> None:
    del argv
    from twotower_hgnn.parallel import init_distributed

    run = run_config()  # refuses a bad value before any work
    init_distributed(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)  # before any other jax call
    import numpy as np

    from sampler.csr import HeteroCSR
    from sampler.factory import resolve_sampler, sampler_factory
    from twotower_hgnn.checkpoint import save_params
    from twotower_hgnn.graph import build_graph, holdout_edges
    from twotower_hgnn.inference import embed_items, export_embeddings
    from twotower_hgnn.io import atomic_write_json
    from twotower_hgnn.train.hgnn import train_hgnn

    if not FLAGS.dataset and not (FLAGS.graph_dir and FLAGS.features):
        raise app.UsageError("give --dataset, or both --graph_dir and --features")
    ds = None
    if FLAGS.dataset:
        from twotower_hgnn.data import load_from_flags

        ds = load_from_flags(
            FLAGS.dataset,
            scale=FLAGS.scale,
            seed=FLAGS.data_seed,
            interactions=FLAGS.interactions,
            items=FLAGS.items,
            users=FLAGS.users,
        )
    graph = HeteroCSR.load(FLAGS.graph_dir) if FLAGS.graph_dir else build_graph(ds)[0]
    if FLAGS.features:
        feats = np.load(FLAGS.features)
    else:
        from twotower_hgnn.text import item_features

        feats = item_features(ds, model=FLAGS.text_model)
    train_graph, val = holdout_edges(graph, FLAGS.val_frac, FLAGS.seed)
    # the device backend samples inside the jitted step (only step indices cross from the host)
    fused = resolve_sampler(run.sampler) == "device" and FLAGS.num_processes == 1
    cfg = dataclasses.replace(run.hgnn, seed=FLAGS.seed, progress=True, fused_sampling=fused)

    res = train_hgnn(train_graph, feats, val, cfg, FLAGS.workdir, sampler_factory=sampler_factory(run.sampler))
    print(
        f"[hgnn] {res.stop_reason} after {res.epochs_run} epochs / {res.steps} steps, {res.wall_s:.0f} s; "
        f"best val_mrr {res.best_metric:.4f} (epoch {res.best_epoch}), random baseline {res.baseline['val_mrr']:.4f}"
    )
    if FLAGS.process_id != 0:
        return
    rels = [tuple(r.split("-")) for r in cfg.relations] if cfg.relations else None
    emb = embed_items(res.params, cfg.model, graph, feats, max_neighbors=FLAGS.max_neighbors, relations=rels)
    ids = ds.items["item_id"].to_numpy() if ds is not None else np.array([str(i) for i in range(graph.num_nodes)])
    out = FLAGS.export or os.path.join(FLAGS.workdir, "item_embeddings.npz")
    export_embeddings(out, ids, emb)
    save_params(os.path.join(FLAGS.workdir, "params.npz"), res.params)
    atomic_write_json(
        os.path.join(FLAGS.workdir, "history.json"),
        {"history": res.history, "baseline": res.baseline, "config": cfg.to_dict(), "stop_reason": res.stop_reason},
    )
    print(f"[hgnn] wrote {out}: {emb.shape[0]:,} x {emb.shape[1]} embeddings; params + history in {FLAGS.workdir}")


if __name__ == "__main__":
    run_main(main)
