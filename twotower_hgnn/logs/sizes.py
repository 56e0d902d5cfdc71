"""Memory sizes as the configuration writes them ("4GB", "512MiB", "1.5 GiB"): DuckDB's units, decimal
(KB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB). Importable without pandas (``graph_config`` checks
``GraphConfig.memory_limit`` with it; ``engines`` turns a size into a Spark driver heap)."""

from __future__ import annotations

import re

SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
UNITS.update({"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40})


def size_bytes(size: str) -> int | None:
    """The bytes of ``size`` (e.g. "4GB" -> 4_000_000_000), or None when it is not such a size."""
    m = SIZE.match(str(size))
    return None if m is None else int(float(m.group(1)) * UNITS[m.group(2)])
