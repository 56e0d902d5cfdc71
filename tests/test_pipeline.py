"""The daily pipeline end to end on tiny synthetic data (as a user's files):

* day 1 is killed (SIGKILL) once mid-way and resumed: finished stages are skipped, not redone, and the
  killed stage's temporary folder is removed (no ``.*.tmp`` folder remains);
* day 2 (``--as_of`` one day later, ``--warm_start``) sees a new audiobook in the catalogue, which has
  no interaction before the cut: it gets an inductive HGNN embedding and enters the served index.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DAY1, DAY2 = "2023-09-20", "2023-09-21"

RUN = """
import sys, json
from launch.common import quiet_library_logs
quiet_library_logs()
from twotower_hgnn import configs
from twotower_hgnn.pipeline import PipelineConfig, run_pipeline
cfg = PipelineConfig(dataset="files", interactions=sys.argv[1], items=sys.argv[2], users=sys.argv[3],
                     out_dir=sys.argv[4], as_of=sys.argv[5], warm_start=sys.argv[6] == "1",
                     config=configs.load("test", {"eval.targets": ("audiobook",), "hgnn.max_epochs": 2,
                                                  "hgnn.patience": 1, "hgnn.val_max_edges": 64,
                                                  "two_tower.max_steps": 20, "two_tower.epochs": 2}))
rep = run_pipeline(cfg)
print("RESULT " + json.dumps({"rows": len(rep["results"])}))
"""


def _cmd(files, out, as_of, warm):
    return [sys.executable, "-c", RUN, *map(str, files), str(out), as_of, "1" if warm else "0"]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "TWOTOWER_HGNN_PROGRESS": "0"}


@pytest.fixture(scope="module")
def day_files(tmp_path_factory):
    """(paths, new item id): the tiny synthetic tables as files; the new audiobook is removed from
    them until day 2 and has no interaction before day 2's cut."""
    from twotower_hgnn.data import load_dataset

    ds = load_dataset("synthetic", scale="tiny", seed=0)
    d = tmp_path_factory.mktemp("files")
    inter = ds.interactions[["user_id", "item_id", "timestamp", "event"]].copy()
    cut2 = int(pd.Timestamp(DAY2, tz="UTC").timestamp())
    ab = ds.items.loc[ds.items["item_type"] == "audiobook", "item_id"]
    first = inter.groupby("item_id", observed=True)["timestamp"].min()
    # an audiobook streamed only after day 2's cut (or never): new on day 2
    late = [i for i in ab if first.get(i, cut2) >= cut2]
    new_item = late[0] if late else ab.iloc[-1]
    inter = inter[(inter["item_id"] != new_item) | (inter["timestamp"] >= cut2)]
    users = ds.users[["user_id", "age", "country"]]
    items = ds.items
    paths = (d / "interactions.parquet", d / "items.csv", d / "users.csv")
    return ds, inter, items, users, paths, new_item


def _write(day_files, with_new: bool):
    ds, inter, items, users, paths, new_item = day_files
    if not with_new:
        inter = inter[inter["item_id"] != new_item]
        items = items[items["item_id"] != new_item]
    inter.to_parquet(paths[0])
    items.to_csv(paths[1], index=False)
    users.to_csv(paths[2], index=False)
    return paths


