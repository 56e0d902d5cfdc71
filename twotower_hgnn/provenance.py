"""Where a result came from: the commit and the time (for reports, exports and benchmark JSON)."""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path


def git_sha(repo: str | Path | None = None) -> str:
    """HEAD commit of the repository holding this package (or ``repo``), or ``"unknown"``."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def utc_now() -> str:
    """ISO-8601 UTC time to the second, e.g. ``2026-11-27T06:00:00+00:00``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
