"""Shared by the peer runners (run inside .peers_venv/*, NOT the project venv: numpy only here).

Reads a graph saved by ``sampler.csr.HeteroCSR.save`` straight from its ``.npy`` files and the seed
batches written by ``benchmarks/sampler_throughput.py``; prints one JSON line with per-batch timings.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--graph", required=True, help="directory written by HeteroCSR.save")
    p.add_argument("--seeds", required=True, help=".npz: type name -> int64 [batches, n_t] global ids")
    p.add_argument("--fanouts", default="10,5", help="per hop, seeds' hop first")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def load_graph(path: str):
    """-> (node_types, type_offsets, {relation: int64 [E, 2] global ids})."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    offsets = np.load(path / "type_offsets.npy")
    edges = {tuple(r["relation"]): np.load(path / f"edges_{i}.npy") for i, r in enumerate(meta["relations"])}
    return tuple(meta["node_types"]), offsets, edges


def load_seeds(path: str, node_types, offsets) -> list[dict[str, np.ndarray]]:
    """Per batch: type -> int64 local ids."""
    z = np.load(path)
    B = next(iter(z.values())).shape[0]
    return [{t: z[t][b] - offsets[node_types.index(t)] for t in node_types if t in z.files} for b in range(B)]


def emit(name: str, times: list[float], edges: list[int], seeds_per_batch: int, threads: int, **extra) -> None:
    print(json.dumps({"name": name, "times": times, "edges": edges, "seeds_per_batch": seeds_per_batch,
                      "threads": threads, **extra}), flush=True)


def limit_threads(n: int) -> None:
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(n)
