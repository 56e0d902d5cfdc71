"""Table 1: the full 2T-HGNN and its ablations A-F on warm users / audiobooks, side by side.

    python -m launch.ablations                       # MovieLens-1M, demo configuration
    python -m launch.ablations --dataset=synthetic --scale=tiny --config=test --variants=A,C

Each variant is a pipeline run (shared data/split/content stages; its own graph/HGNN/two-tower/
evaluation under ``ablation-<X>/``), so reruns skip what is done. Writes ``ablations/table1.{json,md}``
in the version directory and prints the table, plus for ablation A the HGNN training wall-clock to early
stop and to a fixed validation MRR.
"""

from __future__ import annotations

import sys

from absl import flags

from launch.common import FLAGS, define_pipeline_flags, pipeline_kwargs, run_main

define_pipeline_flags()
flags.adopt_module_key_flags(sys.modules["launch.common"])  # --help lists the shared flags too
flags.DEFINE_list("variants", ["A", "B", "C", "D", "E", "F"], "Ablations to run beside the full model (of A-F).")


def _check_variants(v: list[str]) -> bool:
    bad = [x for x in v if x.strip().upper() not in ("A", "B", "C", "D", "E", "F")]
    if bad or not v:
        raise flags.ValidationError("not a non-empty list of A, B, C, D, E, F")
    return True


flags.register_validator("variants", _check_variants)


def main(argv):
    del argv
    from launch.common import quiet_library_logs

    quiet_library_logs()
    from twotower_hgnn.pipeline import PipelineConfig, run_table1

    cfg = PipelineConfig(**pipeline_kwargs())  # run_table1 sets the target to audiobooks
    print(run_table1(cfg, [v.strip().upper() for v in FLAGS.variants])["text"], flush=True)


if __name__ == "__main__":
    run_main(main)
