"""launch/evaluate.py's path: train and evaluate on a split given as files (no time cut, no history
window), including a catalogue of one item type (the homogeneous mode)."""
import numpy as np
import pytest

from twotower_hgnn.data import load_dataset
from twotower_hgnn.pipeline import PipelineConfig, external_split, load_data, run_pipeline


def _files(tmp_path, audiobooks_only: bool):
    ds = load_dataset("synthetic", scale="tiny", seed=0)
    inter = ds.interactions[["user_id", "item_id", "timestamp", "event"]].astype({"user_id": str, "item_id": str})
    items = ds.items
    if audiobooks_only:
        items = items[items["item_type"] == "audiobook"]
        inter = inter[inter["item_id"].isin(set(items["item_id"]))]
    cut = int(np.quantile(inter["timestamp"], 0.8))
    paths = {n: tmp_path / f"{n}.csv" for n in ("train", "test", "items", "users")}
    inter[inter["timestamp"] < cut].to_csv(paths["train"], index=False)
    inter[inter["timestamp"] >= cut].to_csv(paths["test"], index=False)
    items.to_csv(paths["items"], index=False)
    ds.users[["user_id", "age", "country"]].to_csv(paths["users"], index=False)
    return paths


def _cfg(paths, out, targets):
    return PipelineConfig(dataset="files", interactions=str(paths["train"]), test_interactions=str(paths["test"]),
                          items=str(paths["items"]), users=str(paths["users"]), out_dir=str(out), preset="tiny",
                          targets=targets, hgnn_overrides={"max_epochs": 1, "val_max_edges": 32},
                          two_tower_overrides={"max_steps": 10, "epochs": 1})


def test_external_split_keeps_the_given_parts(tmp_path):
    paths = _files(tmp_path, audiobooks_only=False)
    cfg = _cfg(paths, tmp_path / "runs", ("audiobook",))
    ds = load_data(cfg)
    sp = external_split(ds)
    assert len(sp.train) + len(sp.test) == len(ds.interactions) and sp.history_start is None
    assert sp.train["timestamp"].max() < sp.test["timestamp"].min()
    assert sp.segment_sizes["warm_users"] + sp.segment_sizes["cold_users"] == sp.segment_sizes["test_users"]
    rep = run_pipeline(cfg)
    assert {r["segment"] for r in rep["results"] if r["model"] == "2T-HGNN"} == {"all", "warm", "cold"}


def test_homogeneous_catalogue(tmp_path):
    paths = _files(tmp_path, audiobooks_only=True)
    rep = run_pipeline(_cfg(paths, tmp_path / "runs", ("audiobook", "podcast")))  # no podcasts: skipped
    assert {r["target_type"] for r in rep["results"]} == {"audiobook"}
    assert any(r["model"] == "2T-HGNN" for r in rep["results"])


def test_external_split_conflicts_with_a_time_cut(tmp_path):
    from twotower_hgnn.pipeline import PipelineError

    with pytest.raises(PipelineError, match="cannot be combined"):
        PipelineConfig(dataset="files", interactions="a", items="b", users="c", test_interactions="d", as_of="2023-01-01")
