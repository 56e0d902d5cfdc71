"""The quality benchmark's smoke run: ``benchmarks.quality --quick`` into a fresh output folder (no stage
reused) runs to its goals and writes a JSON with every goal's per-seed comparison.

That the same command gives the same report (training stops on steps, epochs and early stopping, never
on time) is checked by ``tests/test_golden_report.py``: each suite run computes the tiny pipeline afresh,
recomputes every stage alone for a bitwise comparison on the same machine, and compares the whole report
with the committed golden copy (exact for NumPy numbers, within XLA:CPU's machine-to-machine spread for
trained ones). (This file ran the benchmark twice and
compared the two reports: the same property at twice the cost.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_runs_to_its_goals(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "TWOTOWER_HGNN_PROGRESS": "0"}
    out = tmp_path / "quality.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality", "--quick", f"--out_dir={tmp_path / 'runs'}", f"--json={out}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "goal audiobook/warm: 2T-HGNN > HGNN" in proc.stdout
    rep = next((tmp_path / "runs").glob("synthetic/synthetic-tiny-s0/default/evaluate/report.json"))
    models = {r["model"] for r in json.loads(rep.read_text())["results"]}
    assert models >= {"Popularity", "HGNN", "2T-HGNN"}, models
    q = json.loads(out.read_text())
    assert q["quick"] and q["machine"]["git_sha"] and q["machine"]["cpus"] >= 1
    goals = q["settings"]["synthetic"]["goals"]
    assert {g["goal"] for g in goals} >= {"audiobook/warm: 2T-HGNN > HGNN", "audiobook/cold: 2T-HGNN > Popularity"}
    for g in goals:
        c = g["per_seed"]["0"]
        assert c is None or (c["lo"] <= c["diff"] <= c["hi"] and c["n_boot"] == 1000)
