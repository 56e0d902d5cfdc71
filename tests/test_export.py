"""The self-contained export of a version: loadable alone, readable by others, index kind and recall recorded;
batch top-K for every user; ``launch/recommend.py --run`` (``--all_users`` runs in test_packaging)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.snippets import run_python
from twotower_hgnn.io import atomic_dir, atomic_write_text
from twotower_hgnn.serving import Recommender, ServingError
from twotower_hgnn.serving_batch import batch_recommend, batch_recommend_export, sample_rows
from twotower_hgnn.serving_export import export_model


@pytest.fixture(scope="module")
def version(tiny_run):
    cfg, _ = tiny_run
    return cfg.version_dir()


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_export_loads_alone_and_matches_the_trained_model(version, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(version / "export", moved)  # nothing else of the run folder
    rec = Recommender.load(moved)
    trained = Recommender.from_model_dir(version / "two_tower" / "audiobook-hgnn")
    assert rec.target_type == "audiobook" and Recommender.load(moved, "podcast").target_type == "podcast"
    for uid in rec.dataset.users.user_id.iloc[:5]:
        assert rec.recommend(user_id=uid, k=8) == trained.recommend(user_id=uid, k=8)
    assert Recommender.load(version).recommend(age=30, k=3) == rec.recommend(age=30, k=3)  # a version folder too
    man = json.loads((moved / "MANIFEST.json").read_text())
    assert man["format"] == "twotower_hgnn.export/v2" and man["default_target"] == "audiobook"
    for t, entry in man["served"].items():
        assert entry["index"]["kind"] == "exact" and entry["index"]["recall"] == 1.0 and entry["index"]["queries"] > 0
        ids = pd.read_parquet(moved / t / "index" / "item_ids.parquet")["item_id"]
        assert len(ids) == entry["items"] == np.load(moved / t / "index" / "vectors.npy").shape[0]
    with pytest.raises(ServingError, match="no served model for 'film'"):
        Recommender.load(moved, "film")
    with pytest.raises(ServingError, match="neither an export folder"):
        Recommender.load(tmp_path)


def test_outputs_are_readable_by_others(version, tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    want_file, want_dir = 0o666 & ~umask, 0o777 & ~umask  # what open() / mkdir() give: 0644 / 0755 under 022
    for p in [version, *version.rglob("*")]:
        if "_work" in p.parts:
            continue  # scratch space (checkpoints) is not an output
        want = want_dir if p.is_dir() else want_file
        assert _mode(p) == want, f"{p.relative_to(version)}: {oct(_mode(p))}, expected {oct(want)}"
    os.umask(0o022)
    try:
        # the atomic writers honour the umask (as open() would), both ways
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("y")
        assert _mode(tmp_path / "a.txt") == 0o644 and _mode(tmp_path / "d") == 0o755
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
        assert _mode(tmp_path / "b.txt") == 0o600
    finally:
        os.umask(umask)


def test_ivf_index_kind_and_recall(version, tmp_path):
    pytest.importorskip("faiss")
    entry = export_model(version / "two_tower" / "podcast-hgnn", tmp_path / "ivf", index="ivf", recall_queries=200)
    ix = entry["index"]
    assert ix["kind"] == "ivf_sq8" and ix["queries"] == 200 and 0.5 < ix["recall"] <= 1.0
    rec = Recommender.load(tmp_path / "ivf")
    assert type(rec.index).__name__ == "FaissIndex" and len(rec.recommend(age=20, k=5)) == 5
    small = export_model(version / "two_tower" / "audiobook-hgnn", tmp_path / "auto", index="auto", recall_queries=50)
    assert small["index"]["kind"] == "exact"  # auto: exact below retrieval.IVF_MIN_ITEMS


def test_batch_top_k_equals_per_user_requests(version, tmp_path):
    rec = Recommender.load(version / "export", "podcast")
    a = batch_recommend(rec, tmp_path / "a.parquet", k=12, chunk_users=64)
    b = batch_recommend(rec, tmp_path / "b.parquet", k=12, chunk_users=1000)
    df = pd.read_parquet(tmp_path / "a.parquet")
    assert a["users"] == rec.dataset.num_users and a["rows"] == len(df) == b["rows"]
    assert list(df.columns) == ["user_id", "rank", "item_id", "score"]
    pd.testing.assert_frame_equal(df, pd.read_parquet(tmp_path / "b.parquet"))  # chunking changes nothing
    for uid in rec.dataset.users.user_id.iloc[[0, 1, 17, 300, -1]]:
        got = df[df.user_id == uid].sort_values("rank")
        want = rec.recommend(user_id=uid, k=12)
        assert got["rank"].tolist() == list(range(1, len(want) + 1))
        assert got["item_id"].tolist() == [i for i, _, _ in want]
        np.testing.assert_allclose(got["score"], [s for _, _, s in want], rtol=1e-5, atol=1e-6)
    with pytest.raises(ServingError, match="chunk_users"):
        batch_recommend(rec, tmp_path / "c.parquet", chunk_users=0)
    every = batch_recommend_export(version / "export", tmp_path / "all", k=12)  # each served type
    assert sorted(every) == ["audiobook", "podcast"] and every["podcast"]["rows"] == a["rows"]
    pd.testing.assert_frame_equal(df, pd.read_parquet(tmp_path / "all" / "top12-podcast.parquet"))
    # a seeded sample of users (scattered rows, chunks of 7): exactly the full run's rows of those users
    some = batch_recommend_export(version / "export", tmp_path / "some", k=12, chunk_users=7, sample=(40, 3))
    part = pd.read_parquet(tmp_path / "some" / "top12-podcast.parquet")
    picked = rec.dataset.users.user_id.to_numpy()[sample_rows(rec.dataset.num_users, 40, 3)]
    assert some["podcast"]["users"] == 40 and part.user_id.nunique() == 40 and set(part.user_id) == set(picked)
    want = df[df.user_id.isin(picked)].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, want)
    assert not np.array_equal(picked, rec.dataset.users.user_id.to_numpy()[:40])  # not the first rows


def _recommend(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "launch" / "recommend.py"), *args],
        cwd="/",  # works outside the repository root
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_launch_recommend_run(version):
    rec = Recommender.load(version)
    uid = rec.dataset.users.user_id.iloc[5]
    expected = rec.recommend(user_id=uid, k=3)
    res = _recommend(f"--run={version}", f"--user_id={uid}", "--k=3")
    assert res.returncode == 0, res.stderr[-2000:]
    for item_id, title, score in expected:
        assert f"{score:8.4f}  {item_id}  {title}" in res.stdout
    bad = _recommend(f"--run={version}", "--as_of=-10")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: --as_of -10 is outside")
    assert "Traceback" not in bad.stderr


def test_console_script_batch_top_k_outside_the_repository(version, tmp_path):
    script = Path(sys.executable).parent / "twotower-hgnn"
    if not script.exists():
        pytest.skip("console script not installed (pip install -e .)")
    out = tmp_path / "all.parquet"
    res = subprocess.run(
        [str(script), "recommend", f"--export={version / 'export'}", "--all_users", f"--out={out}", "--k=2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_parquet(out)
    users = pd.read_parquet(version / "export" / "audiobook" / "users.parquet")
    assert df.user_id.nunique() == len(users) and df.groupby("user_id").size().max() == 2
    umask = os.umask(0o022)
    os.umask(umask)
    assert _mode(out) == 0o666 & ~umask  # 0644 under the usual umask


NO_EXTRAS = """
import sys
for name in ("faiss", "torch", "sentence_transformers"):
    sys.modules[name] = None  # import -> ImportError, as on a core install
