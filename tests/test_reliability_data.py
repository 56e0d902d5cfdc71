"""Reliability of the data floor: corrupted inputs end in one clean error naming the file, or in a
correct load (issue 13, items 2 and 6). In-process, through the readers, the split and the relation
check (``benchmarks.reliability_data``), never a pipeline per case."""

import logging
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import reliability_data as R
from twotower_hgnn import errors
from twotower_hgnn.data.readers import read_interactions
from twotower_hgnn.data.signal import usable_relations
from twotower_hgnn.data.split_rules import SplitError

CATALOGUE = R.catalogue()


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.name for c in CATALOGUE])
def test_catalogue(case, tmp_path):
    row = R.classify(case, tmp_path)
    if case.expect == "error":
        assert row["outcome"] == "clean_error", row
        assert re.search(case.pattern, row["message"]), row["message"]
    else:
        assert row["outcome"] == "accepted_equal", row


def test_catalogue_covers_the_issue():
    names = {c.name for c in CATALOGUE}
    for needed in (
        "non_utf8_latin1",
        "binary_garbage",
        "bom_interactions",
        "crlf_all",
        "gzip_csv_gz",
        "timestamps_ms",
        "timestamp_year_56215",
        "duplicates_dropped",
        "directory_as_input",
        "missing_file",
        "age_200_csv",
        "age_200_parquet",
        "podcast_only",
        "audiobook_only",
        "all_weak",
        "train_all_weak",
        "test_equals_train",
        "test_weak_only",
        "test_bad_row",
    ):
        assert needed in names


def test_duplicates_are_reported_in_one_line(tmp_path, caplog):
    paths = R.write_tables(tmp_path, {R.INTER: R._dup_rows(R.base_tables()[R.INTER])})
    with caplog.at_level(logging.WARNING, logger="twotower_hgnn"):
        df = read_interactions(paths[R.INTER])
    lines = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert len(lines) == 1 and "3 exact duplicate interaction row(s), first at row 72 (line 74): dropped" in lines[0]
    assert df.attrs["duplicate_rows"] == 3 and len(df) == 72
    assert list(df.index[-3:]) == [69, 70, 71]  # file row numbers kept for later messages


def test_relations_without_edges_dropped_and_none_left_is_an_error():
    kept, notes = usable_relations({"audiobook-audiobook": 0, "podcast-podcast": 7})
    assert kept == ["podcast-podcast"] and notes == [
        "relation audiobook-audiobook dropped: no edges in the training graph (too few shared users under the graph rule)"
    ]
    assert usable_relations({"podcast-podcast": 7}, ["podcast-podcast"]) == (["podcast-podcast"], [])
    with pytest.raises(errors.DataError, match=r"^graph: no relation of the co-listening graph has strong signal"):
        usable_relations({"audiobook-audiobook": 0, "podcast-podcast": 0})


def test_podcast_only_split_is_a_note_not_move_the_cut(tmp_path):
    loaded = R.load_and_validate(R._one_type("podcast")(tmp_path)[0])
    sp = loaded.split
    assert sp.segment_sizes["warm_users"] == 0 and sp.segment_sizes["cold_users"] > 0
    assert "note: warm segment empty (the catalogue has no audiobooks)" in sp.summary()
    from twotower_hgnn.data.split_io import load_split, save_split

    save_split(sp, tmp_path / "split")
    assert load_split(tmp_path / "split", loaded.ds).notes == sp.notes
    # a non-empty segment below the minimum is still an error
    with pytest.raises(SplitError, match=r"cold_users=\d+ below min_segment_users=1000"):
        R.temporal_split(loaded.ds, cut_quantile=0.7, history_days=None, test_days=None, min_segment_users=1000)


def test_max_age_shared_with_features():
    from twotower_hgnn.data.schema import MAX_AGE
    from twotower_hgnn.features_bundles import MAX_AGE as FEATURES_MAX_AGE

    assert MAX_AGE == FEATURES_MAX_AGE


def test_pipeline_config_read_options_refused_before_work():
    from twotower_hgnn.pipeline import PipelineConfig

    files = {"dataset": "files", "interactions": "i.csv", "items": "it.csv", "users": "u.csv"}
    for field, bad in (("timestamp_unit", "days"), ("duplicates", "merge"), ("encoding", "klingon")):
        with pytest.raises(errors.ConfigError, match=f"^--{field}: '{bad}'"):
            PipelineConfig(**files, **{field: bad})
    assert PipelineConfig(**files, timestamp_unit="ms", duplicates="keep", encoding="latin-1").timestamp_unit == "ms"


