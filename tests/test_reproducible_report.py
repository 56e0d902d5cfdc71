"""Reproducible results: two runs of the same configuration into two fresh output folders (no stage
reused) give the same report — training stops on steps, epochs and early stopping, never on time."""
from __future__ import annotations

import json

from twotower_hgnn.pipeline import PipelineConfig, run_pipeline

VOLATILE = ("created_utc", "git_sha", "git_dirty", "load_s", "wall_s", "seconds", "tune_seconds", "fit_seconds",
            "steps_per_s", "train_s", "out_dir")


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def test_two_fresh_runs_give_identical_reports(tmp_path):
    reports = []
    for run in ("a", "b"):
        cfg = PipelineConfig(dataset="synthetic", scale="tiny", preset="tiny", targets=("audiobook",),
                             out_dir=str(tmp_path / run), hgnn_overrides={"max_steps": 6, "val_max_edges": 64},
                             two_tower_overrides={"epochs": 1})
        rep = run_pipeline(cfg)
        reports.append(json.loads(json.dumps(_strip(dict(rep)), sort_keys=True)))
    assert reports[0]["results"] and reports[0] == reports[1]