import numpy as np
import twotower_hgnn.pipeline, twotower_hgnn.serving, twotower_hgnn.serving_batch  # noqa
from twotower_hgnn.retrieval import make_index, resolve_index_kind
assert resolve_index_kind("auto", 10**7) == "exact"
make_index("exact", np.eye(4, dtype=np.float32)).search(np.eye(4, dtype=np.float32), 2)
try:
    make_index("ivf_sq8", np.eye(4, dtype=np.float32))
except ImportError as e:
    assert "[ann]" in str(e), e
else:
    raise AssertionError("faiss kinds must need faiss")
"""


def test_core_install_needs_neither_faiss_nor_torch():
    run_python(NO_EXTRAS)


def test_store_of_some_users_gives_their_vectors_as_the_whole_store(version):
    """The export's recall queries read only the query users' log rows; their user vectors equal those
    computed from the whole store."""
    from twotower_hgnn.models.encode import user_vectors
    from twotower_hgnn.serving import load_model
    from twotower_hgnn.serving_export import read_meta, store_dataset

    d = version / "two_tower" / "podcast-hgnn"
    meta, res = read_meta(d), load_model(d)
    whole = store_dataset(d, meta)
    users = np.sort(np.random.default_rng(0).choice(whole.num_users, 40, replace=False))
    some = store_dataset(d, meta, only_users=users)
    assert some.num_users == whole.num_users and 0 < len(some.interactions) < len(whole.interactions)
    assert set(some.interactions["user_idx"]) <= set(users.tolist())
    a = user_vectors(res, whole, whole.interactions, users, int(meta["as_of"]))
    b = user_vectors(res, some, some.interactions, users, int(meta["as_of"]))
    np.testing.assert_array_equal(a, b)


def test_serving_log_written_in_chunks_is_the_window_plus_the_target_streams(tiny_run, tmp_path):
    """The store's log: every row of the history window before ``as_of`` plus every target-type stream,
    in log order, written chunk by chunk (here 97 rows at a time) with the log's column types."""
    from twotower_hgnn.data.schema import EVENTS
    from twotower_hgnn.pipeline import load_data
    from twotower_hgnn.serving import load_model
    from twotower_hgnn.serving_export import _write_serving_log

    cfg, _ = tiny_run
    ds = load_data(cfg)
    res = load_model(cfg.version_dir() / "two_tower" / "podcast-hgnn")
    ts = ds.interactions["timestamp"].to_numpy()
    assert res.vocab.history_days is not None
    as_of = int(ts.max()) + int(res.vocab.history_days * 86400) // 2  # the window covers the later part only
    n = _write_serving_log(ds, res, as_of, tmp_path / "log.parquet", chunk_rows=97)
    df = ds.interactions
    lo = ds.item_type_offsets()[ds.item_type_index("podcast")]
    hi = lo + ds.item_type_counts["podcast"]
    item = df["item_idx"].to_numpy()
    streams = (df["event_code"].to_numpy() == EVENTS.index("stream")) & (item >= lo) & (item < hi)
    recent = df["timestamp"].to_numpy() >= as_of - int(np.ceil(res.vocab.history_days * 86400))
    cols = ["user_idx", "item_idx", "timestamp", "event_code"]
    want = df.loc[streams | recent, cols].reset_index(drop=True)
    got = pd.read_parquet(tmp_path / "log.parquet")
    assert n == len(want) and 0 < n < len(df)
    pd.testing.assert_frame_equal(got, want)
