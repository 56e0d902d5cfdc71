"""HGNN training on the tiny synthetic data: learns, no recompiles, resume == uninterrupted."""

from __future__ import annotations

import numpy as np
import jax
import pytest

from twotower_hgnn.data.synthetic import generate
from twotower_hgnn.graph import build_graph, holdout_edges
from twotower_hgnn.tracking import in_vocabulary, read_metrics_jsonl
from twotower_hgnn.train import hgnn as trainer
from twotower_hgnn.train.hgnn import FailAfterStep, HGNNTrainConfig, InjectedFailure, train_hgnn


@pytest.fixture(scope="module")
def data():
    ds = generate("tiny", 0)
    g, _ = build_graph(ds)
    train_g, val = holdout_edges(g, 0.1, 0)
    return train_g, ds.item_vectors, val


def _cfg(**kw):
    return HGNNTrainConfig.cpu_small(max_epochs=2, ckpt_every_steps=5, val_max_edges=128, **kw)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    g, x, val = data
    wd = tmp_path_factory.mktemp("hgnn_a")
    # the steps are cached per process: another test of this worker may have built the same ones (e.g. the
    # tiny pipeline run of the golden test uses the same model and sampling plan); start without them
    trainer._STEP_CACHE.clear()
    return train_hgnn(g, x, val, _cfg(), wd), wd


def test_training_lowers_val_loss_beats_random_and_compiles_once(uninterrupted):
    res, wd = uninterrupted
    h = res.history
    assert [r["epoch"] for r in h] == [0, 1, 2] and res.epochs_run == 2 and res.stop_reason == "max_epochs"
    assert h[-1]["val_loss"] < h[0]["val_loss"] - 0.01, (h[0]["val_loss"], h[-1]["val_loss"])
    assert res.best_metric == max(r["val_mrr"] for r in h)
    # random unit embeddings rank the positive among K=4 negatives at MRR ~0.46
    assert 0.35 < res.baseline["val_mrr"] < 0.6
    assert res.best_metric > res.baseline["val_mrr"] + 0.15, (res.best_metric, res.baseline)
    assert res.best_epoch >= 1 and h[res.best_epoch]["val_mrr"] > h[0]["val_mrr"]
    # 2 epochs x 12 steps and 3 validations: one trace (= one compilation) of each jitted step
    assert res.steps == 2 * h[1]["step"] and res.steps >= 20
    assert res.traces == {"train": 1, "eval": 1}, res.traces
    tags = {m["tag"] for m in read_metrics_jsonl(wd / "logs")}
    assert {"valid/mrr", "valid/loss", "train/loss", "valid/loss/audiobook-audiobook", "stop/max_epochs"} <= tags
    assert all(in_vocabulary(t) for t in tags), tags
    assert list((wd / "logs").glob("events.out.tfevents*"))
    assert all(np.all(np.isfinite(v)) for v in jax.tree_util.tree_leaves(res.params))


def test_resume_after_injected_failure_equals_uninterrupted(data, uninterrupted, tmp_path):
    g, x, val = data
    ref, _ = uninterrupted
    with pytest.raises(InjectedFailure):
        train_hgnn(g, x, val, _cfg(), tmp_path, hooks=[FailAfterStep(17)])  # mid epoch 2; last checkpoint at step 15
    res = train_hgnn(g, x, val, _cfg(), tmp_path)
    assert res.resumed_from == 15
    assert res.traces == {"train": 0, "eval": 0}  # same process: the compiled steps are reused
    for a, b in zip(jax.tree_util.tree_leaves(res.last_params), jax.tree_util.tree_leaves(ref.last_params)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree_util.tree_leaves(res.params), jax.tree_util.tree_leaves(ref.params)):
        np.testing.assert_array_equal(a, b)
    for ra, rb in zip(res.history, ref.history):
        for k in ("epoch", "step", "val_loss", "val_mrr", "train_loss"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-12), k
    assert res.best_epoch == ref.best_epoch and res.steps == ref.steps


def test_bad_inputs_raise_clear_errors(data, tmp_path):
    g, x, val = data
    with pytest.raises(ValueError, match=r"features: expected shape \[600, d\]"):
        train_hgnn(g, x[:10], val, _cfg(), None)
    with pytest.raises(ValueError, match="relations: .*not in the graph"):
        train_hgnn(g, x, val, _cfg(relations=("audiobook-movie",)), None)
    with pytest.raises(ValueError, match="invalid fanouts"):
        HGNNTrainConfig(fanouts=(10,))
    with pytest.raises(ValueError, match="not divisible"):
        trainer.build_spec(g, _cfg(batch_positives=63), 2)


def test_step_budget_and_warm_start(data, uninterrupted, tmp_path, capsys):
    g, x, val = data
    ref, _ = uninterrupted
    # warm start from the trained params: the pre-training validation equals the trained model's
    trainer.save_params(tmp_path / "p.npz", ref.params)
    res = train_hgnn(g, x, val, _cfg(max_steps=3), tmp_path / "run", init_params_path=tmp_path / "p.npz")
    assert res.stop_reason == "max_steps" and res.steps == 3 and res.traces == {"train": 0, "eval": 0}
    # training says why it stopped and its best validation metric
    assert (
        f"[hgnn] stopped at step 3 (epoch 0 complete): max_steps (step budget spent); best validation MRR {res.best_metric:.4f}"
        in capsys.readouterr().out
    )
    assert res.history[0]["val_mrr"] == pytest.approx(ref.history[ref.best_epoch]["val_mrr"], rel=1e-6)
    assert [h["step"] for h in res.history] == [0, 3]  # the budget stop validates the partial epoch
    # resuming with the same budget does nothing more
    again = train_hgnn(g, x, val, _cfg(max_steps=3), tmp_path / "run")
    assert again.resumed_from == 3 and again.steps == 3 and len(again.history) == 2
    bad = jax.tree_util.tree_map(lambda a: a[..., :1], ref.params)
    with pytest.raises(ValueError, match=r"init_params: leaf \['layer_0'\]"):
        train_hgnn(g, x, val, _cfg(), None, init_params=bad)
