"""The data half of the reliability suite: corrupted inputs through the readers and the split, in-process.

Every case writes a small valid dataset (12 users, 4 audiobooks, 6 podcasts, ~70 interactions; CSV or
Parquet) into a fresh folder, corrupts it in one way, then runs what a pipeline run does before any
model: ``load_files`` (or ``external_dataset`` + ``split_from_files`` for a given test file), a
temporal split (cut at the 0.7 quantile) and the strong-signal check per relation. Outcomes:

* ``clean_error`` — a :class:`~twotower_hgnn.errors.UserError` with a one-line message; a data or
  path error must name one of the input files;
* ``accepted_equal`` — accepted, and the loaded tables equal the clean input's (for corruptions that
  must not change results: BOM, CRLF, gzip, extra column, equivalent Parquet dtypes, ...) or pass
  the case's own check (duplicates dropped and counted, one-type catalogues, options that fix a file);
* ``traceback`` — any other exception, or a user error that is several lines or names no file;
* ``silent_wrong`` — accepted with a result that differs from what it must be, or accepted where an
  error is due;
* ``hang`` — no answer within ``TIME_LIMIT_S``.

``run_all()`` runs the named catalogue and ``RANDOM_CASES`` seeded random corruptions (the same
corruption kinds the hypothesis test draws from); ``benchmarks/reliability.py`` writes the JSON.

    python -m benchmarks.reliability_data          # prints the counts per outcome
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from twotower_hgnn import errors
from twotower_hgnn.data.readers import load_files
from twotower_hgnn.data.signal import check_relation_signal, targets_with_signal
from twotower_hgnn.data.split import external_dataset, split_from_files, temporal_split

T0 = 1_700_000_000
HOUR = 3_600
TIME_LIMIT_S = 20
RANDOM_CASES = 40
OUTCOMES = ("clean_error", "accepted_equal", "traceback", "silent_wrong", "hang")
INTER, ITEMS, USERS, TEST = "interactions", "items", "users", "test"


# ------------------------------------------------------------------------------------ the clean data
def base_tables(seed: int = 0) -> dict[str, pd.DataFrame]:
    """The small valid dataset: users u0..u11 (u8..u11 arrive late: cold), audiobooks a0..a3, podcasts p0..p5."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"a{i}" for i in range(4)] + [f"p{i}" for i in range(6)],
            "item_type": ["audiobook"] * 4 + ["podcast"] * 6,
            "title": [f"Book {i}" for i in range(4)] + [f"Show {i}" for i in range(6)],
            "description": ["a story"] * 4 + ["a show"] * 6,
            "language": ["en", "sv"] * 5,
            "genre": ["crime", "", "fantasy", "news", "crime", "business", "", "comedy", "news", "sport"],
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(12)],
            "age": [25, 31, -1, 44, 52, 19, 67, 30, 23, -1, 38, 41],
            "country": ["SE", "US", "", "DE", "SE", "US", "GB", "SE", "US", "DE", "", "SE"],
            "music_0": np.round(rng.normal(size=12), 3),
            "music_1": np.round(rng.normal(size=12), 3),
        }
    )
    rows = []
    for u in range(12):
        start = 50 if u >= 8 else 0  # late users: every interaction after the cut (cold)
        for j in range(6):
            it = f"a{(u + j // 2) % 4}" if j % 2 == 0 else f"p{(u * 2 + j) % 6}"
            ev = "stream" if j % 4 != 3 else ["follow", "preview", "intent_to_pay"][u % 3]
            rows.append((f"u{u}", it, T0 + (start + u + 9 * j) * HOUR, ev))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])
    return {INTER: inter, ITEMS: items, USERS: users}


def write_tables(d: Path, tables: dict[str, pd.DataFrame], fmt: str = "csv") -> dict[str, Path]:
    """Writes every table as ``<name>.<fmt>``; returns ``{name: path}``."""
    d.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in tables.items():
        p = d / f"{name}.{fmt}"
        if fmt == "parquet":
            df.to_parquet(p, index=False)
        else:
            df.to_csv(p, index=False, sep="\t" if fmt == "tsv" else ",")
        paths[name] = p
    return paths


