"""The fused device-sampling train step inside train_hgnn: same training as the host-fed device
sampler (identical batches, so identical params), one compilation, a clear error without it."""

import dataclasses

import jax
import numpy as np
import pytest

from twotower_hgnn.data.synthetic import generate
from twotower_hgnn.graph import build_graph, holdout_edges
from twotower_hgnn.train.hgnn import HGNNTrainConfig, sampler_factory, train_hgnn


@pytest.fixture(scope="module")
def tiny():
    ds = generate("tiny", 0)
    g, _ = build_graph(ds)
    g, val = holdout_edges(g, 0.1, 0)
    return g, val, ds.item_vectors


def test_fused_equals_host_fed_device_sampler(tiny):
    g, val, x = tiny
    cfg = HGNNTrainConfig.cpu_small(max_steps=3, val_max_edges=32, batch_positives=32, fanouts=(3, 2))
    dev = sampler_factory("device")
    host_fed = train_hgnn(g, x, val, cfg, None, sampler_factory=dev)
    fused = train_hgnn(g, x, val, dataclasses.replace(cfg, fused_sampling=True), None, sampler_factory=dev)
    assert host_fed.steps == fused.steps == 3
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), host_fed.last_params, fused.last_params
    )
    assert fused.history[-1]["val_mrr"] == pytest.approx(host_fed.history[-1]["val_mrr"], abs=1e-6)
    with pytest.raises(ValueError, match="needs the device sampler"):
        train_hgnn(g, x, val, dataclasses.replace(cfg, fused_sampling=True), None)
