"""The accelerator suite's ``--dry_run`` (tiny sizes, CPU) writes every row with a finite figure, or an
explicit skip note for the PyTorch / PyG peers when they are absent; its device-built graph is the
canonical CSR of its own edges. The GPU figures themselves are not asserted here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROWS = [
    "graph",
    *(
        f"{r}_{dt}"
        for dt in ("float32", "bfloat16")
        for r in (
            "hgnn_step_jax",
            "hgnn_step_floor",
            "hgnn_step_over_floor",
            "hgnn_step_torch",
            "hgnn_step_jax_over_torch",
            "device_sampler_e2e",
        )
    ),
    "device_sampler_neighbourhood",
    "pyg_sampler_peer",
    "inference_full_catalogue",
    "retrieval_device_batch1",
    "retrieval_device_batch",
]
PEERS = ("hgnn_step_torch", "hgnn_step_jax_over_torch", "pyg_sampler_peer")
FORBIDDEN = {"pandas", "duckdb", "sentence_transformers", "pyarrow", "flax", "orbax", "faiss"}


def _have(mod: str) -> bool:
    p = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, cwd=ROOT)
    return p.returncode == 0


def test_dry_run_writes_every_row(tmp_path):
    out = tmp_path / "suite"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHON": sys.executable}
    p = subprocess.run(
        ["bash", "benchmarks/accelerator_suite.sh", "--dry_run", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    d = json.loads((out / "accelerator_suite.json").read_text())
    meta = d["meta"]
    assert set(meta) >= {"machine", "date", "git_sha", "jax", "device_kind", "backend", "dry_run", "wall_s"}
    assert meta["dry_run"] is True and meta["backend"] == "cpu" and meta["git_sha"]
    assert not FORBIDDEN & set(meta["imported_packages"]), meta["imported_packages"]
    rows = {r["name"]: r for r in d["rows"]}
    assert [r["name"] for r in d["rows"]] == ROWS
    torch_ok, pyg_ok = _have("torch"), _have("torch_geometric")
    for name, r in rows.items():
        assert set(r) >= {"figure", "unit", "goal", "met", "skipped", "note"}, r
        assert r["met"] is None, r  # a dry run on a CPU never claims a goal
        peer_absent = name.startswith(PEERS[:2]) and not torch_ok or name == "pyg_sampler_peer" and not pyg_ok
        if peer_absent:
            assert r["skipped"] and "not importable" in r["note"], r
            continue
        assert not r["skipped"], r
        assert isinstance(r["figure"], float) and math.isfinite(r["figure"]) and r["figure"] > 0, r
    assert rows["graph"]["nodes"] == 1000
    assert 0.0 < rows["device_sampler_e2e_float32"]["device_only_steps_per_s"]
    assert rows["retrieval_device_batch"]["recall_vs_numpy"] == 1.0
    if torch_ok:
        assert rows["hgnn_step_torch_float32"]["loss_rel_diff"] < 1e-3


def test_device_graph_is_canonical():
    from benchmarks.accelerator_suite import device_powerlaw_graph
    from sampler.csr import HeteroCSR

    counts = {"audiobook": 60, "podcast": 300}
    rel = {("audiobook", "audiobook"): 100, ("audiobook", "podcast"): 500, ("podcast", "podcast"): 1400}
    g = device_powerlaw_graph(counts, rel, seed=3)
    ref = HeteroCSR.from_edges(g.node_types, counts, g.edges)  # checks ranges, col0 < col1, uniqueness
    for r, m in rel.items():
        assert 0.9 * m <= g.num_edges(r) <= m
        np.testing.assert_array_equal(g.edges[r], ref.edges[r])  # already sorted
    for d, c in ref.adj.items():
        np.testing.assert_array_equal(g.adj[d].indptr, c.indptr)
        np.testing.assert_array_equal(g.adj[d].indices, c.indices)
    deg = g.adj[("podcast", "podcast")].degrees()
    assert deg.max() > 4 * deg.mean()  # heavy-tailed, as sampler.synthetic's power law
    g2 = device_powerlaw_graph(counts, rel, seed=3)
    np.testing.assert_array_equal(g2.edges[("podcast", "podcast")], g.edges[("podcast", "podcast")])
