"""Trains a two-tower model (the paper, §4) and exports it for serving.

  python launch/train_two_tower.py --dataset=synthetic --scale=tiny --out_dir=/tmp/2t --nouse_hgnn --evaluate
  python launch/train_two_tower.py --dataset=synthetic --out_dir=/tmp/2t --hgnn_embeddings=/tmp/hgnn/item_embeddings.npz
  python launch/train_two_tower.py ... --target_type=podcast --config=paper --config.two_tower.epochs=5

The split is the dataset's temporal split (training part = history window before the cut). An existing
run in --out_dir is resumed. The model is exported to --export (default OUT_DIR/model), readable by
launch/recommend.py. --evaluate prints held-out HR@10 / MRR of the model and of Popularity.
"""

from __future__ import annotations

import dataclasses
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags

from launch import common
from launch.common import (
    load_dataset_from_flags,
    define_config_flags,
    define_dataset_flags,
    define_input,
    define_output,
    define_renamed,
    run_config,
    run_main,
)

define_dataset_flags("movielens1m")  # the default of every script with a dataset default
define_output("out_dir", None, "Checkpoints and TensorBoard logs; an existing run here is resumed.", required=True)
define_renamed("workdir", "out_dir")
define_output("export", None, "Exported model directory (default OUT_DIR/model).")
define_input("hgnn_embeddings", None, "HGNN item embeddings .npz (inference.export_embeddings).")
flags.DEFINE_boolean("use_hgnn", True, "False: the paper's 2T baseline (no HGNN inputs).")
flags.DEFINE_string("target_type", "audiobook", "Item type to recommend (any type of the data's items).")
flags.register_validator("target_type", lambda v: bool(v and v.strip()), "--target_type: empty; give an item type")
flags.register_multi_flags_validator(
    ["use_hgnn", "hgnn_embeddings"],
    lambda v: bool(v["hgnn_embeddings"]) or not v["use_hgnn"],
    "--hgnn_embeddings is required unless --nouse_hgnn (the 2T baseline)",
)
define_config_flags(
    "test",
    deprecated=(),
    aliases={
        "preset": None,
        "batch_size": "two_tower.batch_size",
        "epochs": "two_tower.epochs",
        "learning_rate": "two_tower.learning_rate",
        "tower_dims": "two_tower.model.tower_dims",
        "correction": "two_tower.model.correction",
        "temperature": "two_tower.model.temperature",
        "max_steps": "two_tower.max_steps",
        "time_budget_s": "two_tower.time_budget_s",
        "num_devices": "two_tower.num_devices",
    },
    shortcuts=("text_model",),
)
flags.adopt_module_key_flags(common)  # --help lists the shared flags too
flags.DEFINE_integer("seed", 0, "Training seed.", lower_bound=0)
flags.DEFINE_boolean("evaluate", False, "Print held-out HR@10/MRR of the model and of Popularity.")
FLAGS = flags.FLAGS


def _load_hgnn(path: str):
    """``--hgnn_embeddings``: ``(item ids, embeddings)`` of an exported .npz (a DataError naming it otherwise)."""
    import pickle
    import zipfile

    from twotower_hgnn.errors import DataError
    from twotower_hgnn.inference import load_embeddings

    try:
        return load_embeddings(path)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise DataError(f"--hgnn_embeddings={path}: not an embeddings .npz (item_ids, embeddings): {e}") from None


def _hgnn_rows(path: str, loaded, ds):
    """The rows of ``loaded`` (from :func:`_load_hgnn`) in the dataset's item order."""
    import numpy as np

    ids, emb = loaded
    pos = {str(i): r for r, i in enumerate(ids)}
    missing = [i for i in ds.items["item_id"].astype(str) if i not in pos]
    if missing:
        raise app.UsageError(f"--hgnn_embeddings {path}: no row for {len(missing)} item(s), e.g. {missing[:3]}")
    return emb[np.array([pos[i] for i in ds.items["item_id"].astype(str)])]


def main(argv) -> None:
    del argv
    from launch.common import quiet_library_logs

    quiet_library_logs()
    from twotower_hgnn.data.split import temporal_split
    from twotower_hgnn.errors import ConfigError
    from twotower_hgnn.eval.compare import compare_with_popularity
    from twotower_hgnn.serving import save_model
    from twotower_hgnn.text import item_features
    from twotower_hgnn.train.two_tower import train_two_tower

    run = run_config()
    cfg = dataclasses.replace(run.two_tower, target_type=FLAGS.target_type, use_hgnn=FLAGS.use_hgnn, seed=FLAGS.seed)
    loaded = _load_hgnn(FLAGS.hgnn_embeddings) if FLAGS.use_hgnn else None  # a bad file fails before any work
    ds = load_dataset_from_flags()
    if FLAGS.target_type not in ds.item_types:
        raise ConfigError(f"--target_type: {FLAGS.target_type!r} is not an item type of the data {list(ds.item_types)}")
    split = temporal_split(ds)
    print(split.summary())
    content = item_features(ds, model=run.text.model)
    hgnn = _hgnn_rows(FLAGS.hgnn_embeddings, loaded, ds) if FLAGS.use_hgnn else None
    res = train_two_tower(ds, split, content, hgnn, cfg, FLAGS.out_dir)
    last = f"last loss {res.history[-1]['loss']:.4f}" if res.history else "no new steps"
    print(f"[2T] {res.step} steps on {res.n_examples:,} examples (resumed from {res.resumed_from}); {last}")
    out = save_model(res, ds, FLAGS.export or os.path.join(FLAGS.out_dir, "model"))
    print(f"[2T] exported {out}")
    if FLAGS.evaluate:
        m = compare_with_popularity(res, ds, split)
        for seg in ("all", "warm", "cold"):
            a, b = m["2T"][seg], m["Popularity"][seg]
            print(
                f"  {seg:<4} users {a['n_users']:>6}  2T HR@10 {a['hr@10']:.3f} MRR {a['mrr@100']:.3f}   "
                f"Popularity HR@10 {b['hr@10']:.3f} MRR {b['mrr@100']:.3f}"
            )


if __name__ == "__main__":
    run_main(main)
