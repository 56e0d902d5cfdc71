"""Each stage of the pipeline's table runs alone and reproduces what the whole run produced.

From a copy of one finished tiny run, every stage is recomputed by itself (``run_stage`` with that stage
forced; its upstream stages are found valid and skipped): its fingerprint and its outputs equal the
full run's, so a stage is a function of its configuration and its upstream outputs only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from twotower_hgnn.pipeline import STAGE_TABLE, open_run, run_stage
from twotower_hgnn.stages import MARKER

VOLATILE = {MARKER, "report.md"}  # the marker holds timings; report.md the same numbers as report.json
SKIP_SUFFIX = (".png", ".json")  # plots embed no numbers we check; JSON compared below without wall-clock keys


def _digest(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in VOLATILE and not p.name.endswith(SKIP_SUFFIX):
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _strip(x):
    """Drops machine-dependent measurements (memory, phase timings) the golden normalisation keeps."""
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if "rss" not in k and k != "phase_seconds"}
    return [_strip(v) for v in x] if isinstance(x, list) else x


def _json_without_clocks(folder: Path) -> dict[str, object]:
    from tests.test_golden_report import normalise

    return {
        str(p.relative_to(folder)): _strip(normalise(json.loads(p.read_text())))
        for p in sorted(folder.rglob("*.json"))
        if p.name != MARKER and p.name != "MANIFEST.json"
    }


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory):
    cfg, _ = tiny_run
    dst = tmp_path_factory.mktemp("stages")
    shutil.copytree(Path(cfg.out_dir), dst, dirs_exist_ok=True)
    return dataclasses.replace(cfg, out_dir=str(dst))


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