def test_pipeline_kill_resume_and_next_day(day_files, tmp_path):
    out = tmp_path / "runs"
    paths = _write(day_files, with_new=False)
    # --- day 1: kill once the HGNN stage has started, then resume
    proc = subprocess.Popen(
        _cmd(paths, out, DAY1, False), env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = []
    deadline = time.time() + 240
    for line in proc.stdout:
        seen.append(line)
        if "[stage] hgnn" in line and "running" in line:
            # once the stage's temporary folder exists, so that the kill leaves one behind
            while not list(out.glob("*/*/.hgnn.*.tmp")) and time.time() < deadline:
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            break
        assert time.time() < deadline, "".join(seen[-20:])
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-30:])
    version_root = next(out.iterdir())
    vdir = version_root / DAY1
    assert (vdir / "graph" / "_STAGE.json").exists() and not (vdir / "hgnn" / "_STAGE.json").exists()
    assert [p.name.split(".")[1] for p in vdir.glob(".*.tmp")] == ["hgnn"]  # what the kill left

    res = subprocess.run(
        _cmd(paths, out, DAY1, False), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=400
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for stage in ("data", "split", "valid", "graph", "content"):
        assert f"[stage] {stage:<14} skipped" in res.stdout, res.stdout[-2000:]
    assert "[stage] hgnn           done" in res.stdout
    assert "[stage] removed .hgnn." in res.stdout, res.stdout[-2000:]
    leftovers = list(out.rglob(".*.tmp"))
    assert not leftovers, leftovers
    man1 = json.loads((vdir / "export" / "MANIFEST.json").read_text())
    assert man1["served"]["audiobook"]["items"] > 0 and man1["previous_version"] is None
    report = json.loads((vdir / "evaluate" / "report.json").read_text())
    models = {r["model"] for r in report["results"]}
    assert {"Popularity", "LLM-KNN", "HGNN", "2T", "2T-HGNN"} <= models
    assert (vdir / "evaluate" / "report.md").exists() and list((vdir / "evaluate").glob("*.png"))
    # the served (HGNN) models carry the user store; the scored-only 2T baselines do not
    tt = vdir / "two_tower"
    assert (tt / "audiobook-hgnn" / "users.parquet").exists() and (
        tt / "audiobook-hgnn" / "interactions.parquet"
    ).exists()
    assert (tt / "audiobook-nohgnn" / "params.npz").exists() and not (
        tt / "audiobook-nohgnn" / "users.parquet"
    ).exists()

    # --- day 2: a new audiobook enters the catalogue; warm start from day 1
    ds, *_, new_item = day_files
    paths = _write(day_files, with_new=True)
    res = subprocess.run(
        _cmd(paths, out, DAY2, True), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=400
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    vdir2 = version_root / DAY2
    man2 = json.loads((vdir2 / "export" / "MANIFEST.json").read_text())
    assert man2["previous_version"] == DAY1
    assert f"[hgnn] warm start from {DAY1}" in res.stdout and "[2T] warm start:" in res.stdout, res.stdout[-2000:]
    assert man2["new_items"] == [new_item]
    ids = pd.read_parquet(vdir2 / "export" / "item_ids.parquet")["item_id"].tolist()
    row = ids.index(new_item)
    emb = np.load(vdir2 / "export" / "hgnn_embeddings.npy")
    assert np.isfinite(emb[row]).all() and abs(np.linalg.norm(emb[row]) - 1.0) < 1e-3
    # the new item has no edge in day 2's graph (inductive) and is in the served index
    from sampler.csr import HeteroCSR

    g = HeteroCSR.load(vdir2 / "graph" / "full_graph")
    deg = sum(int(np.diff(c.indptr)[row - g.type_range(d[0])[0]]) for d, c in g.adj.items() if d[0] == "audiobook")
    assert deg == 0
    assert man2["served"]["audiobook"]["items"] == man1["served"]["audiobook"]["items"] + 1


def test_hgnn_with_users_baseline_in_report(tmp_path):
    from twotower_hgnn import configs
    from twotower_hgnn.pipeline import PipelineConfig, run_pipeline

    cfg = PipelineConfig(
        dataset="synthetic",
        scale="tiny",
        out_dir=str(tmp_path),
        config=configs.load(
            "test",
            {
                "eval.targets": ("audiobook",),
                "eval.with_hgnn_users": True,
                "hgnn.max_epochs": 1,
                "hgnn.val_max_edges": 32,
                "two_tower.max_steps": 10,
                "two_tower.epochs": 1,
            },
        ),
    )
    rep = run_pipeline(cfg)
    rows = {(r["model"], r["segment"]): r["metrics"] for r in rep["results"]}
    # users are graph nodes, so the baseline also serves cold users (the paper's Table 3 has it)
    for seg in ("warm", "cold"):
        m = rows[("HGNN-w-users", seg)]
        assert m["n_users"] > 0 and 0.0 <= m["hr@10"] <= 1.0
    assert (cfg.version_dir() / "hgnn_users" / "node_embeddings.npy").exists()
