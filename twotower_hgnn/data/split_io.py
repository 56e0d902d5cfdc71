"""Saving and loading a :class:`~twotower_hgnn.data.split.Split` (a pipeline stage's outputs): the parts as
Parquet, the segments as arrays, the rest as JSON; a temporal split's parts come back as views of the
dataset's rows when the dataset is given (:func:`load_split`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from twotower_hgnn.data.schema import Dataset
from twotower_hgnn.data.split import Split, rows_view
from twotower_hgnn.data.split_rules import SplitError
from twotower_hgnn.io import atomic_save_npy, atomic_write_json, atomic_write_parquet


def save_split(split: Split, out: str | os.PathLike) -> None:
    """Writes ``split`` into directory ``out`` (segment arrays, per-user as-of times, JSON; the parts as
    Parquet unless the split is row ranges of its dataset).

    A split of row ranges (``Split.rows``: temporal splits) is written as those ranges and their bounds
    only: :func:`load_split` rebuilds its parts as views of the same dataset. Writing them would copy the
    log (a 250M-row training part is ~7 GB of Parquet and more in memory while it is converted)."""
    out = Path(out)
    if split.rows is None:
        atomic_write_parquet(split.train, out / "train.parquet")
        atomic_write_parquet(split.test, out / "test.parquet")
    atomic_save_npy(out / "warm_users.npy", np.asarray(split.warm_users, np.int32))
    atomic_save_npy(out / "cold_users.npy", np.asarray(split.cold_users, np.int32))
    if split.external:
        atomic_save_npy(out / "as_of_times.npy", np.asarray(split.as_of_times, np.int64))
    atomic_write_json(
        out / "split.json",
        {
            "cut_time": split.cut_time,
            "history_start": split.history_start,
            "test_end": split.test_end,
            "segment_sizes": split.segment_sizes,
            "external": split.external,
            "notes": list(split.notes),
            **({"segment_type": split.segment_type} if split.segment_type != "audiobook" else {}),
            **({"rows": list(split.rows), "bounds": _bounds(split)} if split.rows is not None else {}),
        },
    )


def _bounds(split: Split) -> list:
    """(rows, first and last timestamp) of train and test: what a row range must reproduce."""
    return [[len(p), *(p["timestamp"].iloc[[0, -1]].tolist() if len(p) else [])] for p in (split.train, split.test)]


def load_split(path: str | os.PathLike, ds: Dataset | None = None, read_parts: bool = True) -> Split:
    """The split :func:`save_split` wrote into ``path``. With the dataset it was made from, a split of row
    ranges (``Split.rows``) is rebuilt as views of ``ds.interactions`` (no copy, nothing read) when the
    ranges reproduce the saved parts' sizes and first/last timestamps; otherwise (or without ``ds``)
    its parts are read from the Parquet files. ``read_parts=False``: the segments, cut and as-of times
    only (``train``/``test`` empty, ``rows`` None), without the dataset: e.g. to pick a few test users."""
    path = Path(path)
    meta = json.loads((path / "split.json").read_text())
    as_of = np.load(path / "as_of_times.npy") if meta.get("external") else None
    parts, rows = None, meta.get("rows")
    if not read_parts:
        parts, rows = (pd.DataFrame(), pd.DataFrame()), None
    if ds is not None and rows is not None and rows[2] <= len(ds.interactions):
        lo, mid, hi = (int(r) for r in rows)
        parts = (rows_view(ds.interactions, lo, mid), rows_view(ds.interactions, mid, hi))
        probe = Split(*parts, 0, None, np.zeros(0, np.int32), np.zeros(0, np.int32), {})
        if _bounds(probe) != meta.get("bounds"):
            parts = None  # not the dataset this split was made from: read the saved parts
    if parts is None and rows is not None and not (path / "train.parquet").exists():
        raise SplitError(
            f"{path / 'split.json'}: the split is rows {rows[0]}..{rows[2]} of its dataset; "
            + ("pass that dataset to load it" if ds is None else "the dataset given is not the one it was made from")
        )
    train, test = parts or (pd.read_parquet(path / "train.parquet"), pd.read_parquet(path / "test.parquet"))
    return Split(
        train=train,
        test=test,
        rows=tuple(int(r) for r in rows) if parts is not None and rows is not None else None,
        cut_time=int(meta["cut_time"]),
        history_start=meta["history_start"],
        warm_users=np.load(path / "warm_users.npy"),
        cold_users=np.load(path / "cold_users.npy"),
        segment_sizes=meta["segment_sizes"],
        test_end=meta["test_end"],
        as_of_times=as_of,
        notes=tuple(meta.get("notes", ())),
        segment_type=str(meta.get("segment_type", "audiobook")),
    )
