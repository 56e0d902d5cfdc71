"""The opt-in batch top-K stage and the per-version TensorBoard logs, on the session's tiny pipeline run
(``tiny_run`` in conftest.py: the ``test`` preset, whose ``topk.k`` is 5).

* ``<version>/topk/top<k>-<target>.parquet``: exactly k rows per user of the store, ranks 1..k, scores
  non-increasing, items of the target type only; skipped on a rerun (fingerprint), recomputed alone when
  ``topk.k`` changes.
* ``<version>/tensorboard/<stage>``: event files and ``metrics.jsonl`` for the HGNN and every two-tower
  model, every tag in the one vocabulary of ``twotower_hgnn.tracking``, training and validation curves,
  and the reason each training stopped.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn import configs
from twotower_hgnn import tracking as T
from twotower_hgnn.pipeline import open_run, run_stage
from twotower_hgnn.tracking import read_metrics_jsonl


def _check_topk(ctx, k: int) -> None:
    vdir = ctx.cfg.version_dir()
    items = pd.read_parquet(vdir / "export" / "item_ids.parquet").set_index("item_id")["item_type"]
    users = set(ctx.ds.users["user_id"].astype(str))
    files = sorted((vdir / "topk").glob("*.parquet"))
    targets = list(ctx.cfg.config.eval.targets)
    assert [f.name for f in files] == sorted(f"top{k}-{t}.parquet" for t in targets)
    for t in targets:
        df = pd.read_parquet(vdir / "topk" / f"top{k}-{t}.parquet")
        assert list(df.columns) == ["user_id", "rank", "item_id", "score"]
        assert set(df["user_id"]) == users  # every user of the store
        per_user = df.groupby("user_id", sort=False)
        assert (per_user.size() == k).all()
        assert (per_user["rank"].apply(lambda r: list(r) == list(range(1, k + 1)))).all()
        assert (per_user["score"].apply(lambda s: bool(np.all(np.diff(s.to_numpy()) <= 0)))).all()
        assert (per_user["item_id"].nunique() == k).all()  # no item twice in a list
        assert set(items.loc[df["item_id"].unique()]) == {t}
        assert np.isfinite(df["score"].to_numpy()).all()


def test_topk_stage_writes_k_rows_per_user_and_is_skipped_on_rerun(run_copy):
    ctx = open_run(run_copy)
    vdir = run_copy.version_dir()
    assert run_copy.config.topk.k == 5
    _check_topk(ctx, 5)
    # a rerun finds every stage valid: nothing runs
    res = run_stage(ctx, "topk")
    assert res is not None and not res.ran
    assert not [name for name, r in ctx.runner.results.items() if r.ran]
    # another k: only the top-K stage runs again, its previous files replaced
    cfg3 = dataclasses.replace(run_copy, config=configs.apply_overrides(run_copy.config, {"topk.k": "3"}))
    ctx3 = open_run(cfg3)
    res3 = run_stage(ctx3, "topk")
    assert res3.ran and [name for name, r in ctx3.runner.results.items() if r.ran] == ["topk"]
    assert res3.fingerprint != res.fingerprint
    _check_topk(ctx3, 3)
    for p in [vdir / "topk", *(vdir / "topk").iterdir()]:  # readable by others (umask 022: 0755 / 0644)
        assert p.stat().st_mode & 0o044 == 0o044


def test_topk_is_off_by_default_and_validated():
    assert configs.load("demo").topk.k == 0 and configs.load("paper").topk.k == 0
    for bad, msg in (("-1", "topk.k: -1 must be >= 0"), ("1001", "topk.k: 1001"), ("x", "not an int")):
        with pytest.raises(configs.ConfigError, match=msg):
            configs.load("test", {"topk.k": bad})
    with pytest.raises(configs.ConfigError, match="topk.chunk_users: 0 must be >= 1"):
        configs.load("test", {"topk.chunk_users": "0"})


def test_tensorboard_per_stage_with_one_tag_vocabulary(tiny_run):
    cfg, report = tiny_run
    tb = cfg.version_dir() / T.TENSORBOARD_DIR
    assert sorted(p.name for p in tb.iterdir()) == ["hgnn", "two_tower"]  # hgnn_users is off in this run
    runs = [p.parent for p in tb.rglob("metrics.jsonl")]
    models = [key.split("/", 1)[1] for key in report["training"] if key.startswith("two_tower/")]
    assert len(models) == 4  # 2T-HGNN and 2T, audiobook and podcast
    assert sorted(str(r.relative_to(tb)) for r in runs) == sorted(
        ["hgnn"] + [f"two_tower/{m}/{part}" for m in models for part in ("select", "refit")]
    )
    for run in runs:
        assert list(run.glob("events.out.tfevents.*")), run
        rows = read_metrics_jsonl(run)
        tags = {r["tag"] for r in rows}
        assert all(T.in_vocabulary(t) for t in tags), (run, sorted(t for t in tags if not T.in_vocabulary(t)))
        assert T.TRAIN_LOSS in tags and T.TRAIN_STEPS_PER_SEC in tags, (run, tags)
        stops = [r for r in rows if r["tag"].startswith(T.STOP)]
        assert len(stops) == 1 and stops[0]["step"] == max(r["step"] for r in rows), (run, stops)
        if run.name != "refit":  # the refit trains for the selected length without validating
            assert T.VALID_BEST in tags and any(t.startswith(T.VALID) and t != T.VALID_BEST for t in tags)
    hgnn_tags = {r["tag"] for r in read_metrics_jsonl(tb / "hgnn")}
    assert {"valid/mrr", "valid/loss", "train/mean_loss"} <= hgnn_tags
    hist = report["training"]["hgnn"]
    assert T.stop_tag(hist["stop_reason"]) in hgnn_tags
    for m in models:
        sel = {r["tag"] for r in read_metrics_jsonl(tb / "two_tower" / m / "select")}
        k = report["meta"]["k"]
        assert f"valid/hr@{k}" in sel
        assert T.stop_tag(report["training"][f"two_tower/{m}"]["stop_reason"]) in sel


def test_tag_vocabulary():
    assert T.valid_tag("val_mrr") == "valid/mrr" and T.valid_tag("hr@10") == "valid/hr@10"
    assert T.in_vocabulary("valid/loss/audiobook-podcast") and T.in_vocabulary("stop/early_stopping")
    for bad in ("2t/loss", "val_mrr", "valid/", "stop/bored", "loss"):
        assert not T.in_vocabulary(bad)
    with pytest.raises(ValueError, match="stop reason"):
        T.stop_tag("bored")


@pytest.mark.parametrize("cuda", [True, False])
def test_text_encoder_runs_on_the_accelerator_when_torch_sees_one(monkeypatch, capsys, cuda):
    """sentence-transformers gets device "cuda" when torch sees a CUDA device, else "cpu", and the console
    says which (torch and sentence-transformers stand-ins: nothing is downloaded or loaded)."""
    import sys
    import types

    from twotower_hgnn.text import sentence_transformer_encoder

    seen = {}

    class FakeST:
        def __init__(self, name, device):
            seen["device"] = device

        def encode(self, texts, **kw):
            return np.ones((len(texts), 4), np.float32) / 2

    torch = types.SimpleNamespace(
        cuda=types.SimpleNamespace(is_available=lambda: cuda, get_device_name=lambda i: "Fake GPU")
    )
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=FakeST))
    out = sentence_transformer_encoder("some-model")(["a", "b"])
    assert out.shape == (2, 4) and seen["device"] == ("cuda" if cuda else "cpu")
    err = capsys.readouterr().err
    assert ("on cuda (Fake GPU)" if cuda else "on cpu (torch sees no CUDA device)") in err
    sentence_transformer_encoder("some-model", device="cpu")(["a"])
    assert seen["device"] == "cpu"


def test_sampled_topk_reads_only_its_users_log_rows_and_equals_the_full_lists(tiny_run, tmp_path, monkeypatch):
    """``sample=(n, seed)``: the store's log rows of the n sampled users only are read (at the paper's
    scale the store's log is ~275M rows), and their lists equal those of the run over every user."""
    from twotower_hgnn import serving
    from twotower_hgnn.serving_batch import batch_recommend_export

    export = tiny_run[0].version_dir() / "export"
    full = batch_recommend_export(export, tmp_path / "full", k=5)
    read = []
    store = serving.store_dataset

    def spy(directory, meta, only_users=None):
        ds = store(directory, meta, only_users=only_users)
        read.append((only_users, ds.interactions["user_idx"].to_numpy()))
        return ds

    monkeypatch.setattr(serving, "store_dataset", spy)
    part = batch_recommend_export(export, tmp_path / "part", k=5, sample=(7, 3))
    assert sorted(part) == sorted(full) and len(read) == len(full)
    for only, rows in read:
        assert len(only) == 7 and len(rows) and set(np.unique(rows)) <= set(only.tolist())
    for t in full:
        a, b = pd.read_parquet(full[t]["path"]), pd.read_parquet(part[t]["path"])
        assert b["user_id"].nunique() == 7 and part[t]["users"] == 7
        a = a[a["user_id"].isin(set(b["user_id"]))].reset_index(drop=True)
        pd.testing.assert_frame_equal(a.drop(columns="score"), b.drop(columns="score"))
        np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5, atol=1e-6)