@dataclasses.dataclass
class Loaded:
    """What the readers and the split produced: canonical tables (for equality), the dataset, split, notes."""

    tables: dict[str, list]
    ds: Any
    split: Any
    notes: list[str]


def canonical(ds) -> dict[str, list]:
    """Order-free, dtype-free content of a dataset (what must not change under a harmless corruption)."""
    inter = ds.interactions[["user_id", "item_id", "timestamp", "event"]].astype(str)
    music = [] if ds.music is None else np.round(ds.music.astype(np.float64), 5).tolist()
    return {
        INTER: sorted(map(tuple, inter.to_numpy().tolist())),
        ITEMS: sorted(map(tuple, ds.items.astype(str).to_numpy().tolist())),
        USERS: sorted(map(tuple, ds.users[["user_id", "age", "country"]].astype(str).to_numpy().tolist())),
        "music": music,
    }


def load_and_validate(paths: dict[str, Path], opts: dict | None = None) -> Loaded:
    """The readers, the target check, the split and the relation check, as a run does them before any model."""
    opts = dict(opts or {})
    if TEST in paths:
        ds = external_dataset(paths[INTER], paths[TEST], paths[ITEMS], paths[USERS], **opts)
    else:
        ds = load_files(paths[INTER], paths[ITEMS], paths[USERS], **opts)
    _, target_notes = targets_with_signal(ds, [t for t in ("audiobook", "podcast") if ds.item_type_counts[t]])
    if TEST in paths:
        sp = split_from_files(ds, paths[INTER], paths[TEST], **opts)
    else:
        sp = temporal_split(ds, cut_quantile=0.7, history_days=None, test_days=None)
    _, notes = check_relation_signal(ds, sp.train, where=str(paths[INTER]))
    return Loaded(canonical(ds), ds, sp, [*target_notes, *sp.notes, *notes])


_CLEAN: dict[str, list] | None = None


def clean_result() -> dict[str, list]:
    """The canonical tables of the clean dataset (computed once per process)."""
    global _CLEAN
    if _CLEAN is None:
        with tempfile.TemporaryDirectory() as d:
            _CLEAN = load_and_validate(write_tables(Path(d), base_tables())).tables
    return _CLEAN


# ------------------------------------------------------------------------------------ classification
@dataclasses.dataclass(frozen=True)
class Case:
    """One corruption: ``make(folder) -> (paths, read options)``; ``expect`` "error" (``pattern`` must
    match the message), "equal" (tables equal the clean input's), "ok" (``check(loaded)`` is True) or
    "any" (random corruptions that may leave valid, different data: a clean error or acceptance)."""

    name: str
    make: Callable[[Path], tuple[dict[str, Path], dict]]
    expect: str
    pattern: str = ""
    check: Callable[[Loaded], bool] | None = None


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def _names_a_file(msg: str, paths: dict[str, Path]) -> bool:
    return any(Path(p).name in msg for p in paths.values())


