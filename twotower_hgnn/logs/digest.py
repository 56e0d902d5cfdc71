"""Canonical digests of the interaction-log outputs (the golden file ``tests/golden/log_digests.json``).

An output is a named value: an integer array (digested as the sha256 of its little-endian int64 bytes
in C order, with its shape, so two engines agree only if every element and the order agree), an
integer (kept as is) or a float (kept as is; compared within a relative tolerance). Edge and pair
arrays are put in canonical order (rows sorted lexicographically) by the producer before digesting.
"""

from __future__ import annotations

import hashlib
import math
from typing import Mapping

import numpy as np

FLOAT_RTOL = 1e-6


def int_digest(a) -> dict:
    """``{"sha256", "shape", "sum"}`` of an integer array (as little-endian int64, C order)."""
    a = np.asarray(a)
    if a.dtype.kind not in "iub":
        raise TypeError(f"int_digest: {a.dtype} is not an integer array")
    b = np.ascontiguousarray(a.astype("<i8"))
    return {"sha256": hashlib.sha256(b.tobytes()).hexdigest(), "shape": list(b.shape), "sum": int(b.sum())}


def digest_outputs(outputs: Mapping[str, object]) -> dict:
    """JSON-ready digests of ``{name: int array | int | float}`` (sorted by name)."""
    out: dict = {}
    for name in sorted(outputs):
        v = outputs[name]
        if isinstance(v, (bool, np.bool_)):
            out[name] = int(v)
        elif isinstance(v, (int, np.integer)):
            out[name] = int(v)
        elif isinstance(v, (float, np.floating)):
            out[name] = float(v)
        else:
            out[name] = int_digest(v)
    return out


def compare_digests(want: Mapping[str, object], got: Mapping[str, object], rtol: float = FLOAT_RTOL) -> list[str]:
    """Differences between two digest dicts over the names ``want`` has (integers and arrays
    exactly, floats within ``rtol`` relative); a name missing from ``got`` is a difference."""
    diffs = []
    for name, w in want.items():
        if name not in got:
            diffs.append(f"{name}: missing")
            continue
        g = got[name]
        if isinstance(w, float) or isinstance(g, float):
            ok = math.isclose(float(w), float(g), rel_tol=rtol, abs_tol=0.0) or (w == g)
        else:
            ok = w == g
        if not ok:
            diffs.append(f"{name}: golden {w} != {g}")
    return diffs
