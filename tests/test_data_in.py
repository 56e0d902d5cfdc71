"""Data in without conversion by hand: the column/event mapping, MovieLens, RecBole and Parquet-dataset readers,
and one pipeline run on MovieLens-style files (issue 14, item 1)."""

from __future__ import annotations

import json
import os
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn.data import DataError, load_dataset, read_interactions
from twotower_hgnn.data.mapping import build_mapping, parse_events, parse_map
from twotower_hgnn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
ML_MAP = "interactions.userId=user_id,interactions.movieId=item_id,items.movieId=item_id,items.genres=genre"
ML_EVENTS = "rating>=4:stream,rating==3:preview"


def _ratings(n_users: int = 40, n_movies: int = 30, seed: int = 0) -> pd.DataFrame:
    """MovieLens-shaped ratings: users arrive over 60 days (the late ones are cold at the cut), each rates
    movies of their taste group (so co-listening has a signal)."""
    rng = np.random.default_rng(seed)
    rows = []
    t0 = 1_600_000_000
    for u in range(1, n_users + 1):
        start = t0 + int(u * 86_400 * 60 / n_users)
        group = u % 3
        movies = rng.choice(np.arange(1 + group * 10, 11 + group * 10), size=8, replace=False)
        for k, m in enumerate(movies):
            rating = rng.choice([2, 3, 4, 4.5, 5])
            rows.append((u, int(m), float(rating), start + k * 3_600 + int(rng.integers(0, 600))))
    return pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])