def classify(case: Case, d: Path) -> dict:
    """Runs ``case`` in folder ``d``; returns ``{"case", "outcome", "message"}`` (module docstring)."""
    paths, opts = case.make(d)
    use_alarm = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGALRM, _alarm) if use_alarm else None
    if use_alarm:
        signal.alarm(TIME_LIMIT_S)
    try:
        loaded = load_and_validate(paths, opts)
    except _Hang:
        return {"case": case.name, "outcome": "hang", "message": f"no answer in {TIME_LIMIT_S}s"}
    except errors.UserError as e:
        msg = str(e)
        needs_file = not isinstance(e, errors.ConfigError)
        clean = "\n" not in msg and (not needs_file or _names_a_file(msg, paths))
        if not clean:
            return {"case": case.name, "outcome": "traceback", "message": f"{type(e).__name__}: {msg}"}
        if case.expect in ("equal", "ok"):
            return {"case": case.name, "outcome": "silent_wrong", "message": f"refused a valid input: {msg}"}
        return {"case": case.name, "outcome": "clean_error", "message": msg}
    except Exception as e:  # noqa: BLE001 - anything else is a traceback by definition
        return {"case": case.name, "outcome": "traceback", "message": f"{type(e).__name__}: {e}"}
    finally:
        if use_alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    if case.expect == "error":
        return {"case": case.name, "outcome": "silent_wrong", "message": "accepted although an error was due"}
    if case.expect == "any":  # a corruption that may leave valid (different) data: acceptance is correct
        same = loaded.tables == clean_result()
        msg = "accepted, same as the clean input" if same else "accepted: the corrupted table is valid data"
        return {"case": case.name, "outcome": "accepted_equal", "message": msg}
    ok = loaded.tables == clean_result() if case.expect == "equal" else bool(case.check(loaded))
    outcome = "accepted_equal" if ok else "silent_wrong"
    return {"case": case.name, "outcome": outcome, "message": "; ".join(loaded.notes) if ok else "result differs"}


def run_case(case: Case) -> dict:
    with tempfile.TemporaryDirectory() as d:
        return classify(case, Path(d))


# ------------------------------------------------------------------------------------ the catalogue
def _files(fmt: str = "csv", **mods: Callable[[pd.DataFrame], pd.DataFrame]):
    """A ``make`` writing the base tables (each optionally modified by ``mods[name]``) as ``fmt``."""

    def make(d: Path):
        tabs = base_tables()
        for name, fn in mods.items():
            tabs[name] = fn(tabs[name].copy())
        return write_tables(d, tabs, fmt), {}

    return make


def _bytes(table: str, fn: Callable[[bytes], bytes], suffix: str | None = None, opts: dict | None = None):
    """A ``make`` writing clean CSVs, then replacing ``table``'s bytes by ``fn(bytes)`` (renamed to ``suffix``)."""

    def make(d: Path):
        paths = write_tables(d, base_tables())
        p = paths[table]
        data = fn(p.read_bytes())
        if suffix is not None:
            p.unlink()
            p = p.with_name(f"{table}{suffix}")
            paths[table] = p
        p.write_bytes(data)
        return paths, dict(opts or {})

    return make


def _with_opts(make, **opts):
    def wrapped(d: Path):
        paths, o = make(d)
        return paths, {**o, **opts}

    return wrapped


def _set(col: str, row: int, value):
    def fn(df):
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df

    return fn


def _external(train_fn=None, test_fn=None, fmt: str = "csv"):
    """A ``make`` for a given split: rows before the 0.7 time quantile are the training file, the rest the test file."""

    def make(d: Path):
        tabs = base_tables()
        inter = tabs[INTER]
        cut = inter["timestamp"].quantile(0.7)
        tr, te = inter[inter["timestamp"] < cut].reset_index(drop=True), inter[inter["timestamp"] >= cut]
        tabs[INTER] = train_fn(tr.copy()) if train_fn else tr
        tabs[TEST] = test_fn(te.reset_index(drop=True), tr) if test_fn else te.reset_index(drop=True)
        return write_tables(d, tabs, fmt), {}

    return make


def _one_type(kind: str):
    def keep(df):
        return df[df["item_type"] == kind].reset_index(drop=True)

    def inter(df):
        ok = df["item_id"].str.startswith(kind[0])
        return df[ok].reset_index(drop=True)

    return _files(items=keep, interactions=inter)


def _weak(prefix: str):
    def fn(df):
        df.loc[df["item_id"].str.startswith(prefix), "event"] = "preview"
        return df

    return fn


def _weak_after(q: float):
    """Every interaction at or after the ``q`` time quantile made a weak event (the temporal test window)."""

    def fn(df):
        df.loc[df["timestamp"] >= df["timestamp"].quantile(q, interpolation="lower"), "event"] = "follow"
        return df

    return fn


def _dup_rows(df):
    return pd.concat([df, df.iloc[[3, 10, 20]]], ignore_index=True)


