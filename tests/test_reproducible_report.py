"""Reproducible results and the quality benchmark's smoke run: ``benchmarks.quality --quick`` twice
into two fresh output folders (no stage reused) gives the same report — training stops on steps,
epochs and early stopping, never on time — and a JSON with every goal's per-seed comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = (
    "created_utc",
    "git_sha",
    "git_dirty",
    "load_s",
    "wall_s",
    "seconds",
    "tune_seconds",
    "fit_seconds",
    "steps_per_s",
    "train_s",
    "out_dir",
)


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def test_quick_benchmark_twice_gives_identical_reports(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "TWOTOWER_HGNN_PROGRESS": "0"}
    reports, outs = [], []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.json"
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.quality", "--quick", f"--out_dir={tmp_path / run}", f"--json={out}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "goal audiobook/warm: 2T-HGNN > HGNN" in proc.stdout
        rep = next((tmp_path / run).glob("synthetic/synthetic-tiny-s0/default/evaluate/report.json"))
        reports.append(_strip(json.loads(rep.read_text())))
        outs.append(json.loads(out.read_text()))
    assert reports[0]["results"] and reports[0] == reports[1]
    q = outs[0]
    assert q["quick"] and q["machine"]["git_sha"] and q["machine"]["cpus"] >= 1
    goals = q["settings"]["synthetic"]["goals"]
    assert {g["goal"] for g in goals} >= {"audiobook/warm: 2T-HGNN > HGNN", "audiobook/cold: 2T-HGNN > Popularity"}
    for g in goals:
        c = g["per_seed"]["0"]
        assert c is None or (c["lo"] <= c["diff"] <= c["hi"] and c["n_boot"] == 1000)
    assert _strip(outs[0]["settings"]) == _strip(outs[1]["settings"])
