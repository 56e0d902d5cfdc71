"""Item types come from the data (issue 14, item 1): any number of type names, relations = the type pairs
present, targets named by the configuration, ablations C-F only on the paper's types; and the pipeline on
a dataset with three item types (book / film / song) from generated files, nothing converted by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn.data import ITEM_TYPES, build_dataset, item_type_order, load_dataset
from twotower_hgnn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TYPES = ("song", "book", "film")  # written in this (unsorted) order: the data's order is sorted


def _tables(n_users: int = 48, per_type: int = 12, seed: int = 0, text: bool = False):
    """Three tables with three item types: each user likes one topic across types and streams ~24 items
    over 120 days (a few weak events), so every type pair has co-listening and both segments have users."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"{t}{i}" for t in TYPES for i in range(per_type)],
            "item_type": [t for t in TYPES for _ in range(per_type)],
            "title": [f"{t} {i}" if text else "" for t in TYPES for i in range(per_type)],
            "description": "",
            "language": "",
            "genre": "",
        }
    )
    topic = np.arange(len(items)) % 3
    rows = []
    for u in range(n_users):
        mine = np.flatnonzero(topic == u % 3)
        for k in range(24):
            it = int(rng.choice(mine)) if rng.random() < 0.8 else int(rng.integers(len(items)))
            ev = "stream" if rng.random() < 0.85 else "preview"
            rows.append((f"u{u}", items["item_id"][it], 1_700_000_000 + int(rng.integers(0, 120 * 86400)), ev))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)], "age": 30, "country": "SE"})
    return inter, items, users


def _write(d: Path, **kw) -> dict[str, str]:
    inter, items, users = _tables(**kw)
    paths = {"interactions": d / "interactions.csv", "items": d / "items.csv", "users": d / "users.csv"}
    for df, key in ((inter, "interactions"), (items, "items"), (users, "users")):
        df.to_csv(paths[key], index=False)
    return {k: str(v) for k, v in paths.items()}


# ------------------------------------------------------------------------------------ the type order
def test_type_order_keeps_the_paper_order_and_sorts_other_names():
    assert item_type_order(["podcast"]) == ITEM_TYPES  # both listed: a paper type without items counts 0
    assert item_type_order(["podcast", "audiobook"]) == ITEM_TYPES
    assert item_type_order(["song", "book", "film"]) == ("book", "film", "song")
    assert item_type_order(["film", "podcast", "audiobook"]) == ("audiobook", "podcast", "film")


def test_dataset_items_are_ordered_by_the_data_types(tmp_path):
    ds = load_dataset("files", **_write(tmp_path))
    assert ds.item_types == ("book", "film", "song")
    assert ds.item_type_counts == {"book": 12, "film": 12, "song": 12}
    assert ds.items["item_type"].tolist() == [t for t in ds.item_types for _ in range(12)]
    np.testing.assert_array_equal(ds.item_type_offsets(), [0, 12, 24, 36])
    assert ds.item_type_codes().max() == 2


def test_content_source_follows_the_columns_present():
    from twotower_hgnn.text_content import column_texts, content_features, content_source

    inter, items, users = _tables(n_users=3, per_type=2)
    ds = build_dataset(inter, items, users, name="t")
    assert content_source(ds) == "none"
    emb, src = content_features(ds)
    assert src == "none" and emb.shape == (6, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1.0)
    assert np.abs(emb[0] @ emb[1]) < 0.9  # distinct items, distinct vectors; the same id, the same vector
    again, _ = content_features(build_dataset(inter, items, users, name="t"))
    np.testing.assert_array_equal(emb, again)
    ds_g = build_dataset(inter, items.assign(genre=["rock", "", "jazz", "rock", "", "pop"]), users, name="t")
    assert content_source(ds_g) == "columns: genre"
    # rows in the data's type order (book, film, song), empty values left out
    assert column_texts(ds_g, ["genre"]) == ["genre: jazz", "genre: rock", "", "genre: pop", "genre: rock", ""]
    assert content_source(build_dataset(inter, items.assign(title="x"), users, name="t")) == "text"


