"""Trains the HGNN alone: dataset -> co-listening graph -> 10% held-out edges -> train (checkpoints,
resume) -> full-graph item embeddings (.npz with item ids).

  python -m launch.train_hgnn --dataset=synthetic --scale=tiny --workdir=/tmp/hgnn       # cpu_small preset
  python -m launch.train_hgnn --dataset=synthetic --scale=tiny --workdir=/tmp/hgnn       # again: resumes
  python -m launch.train_hgnn --graph_dir=G --features=x.npy --preset=paper --workdir=W  # prepared inputs

The graph is built from all of the dataset's interactions (the pipeline builds it from the training
split instead). Multi-host: start one process per host with --num_processes/--process_id/--coordinator.
"""
from __future__ import annotations

import dataclasses
import os

from absl import app, flags

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
flags.DEFINE_enum("preset", "cpu_small", ["cpu_small", "paper"], "cpu_small = HGNNTrainConfig.cpu_small(); paper = defaults.")
flags.DEFINE_integer("hidden_dim", None, "Override: hidden width.")
flags.DEFINE_integer("out_dim", None, "Override: embedding width.")
flags.DEFINE_bool("homogeneous", None, "Override: share weights across types/directions.")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "Override: compute dtype.")
flags.DEFINE_integer("batch_positives", None, "Override: positive edges per step.")
flags.DEFINE_list("fanouts", None, "Override: fan-out per hop.")
flags.DEFINE_float("margin", None, "Override: Eq. 4 margin.")
flags.DEFINE_float("lr", None, "Override: Adam learning rate.")
flags.DEFINE_integer("epochs", None, "Override: max epochs.")
flags.DEFINE_integer("patience", None, "Override: early-stopping patience.")
flags.DEFINE_integer("max_steps", None, "Step budget.")
flags.DEFINE_float("max_time_s", None, "Time budget in seconds.")
flags.DEFINE_list("relations", None, "Relations in use, e.g. audiobook-audiobook,podcast-podcast.")
flags.DEFINE_enum("balance", None, ["equal", "ratios", "off"], "Override: balance policy.")
flags.DEFINE_integer("workers", None, "Sampler loader workers.")
flags.DEFINE_enum("sampler", "auto", ["auto", "numpy", "device"],
                  "Batch sampling backend: host NumPy or jitted on the device (auto: device on GPU/TPU, NumPy on CPU).")
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

    init_distributed(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)  # before any other jax call
    import numpy as np

    from sampler.csr import HeteroCSR
    from twotower_hgnn.graph import build_graph, holdout_edges
    from twotower_hgnn.inference import embed_items, export_embeddings
    from twotower_hgnn.io import atomic_write_json
    from twotower_hgnn.train.hgnn import HGNNTrainConfig, resolve_sampler, sampler_factory, save_params, train_hgnn

    if not FLAGS.dataset and not (FLAGS.graph_dir and FLAGS.features):
        raise app.UsageError("give --dataset, or both --graph_dir and --features")
    ds = None
    if FLAGS.dataset:
        from twotower_hgnn.data import load_from_flags

        ds = load_from_flags(FLAGS.dataset, scale=FLAGS.scale, seed=FLAGS.data_seed, interactions=FLAGS.interactions,
                             items=FLAGS.items, users=FLAGS.users)
    graph = HeteroCSR.load(FLAGS.graph_dir) if FLAGS.graph_dir else build_graph(ds)[0]
    if FLAGS.features:
        feats = np.load(FLAGS.features)
    else:
        from twotower_hgnn.text import item_features

        feats = item_features(ds, model=FLAGS.text_model)
    train_graph, val = holdout_edges(graph, FLAGS.val_frac, FLAGS.seed)

    cfg = HGNNTrainConfig.cpu_small(progress=True) if FLAGS.preset == "cpu_small" else HGNNTrainConfig()
    model = {k: v for k, v in {"hidden_dim": FLAGS.hidden_dim, "out_dim": FLAGS.out_dim, "homogeneous": FLAGS.homogeneous,
                                "compute_dtype": FLAGS.dtype}.items() if v is not None}
    over = {k: v for k, v in {
        "batch_positives": FLAGS.batch_positives, "fanouts": tuple(int(f) for f in FLAGS.fanouts) if FLAGS.fanouts else None,
        "margin": FLAGS.margin, "lr": FLAGS.lr, "max_epochs": FLAGS.epochs, "patience": FLAGS.patience,
        "max_steps": FLAGS.max_steps, "max_time_s": FLAGS.max_time_s, "balance": FLAGS.balance, "workers": FLAGS.workers,
        "relations": tuple(FLAGS.relations) if FLAGS.relations else None}.items() if v is not None}
    # the device backend samples inside the jitted step (only step indices cross from the host)
    over["fused_sampling"] = resolve_sampler(FLAGS.sampler) == "device" and FLAGS.num_processes == 1
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model), seed=FLAGS.seed, **over)
    res = train_hgnn(train_graph, feats, val, cfg, FLAGS.workdir, sampler_factory=sampler_factory(FLAGS.sampler))
    print(f"[hgnn] {res.stop_reason} after {res.epochs_run} epochs / {res.steps} steps, {res.wall_s:.0f} s; "
          f"best val_mrr {res.best_metric:.4f} (epoch {res.best_epoch}), random baseline {res.baseline['val_mrr']:.4f}")
    if FLAGS.process_id != 0:
        return
    rels = [tuple(r.split("-")) for r in cfg.relations] if cfg.relations else None
    emb = embed_items(res.params, cfg.model, graph, feats, max_neighbors=FLAGS.max_neighbors, relations=rels)
    ids = ds.items["item_id"].to_numpy() if ds is not None else np.array([str(i) for i in range(graph.num_nodes)])
    out = FLAGS.export or os.path.join(FLAGS.workdir, "item_embeddings.npz")
    export_embeddings(out, ids, emb)
    save_params(os.path.join(FLAGS.workdir, "params.npz"), res.params)
    atomic_write_json(os.path.join(FLAGS.workdir, "history.json"),
                      {"history": res.history, "baseline": res.baseline, "config": cfg.to_dict(), "stop_reason": res.stop_reason})
    print(f"[hgnn] wrote {out}: {emb.shape[0]:,} x {emb.shape[1]} embeddings; params + history in {FLAGS.workdir}")


if __name__ == "__main__":
    app.run(main)
