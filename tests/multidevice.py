"""Run a Python snippet in a fresh interpreter with N fake CPU devices.

jax fixes its device count at first import, so multi-device tests cannot share the pytest process.
"""

from __future__ import annotations

import json
import os

from tests.snippets import ROOT, run_python  # noqa: F401  (ROOT: imported from here by tests)

# The suite's XLA flags (tests/conftest.py puts them in the environment every test process and child
# inherits): the CPU backend's LLVM optimisation off. The suite compiles hundreds of small programs once
# or twice each and runs them for a few steps, so compile time dominates; at level 0 the whole suite takes
# about a fifth less CPU time (measured on the 2-core box). The programs' semantics are XLA's, whatever
# the backend level; the benchmarks and launch scripts keep XLA's default.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"


def xla_flags(n_devices: int | None = None) -> str:
    """``XLA_FLAGS`` for a child process: the suite's flags, and ``n_devices`` fake CPU devices if given."""
    return TEST_XLA_FLAGS + ("" if n_devices is None else f" --xla_force_host_platform_device_count={n_devices}")


def run_with_devices(code: str, n_devices: int = 8, timeout: float = 300.0) -> dict:
    """Runs ``code`` with ``n_devices`` CPU devices; the code must print one JSON line last.

    Returns that JSON object. Raises AssertionError with the child's stderr on failure.
    """
    env = {**os.environ, "XLA_FLAGS": xla_flags(n_devices), "JAX_PLATFORMS": "cpu"}
    proc = run_python(code, env=env, timeout=timeout)
    lines = [x for x in proc.stdout.strip().splitlines() if x.strip()]
    assert lines, f"child printed nothing; stderr:\n{proc.stderr[-2000:]}"
    return json.loads(lines[-1])
