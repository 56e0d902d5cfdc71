#!/usr/bin/env bash
# The project's test command (README.md; .ci/run calls exactly this). Creates .venv/ when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
export JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# the enforced layout: lint and formatting first (seconds), then the suite
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# whole files per worker, heaviest first (tests/conftest.py HEAVY_FIRST; xdist's default reorders by test count)
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15 tests "$@"
