"""Distinct values of large integer arrays: NumPy's plain ``np.unique`` against the library's forms.

  .venv/bin/python -m benchmarks.unique                        # 1e4 .. 2.5e8 (about 5 min, ~4 GB)
  .venv/bin/python -m benchmarks.unique --sizes=10000,1000000  # quick

Per size, side by side in one process on the same arrays (best of ``--repeats``):

* **keys**: int64 pair keys (``user * n_items + item``, as the example and graph builders make them),
  ``np.unique(x)`` vs ``arrays.sorted_unique`` (sort + neighbour compare) vs ``sampler.neighbors.sorted_distinct``;
* **ids**: int32 user ids in ``[0, n / 25)`` (25 rows per user: at 2.5e8 the training part of the
  paper-scale log, 10M users), ``np.unique`` vs ``arrays.distinct_ids`` (a bool mark per id, no sort),
  what the split does twice per run (train and test users).

Every form's answer is checked equal to ``np.unique``'s. Writes ``benchmarks/results/unique.json``
(machine, date, git sha, NumPy version).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

flags.DEFINE_list("sizes", ["10000", "100000", "1000000", "25000000", "250000000"], "array lengths")
flags.DEFINE_integer("max_keys", 25_000_000, "the int64 key rows stop at this length (the ids rows go on)")
flags.DEFINE_integer("repeats", 3, "timed repeats per form (best kept); one above 5M elements")
flags.DEFINE_string("out", str(ROOT / "benchmarks" / "results" / "unique.json"), "JSON output ('' = none)")
FLAGS = flags.FLAGS


def _best(fn, x, repeats: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(x)
        best = min(best, time.perf_counter() - t)
    return best, out


def _row(n: int, repeats: int, with_keys: bool) -> dict:
    from sampler.neighbors import sorted_distinct
    from twotower_hgnn.arrays import distinct_ids, sorted_unique

    rng = np.random.default_rng(n)
    r = 1 if n > 5_000_000 else repeats
    ids = rng.integers(0, max(n // 25, 1), n).astype(np.int32)
    keys = ids.astype(np.int64) * 3_750_000 + rng.integers(0, 3_750_000, n) if with_keys else None
    row: dict = {"n": n, "repeats": r}
    forms = {  # each against np.unique on the same array
        "keys": {"sorted_unique": sorted_unique, "sorted_distinct": sorted_distinct},
        "ids": {"distinct_ids": lambda x: distinct_ids(x, max(n // 25, 1))},
    }
    for what, x in (("keys", keys), ("ids", ids)):
        if x is None:
            continue
        ref_s, ref = _best(np.unique, x, r)
        row[what] = {"np.unique_s": ref_s}
        for name, fn in forms[what].items():
            s, got = _best(fn, x, r)
            if not np.array_equal(got, ref):
                raise AssertionError(f"{name} differs from np.unique at n={n} ({what})")
            row[what][f"{name}_s"] = s
            row[what][f"{name}_speedup"] = ref_s / s
    return row


def main(argv) -> None:
    del argv
    from benchmarks.quality import machine
    from twotower_hgnn.io import atomic_write_json
    from twotower_hgnn.provenance import utc_now

    load0 = os.getloadavg()[0]
    rows = []
    for n in (int(s) for s in FLAGS.sizes):
        row = _row(n, FLAGS.repeats, n <= FLAGS.max_keys)
        rows.append(row)
        k, i = row.get("keys"), row["ids"]
        keys = (
            "-"
            if k is None
            else (
                f"np.unique {k['np.unique_s'] * 1e3:9.1f} ms, sorted_unique {k['sorted_unique_s'] * 1e3:8.1f} ms "
                f"({k['sorted_unique_speedup']:.1f}x)"
            )
        )
        print(
            f"n={n:>11,}  keys: {keys}  |  ids: np.unique "
            f"{i['np.unique_s'] * 1e3:9.1f} ms, distinct_ids {i['distinct_ids_s'] * 1e3:7.1f} ms "
            f"({i['distinct_ids_speedup']:.1f}x)",
            flush=True,
        )
    meta = {"machine": machine(), "date": utc_now(), "numpy": np.__version__, "load_avg_start": load0}
    if FLAGS.out:
        atomic_write_json(FLAGS.out, {"benchmark": "unique", "meta": meta, "rows": rows})
        print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
