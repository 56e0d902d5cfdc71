"""Run a Python snippet in a fresh interpreter: for what one process cannot show twice (what an import
pulls in, a device count fixed at jax's first import, an environment read at start-up)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Mapping

ROOT = Path(__file__).resolve().parents[1]


def run_python(
    code: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess:
    """Runs ``code`` (dedented) with ``args`` as ``sys.argv[1:]``, from the repository root with the
    repository on ``PYTHONPATH``; ``env`` replaces the inherited environment. Asserts exit status 0
    (the message carries the child's stderr); returns the finished process (text stdout/stderr)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"child failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc
