"""The daily job: data -> split -> graph -> content -> HGNN -> two-tower -> evaluation -> export.

    python -m launch.pipeline                                   # MovieLens-1M, demo configuration
    python -m launch.pipeline --dataset=synthetic --scale=tiny --config=test
    python -m launch.pipeline --config.two_tower.max_steps=50 --config.hgnn.fanouts=10,5   # any field
    python -m launch.pipeline --dataset=files --interactions=i.parquet --items=it.csv --users=u.csv
    python -m launch.pipeline --as_of=2026-03-02 --warm_start    # a daily version
    python -m launch.pipeline --ablation=C                       # one Table 1 variant

Stages whose valid outputs exist are skipped (a killed run resumes); --from_stage recomputes.
"""
from __future__ import annotations

import sys

from absl import app, flags

from launch.common import FLAGS, define_pipeline_flags, pipeline_kwargs, run_main

define_pipeline_flags()
flags.adopt_module_key_flags(sys.modules["launch.common"])  # --help lists the shared flags too
flags.DEFINE_enum("ablation", None, ["A", "B", "C", "D", "E", "F"],
                  "Table 1 variant (default: the full model + baselines).")
flags.DEFINE_string("demo_users", "auto", "Print example recommendations for one warm and one cold user "
                    "('auto' picks them; 'none' skips).")


def main(argv):
    del argv
    from launch.common import quiet_library_logs

    quiet_library_logs()
    from twotower_hgnn.pipeline import PipelineConfig, PipelineError, print_examples, run_pipeline  # noqa: F401

    try:
        cfg = PipelineConfig(ablation=FLAGS.ablation, **pipeline_kwargs())
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    run_pipeline(cfg)
    if FLAGS.demo_users != "none" and cfg.ablation is None:
        print_examples(cfg)


if __name__ == "__main__":
    run_main(main)