def test_benchmark_rows_and_counts():
    rows = [R.run_case(c) for c in CATALOGUE[:3]] + [R.run_case(R.random_case(R.np.random.default_rng(0), "r"))]
    assert all(set(r) == {"case", "outcome", "message"} and r["outcome"] in R.OUTCOMES for r in rows)
    c = R.counts(rows)
    assert c["cases"] == 4 and sum(c[o] for o in R.OUTCOMES) == 4


# ------------------------------------------------------------------------------------ property test
@settings(
    derandomize=True,
    deadline=None,
    max_examples=250,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    fmt=st.sampled_from(["csv", "parquet"]),
    table=st.sampled_from([R.INTER, R.ITEMS, R.USERS]),
    kind=st.sampled_from(R.KINDS),
    row=st.integers(0, 200),
    col=st.integers(0, 10),
    value=st.integers(0, 100),
    frac=st.floats(0.0, 1.0),
    unit=st.sampled_from(["s", "s", "s", "ms", "iso"]),
)
def test_random_corruption_is_a_clean_error_or_an_equal_result(fmt, table, kind, row, col, value, frac, unit):
    with tempfile.TemporaryDirectory() as d:
        paths, must_equal = R.corrupt(Path(d), fmt, table, kind, row, col, value, frac)
        must_equal = must_equal and unit == "s"  # the clean data is in seconds
        try:
            loaded = R.load_and_validate(paths, {"timestamp_unit": unit})
        except errors.UserError as e:
            msg = str(e)
            assert "\n" not in msg, msg
            assert any(p.name in msg for p in paths.values()), msg  # names the file
            assert not must_equal, f"{kind} must not change the result, but: {msg}"
            return
        if must_equal:
            assert loaded.tables == R.clean_result(), f"{kind} on {table} ({fmt}) changed the loaded tables"
        for name in (R.INTER, R.USERS):
            assert not pd.isna(pd.DataFrame(loaded.tables[name])).any().any()


def test_load_from_flags_passes_the_read_options(tmp_path):
    from twotower_hgnn.data import load_from_flags

    tabs = R.base_tables()
    tabs[R.INTER] = R._dup_rows(tabs[R.INTER]).assign(timestamp=lambda d: d.timestamp * 1000)
    p = R.write_tables(tmp_path, tabs)
    files = {"interactions": str(p[R.INTER]), "items": str(p[R.ITEMS]), "users": str(p[R.USERS])}
    with pytest.raises(errors.DataError, match="set timestamp_unit=ms"):
        load_from_flags("files", **files)
    ds = load_from_flags("files", **files, timestamp_unit="ms")
    assert R.canonical(ds) == R.clean_result() and ds.dropped == {"duplicate_rows": 3}
    assert len(load_from_flags("files", **files, timestamp_unit="ms", duplicates="keep").interactions) == 75


def test_relation_support_in_chunks_equals_distinct_pair_counting():
    """The chunked min/max pass counts exactly the users whose edge-event rows span two distinct items of the
    relation's types (the definition, computed here from the distinct (user, item) pairs)."""

    from twotower_hgnn.data import load_dataset
    from twotower_hgnn.data.schema import EVENTS
    from twotower_hgnn.data.signal import relation_support

    ds = load_dataset("synthetic", scale="tiny", seed=3)
    train = ds.interactions.iloc[: len(ds.interactions) // 3]  # few rows: some users with one item only
    sel = train["event_code"].to_numpy() == EVENTS.index("stream")
    pairs = set(zip(train["user_idx"].to_numpy()[sel].tolist(), train["item_idx"].to_numpy()[sel].tolist()))
    tcode = ds.item_type_codes()
    per: dict[tuple[int, int], int] = {}
    for u, i in pairs:
        per[u, int(tcode[i])] = per.get((u, int(tcode[i])), 0) + 1
    users = {u for u, _ in per}
    ab, pc = ds.item_type_index("audiobook"), ds.item_type_index("podcast")
    want = {
        "audiobook-audiobook": sum(per.get((u, ab), 0) >= 2 for u in users),
        "audiobook-podcast": sum(per.get((u, ab), 0) >= 1 and per.get((u, pc), 0) >= 1 for u in users),
        "podcast-podcast": sum(per.get((u, pc), 0) >= 2 for u in users),
    }
    assert min(want.values()) > 0 and want["audiobook-audiobook"] < len(users)
    assert relation_support(ds, train, chunk_rows=97) == want == relation_support(ds, train)
