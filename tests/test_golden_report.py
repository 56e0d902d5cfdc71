"""The tiny pipeline's report.json against the committed golden copy (``tests/golden/tiny_report.json``),
and each stage of the pipeline's table run alone reproducing what the whole run produced.

A refactor must not change what the pipeline computes: the report of the ``test`` preset on the tiny
synthetic data equals the golden one once wall-clock figures and paths are dropped. A commit that
changes behaviour on purpose regenerates the file::

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_report.py

Two classes of numbers, two rules:

* Everything NumPy/SciPy computes — data and split statistics, the protocol, the baselines (Popularity,
  RecentPop, ItemKNN, EASE) and their intervals, LLM-KNN, every count, step and stop reason — equals
  the golden copy to 6 significant digits whatever the core count or NumPy's SIMD kernels: top-k
  selections break ties by id
  (``twotower_hgnn.topk``), never in the order of NumPy's CPU-dispatched sorts (checked: the same
  report with NumPy's AVX-512 kernels disabled).
* What a trained model (HGNN, HGNN-w-users, 2T, 2T-HGNN) produces is summed by XLA:CPU, whose reduction
  and matmul kernels (YNNPACK, LLVM-vectorised loops) split sums by the number of cores and the vector
  width of the CPU: one core instead of two moves the HGNN's parameters at the 7th digit, and a few
  users' ranks in the report. Those floats match within :data:`LOSS_RTOL` (losses) and
  :data:`METRIC_ATOL` (metrics, intervals, validation scores); observed spread over core counts and
  XLA flags that change the kernels (1 or 2 cores, YNNPACK off, ``--xla_cpu_max_isa=AVX``): losses
  8e-5 relative, metrics 0.006 absolute. Bit-for-bit equality of these on one
  machine is what the stage tests below check (every stage rerun alone gives the same bytes).

(One module: the finished run is a session fixture, computed once per test worker.)
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


TRAINED = frozenset({"HGNN", "HGNN-w-users", "2T", "2T-HGNN"})
LOSS_RTOL = 1e-3
METRIC_ATOL = 0.02


def flatten(x, path: str = "") -> dict[str, object]:
    """``{path: leaf}``; a list of result rows is keyed by its rows' (target, segment, model, tiers), so
    a row's path names its model."""
    if isinstance(x, dict):
        return {p: v for k, val in x.items() for p, v in flatten(val, f"{path}/{k}").items()}
    if isinstance(x, list):
        if x and all(isinstance(r, dict) and "model" in r for r in x):
            keys = ("target_type", "segment", "model", "tiers")
            names = ["/".join(str(r[k]) for k in keys if k in r) for r in x]
            if len(set(names)) == len(names):
                return {p: v for n, r in zip(names, x) for p, v in flatten(r, f"{path}[{n}]").items()}
        return {p: v for i, r in enumerate(x) for p, v in flatten(r, f"{path}[{i}]").items()}
    return {path: x}


def trained(path: str) -> bool:
    """Whether ``path`` holds a number computed by a trained model (XLA:CPU sums)."""
    tokens = set(path.replace("[", "/").replace("]", "/").split("/"))
    return bool(tokens & TRAINED) or path.startswith(("/training/hgnn/", "/training/two_tower/"))


def close(path: str, a, b) -> bool:
    if a == b:
        return True
    if not (trained(path) and isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool)):
        return False
    if "loss" in path:  # training losses: relative
        return abs(a - b) <= LOSS_RTOL * max(abs(a), abs(b))
    return abs(a - b) <= METRIC_ATOL


def _diff(a, b) -> list[str]:
    fa, fb = flatten(a), flatten(b)
    out = [f"{p}: only in golden" for p in sorted(fa.keys() - fb.keys())]
    out += [f"{p}: only in this run" for p in sorted(fb.keys() - fa.keys())]
    return out + [
        f"{p}: golden {json.dumps(fa[p])[:80]} != {json.dumps(fb[p])[:80]}"
        for p in sorted(fa.keys() & fb.keys())
        if not close(p, fa[p], fb[p])
    ]


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
