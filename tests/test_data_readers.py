"""Readers: every validation error names file, column and first offending row; valid files round-trip."""

import re

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn.data import DataError, load_dataset, load_files
from twotower_hgnn.data.readers import build_dataset, read_interactions, read_items, read_users


T0 = 1_700_000_000  # file timestamps must be Unix seconds in 1990..2100


def _tables():
    inter = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u3", "u2", "u1"],
            "item_id": ["p1", "a1", "a2", "p2", "p1", "p1"],
            "timestamp": [T0 + t for t in (50, 10, 30, 40, 20, 60)],
            "event": ["stream", "preview", "stream", "follow", "intent_to_pay", "stream"],
        }
    )
    items = pd.DataFrame(
        {  # podcasts listed first: the dataset must reorder audiobooks first
            "item_id": ["p1", "a1", "p2", "a2"],
            "item_type": ["podcast", "audiobook", "podcast", "audiobook"],
            "title": ["Crime Hour", "Dragons", "Markets", "NA"],
            "description": ['a "quoted" show', "", "money, stocks", "literal NA title"],
            "language": ["en", "en", "", "sv"],
            "genre": ["crime", "fantasy", "business", ""],
        }
    )
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "age": [30, -1, 45],
            "country": ["SE", "", "US"],
            "music_0": [0.1, 0.2, 0.3],
            "music_1": [1.0, 0.0, -1.0],
        }
    )
    return inter, items, users


def _write(df, path):
    if str(path).endswith(".parquet"):
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return path


