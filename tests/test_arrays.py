"""Distinct values without NumPy's plain ``np.unique`` (twotower_hgnn.arrays, sampler.neighbors)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from sampler.neighbors import sorted_distinct
from twotower_hgnn.arrays import count_distinct_ids, distinct_ids, sorted_unique

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n", [0, 1, 2, 17, 5_000])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_distinct_values_equal_numpys(n, dtype):
    rng = np.random.default_rng(n)
    x = rng.integers(0, max(n // 3, 1), n).astype(dtype)
    want = np.unique(x)
    for got in (sorted_unique(x), sorted_distinct(x), distinct_ids(x, max(n // 3, 1), dtype)):
        assert got.dtype == dtype and np.array_equal(got, want)
    assert count_distinct_ids(x, max(n // 3, 1)) == want.size
    assert np.array_equal(sorted_unique(x.reshape(-1, 1)), want)  # flattened, as np.unique does


def test_no_plain_np_unique_in_the_library():
    """A plain ``np.unique(x)`` (no ``return_*``) is NumPy 2.4's hash path, 4-20x slower than a sort: the
    library and the sampler use ``sorted_unique`` / ``distinct_ids`` / ``sorted_distinct`` instead."""
    found = []
    for folder in ("twotower_hgnn", "sampler", "launch"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "unique"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "np"
                    and not any((k.arg or "").startswith("return_") for k in node.keywords)
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


def test_unique_benchmark_writes_checked_rows(tmp_path):
    import json

    from tests.snippets import run_python

    out = tmp_path / "unique.json"
    run_python(
        "import runpy, sys; runpy.run_module('benchmarks.unique', run_name='__main__')",
        "--sizes=1000,5000",
        "--max_keys=1000",
        f"--out={out}",
    )
    d = json.loads(out.read_text())
    assert d["benchmark"] == "unique" and d["meta"]["numpy"] == np.__version__
    assert [r["n"] for r in d["rows"]] == [1000, 5000]
    assert "keys" in d["rows"][0] and "keys" not in d["rows"][1]  # keys stop at --max_keys
    assert all(r["ids"]["distinct_ids_s"] > 0 and r["ids"]["distinct_ids_speedup"] > 0 for r in d["rows"])
    from benchmarks.notes_tables import unique_row

    row = unique_row(d)
    assert row.startswith(f"| distinct values, NumPy {np.__version__} (`benchmarks/unique.py`) |")
    assert "1,000: int64 keys " in row and "5,000: int32 ids " in row and "5,000: int64" not in row
