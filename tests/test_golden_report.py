"""The tiny pipeline's report.json against the committed golden copy (``tests/golden/tiny_report.json``).

A refactor must not change what the pipeline computes: the report of the ``test`` preset on the tiny
synthetic data equals the golden one up to float rounding (6 significant digits) once wall-clock
figures and paths are dropped. A commit that changes behaviour on purpose regenerates the file::

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_report.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path


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
