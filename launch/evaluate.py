"""Train and evaluate on an external split given as files (no time cut, no history window).

    python -m launch.evaluate --train_interactions=train.csv --test_interactions=test.csv \
        --items=items.csv --users=users.csv [--valid_interactions=valid.csv] [--config=test] \
        [--config.eval.targets=audiobook]

Files follow the project's schema (README / twotower_hgnn/data/schema.py), CSV or Parquet; every
interactions file is validated and its ids must exist in the items/users tables. The split need not be
temporal (e.g. a per-user random split): each user's features are computed as of their own last
training interaction. Validation (early stopping, tuning) holds out ``--valid_interactions`` if given
(its rows are training data of the final models), else a seeded per-user random ``--valid_frac`` of
each user's training rows (``--config.split.valid_frac``). Warm and cold segments are still reported. A dataset whose items are all
one type runs in homogeneous mode.
"""

from __future__ import annotations

from absl import flags

from launch import common
from launch.common import (
    define_config_flags,
    define_input,
    define_output,
    define_read_flags,
    read_kwargs,
    run_config,
    run_main,
)

define_input("train_interactions", None, "Training interactions (CSV/Parquet).", required=True, kind="table")
define_input("test_interactions", None, "Test interactions (CSV/Parquet).", required=True, kind="table")
define_input(
    "valid_interactions",
    None,
    "Validation interactions (CSV/Parquet; optional): held out "
    "of training for early stopping and tuning, then part of the final models' training data.",
)
define_input("items", None, "Items table (CSV/Parquet).", required=True, kind="table")
define_input("users", None, "Users table (CSV/Parquet).", required=True, kind="table")
define_read_flags()
define_output("out_dir", "runs", "Output root.")
flags.DEFINE_integer("seed", 0, "Training seed.", lower_bound=0)
define_config_flags(deprecated=("preset", "targets", "k", "sampler", "valid_frac"))
flags.adopt_module_key_flags(common)  # --help lists the configuration flags too
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from launch.common import quiet_library_logs

    quiet_library_logs()
    from twotower_hgnn.pipeline import PipelineConfig, run_pipeline

    cfg = PipelineConfig(
        dataset="files",
        interactions=FLAGS.train_interactions,
        test_interactions=FLAGS.test_interactions,
        valid_interactions=FLAGS.valid_interactions,
        items=FLAGS.items,
        users=FLAGS.users,
        out_dir=FLAGS.out_dir,
        seed=FLAGS.seed,
        config=run_config(),
        **read_kwargs(),
    )
    run_pipeline(cfg)


if __name__ == "__main__":
    run_main(main)
