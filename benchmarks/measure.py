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


def run_meta(machine: str, load_start: tuple[float, float, float] | None = None) -> dict:
    """The provenance every benchmark JSON carries: machine label, UTC date, git sha, platform, CPUs and
    the load average at the start (``load_start``, taken before the work; None = now)."""
    import datetime
    import platform

    from twotower_hgnn.provenance import git_sha

    return {
        "machine": machine,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_start": tuple(load_start) if load_start is not None else os.getloadavg(),
    }
