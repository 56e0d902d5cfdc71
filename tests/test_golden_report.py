"""The tiny pipeline's report.json against the committed golden copy (``tests/golden/tiny_report.json``),
and each stage of the pipeline's table run alone reproducing what the whole run produced.

A refactor must not change what the pipeline computes: the report of the ``test`` preset on the tiny
synthetic data equals the golden one up to float rounding (6 significant digits) once wall-clock
figures and paths are dropped. A commit that changes behaviour on purpose regenerates the file::

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_report.py

From a copy of the same finished tiny run, every stage is recomputed by itself (``run_stage`` with that
stage forced; its upstream stages are found valid and skipped): its fingerprint and its outputs equal the
full run's, so a stage is a function of its configuration and its upstream outputs only. (One module:
the finished run is a session fixture, computed once per test worker.)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from twotower_hgnn.pipeline import STAGE_TABLE, open_run, run_stage
from twotower_hgnn.stages import MARKER

GOLDEN = Path(__file__).parent / "golden" / "tiny_report.json"
VOLATILE = (
    "wall_s",
    "seconds",
    "load_s",
    "train_s",
    "out_dir",
    "created_utc",
    "elapsed_s",
    "per_s",
    "git_sha",
    "git_dirty",
)


def normalise(x, key: str = ""):
    """Drops wall-clock figures and paths; rounds floats to 6 significant digits."""
    if isinstance(x, dict):
        return {k: normalise(v, k) for k, v in sorted(x.items()) if not any(k.endswith(v_) for v_ in VOLATILE)}
    if isinstance(x, list):
        return [normalise(v, key) for v in x]
    if isinstance(x, float):
        return float(f"{x:.6g}")
    return x


def _diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in golden" for k in a.keys() - b.keys()]
        out += [f"{path}/{k}: only in this run" for k in b.keys() - a.keys()]
        for k in sorted(a.keys() & b.keys()):
            out += _diff(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: golden {json.dumps(a)[:80]} != {json.dumps(b)[:80]}"]


def test_tiny_report_equals_the_golden_copy(tiny_run):
    got = normalise(json.loads(json.dumps(tiny_run[1])))
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    diffs = _diff(want, got)
    assert not diffs, f"{len(diffs)} difference(s) from {GOLDEN.name} (regenerate only on purpose):\n" + "\n".join(
        diffs[:20]
    )


# ------------------------------------------------------------------------------------------ stages
STAGE_VOLATILE = {MARKER, "report.md"}  # the marker holds timings; report.md the same numbers as report.json
SKIP_SUFFIX = (".png", ".json")  # plots embed no numbers we check; JSON compared below without wall-clock keys


def _digest(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in STAGE_VOLATILE and not p.name.endswith(SKIP_SUFFIX):
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _strip(x):
    """Drops machine-dependent measurements (memory, phase timings) the golden normalisation keeps."""
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if "rss" not in k and k != "phase_seconds"}
    return [_strip(v) for v in x] if isinstance(x, list) else x


def _json_without_clocks(folder: Path) -> dict[str, object]:
    return {
        str(p.relative_to(folder)): _strip(normalise(json.loads(p.read_text())))
        for p in sorted(folder.rglob("*.json"))
        if p.name != MARKER and p.name != "MANIFEST.json"
    }


@pytest.mark.parametrize("name", [s.name for s in STAGE_TABLE if s.name != "hgnn_users"])
def test_stage_runs_alone_and_reproduces_the_full_run(run_copy, name):
    cfg = run_copy
    before = open_run(cfg)
    folder = before.path(name)
    fp_before = json.loads((folder / MARKER).read_text())["fingerprint"]
    files, docs = _digest(folder), _json_without_clocks(folder)
    ctx = open_run(cfg)
    ctx.runner.force.add(ctx.names[name])
    res = run_stage(ctx, name)
    assert res is not None and res.ran and res.fingerprint == fp_before
    assert [r for r, v in ctx.runner.results.items() if v.ran] == [ctx.names[name]]  # upstream stages skipped
    assert _digest(folder) == files
    assert _json_without_clocks(folder) == docs


def test_a_stage_that_is_off_does_not_run(run_copy):
    ctx = open_run(run_copy)
    assert run_stage(ctx, "hgnn_users") is None and not ctx.path("hgnn_users").exists()
