#!/usr/bin/env bash
# Builds the two peer samplers the throughput benchmark compares against (DGL and PyG, the two that
# run here), each in its own virtual environment under .peers_venv/ (they disagree on setuptools:
# DGL 2.1 needs setuptools<70, torch 2.13 wants >=77 for its C++ extension builds):
#   .peers_venv/dgl  DGL 2.1.0 on torch 2.13.0 (CPU)
#   .peers_venv/pyg  PyTorch Geometric 2.8.1 + torch-scatter 2.1.2 + torch-sparse 0.6.18
# torch-scatter/torch-sparse compile from source (~30 min on 2 cores); pip caches the built wheels, so
# a rerun takes a minute. One peer failing leaves the other usable; the benchmark prints a row saying
# which one is missing. Run it in the background:
#   nice -n 19 bash benchmarks/install_peers.sh > /tmp/peers_install.log 2>&1 &
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base="${PEERS_VENV:-$root/.peers_venv}"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null || py=python3
export MAX_JOBS="${MAX_JOBS:-2}"
step() { echo "[peers] $(date -u +%H:%M:%S) $*" >&2; }
status=0

mkvenv() {  # $1 = dir
  [[ -x "$1/bin/python" ]] || "$py" -m venv "$1" || return 1
  "$1/bin/python" -m pip --disable-pip-version-check install -q "torch==2.13.0"
}

step "DGL 2.1.0 -> $base/dgl"
pip=("$base/dgl/bin/python" -m pip --disable-pip-version-check)
if mkvenv "$base/dgl" && "${pip[@]}" install -q "torch==2.13.0" numpy "dgl==2.1.0" && \
   "${pip[@]}" install -q "setuptools<70" pandas pyyaml pydantic; then
  touch "$base/dgl/.ok"; step "DGL ok"
else
  step "DGL FAILED"; status=1
fi

step "PyG 2.8.1 + torch-scatter 2.1.2 + torch-sparse 0.6.18 -> $base/pyg (source builds, slow)"
pip=("$base/pyg/bin/python" -m pip --disable-pip-version-check)
if mkvenv "$base/pyg" && "${pip[@]}" install -q wheel "setuptools>=77" numpy scipy "torch-geometric==2.8.1" && \
   "${pip[@]}" install -q --no-build-isolation "torch-scatter==2.1.2" && \
   "${pip[@]}" install -q --no-build-isolation "torch-sparse==0.6.18"; then
  touch "$base/pyg/.ok"; step "PyG ok"
else
  step "PyG FAILED"; status=1
fi
step "done (status $status)"
exit $status
