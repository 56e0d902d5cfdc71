"""Train and evaluate on an external split given as files (no time cut, no history window).

    python -m launch.evaluate --train_interactions=train.csv --test_interactions=test.csv \
        --items=items.csv --users=users.csv [--valid_interactions=valid.csv] [--preset=tiny] [--targets=audiobook]

Files follow the project's schema (README / twotower_hgnn/data/schema.py), CSV or Parquet; every
interactions file is validated and its ids must exist in the items/users tables. The split need not be
temporal (e.g. a per-user random split): each user's features are computed as of their own last
training interaction. Validation (early stopping, tuning) holds out ``--valid_interactions`` if given
(its rows are training data of the final models), else a seeded per-user random ``--valid_frac`` of
each user's training rows. Warm and cold segments are still reported. A dataset whose items are all
one type runs in homogeneous mode.
"""
from __future__ import annotations

import sys

from absl import app, flags

flags.DEFINE_string("train_interactions", None, "Training interactions (CSV/Parquet).", required=True)
flags.DEFINE_string("test_interactions", None, "Test interactions (CSV/Parquet).", required=True)
flags.DEFINE_string("valid_interactions", None, "Validation interactions (CSV/Parquet; optional): held out "
                    "of training for early stopping and tuning, then part of the final models' training data.")
flags.DEFINE_float("valid_frac", 0.1, "Without --valid_interactions: the per-user random fraction of training "
                   "rows held out for validation.")
flags.DEFINE_string("items", None, "Items table.", required=True)
flags.DEFINE_string("users", None, "Users table.", required=True)
flags.DEFINE_string("out_dir", "runs", "Output root.")
flags.DEFINE_enum("preset", "demo", ["demo", "demo_faithful", "tiny", "paper"], "Hyper-parameter preset.")
flags.DEFINE_list("targets", ["audiobook", "podcast"], "Target item types (types without items are skipped).")
flags.DEFINE_integer("k", 10, "Cut-off of HR/Recall/NDCG.")
flags.DEFINE_boolean("exclude_seen", True, "Exclude items consumed in the training part from rankings.")
flags.DEFINE_string("text_model", None, "sentence-transformers model name or path.")
flags.DEFINE_integer("seed", 0, "Training seed.")
flags.DEFINE_enum("sampler", "auto", ["auto", "numpy", "device"], "HGNN batch sampling backend (auto: device on GPU/TPU).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from launch.common import quiet_library_logs

    quiet_library_logs()
    from twotower_hgnn.pipeline import PipelineConfig, PipelineError, run_pipeline

    try:
        cfg = PipelineConfig(dataset="files", interactions=FLAGS.train_interactions,
                             test_interactions=FLAGS.test_interactions, valid_interactions=FLAGS.valid_interactions,
                             valid_frac=FLAGS.valid_frac, items=FLAGS.items, users=FLAGS.users,
                             out_dir=FLAGS.out_dir, preset=FLAGS.preset, targets=tuple(FLAGS.targets), k=FLAGS.k,
                             exclude_seen=FLAGS.exclude_seen, text_model=FLAGS.text_model, seed=FLAGS.seed,
                             sampler=FLAGS.sampler)
    except PipelineError as e:
        sys.exit(f"error: {e}")
    run_pipeline(cfg)


if __name__ == "__main__":
    app.run(main)
