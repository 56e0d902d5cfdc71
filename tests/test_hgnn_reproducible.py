"""HGNN budgets are steps/epochs + early stopping, so a run is reproducible: the same seed gives
bit-identical params (NumPy sampler, CPU), also in another process; mid-epoch validation
(``val_every_steps``) drives early stopping inside an epoch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from twotower_hgnn.pipeline import PipelineConfig, hgnn_config
from tests.test_hgnn_train import data  # noqa: F401  (the tiny graph fixture)
from twotower_hgnn.train.hgnn import HGNNTrainConfig, save_params, train_hgnn

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = {"max_steps": 16, "val_every_steps": 5, "val_max_edges": 128, "progress": False}

# The stage as the pipeline runs it: tiny synthetic data, its temporal split and graph, configuration "test".
RUN = """
import sys, json
from twotower_hgnn.data import load_dataset
from twotower_hgnn.data.split import temporal_split
from twotower_hgnn.graph import build_graph, default_graph_config, holdout_edges
from twotower_hgnn import configs
from twotower_hgnn.pipeline import PipelineConfig, hgnn_config
from twotower_hgnn.train.hgnn import save_params, sampler_factory, train_hgnn
over = {"hgnn." + k: v for k, v in json.loads(sys.argv[1]).items()}
cfg = PipelineConfig(dataset="synthetic", scale="tiny", config=configs.load("test", {"sampler": "numpy", **over}))
ds = load_dataset("synthetic", scale="tiny", seed=0)
g, _ = build_graph(ds, temporal_split(ds).train, default_graph_config(ds))
g_train, val = holdout_edges(g, frac=0.1, seed=cfg.seed)
res = train_hgnn(g_train, ds.item_vectors, val, hgnn_config(cfg, None), None, sampler_factory=sampler_factory("numpy"))
save_params(sys.argv[2], res.params)
save_params(sys.argv[3], res.last_params)
"""


def _run(tmp: Path, tag: str) -> tuple[dict, dict]:
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    paths = [tmp / f"{tag}-best.npz", tmp / f"{tag}-last.npz"]
    subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(OVERRIDES), *map(str, paths)], env=env, cwd=ROOT, check=True, timeout=300
    )
    out = []
    for p in paths:
        with np.load(p) as z:
            out.append({k: z[k] for k in z.files})
    return out[0], out[1]


def test_presets_stop_on_steps_not_wall_clock():
    from twotower_hgnn import configs

    for preset in configs.PRESETS:
        h = hgnn_config(PipelineConfig(dataset="synthetic", config=configs.load(preset)), None)
        assert h.max_time_s is None or h.max_time_s >= 600, (preset, h.max_time_s)  # a safety net only
        assert configs.load(preset).two_tower.time_budget_s is None, preset
    demo = hgnn_config(PipelineConfig(), None)
    assert demo.max_steps == 400 and demo.val_every_steps == 50 and demo.patience == 5


def test_same_seed_gives_bit_identical_params_across_processes(tmp_path):
    best_a, last_a = _run(tmp_path, "a")
    best_b, last_b = _run(tmp_path, "b")
    assert best_a.keys() == best_b.keys() and len(best_a) > 4
    for k in best_a:
        np.testing.assert_array_equal(best_a[k], best_b[k], err_msg=k)
        np.testing.assert_array_equal(last_a[k], last_b[k], err_msg=k)


def test_mid_epoch_validation_and_early_stopping(data, tmp_path):  # noqa: F811  (the imported fixture)
    g, x, val = data
    cfg = HGNNTrainConfig.cpu_small(max_epochs=2, val_every_steps=5, val_max_edges=128)
    res = train_hgnn(g, x, val, cfg, tmp_path / "a")
    per_epoch = res.steps // 2
    want = sorted({0, per_epoch, 2 * per_epoch} | set(range(5, 2 * per_epoch, 5)))
    assert [h["step"] for h in res.history] == want and res.stop_reason == "max_epochs"
    assert res.best_metric == max(h["val_mrr"] for h in res.history)
    # a learning rate too small to move a weight: the first mid-epoch validation does not improve on
    # the initial one, so patience 1 stops the run inside the first epoch
    save_params(tmp_path / "p.npz", res.params)
    tiny_lr = HGNNTrainConfig.cpu_small(max_epochs=2, val_every_steps=2, patience=1, val_max_edges=128, lr=1e-30)
    stop = train_hgnn(g, x, val, tiny_lr, tmp_path / "b", init_params_path=tmp_path / "p.npz")
    assert stop.stop_reason == "early_stopping" and stop.steps == 2 and [h["step"] for h in stop.history] == [0, 2]
    assert stop.epochs_run == 0 and stop.history[1]["epoch"] == 1
    for a, b in zip(jax.tree_util.tree_leaves(stop.params), jax.tree_util.tree_leaves(res.params)):
        np.testing.assert_array_equal(a, b)  # the best params are the initial ones