def _files(tmp_path, fmt="csv", inter=None, items=None, users=None):
    i0, it0, u0 = _tables()
    return (
        _write(i0 if inter is None else inter, tmp_path / f"interactions.{fmt}"),
        _write(it0 if items is None else items, tmp_path / f"items.{fmt}"),
        _write(u0 if users is None else users, tmp_path / f"users.{fmt}"),
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_valid_files_round_trip(tmp_path, fmt):
    ds = load_files(*_files(tmp_path, fmt))
    assert ds.item_type_counts == {"audiobook": 2, "podcast": 2}
    assert list(ds.items["item_id"]) == ["a1", "a2", "p1", "p2"]  # stable within type
    assert list(ds.items["title"]) == ["Dragons", "NA", "Crime Hour", "Markets"]  # literal "NA" kept
    it = ds.interactions
    assert list(it["timestamp"]) == [T0 + t for t in (10, 20, 30, 40, 50, 60)]
    assert it["user_idx"].dtype == np.int32 and it["item_idx"].dtype == np.int32 and it["event_code"].dtype == np.int8
    assert list(it["item_idx"]) == [0, 2, 1, 3, 2, 2]
    assert list(it["user_idx"]) == [1, 1, 0, 2, 0, 0]
    assert list(it["event_code"]) == [2, 3, 0, 1, 0, 0]
    np.testing.assert_allclose(ds.music, [[0.1, 1.0], [0.2, 0.0], [0.3, -1.0]], rtol=1e-6)
    assert ds.music.dtype == np.float32 and "music_0" not in ds.users.columns
    assert list(ds.users["age"]) == [30, -1, 45] and list(ds.users["country"]) == ["SE", "", "US"]
    assert ds.dropped == {}
    np.testing.assert_array_equal(ds.item_type_offsets(), [0, 2, 4])


def test_load_dataset_files_dispatch(tmp_path):
    i, it, u = _files(tmp_path)
    ds = load_dataset("files", interactions=str(i), items=str(it), users=str(u))
    assert ds.num_items == 4 and ds.num_users == 3
    with pytest.raises(DataError, match="needs paths"):
        load_dataset("files", interactions=str(i))


def test_homogeneous_items_accepted(tmp_path):
    inter, items, users = _tables()
    items["item_type"] = "podcast"
    ds = load_files(*_files(tmp_path, items=items))
    assert ds.item_type_counts == {"audiobook": 0, "podcast": 4}
    np.testing.assert_array_equal(ds.item_type_offsets(), [0, 0, 4])


def test_parquet_integer_ids_and_datetime_timestamps(tmp_path):
    inter, items, users = _tables()
    users["user_id"] = [1, 2, 3]
    inter["user_id"] = [1, 2, 1, 3, 2, 1]
    inter["timestamp"] = pd.to_datetime(inter["timestamp"], unit="s")
    ds = load_files(*_files(tmp_path, "parquet", inter=inter, users=users))
    assert list(ds.users["user_id"]) == ["1", "2", "3"]
    assert list(ds.interactions["timestamp"]) == [T0 + t for t in (10, 20, 30, 40, 50, 60)]


def _mod(table, fn):
    def apply():
        tabs = dict(zip(("inter", "items", "users"), _tables()))
        tabs[table] = fn(tabs[table].copy())
        return tabs

    return apply


def _set(col, row, value):
    def f(df):
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df

    return f


# (case id, format, table modifier, file that must be named, regex on the rest of the message)
CASES = [
    (
        "missing_column",
        "csv",
        _mod("inter", lambda d: d.drop(columns=["event"])),
        "interactions",
        r"column 'event': missing",
    ),
    (
        "missing_item_column",
        "parquet",
        _mod("items", lambda d: d.drop(columns=["genre"])),
        "items",
        r"column 'genre': missing",
    ),
    ("missing_user_column", "csv", _mod("users", lambda d: d.drop(columns=["age"])), "users", r"column 'age': missing"),
    (
        "timestamp_not_number",
        "csv",
        _mod("inter", _set("timestamp", 2, "yesterday")),
        "interactions",
        r"column 'timestamp': row 2 \(line 4\): wrong dtype",
    ),
    (
        "timestamp_fraction",
        "parquet",
        _mod("inter", lambda d: d.assign(timestamp=d.timestamp.astype(float).where(d.index != 3, 40.5))),
        "interactions",
        r"column 'timestamp': row 3: wrong dtype: 40.5 is not an integer",
    ),
    (
        "timestamp_string_dtype_parquet",
        "parquet",
        _mod("inter", lambda d: d.assign(timestamp=["a"] * 6)),
        "interactions",
        r"column 'timestamp': row 0: wrong dtype",
    ),
    (
        "age_wrong_dtype",
        "parquet",
        _mod("users", lambda d: d.assign(age=[True, False, True])),
        "users",
        r"column 'age': row 0: wrong dtype",
    ),
    (
        "title_wrong_dtype",
        "parquet",
        _mod("items", lambda d: d.assign(title=[1.5, 2.5, 3.5, 4.5])),
        "items",
        r"column 'title': row 0: wrong dtype",
    ),
    (
        "music_not_number",
        "csv",
        _mod("users", _set("music_1", 2, "loud")),
        "users",
        r"column 'music_1': row 2 \(line 4\): not a finite number",
    ),
    (
        "unknown_event",
        "csv",
        _mod("inter", _set("event", 4, "click")),
        "interactions",
        r"column 'event': row 4 \(line 6\): unknown value 'click'",
    ),
    (
        "item_type_not_a_name",
        "parquet",
        _mod("items", _set("item_type", 2, "e-book")),
        "items",
        r"column 'item_type': row 2: 'e-book' is not a type name",
    ),
    (
        "duplicate_item",
        "csv",
        _mod("items", _set("item_id", 3, "a1")),
        "items",
        r"column 'item_id': row 3 \(line 5\): duplicate id 'a1' \(first seen at row 1\)",
    ),
    (
        "duplicate_user",
        "parquet",
        _mod("users", _set("user_id", 2, "u1")),
        "users",
        r"column 'user_id': row 2: duplicate id 'u1'",
    ),
    (
        "unknown_item",
        "csv",
        _mod("inter", _set("item_id", 3, "zz")),
        "interactions",
        r"column 'item_id': row 3: item 'zz' is not in the items table",
    ),
    (
        "unknown_user",
        "parquet",
        _mod("inter", _set("user_id", 5, "u9")),
        "interactions",
        r"column 'user_id': row 5: user 'u9' is not in the users table",
    ),
    (
        "nan_timestamp_csv",
        "csv",
        _mod("inter", _set("timestamp", 1, "")),
        "interactions",
        r"column 'timestamp': row 1 \(line 3\): NaN",
    ),
    (
        "nan_timestamp_parquet",
        "parquet",
        _mod("inter", lambda d: d.assign(timestamp=d.timestamp.astype(float).where(d.index != 4, np.nan))),
        "interactions",
        r"column 'timestamp': row 4: NaN",
    ),
    (
        "negative_timestamp",
        "csv",
        _mod("inter", _set("timestamp", 5, -3)),
        "interactions",
        r"column 'timestamp': row 5 \(line 7\): negative timestamp -3",
    ),
    (
        "missing_id_value",
        "parquet",
        _mod("inter", _set("user_id", 2, None)),
        "interactions",
        r"column 'user_id': row 2: missing value",
    ),
    (
        "empty_id_value",
        "csv",
        _mod("items", _set("item_id", 1, "")),
        "items",
        r"column 'item_id': row 1 \(line 3\): empty value",
    ),
    ("header_only", "csv", _mod("users", lambda d: d.iloc[:0]), "users", r"empty file \(header but no rows\)"),
    ("header_only_parquet", "parquet", _mod("inter", lambda d: d.iloc[:0]), "interactions", r"empty file"),
]


@pytest.mark.parametrize("case,fmt,mod,file,pattern", CASES, ids=[c[0] for c in CASES])
def test_validation_errors(tmp_path, case, fmt, mod, file, pattern):
    tabs = mod()
    paths = _files(tmp_path, fmt, inter=tabs["inter"], items=tabs["items"], users=tabs["users"])
    with pytest.raises(DataError) as ei:
        load_files(*paths)
    msg = str(ei.value)
    assert f"{file}.{fmt}" in msg.split(":")[0], msg  # the message starts with the offending file
    assert re.search(pattern, msg), msg
    assert "\n" not in msg  # one clear line, no traceback dump


def test_zero_byte_file(tmp_path):
    p = tmp_path / "users.csv"
    p.write_bytes(b"")
    with pytest.raises(DataError, match=r"users.csv: empty file \(no header, no rows\)"):
        read_users(p)


def test_unsupported_suffix_and_missing_file(tmp_path):
    p = tmp_path / "items.json"
    p.write_text("{}")
    with pytest.raises(DataError, match="unsupported file type"):
        read_items(p)
    with pytest.raises(DataError, match="file not found"):
        read_interactions(tmp_path / "nope.csv")


def test_build_dataset_from_frames_validates_and_reorders_vectors():
    inter, items, users = _tables()
    vec = np.arange(8, dtype=np.float32).reshape(4, 2)  # rows in the given (podcast-first) order
    ds = build_dataset(inter, items, users, name="frames", item_vectors=vec, dropped={"rule": 2})
    np.testing.assert_array_equal(ds.item_vectors, vec[[1, 3, 0, 2]])
    assert ds.dropped == {"rule": 2}
    assert ds.music.shape == (3, 2)
    bad = inter.copy()
    bad.loc[2, "event"] = "like"
    with pytest.raises(DataError, match=r"<interactions>: column 'event': row 2: unknown value 'like'"):
        build_dataset(bad, items, users, name="frames")
