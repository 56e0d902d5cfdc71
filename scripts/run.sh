#!/usr/bin/env bash
# The project's main job (README.md): the whole daily pipeline on the bundled default data
# (MovieLens-1M, demo configuration), printing the report. Creates .venv/ when missing.
# Extra arguments are passed to launch/pipeline.py (e.g. --dataset=synthetic --scale=small).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m launch.pipeline "$@"