# ------------------------------------------------------------------------------------ configuration
def test_targets_default_to_every_type_and_explicit_ones_are_checked(tmp_path):
    from twotower_hgnn import configs
    from twotower_hgnn.pipeline.config import PipelineConfig, PipelineError, check_paper_shape, resolve_targets

    paths = _write(tmp_path)
    ds = load_dataset("files", **paths)

    def cfg(**over):
        extra = {k: over.pop(k) for k in ("ablation", "table1") if k in over}
        return PipelineConfig(dataset="files", **paths, config=configs.load("test", over), **extra)

    targets, notes = resolve_targets(cfg(), ds)
    assert targets == ("book", "film", "song") and "every item type" in notes[0]
    assert resolve_targets(cfg(**{"eval.targets": ("song",)}), ds) == (("song",), [])
    with pytest.raises(PipelineError, match=r"--config.eval.targets: \['audiobook'\] not item type\(s\) of the data"):
        resolve_targets(cfg(**{"eval.targets": ("audiobook",)}), ds)
    for bad in ({"ablation": "C"}, {"ablation": "F"}, {"table1": True}):
        with pytest.raises(PipelineError, match="needs? audiobook and podcast items"):
            check_paper_shape(cfg(**bad), ds)
    check_paper_shape(cfg(ablation="A"), ds)  # A and B apply to any types
    with pytest.raises(ConfigError, match="item type names"):
        configs.load("test", {"eval.targets": "sci-fi"})


def test_ablation_c_is_refused_in_one_line_by_the_launch_program(tmp_path):
    paths = _write(tmp_path)
    args = [f"--{k}={v}" for k, v in paths.items()]
    p = subprocess.run(
        [sys.executable, "-m", "launch.pipeline", "--dataset=files", *args, "--ablation=C", "--config=test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore"},
    )
    lines = [s for s in p.stderr.splitlines() if s.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith("error: --ablation=C:") and "['book', 'film', 'song']" in lines[0], lines


# ------------------------------------------------------------------------------------ the pipeline
def test_pipeline_on_three_item_types(tmp_path):
    from twotower_hgnn import configs
    from twotower_hgnn.eval.report import format_console
    from twotower_hgnn.pipeline import PipelineConfig, run_pipeline
    from twotower_hgnn.serving import Recommender

    paths = _write(tmp_path)
    over = {
        "eval.targets": ("film",),
        "hgnn.max_epochs": 1,
        "hgnn.max_steps": 4,
        "two_tower.max_steps": 6,
        "two_tower.epochs": 1,
        "split.min_segment_users": 0,
    }
    cfg = PipelineConfig(dataset="files", **paths, out_dir=str(tmp_path / "runs"), config=configs.load("test", over))
    rep = run_pipeline(cfg)
    vdir = cfg.version_dir()
    ds_meta = rep["meta"]["dataset"]
    assert ds_meta["items_per_type"] == {"book": 12, "film": 12, "song": 12}
    assert ds_meta["content"] == "none"  # no title, description, genre or language
    stats = json.loads((vdir / "graph" / "stats.json").read_text())
    pairs = ("book-book", "book-film", "book-song", "film-film", "film-song", "song-song")
    assert tuple(stats["relations"]) == pairs
    assert {r["target_type"] for r in rep["results"]} == {"film"}
    assert {"2T", "2T-HGNN", "Popularity"} <= {r["model"] for r in rep["results"]}
    console = format_console(rep)
    assert console.startswith("item types: book (12), film (12), song (12); content features: none")
    assert "film recommendations, warm-start users" in console and "Table 2" not in console
    md = (vdir / "evaluate" / "report.md").read_text()
    assert "## film recommendations, all users" in md
    manifest = json.loads((vdir / "export" / "MANIFEST.json").read_text())
    assert manifest["item_types"] == ["book", "film", "song"] and manifest["default_target"] == "film"
    rec = Recommender.load(vdir)
    assert rec.target_type == "film" and rec.dataset.item_types == ("book", "film", "song")
    recs = rec.recommend(user_id="u0", k=3)
    assert len(recs) == 3 and all(item_id.startswith("film") for item_id, _, _ in recs)


def test_split_segments_use_the_first_type_when_there_are_no_audiobooks(tmp_path):
    """Warm = a training interaction of the data's first type ("book"); a catalogue without books
    reports an empty warm segment naming that type, and the summary uses the type's name."""
    from twotower_hgnn.data.split import segment_type, temporal_split

    ds = load_dataset("files", **_write(tmp_path))
    assert segment_type(ds) == "book"
    sp = temporal_split(ds, cut_quantile=0.8)
    assert sp.segment_type == "book"
    lo, hi = ds.item_type_offsets()[:2]
    tr = sp.train
    has_book = set(tr.loc[(tr["item_idx"] >= lo) & (tr["item_idx"] < hi), "user_idx"])
    test_users = set(sp.test["user_idx"])
    assert set(sp.warm_users.tolist()) == test_users & has_book
    assert set(sp.cold_users.tolist()) == test_users - has_book
    assert "with book streams in test" in sp.summary()
    assert not any("audiobook" in n for n in sp.notes)
