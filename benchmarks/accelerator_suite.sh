#!/usr/bin/env bash
# Every GPU figure the project claims, in one run, one JSON (benchmarks/accelerator_suite.py):
#   bash benchmarks/accelerator_suite.sh OUT_DIR              # one accelerator, < 5 min
#   bash benchmarks/accelerator_suite.sh --dry_run OUT_DIR    # tiny sizes on CPU, < 30 s (the tests run it)
# Extra flags go to the Python script (e.g. --dtypes=float32 --torch_eager --inference_runs=1).
#
# Needs a python with jax (preinstalled is fine; no network): the repository is put on PYTHONPATH, so
# the project need not be installed. A missing pure-Python dependency (jraph, optax, absl-py) is
# installed from a wheel folder into .cache/accelerator_site (nothing else is touched):
#   WHEELS=<dir> (default: <repo>/wheels), prepared on any machine with network, see README "Benchmarks".
# PYTHON=<interpreter> (default: .venv/bin/python if present, else python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
dry=0
for a in "$@"; do [[ "$a" == "--dry_run" ]] && dry=1; done
if [[ $# -lt 1 ]]; then
  echo "usage: bash benchmarks/accelerator_suite.sh [--dry_run] OUT_DIR [flags...]" >&2
  exit 2
fi
[[ $dry == 1 ]] && export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
# jax takes 75 % of the GPU by default; the PyTorch peer runs in the same process and needs room too
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.6}"
site="$root/.cache/accelerator_site"
export PYTHONPATH="$root:$site${PYTHONPATH:+:$PYTHONPATH}"

missing=()
for mod in jraph optax absl; do
  "$py" -c "import $mod" 2>/dev/null || missing+=("$mod")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  wheels="${WHEELS:-$root/wheels}"
  shopt -s nullglob
  files=("$wheels"/*.whl)
  if [[ ${#files[@]} -eq 0 ]]; then
    echo "error: python cannot import ${missing[*]} and $wheels holds no wheels (see README, Benchmarks: the wheel folder)" >&2
    exit 2
  fi
  echo "[suite] installing ${missing[*]} from $wheels into $site (no index, no deps)" >&2
  "$py" -m pip install --disable-pip-version-check -q --no-index --no-deps --target "$site" "${files[@]}"
fi
exec "$py" "$root/benchmarks/accelerator_suite.py" "$@"
