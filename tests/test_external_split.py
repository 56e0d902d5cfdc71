"""launch/evaluate.py's path: train and evaluate on a split given as files (no time cut, no history
window; features as of each user's last training interaction), with and without a validation file,
including a catalogue of one item type (the homogeneous mode)."""

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn import configs
from twotower_hgnn.data import load_dataset
from twotower_hgnn.data.split import split_from_files
from twotower_hgnn.data.split_io import load_split
from twotower_hgnn.pipeline import PipelineConfig, load_data, run_pipeline


def _files(tmp_path, audiobooks_only: bool, random: bool = False):
    """train/test (and, for ``random``, valid) files: a time cut at the 0.8 quantile, or a per-user
    random 70/10/20 split of the rows (train/valid/test interleave in time)."""
    ds = load_dataset("synthetic", scale="tiny", seed=0)
    inter = ds.interactions[["user_id", "item_id", "timestamp", "event"]].astype({"user_id": str, "item_id": str})
    items = ds.items
    if audiobooks_only:
        items = items[items["item_type"] == "audiobook"]
        inter = inter[inter["item_id"].isin(set(items["item_id"]))]
    paths = {n: tmp_path / f"{n}.csv" for n in ("train", "test", "items", "users")}
    if random:
        part = np.random.default_rng(0).choice(3, len(inter), p=[0.7, 0.1, 0.2])
        paths["valid"] = tmp_path / "valid.csv"
        inter[part == 1].to_csv(paths["valid"], index=False)
    else:
        part = np.where(inter["timestamp"] >= int(np.quantile(inter["timestamp"], 0.8)), 2, 0)
    inter[part == 0].to_csv(paths["train"], index=False)
    inter[part == 2].to_csv(paths["test"], index=False)
    items.to_csv(paths["items"], index=False)
    ds.users[["user_id", "age", "country"]].to_csv(paths["users"], index=False)
    return paths


def _cfg(paths, out, targets):
    valid = str(paths["valid"]) if "valid" in paths else None
    return PipelineConfig(
        dataset="files",
        interactions=str(paths["train"]),
        test_interactions=str(paths["test"]),
        valid_interactions=valid,
        items=str(paths["items"]),
        users=str(paths["users"]),
        out_dir=str(out),
        config=configs.load(
            "test",
            {
                "eval.targets": tuple(targets),
                "hgnn.max_epochs": 1,
                "hgnn.val_max_edges": 32,
                "two_tower.max_steps": 10,
                "two_tower.epochs": 1,
            },
        ),
    )


def test_external_split_keeps_the_given_parts(tmp_path):
    paths = _files(tmp_path, audiobooks_only=False)
    cfg = _cfg(paths, tmp_path / "runs", ("audiobook",))
    ds = load_data(cfg)
    sp = split_from_files(ds, cfg.interactions, cfg.test_interactions)
    assert len(sp.train) + len(sp.test) == len(ds.interactions) and sp.history_start is None
    assert sp.train["timestamp"].max() < sp.test["timestamp"].min()
    assert sp.segment_sizes["warm_users"] + sp.segment_sizes["cold_users"] == sp.segment_sizes["test_users"]
    rep = run_pipeline(cfg)
    assert {r["segment"] for r in rep["results"] if r["model"] == "2T-HGNN"} == {"all", "warm", "cold"}
    v = load_split(cfg.version_dir() / "valid")  # no file: a per-user random 10 % of the training rows
    assert v.external and len(v.train) + len(v.test) == len(sp.train)


def test_random_split_with_a_validation_file(tmp_path):
    paths = _files(tmp_path, audiobooks_only=False, random=True)
    cfg = _cfg(paths, tmp_path / "runs", ("audiobook",))
    rep = run_pipeline(cfg)
    assert any(r["model"] == "2T-HGNN" for r in rep["results"])
    sp, v = load_split(cfg.version_dir() / "split"), load_split(cfg.version_dir() / "valid")
    n_valid = len(pd.read_csv(paths["valid"]))
    assert len(v.test) == n_valid and len(v.train) == len(sp.train) - n_valid
    # every test user with training rows is featurised at their own last training second + 1
    users = np.unique(sp.test["user_idx"].to_numpy())
    last = sp.train.groupby("user_idx")["timestamp"].max()
    known = np.isin(users, last.index.to_numpy())
    assert known.mean() > 0.9
    np.testing.assert_array_equal(sp.user_as_of(users[known]), last.reindex(users[known]).to_numpy() + 1)


def test_homogeneous_catalogue(tmp_path):
    paths = _files(tmp_path, audiobooks_only=True)
    rep = run_pipeline(_cfg(paths, tmp_path / "runs", ("audiobook", "podcast")))  # no podcasts: skipped
    assert {r["target_type"] for r in rep["results"]} == {"audiobook"}
    assert any(r["model"] == "2T-HGNN" for r in rep["results"])


def test_external_split_conflicts_with_a_time_cut(tmp_path):
    from twotower_hgnn.pipeline import PipelineError

    with pytest.raises(PipelineError, match="cannot be combined"):
        PipelineConfig(
            dataset="files", interactions="a", items="b", users="c", test_interactions="d", as_of="2023-01-01"
        )
    with pytest.raises(PipelineError, match="needs an external split"):
        PipelineConfig(dataset="files", interactions="a", items="b", users="c", valid_interactions="v")