def _movies(n_movies: int = 30) -> pd.DataFrame:
    genres = ["Drama", "Comedy|Romance", "Action|Sci-Fi"]
    return pd.DataFrame(
        {
            "movieId": np.arange(1, n_movies + 1),
            "title": [f"Movie {i} ({1990 + i})" for i in range(1, n_movies + 1)],
            "genres": [genres[(i - 1) // 10] for i in range(1, n_movies + 1)],
        }
    )


# ------------------------------------------------------------------------------- (d) mapping rules
def test_map_and_event_rules_parse():
    renames, constants = parse_map(["interactions.userId=user_id", "items.item_type=podcast"])
    assert renames == [("interactions", "userId", "user_id")] and constants == [("items", "item_type", "podcast")]
    rules = parse_events("rating>=4:stream, rating == 3:preview,*:follow")
    assert [(r.column, r.op, r.value, r.event) for r in rules] == [
        ("rating", ">=", "4", "stream"),
        ("rating", "==", "3", "preview"),
        ("*", "", "", "follow"),
    ]
    for bad, why in [
        ("rating=>4:stream", "not COLUMN OP VALUE:EVENT"),
        ("rating>=4:like", "'like' is not one of"),
        ("rating>=high:stream", "needs a number"),
    ]:
        with pytest.raises(ConfigError, match=why):
            parse_events(bad)
    for bad, why in [("interactions.userId", "TABLE.COLUMN=VALUE"), ("songs.a=user_id", "table 'songs'")]:
        with pytest.raises(ConfigError, match=why):
            parse_map(bad)
    with pytest.raises(ConfigError, match="neither 'uid'"):
        parse_map("interactions.userId=uid")


def test_event_rules_keep_type_and_count_rows(tmp_path, caplog):
    df = pd.DataFrame(
        {
            "uid": ["a", "a", "b", "b", "c", "c"],
            "iid": ["x", "y", "x", "z", "y", "z"],
            "ts": [1_600_000_000 + i for i in range(6)],
            "rating": ["5", "3", "1", "4.5", "2", "3"],
            "kind": ["play", "play", "skip", "play", "play", "save"],
        }
    )
    path = tmp_path / "plays.csv"
    df.to_csv(path, index=False)
    m = build_mapping("interactions.uid=user_id,interactions.iid=item_id,interactions.ts=timestamp", ML_EVENTS)
    with caplog.at_level(logging.WARNING):
        out = read_interactions(path, mapping=m)
    assert out["event"].tolist() == ["stream", "preview", "stream", "preview"]
    assert out.index.tolist() == [0, 1, 3, 5]  # file rows kept for later messages
    assert out.attrs["unmatched_event_rows"] == 2
    assert [r.getMessage() for r in caplog.records if "match no --events rule" in r.getMessage()] == [
        f"{path}: 2 row(s) match no --events rule, first at row 2 (line 4): dropped"
    ]
    # string rules, first match wins; the dataset counts what the rules dropped
    m2 = build_mapping(m.to_dict()["map"], "kind==skip:preview,kind!=save:stream", default_item_type="podcast")
    ds = load_dataset("files", interactions=str(path), mapping=m2)
    assert ds.dropped == {"unmatched_event_rows": 1} and ds.num_users == 3 and ds.num_items == 3
    assert set(ds.items["item_type"]) == {"podcast"} and (ds.users["age"] == -1).all()
    # a rule on a missing column, a non-numeric cell: one error naming the file, column (and row)
    with pytest.raises(DataError, match=r"plays\.csv: column 'score': missing \(--events rule 'score>=4:stream'"):
        read_interactions(path, mapping=build_mapping(m.to_dict()["map"], "score>=4:stream"))
    with pytest.raises(DataError, match=r"plays\.csv: column 'kind': row 0 \(line 2\): 'play' is not a number"):
        read_interactions(path, mapping=build_mapping(m.to_dict()["map"], "kind>=4:stream"))
    with pytest.raises(DataError, match=r"plays\.csv: column 'userId': missing \(--map interactions\.userId=user_id"):
        read_interactions(path, mapping=build_mapping("interactions.userId=user_id", "*:stream"))
    with pytest.raises(
        DataError, match=r"column 'user_id': missing .*; to read 'uid' as 'user_id': --map=interactions"
    ):
        read_interactions(path)
    with pytest.raises(DataError, match="needs paths for \\['items'\\]"):
        load_dataset("files", interactions=str(path), mapping=m)


def test_mapping_file_equals_flags(tmp_path):
    f = tmp_path / "mapping.json"
    f.write_text(
        json.dumps({"map": {"interactions.userId": "user_id"}, "events": [ML_EVENTS], "default_item_type": "audiobook"})
    )
    assert build_mapping(mapping_file=str(f)) == build_mapping(
        "interactions.userId=user_id", ML_EVENTS, None, "audiobook"
    )
    f.write_text(json.dumps({"maps": []}))
    with pytest.raises(ConfigError, match="mapping.json: expected an object with keys"):
        build_mapping(mapping_file=str(f))


# ------------------------------------------------------------------------------------- (b) RecBole
def _recbole(d: Path, ratings: pd.DataFrame, movies: pd.DataFrame) -> Path:
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"{r.userId}\t{r.movieId}\t{r.rating}\t{r.timestamp}.0" for r in ratings.itertuples()]
    (d / "ml.inter").write_text("\n".join(inter) + "\n")
    item = ["item_id:token\tmovie_title:token_seq\tgenre:token_seq"]
    item += [f"{m.movieId}\t{m.title}\t{m.genres.replace('|', ' ')}" for m in movies.itertuples()]
    (d / "ml.item").write_text("\n".join(item) + "\n")
    user = ["user_id:token\tage:token\tgender:token"] + [f"{u}\t{18 + u % 40}\tF" for u in sorted(set(ratings.userId))]
    (d / "ml.user").write_text("\n".join(user) + "\n")
    return d / "ml"


def test_recbole_and_movielens_dat_read_like_the_csv(tmp_path):
    ratings, movies = _ratings(), _movies()
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    movies.to_csv(tmp_path / "movies.csv", index=False)
    csv = load_dataset(
        "files",
        interactions=str(tmp_path / "ratings.csv"),
        items=str(tmp_path / "movies.csv"),
        mapping=build_mapping(ML_MAP, ML_EVENTS, default_item_type="audiobook"),
    )
    base = _recbole(tmp_path, ratings, movies)
    rb = load_dataset(
        "files",
        interactions=f"{base}.inter",
        items=f"{base}.item",
        users=f"{base}.user",
        mapping=build_mapping("items.movie_title=title", ML_EVENTS, default_item_type="audiobook"),
    )
    dat = ["::".join(str(v) for v in (r.userId, r.movieId, int(r.rating), r.timestamp)) for r in ratings.itertuples()]
    (tmp_path / "ratings.dat").write_text("\n".join(dat) + "\n")
    (tmp_path / "movies.dat").write_text("\n".join(f"{m.movieId}::{m.title}::{m.genres}" for m in movies.itertuples()))
    ml = load_dataset(
        "files",
        interactions=str(tmp_path / "ratings.dat"),
        items=str(tmp_path / "movies.dat"),
        mapping=build_mapping(None, "rating>=4:stream,rating==3:preview", default_item_type="audiobook"),
    )
    cols = ["user_id", "item_id", "timestamp", "event"]
    assert rb.interactions[cols].equals(csv.interactions[cols])
    assert ml.interactions[cols].equals(csv.interactions[cols])  # 4.5 written as 4: still a stream
    assert rb.items[["item_id", "title"]].equals(csv.items[["item_id", "title"]])
    assert set(rb.users["age"]) != {-1} and (csv.users["age"] == -1).all()
    assert ml.dropped["unmatched_event_rows"] == int((ratings["rating"] < 3).sum())
    assert ml.items["description"].tolist() == csv.items["description"].tolist()
    assert csv.items["description"].iloc[10] == "Comedy, Romance"


# ------------------------------------------------------------------------------- (c) Parquet dataset
def test_parquet_dataset_folder_equals_one_file(tmp_path):
    ratings = _ratings().rename(columns={"userId": "user_id", "movieId": "item_id"})
    ratings["event"] = np.where(ratings["rating"] >= 4, "stream", "preview")
    ratings["day"] = pd.to_datetime(ratings["timestamp"], unit="s").dt.strftime("%Y-%m-%d")
    one = tmp_path / "all.parquet"
    ratings.drop(columns="day").to_parquet(one)
    folder = tmp_path / "interactions"
    for day, part in ratings.groupby("day"):
        (folder / f"day={day}").mkdir(parents=True)
        part.drop(columns="day").to_parquet(folder / f"day={day}" / "part-0.parquet")
    a = read_interactions(one).sort_values(["timestamp", "user_id", "item_id"]).reset_index(drop=True)
    b = read_interactions(folder).sort_values(["timestamp", "user_id", "item_id"]).reset_index(drop=True)
    assert len(list(folder.rglob("*.parquet"))) > 10 and len(b) == len(ratings)
    pd.testing.assert_frame_equal(a, b)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: is a directory"):
        read_interactions(tmp_path / "empty")


def test_tsv_named_csv_is_sniffed(tmp_path):
    ratings = _ratings().rename(columns={"userId": "user_id", "movieId": "item_id"}).assign(event="stream")
    ratings.to_csv(tmp_path / "i.csv", sep="\t", index=False)
    assert len(read_interactions(tmp_path / "i.csv")) == len(ratings)


# ------------------------------------------------------------------------- (a) the pipeline, with flags
def test_bad_mapping_flags_are_one_line(tmp_path):
    _ratings().to_csv(tmp_path / "ratings.csv", index=False)
    args = ["--dataset=files", f"--interactions={tmp_path / 'ratings.csv'}", "--events=x>=1:like"]
    p = subprocess.run(
        [sys.executable, "-m", "launch.pipeline", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    lines = [s for s in p.stderr.splitlines() if s.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "'like' is not one of" in lines[0], p.stderr


def test_pipeline_on_movielens_files_with_the_mapping(tmp_path):
    from twotower_hgnn import configs
    from twotower_hgnn.pipeline import PipelineConfig, run_pipeline

    _ratings().to_csv(tmp_path / "ratings.csv", index=False)
    _movies().to_csv(tmp_path / "movies.csv", index=False)
    cfg = PipelineConfig(
        dataset="files",
        interactions=str(tmp_path / "ratings.csv"),
        items=str(tmp_path / "movies.csv"),  # no users table: unknown age and country
        column_map=ML_MAP,
        events=ML_EVENTS,
        default_item_type="audiobook",
        out_dir=str(tmp_path / "runs"),
        config=configs.load(
            "test",
            {"eval.targets": ("audiobook",), "hgnn.max_epochs": 1, "two_tower.max_steps": 10, "two_tower.epochs": 1},
        ),
    )
    rep = run_pipeline(cfg)
    assert {"2T", "2T-HGNN"} <= {r["model"] for r in rep["results"]}
    data = json.loads((cfg.version_dir() / "data" / "dataset.json").read_text())
    assert data["dropped"]["unmatched_event_rows"] > 0
    saved = json.loads((cfg.version_dir() / "config.json").read_text())
    assert saved["events"] == ML_EVENTS and saved["default_item_type"] == "audiobook"
