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

from absl import flags

from launch.common import FLAGS, define_pipeline_flags, pipeline_kwargs, run_main

define_pipeline_flags()
flags.adopt_module_key_flags(sys.modules["launch.common"])  # --help lists the shared flags too
flags.DEFINE_enum(
    "ablation", None, ["A", "B", "C", "D", "E", "F"], "Table 1 variant (default: the full model + baselines)."
)
flags.DEFINE_enum(
    "demo_users",
    "auto",
    ["auto", "none"],
    "Print example recommendations for one warm and one cold user ('auto' picks them; 'none' skips).",
)


def main(argv):
    del argv
    from launch.common import quiet_library_logs

    quiet_library_logs()
    from twotower_hgnn.pipeline import PipelineConfig, run_pipeline

    cfg = PipelineConfig(ablation=FLAGS.ablation, **pipeline_kwargs())  # a PipelineError is one line, exit 2
    run_pipeline(cfg)
    if FLAGS.demo_users != "none" and cfg.ablation is None:
        print_examples(cfg)


def print_examples(cfg, k: int = 5) -> None:
    """Prints top-``k`` recommendations (titles, scores) for one warm and one cold test user, served from
    the version's export (user vector in real time + the exported index). Only those users' rows of the
    export's user store are read (the split's segments come without its parts): at the paper's scale
    the whole log would be ~15 GiB for two users."""
    import numpy as np

    from twotower_hgnn.data.split_io import load_split
    from twotower_hgnn.serving import Recommender

    vdir = cfg.version_dir()
    split = load_split(vdir / "split", read_parts=False)
    picks = {
        seg: int(users[0]) for seg, users in (("warm", split.warm_users), ("cold", split.cold_users)) if len(users)
    }
    # the export's default target (audiobook when served, else the first served type); its user store is
    # the log as known at the split
    rec = Recommender.load(vdir, only_users=np.array(list(picks.values()), np.int64))
    ds, target = rec.dataset, rec.target_type
    for seg in ("warm", "cold"):
        user = picks.get(seg)
        if user is None:
            print(f"\n(no {seg} test user)")
            continue
        uid = ds.users["user_id"].iloc[user]
        recs = rec.recommend(user_id=uid, k=k, as_of=int(split.user_as_of([user])[0]))
        print(f"\nTop {k} {target}s for {seg} user {uid}:")
        for item_id, title, score in recs:
            print(f"  {score:7.3f}  {title}  [{item_id}]")


if __name__ == "__main__":
    run_main(main)
