"""Train and evaluate on an external split given as files (no time cut, no history window).

    python -m launch.evaluate --train_interactions=train.csv --test_interactions=test.csv \
        --items=items.csv --users=users.csv [--preset=tiny] [--targets=audiobook]

Files follow the project's schema (README / twotower_hgnn/data/schema.py), CSV or Parquet. Warm and
cold segments are still reported. A dataset whose items are all one type runs in homogeneous mode.
"""
from __future__ import annotations

import sys

from absl import app, flags

flags.DEFINE_string("train_interactions", None, "Training interactions (CSV/Parquet).", required=True)
flags.DEFINE_string("test_interactions", None, "Test interactions (CSV/Parquet).", required=True)
flags.DEFINE_string("items", None, "Items table.", required=True)
flags.DEFINE_string("users", None, "Users table.", required=True)
flags.DEFINE_string("out_dir", "runs", "Output root.")
flags.DEFINE_enum("preset", "demo", ["demo", "tiny", "paper"], "Hyper-parameter preset.")
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
                             test_interactions=FLAGS.test_interactions, items=FLAGS.items, users=FLAGS.users,
                             out_dir=FLAGS.out_dir, preset=FLAGS.preset, targets=tuple(FLAGS.targets), k=FLAGS.k,
                             exclude_seen=FLAGS.exclude_seen, text_model=FLAGS.text_model, seed=FLAGS.seed,
                             sampler=FLAGS.sampler)
    except PipelineError as e:
        sys.exit(f"error: {e}")
    run_pipeline(cfg)


if __name__ == "__main__":
    app.run(main)