def _gz(b):
    return gzip.compress(b, mtime=0)


def _latin1_items(df):
    df.loc[1, "title"] = "Bücher"
    return df


def _check_note(text: str):
    return lambda loaded: any(text in n for n in loaded.notes)


def _clean_with(**mods):
    """The canonical tables of the base data modified by ``mods`` (what an option must reproduce)."""

    def check(loaded):
        with tempfile.TemporaryDirectory() as d:
            return loaded.tables == load_and_validate(_files(**mods)(Path(d))[0]).tables

    return check


def _text_cases() -> list[Case]:
    bom = b"\xef\xbb\xbf"
    return [
        Case("clean_csv", _files(), "equal"),
        Case("clean_parquet", _files("parquet"), "equal"),
        Case("tsv", _files("tsv"), "equal"),
        Case("bom_interactions", _bytes(INTER, lambda b: bom + b), "equal"),
        Case("bom_users", _bytes(USERS, lambda b: bom + b), "equal"),
        Case("crlf_all", _crlf_all(), "equal"),
        Case("gzip_csv_gz", _bytes(INTER, _gz, ".csv.gz"), "equal"),
        Case("gzip_plain_suffix", _bytes(ITEMS, _gz), "equal"),
        Case(
            "extra_columns", _files(interactions=lambda d: d.assign(extra=1), users=lambda d: d.assign(x="y")), "equal"
        ),
        Case(
            "parquet_int32_timestamps",
            _files("parquet", interactions=lambda d: d.astype({"timestamp": "int32"})),
            "equal",
        ),
        Case("parquet_int8_age", _files("parquet", users=lambda d: d.astype({"age": "int8"})), "equal"),
        Case("parquet_float32_music", _files("parquet", users=lambda d: d.astype({"music_0": "float32"})), "equal"),
        Case(
            "parquet_datetime",
            _files("parquet", interactions=lambda d: d.assign(timestamp=pd.to_datetime(d.timestamp, unit="s"))),
            "equal",
        ),
        Case(
            "non_utf8_latin1",
            _bytes(ITEMS, lambda b: b.replace(b"Book 1", "Bücher".encode("latin-1"))),
            "error",
            r"items\.csv: byte offset \d+ \(line 3\): byte 0xfc is not valid utf-8",
        ),
        Case(
            "latin1_with_encoding_option",
            _with_opts(_bytes(ITEMS, lambda b: b.replace(b"Book 1", "Bücher".encode("latin-1"))), encoding="latin-1"),
            "ok",
            check=_clean_with(items=_latin1_items),
        ),
        Case("utf16", _bytes(USERS, lambda b: b.decode().encode("utf-16")), "error", r"users\.csv: byte offset \d+"),
        Case(
            "binary_garbage",
            _bytes(INTER, lambda b: bytes(np.random.default_rng(1).integers(0, 256, 400, dtype=np.uint8))),
            "error",
            r"interactions\.csv: byte offset",
        ),
        Case(
            "nul_in_cell",
            _bytes(USERS, lambda b: b.replace(b"SE", b"S\x00E", 1)),
            "error",
            r"users\.csv: byte offset \d+ \(line 2\): NUL byte",
        ),
        Case(
            "parquet_garbage",
            _bytes(INTER, lambda b: b"PAR1" + b"\x07" * 300, ".parquet"),
            "error",
            r"interactions\.parquet: not a readable Parquet",
        ),
        Case("truncated_csv", _bytes(INTER, lambda b: b[: len(b) - 12]), "error", r"interactions\.csv"),
        Case(
            "truncated_gzip",
            _bytes(INTER, lambda b: _gz(b)[:60], ".csv.gz"),
            "error",
            r"interactions\.csv\.gz: not a readable gzip",
        ),
        Case("empty_file", _bytes(USERS, lambda b: b""), "error", r"users\.csv: empty file"),
        Case(
            "header_only",
            _bytes(INTER, lambda b: b.split(b"\n")[0] + b"\n"),
            "error",
            r"interactions\.csv: empty file \(header but no rows\)",
        ),
        Case("bad_encoding_name", _with_opts(_files(), encoding="klingon"), "error", r"encoding 'klingon'"),
    ]