def test_retrieval_benchmark_export_world_is_the_serving_path(tiny_run):
    """``benchmarks/retrieval.py --export``: the items are the served model's item vectors, the queries the
    user vectors ``Recommender.user_vector`` answers for the sampled store users, the exclusions what the
    full store's batch path excludes — although only the sampled users' log rows were read."""
    from benchmarks.retrieval import export_world
    from twotower_hgnn.models.encode import item_vectors
    from twotower_hgnn.serving import Recommender
    from twotower_hgnn.serving_batch import chunk_exclusions

    export = tiny_run[0].version_dir() / "export"
    items, users, tower, excl = export_world(str(export), "podcast", 9, 0)
    rec = Recommender.load(export, "podcast")
    np.testing.assert_array_equal(items, item_vectors(rec.result)[0])
    assert len(users) == 9 and np.all(np.diff(users) > 0)
    queries = tower(users)
    assert queries.shape == (9, items.shape[1])
    for i, u in enumerate(users):
        np.testing.assert_allclose(queries[i], rec.user_vector(rec._user_pos[u]), rtol=1e-5, atol=1e-6)
    full = chunk_exclusions(rec, users, rec.as_of)
    np.testing.assert_array_equal(excl.indptr, full.indptr)
    np.testing.assert_array_equal(excl.indices, full.indices)
    assert full.indices.size  # the sampled users streamed podcasts: the comparison is not vacuous


