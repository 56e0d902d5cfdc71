"""The table formats users have, each read into a frame (used by :mod:`twotower_hgnn.data.readers`).

:func:`read_frame` chooses by the path:

* a **folder** holding ``.parquet`` files: a Parquet dataset read with ``pyarrow.dataset`` (files in sorted
  path order; hive partitions such as ``day=2024-01-01/part-0.parquet`` add their key as a column). A
  folder without Parquet files is an error ("is a directory");
* ``*.inter`` / ``*.item`` / ``*.user``: **RecBole atomic files** (tab-separated, header cells
  ``name:type`` such as ``user_id:token``; the ``:type`` is dropped, so the names are RecBole's);
* ``ratings.dat`` / ``movies.dat`` / ``users.dat``: **MovieLens** ``::``-separated files without a header,
  read with the schema's names (``user_id, item_id, rating, timestamp``; ``item_id, title, genre``;
  ``user_id, gender, age, occupation, zip_code``);
* anything else: :func:`twotower_hgnn.data.files.read_table` (CSV/TSV, gzip, Parquet).

The second value tells whether the format is a recognised one whose optional columns may be absent
(RecBole, MovieLens ``.dat``; see :class:`~twotower_hgnn.data.mapping.ColumnMapping.prepare`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from twotower_hgnn.data.files import (
    InputPathError,
    _decompressed,
    _raw_bytes,
    _read_csv_text,
    check_readable,
    decode_text,
    one_line,
    read_table,
)
from twotower_hgnn.data.readers_checks import DataError

RECBOLE_SUFFIXES = (".inter", ".item", ".user")
MOVIELENS_DAT: dict[str, tuple[str, ...]] = {
    "ratings.dat": ("user_id", "item_id", "rating", "timestamp"),
    "movies.dat": ("item_id", "title", "genre"),
    "users.dat": ("user_id", "gender", "age", "occupation", "zip_code"),
}


def parquet_files(path: str | os.PathLike) -> list[Path]:
    """The ``.parquet`` files under a folder, sorted (empty when none)."""
    return sorted(p for p in Path(path).rglob("*") if p.suffix.lower() in (".parquet", ".pq") and p.is_file())


def read_parquet_dataset(path: str | os.PathLike) -> pd.DataFrame:
    """A folder of Parquet files (hive partitions allowed) as one frame."""
    import pyarrow.dataset as pds

    files = parquet_files(path)
    if not files:
        raise InputPathError(
            f"{path}: is a directory, not a file (a folder is read as a Parquet dataset only when it holds .parquet files)"
        )
    try:
        part = pds.partitioning(flavor="hive")
        data = pds.dataset([str(f) for f in files], format="parquet", partitioning=part, partition_base_dir=str(path))
        df = data.to_table().to_pandas()
    except Exception as e:  # pyarrow raises several types for unreadable or mismatched files
        raise DataError(f"{path}: not a readable Parquet dataset ({type(e).__name__}: {one_line(e)})") from None
    for c in df.columns:  # partition keys arrive as categoricals
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(object)
    if len(df) == 0:
        raise DataError(f"{path}: empty Parquet dataset (no rows)")
    return df


def _text(p: Path, encoding: str) -> str:
    data, gz = _decompressed(p, _raw_bytes(p))
    if not data.strip():
        raise DataError(f"{p}: empty file (no header, no rows)")
    return decode_text(p, data, encoding, gz)


def read_recbole(p: Path, encoding: str) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header ``name:type``; the names without their type."""
    df = _read_csv_text(p, _text(p, encoding), "\t")
    names = [c.split(":", 1)[0].strip() for c in df.columns]
    if len(set(names)) != len(names):
        raise DataError(f"{p}: duplicate column names in the header {list(df.columns)}")
    df.columns = names
    return df


def read_movielens_dat(p: Path, encoding: str) -> pd.DataFrame:
    """A MovieLens ``::`` file (no header), columns named by :data:`MOVIELENS_DAT`."""
    names = MOVIELENS_DAT.get(p.name.lower().removesuffix(".gz"))
    if names is None:
        raise DataError(f"{p}: unknown .dat file (MovieLens files are {', '.join(MOVIELENS_DAT)})")
    rows = []
    for n, line in enumerate(_text(p, encoding).splitlines()):
        if not line.strip():
            continue
        cells = line.split("::")
        if len(cells) != len(names):
            raise DataError(
                f"{p}: row {len(rows)} (line {n + 1}): {len(cells)} '::'-separated fields, expected {len(names)} "
                f"({', '.join(names)})"
            )
        rows.append(cells)
    return pd.DataFrame(rows, columns=list(names), dtype=object)


def read_frame(path: str | os.PathLike, encoding: str = "utf-8") -> tuple[pd.DataFrame, bool, bool]:
    """(frame, whether row errors may name CSV lines, whether it is a recognised format) of ``path``."""
    if os.path.isdir(path):
        return read_parquet_dataset(path), False, False
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(RECBOLE_SUFFIXES):
        df = read_recbole(check_readable(path), encoding)
        recognised, csv = True, True
    elif name.endswith(".dat"):
        df = read_movielens_dat(check_readable(path), encoding)
        recognised, csv = True, False
    else:
        df, csv = read_table(path, encoding)
        return df, csv, False
    if len(df) == 0:
        raise DataError(f"{path}: empty file (header but no rows)")
    return df, csv, recognised
