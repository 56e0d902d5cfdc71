"""Content fingerprints of input files: a same-size, same-mtime rewrite (``cp -p``, ``rsync -a``,
``tar x``) invalidates the data stage and everything downstream; an untouched input is reused and,
once its digest is cached, not even re-read."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from twotower_hgnn import provenance
from twotower_hgnn.provenance import DigestCache, file_digest


def _rewrite_same_size_same_mtime(path, old: bytes, new: bytes, in_place: bool = True, count: int = 1) -> None:
    """Replaces the first ``count`` ``old`` by ``new`` (same length) in ``path`` and restores its mtime."""
    st = os.stat(path)
    data = path.read_bytes()
    assert len(old) == len(new) and old in data
    data = data.replace(old, new, count)
    if in_place:  # same inode (an overwrite, like `cp -p` onto an existing file)
        with open(path, "r+b") as f:
            f.write(data)
    else:  # a new inode renamed into place (like `rsync -a` or `tar x`)
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(data)
        shutil.copystat(path, tmp)
        os.replace(tmp, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.mark.parametrize("in_place", [True, False])
def test_digest_cache_reuses_untouched_files_and_sees_rewrites(tmp_path, monkeypatch, in_place):
    monkeypatch.setattr(provenance, "RACY_MARGIN_NS", 0)  # cache even a file written just now
    f = tmp_path / "interactions.csv"
    f.write_bytes(b"user_id,item_id\nu1,i1\n" * 1000)
    time.sleep(0.05)  # past the file system's timestamp tick
    cache = DigestCache(tmp_path / "cache.json")
    d1 = cache.digest(f)
    assert d1 == file_digest(f) and d1.startswith("blake2b:") and cache.computed == [str(f)]
    cache.save()
    again = DigestCache(tmp_path / "cache.json")
    assert again.digest(f) == d1 and again.computed == []  # unchanged: taken from the cache, not re-read
    time.sleep(0.05)
    _rewrite_same_size_same_mtime(f, b"u1,i1", b"u2,i9", in_place=in_place)
    d2 = again.digest(f)
    assert again.computed == [str(f)] and d2 != d1 and d2 == file_digest(f)


def test_recent_files_are_not_cached(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("a\n")
    cache = DigestCache(tmp_path / "cache.json")
    cache.digest(f)
    assert cache.entries == {}  # changed within RACY_MARGIN_NS: a rewrite in the same tick could hide
    cache.digest(f)
    assert cache.computed == [str(f), str(f)]


def test_data_stage_reruns_when_an_input_is_replaced_with_the_same_size_and_mtime(tmp_path):
    from twotower_hgnn import configs
    from twotower_hgnn.data import load_dataset
    from twotower_hgnn.pipeline import PipelineConfig, open_run, run_stage

    ds = load_dataset("synthetic", scale="tiny", seed=0)
    paths = (tmp_path / "interactions.csv", tmp_path / "items.csv", tmp_path / "users.csv")
    ds.interactions[["user_id", "item_id", "timestamp", "event"]].to_csv(paths[0], index=False)
    ds.items.to_csv(paths[1], index=False)
    ds.users[["user_id", "age", "country"]].to_csv(paths[2], index=False)
    cfg = PipelineConfig(
        dataset="files", interactions=str(paths[0]), items=str(paths[1]), users=str(paths[2]),
        out_dir=str(tmp_path / "runs"), config=configs.load("test"),
    )  # fmt: skip

    def run():
        ctx = open_run(cfg)
        split = run_stage(ctx, "split")
        stats = json.loads((ctx.path("data") / "dataset.json").read_text())
        return ctx.runner.results["data"].ran, split.ran, split.fingerprint, stats["events"]

    ran, split_ran, fp1, events1 = run()
    assert ran and split_ran
    ran, split_ran, fp, events = run()  # untouched: reused
    assert not ran and not split_ran and fp == fp1 and events == events1
    _rewrite_same_size_same_mtime(paths[0], b",stream\n", b",follow\n", count=100)  # strong -> weak, same length
    ran, split_ran, fp3, events3 = run()
    assert ran and split_ran and fp3 != fp1
    assert events3["follow"] > events1["follow"] and events3["stream"] < events1["stream"]


def test_an_unreadable_input_is_reported_by_the_reader_not_the_hashing(tmp_path):
    from twotower_hgnn import configs
    from twotower_hgnn.errors import PathError
    from twotower_hgnn.pipeline import PipelineConfig, run_pipeline

    (tmp_path / "items.csv").write_text("item_id,item_type,title\n")
    (tmp_path / "users.csv").write_text("user_id\n")
    (tmp_path / "a_dir").mkdir()
    os.mkfifo(tmp_path / "a_pipe")  # hashing it would block forever
    for inter in (tmp_path / "missing.csv", tmp_path / "a_dir", tmp_path / "a_pipe"):
        cfg = PipelineConfig(
            dataset="files", interactions=str(inter), items=str(tmp_path / "items.csv"),
            users=str(tmp_path / "users.csv"), out_dir=str(tmp_path / "runs"), config=configs.load("test"),
        )  # fmt: skip
        with pytest.raises(PathError, match=inter.name):
            run_pipeline(cfg)
    assert not (tmp_path / "runs").exists()