def test_export_lets_a_large_dataset_go_before_the_models(run_copy, tmp_path, monkeypatch):
    """With a log over ``context.RELEASE_BYTES`` the export stage drops the dataset before it exports the
    models (they are read from their own directories): the same manifest entries and index files."""
    import json

    from twotower_hgnn import serving_export
    from twotower_hgnn.pipeline import context as C
    from twotower_hgnn.pipeline import eval_stages as E

    ctx = open_run(run_copy)
    run_stage(ctx, "evaluate")  # every stage valid: nothing runs, their fingerprints are known
    assert ctx._ds is not None
    seen, real = [], serving_export.export_model

    def spy(*a, **kw):
        seen.append(ctx._ds)
        return real(*a, **kw)

    monkeypatch.setattr(C, "RELEASE_BYTES", 0)
    monkeypatch.setattr(serving_export, "export_model", spy)
    out = tmp_path / "export"
    out.mkdir()
    E.export_stage(ctx, out)
    assert seen == [None, None]  # both 2T-HGNN models exported with the dataset released
    want = json.loads((run_copy.version_dir() / "export" / "MANIFEST.json").read_text())
    got = json.loads((out / "MANIFEST.json").read_text())
    for k in ("served", "item_types", "n_items", "fingerprints", "new_items"):
        assert got[k] == want[k], k
    np.testing.assert_array_equal(
        np.load(out / "hgnn_embeddings.npy"), np.load(run_copy.version_dir() / "export" / "hgnn_embeddings.npy")
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "item_ids.parquet"),
        pd.read_parquet(run_copy.version_dir() / "export" / "item_ids.parquet"),
    )
