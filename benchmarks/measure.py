"""Small measuring helpers the benchmarks share."""

from __future__ import annotations

import os
from pathlib import Path


def dir_bytes(path: str | os.PathLike) -> int:
    """Bytes of the regular files under ``path`` (files vanishing meanwhile, as a spill folder's do,
    are skipped; a missing folder is 0)."""
    total = 0
    for root, _, files in os.walk(Path(path)):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total