def _crlf_all():
    def make(d: Path):
        paths = write_tables(d, base_tables())
        for p in paths.values():
            p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
        return paths, {}

    return make


def _truncated_parquet(d: Path):
    paths = write_tables(d, base_tables(), "parquet")
    b = paths[INTER].read_bytes()
    paths[INTER].write_bytes(b[: len(b) // 2])
    return paths, {}


def _directory(d: Path):
    paths = write_tables(d, base_tables())
    paths[USERS].unlink()
    paths[USERS].mkdir()
    return paths, {}


def _missing(d: Path):
    paths = write_tables(d, base_tables())
    paths[ITEMS].unlink()
    return paths, {}


def _unreadable(d: Path):
    paths = write_tables(d, base_tables())
    paths[ITEMS].chmod(0)
    return paths, {}


def _fifo(d: Path):
    paths = write_tables(d, base_tables())
    paths[INTER].unlink()
    os.mkfifo(paths[INTER])  # reading it would block for ever
    return paths, {}


def _path_cases() -> list[Case]:
    cases = [
        Case("truncated_parquet", _truncated_parquet, "error", r"interactions\.parquet: not a readable Parquet"),
        Case("directory_as_input", _directory, "error", r"users\.csv: is a directory"),
        Case("missing_file", _missing, "error", r"items\.csv: file not found"),
    ]
    if hasattr(os, "mkfifo"):
        cases.append(Case("fifo_as_input", _fifo, "error", r"interactions\.csv: not a regular file"))
    if os.geteuid() != 0:  # root reads a mode-000 file
        cases.append(Case("unreadable_file", _unreadable, "error", r"items\.csv: cannot be read \(permission denied\)"))
    return cases


def _value_cases() -> list[Case]:
    ms = {INTER: lambda d: d.assign(timestamp=d.timestamp * 1000)}
    iso = {INTER: lambda d: d.assign(timestamp=pd.to_datetime(d.timestamp, unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))}
    return [
        Case(
            "timestamps_ms",
            _files(**ms),
            "error",
            r"interactions\.csv: column 'timestamp': row 0 \(line 2\): .*looks like milliseconds: set timestamp_unit=ms",
        ),
        Case("timestamps_ms_with_option", _with_opts(_files(**ms), timestamp_unit="ms"), "equal"),
        Case(
            "timestamps_iso",
            _files(**iso),
            "error",
            r"interactions\.csv: column 'timestamp': row 0 .*set timestamp_unit=iso",
        ),
        Case("timestamps_iso_with_option", _with_opts(_files(**iso), timestamp_unit="iso"), "equal"),
        Case(
            "timestamps_iso_before_1990",
            _with_opts(
                _files(interactions=lambda d: _set("timestamp", 3, "1899-12-31")(iso[INTER](d))), timestamp_unit="iso"
            ),
            "error",
            r"interactions\.csv: column 'timestamp': row 3 \(line 5\): '1899-12-31' is outside 1990-01-01",
        ),
        Case(
            "timestamps_seconds_read_as_iso",
            _with_opts(_files("parquet"), timestamp_unit="iso"),
            "error",
            r"interactions\.parquet: column 'timestamp': row 0: .*looks like Unix seconds: set timestamp_unit=s",
        ),
        Case(
            "timestamp_year_56215",
            _files(interactions=_set("timestamp", 5, 1_700_000_000_000_000)),
            "error",
            r"row 5 \(line 7\): .*looks like microseconds",
        ),
        Case(
            "timestamp_before_1990",
            _files(interactions=_set("timestamp", 4, 86_400)),
            "error",
            r"row 4 \(line 6\): 86400 read as Unix seconds is outside 1990-01-01",
        ),
        Case(
            "timestamp_fraction",
            _files(interactions=_set("timestamp", 2, "1700000000.5")),
            "error",
            r"row 2 \(line 4\): wrong dtype: .* is not an integer",
        ),
        Case(
            "timestamp_1e30",
            _files(interactions=_set("timestamp", 3, "1e30")),
            "error",
            r"row 3 \(line 5\): value 1e\+30 is too large",
        ),
        Case("timestamp_unit_unknown", _with_opts(_files(), timestamp_unit="days"), "error", r"timestamp_unit: 'days'"),
        Case(
            "duplicates_dropped",
            _files(interactions=_dup_rows),
            "ok",
            check=lambda ld: ld.tables == clean_result() and ld.ds.dropped == {"duplicate_rows": 3},
        ),
        Case(
            "duplicates_kept",
            _with_opts(_files(interactions=_dup_rows), duplicates="keep"),
            "ok",
            check=lambda ld: len(ld.tables[INTER]) == len(clean_result()[INTER]) + 3,
        ),
        Case("duplicates_option_unknown", _with_opts(_files(), duplicates="merge"), "error", r"duplicates: 'merge'"),
        Case(
            "age_200_csv",
            _files(users=_set("age", 6, 200)),
            "error",
            r"users\.csv: column 'age': row 6 \(line 8\): age 200 is above 130",
        ),
        Case(
            "age_200_parquet",
            _files("parquet", users=lambda d: d.assign(age=[200 if i == 6 else a for i, a in enumerate(d.age)])),
            "error",
            r"users\.parquet: column 'age': row 6: age 200 is above 130",
        ),
        Case(
            "age_negative",
            _files(users=_set("age", 3, -7)),
            "error",
            r"users\.csv: column 'age': row 3 \(line 5\): negative age -7",
        ),
        Case(
            "user_id_empty",
            _files(interactions=_set("user_id", 9, "")),
            "error",
            r"interactions\.csv: column 'user_id': row 9 \(line 11\): empty value",
        ),
        Case(
            "unknown_item",
            _files(interactions=_set("item_id", 4, "zz")),
            "error",
            r"interactions\.csv: column 'item_id': row 4: item 'zz' is not in the items table",
        ),
        Case(
            "unknown_item_after_duplicates",
            _files(
                interactions=lambda d: _set("item_id", 40, "zz")(
                    _dup_rows(d).iloc[list(range(40)) + list(range(40, 75))].reset_index(drop=True)
                )
            ),
            "error",
            r"interactions\.csv: column 'item_id': row 40: item 'zz'",
        ),
        Case(
            "duplicate_item_id",
            _files(items=_set("item_id", 5, "a1")),
            "error",
            r"items\.csv: column 'item_id': row 5 \(line 7\): duplicate id 'a1'",
        ),
        Case(
            "item_type_not_a_name",
            _files(items=_set("item_type", 2, "e-book")),
            "error",
            r"items\.csv: column 'item_type': row 2 \(line 4\): 'e-book' is not a type name",
        ),
        Case(
            "unknown_event",
            _files(interactions=_set("event", 7, "click")),
            "error",
            r"interactions\.csv: column 'event': row 7 \(line 9\): unknown value 'click'",
        ),
        Case(
            "column_dropped",
            _files(interactions=lambda d: d.drop(columns=["event"])),
            "error",
            r"interactions\.csv: column 'event': missing",
        ),
        Case(
            "columns_swapped",
            _files(interactions=lambda d: d.rename(columns={"timestamp": "event", "event": "timestamp"})),
            "error",
            r"interactions\.csv: column 'timestamp': row 0 \(line 2\): wrong dtype: 'stream' is not a number",
        ),
        Case(
            "music_overflows_float32",
            _files(users=_set("music_0", 4, "1e308")),
            "error",
            r"users\.csv: column 'music_0': row 4 \(line 6\): not a finite number \('1e308'\) \(too large for float32\)",
        ),
        Case(
            "music_not_a_number",
            _files(users=_set("music_1", 2, "loud")),
            "error",
            r"users\.csv: column 'music_1': row 2 \(line 4\): not a finite number",
        ),
    ]


def _split_cases() -> list[Case]:
    def train_weak(tr):
        return tr.assign(event="follow")

    def bad_test_row(te, tr):
        return _set("user_id", 3, "ghost")(te)

    return [
        Case(
            "podcast_only",
            _one_type("podcast"),
            "ok",
            check=_check_note("warm segment empty (the catalogue has no audiobooks)"),
        ),
        Case(
            "audiobook_only",
            _one_type("audiobook"),
            "ok",
            check=lambda ld: ld.ds.item_type_counts["podcast"] == 0 and len(ld.split.test) > 0,
        ),
        Case(
            "weak_audiobooks_relations_dropped",
            _files(interactions=_weak("a")),
            "ok",
            check=lambda ld: (
                _check_note("relation audiobook-audiobook dropped")(ld)
                and _check_note("target audiobook dropped: no audiobook stream in the data")(ld)
            ),
        ),
        Case(
            "test_window_weak_only",
            _files(interactions=_weak_after(0.7)),
            "error",
            r"interactions\.csv: split at \d+: no scorable test user in any segment: .*weak events only",
        ),
        Case(
            "all_weak",
            _files(interactions=lambda d: d.assign(event="preview")),
            "error",
            r"interactions\.csv: no target type has a stream to train on or score: no audiobook stream in the data",
        ),
        Case(
            "train_all_weak",
            _external(train_fn=train_weak),
            "error",
            r"interactions\.csv: no relation of the co-listening graph has strong signal \(audiobook-audiobook: .*all \d+ audiobook rows are weak",
        ),
        Case("external_split_valid", _external(), "ok", check=lambda ld: ld.split.external and len(ld.split.test) > 0),
        Case(
            "test_equals_train",
            _external(test_fn=lambda te, tr: tr),
            "error",
            r"test\.csv: the test part is identical to the training part",
        ),
        Case(
            "test_inside_train",
            _external(test_fn=lambda te, tr: tr.iloc[:5]),
            "error",
            r"test\.csv: every one of its 5 rows is also in the training part",
        ),
        Case(
            "test_weak_only",
            _external(test_fn=lambda te, tr: te.assign(event="intent_to_pay")),
            "error",
            r"test\.csv\): no scorable test user .*weak events only",
        ),
        Case(
            "test_bad_row",
            _external(test_fn=bad_test_row),
            "error",
            r"test\.csv: column 'user_id': row 3: user 'ghost' is not in the users table",
        ),
        Case(
            "test_bad_row_parquet",
            _external(test_fn=bad_test_row, fmt="parquet"),
            "error",
            r"test\.parquet: column 'user_id': row 3: user 'ghost'",
        ),
        Case(
            "cold_segment_empty",
            _files(interactions=lambda d: d[~d.user_id.isin(["u8", "u9", "u10", "u11"])]),
            "ok",
            check=_check_note("cold segment empty"),
        ),
    ]


def catalogue() -> list[Case]:
    """Every named corruption (module docstring)."""
    return [*_text_cases(), *_path_cases(), *_value_cases(), *_split_cases()]


# ------------------------------------------------------------------------------------ random corruptions
KINDS = (
    "cell",
    "latin1",
    "utf16",
    "bom",
    "crlf",
    "gzip",
    "truncate",
    "duplicate",
    "drop_column",
    "swap_columns",
    "extra_column",
    "int32",
    "nul",
)
MUST_EQUAL = frozenset({"bom", "crlf", "gzip", "extra_column", "int32"})
CELL_VALUES = (
    "",
    "nan",
    "-5",
    "abc",
    "1e30",
    "200",
    "3.5",
    "ü",
    "None",
    " ",
    "u0",
    "a0",
    "p1",
    "stream",
    "1700000000",
    "9999999999999",
    "2023-01-01",
    "-1",
    "0",
    '"',
    "1e308",
    "inf",
    "9223372036854775808",
    "1.7e9",
    "1899-12-31",
    "line\nbreak",
    "a,b",
    "\u200b",
)


def corrupt(
    d: Path, fmt: str, table: str, kind: str, row: int, col: int, value: int, frac: float
) -> tuple[dict[str, Path], bool]:
    """Writes the base tables as ``fmt`` with ``table`` corrupted by ``kind`` (``row``/``col``/``value``/``frac``
    choose where and what). Returns (paths, whether the loaded result must equal the clean input's)."""
    tabs = base_tables()
    df = tabs[table]
    row, c = row % len(df), df.columns[col % len(df.columns)]
    text_kind = kind in ("latin1", "utf16", "bom", "crlf", "gzip", "nul")
    if kind == "cell":
        df[c] = df[c].astype(str) if fmt == "parquet" else df[c].astype(object)
        df.loc[row, c] = CELL_VALUES[value % len(CELL_VALUES)]
    elif kind == "duplicate":
        df = pd.concat([df, df.iloc[[row]]], ignore_index=True)
    elif kind == "drop_column":
        df = df.drop(columns=[c])
    elif kind == "swap_columns":
        c2 = df.columns[(col + 1 + value) % len(df.columns)]
        df = df.rename(columns={c: c2, c2: c})
    elif kind == "extra_column":
        df = df.assign(**{f"extra_{value}": value})
    elif kind == "int32" and fmt == "parquet":
        df = df.astype({k: "int32" for k in df.columns if pd.api.types.is_integer_dtype(df[k].dtype)})
    tabs[table] = df
    paths = write_tables(d, tabs, "csv" if text_kind else fmt)
    p = paths[table]
    b = p.read_bytes()
    if kind == "latin1":
        b = b.replace(b"o", "ö".encode("latin-1"), 1)
    elif kind == "utf16":
        b = b.decode().encode("utf-16")
    elif kind == "bom":
        b = b"\xef\xbb\xbf" + b
    elif kind == "crlf":
        b = b.replace(b"\n", b"\r\n")
    elif kind == "gzip":
        b = _gz(b)
    elif kind == "nul":
        b = b[: int(frac * len(b))] + b"\x00" + b[int(frac * len(b)) :]
    elif kind == "truncate":
        b = b[: int(frac * len(b))]
    p.write_bytes(b)
    must = kind in MUST_EQUAL or (kind == "duplicate" and table == INTER)
    return paths, must


def random_case(rng: np.random.Generator, name: str) -> Case:
    """A seeded random corruption as a catalogue :class:`Case`."""
    fmt = str(rng.choice(["csv", "parquet"]))
    table = str(rng.choice([INTER, ITEMS, USERS]))
    kind = str(rng.choice(KINDS))
    row, col, value = (int(x) for x in rng.integers(0, 1000, 3))
    frac = float(rng.random())
    must = kind in MUST_EQUAL or (kind == "duplicate" and table == INTER)

    def make(d: Path):
        return corrupt(d, fmt, table, kind, row, col, value, frac)[0], {}

    return Case(f"{name}:{fmt}:{table}:{kind}", make, "equal" if must else "any")


def run_all(random_cases: int = RANDOM_CASES) -> list[dict]:
    """Every catalogue case and ``random_cases`` seeded random corruptions; one row per case. The data
    floor's notes (duplicates, empty segments, dropped relations) are silenced while it runs."""
    import logging

    log = logging.getLogger("twotower_hgnn.data")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        rows = [run_case(c) for c in catalogue()]
        rows += [run_case(random_case(np.random.default_rng([7, i]), f"random-{i:02d}")) for i in range(random_cases)]
    finally:
        log.setLevel(level)
    return rows


def counts(rows: list[dict]) -> dict[str, int]:
    return {"cases": len(rows), **{o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}}


def _main() -> None:
    rows = run_all()
    print(counts(rows))
    for r in rows:
        if r["outcome"] not in ("clean_error", "accepted_equal"):
            print(f"{r['outcome']:>14}  {r['case']}: {r['message']}")


if __name__ == "__main__":
    _main()
