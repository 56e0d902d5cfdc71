"""The inputs of the log queries: the interactions (view ``inter``) and the item types (view ``items``).

``inter`` columns: ``row_id`` (int64, the row's position in the time-ordered table: the tie-break of
equal timestamps, as the Dataset contract orders rows), ``user_idx`` (int32), ``item_idx`` (int32),
``event_code`` (int8), ``timestamp`` (int64 Unix seconds) and, in a Parquet dataset, the partition
column ``day`` (``timestamp // 86400``). ``items``: ``item_idx`` (int32), ``type_code`` (int8, the
item's position in the dataset's type list). Nothing here assumes a number of item types.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

DAY = 86_400
INTER_COLUMNS = ("user_idx", "item_idx", "event_code", "timestamp")


def interactions_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The ``inter`` columns of an index-coded interactions table (``Dataset.interactions``, ``Split.train``)."""
    missing = [c for c in INTER_COLUMNS if c not in df.columns]
    if missing:
        from twotower_hgnn.errors import DataError

        raise DataError(f"interactions: column(s) {missing} missing (pass Dataset.interactions or a Split table)")
    return pd.DataFrame(
        {
            "row_id": np.arange(len(df), dtype=np.int64),
            "user_idx": df["user_idx"].to_numpy(np.int32),
            "item_idx": df["item_idx"].to_numpy(np.int32),
            "event_code": df["event_code"].to_numpy(np.int8),
            "timestamp": df["timestamp"].to_numpy(np.int64),
        }
    )


def items_frame(type_codes: np.ndarray) -> pd.DataFrame:
    """The ``items`` view: one row per item, its type code."""
    codes = np.asarray(type_codes, np.int8)
    return pd.DataFrame({"item_idx": np.arange(codes.size, dtype=np.int32), "type_code": codes})


def write_interactions(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Writes ``df``'s ``inter`` columns as a Parquet dataset partitioned by day (``path/day=N/*.parquet``,
    hive layout), so that a query over a time window opens only that window's files. Returns ``path``."""
    import pyarrow as pa
    import pyarrow.dataset as pds

    frame = interactions_frame(df)
    frame["day"] = (frame["timestamp"] // DAY).astype(np.int32)
    path = Path(path)
    pds.write_dataset(
        pa.Table.from_pandas(frame, preserve_index=False),
        path,
        format="parquet",
        partitioning=pds.partitioning(pa.schema([("day", pa.int32())]), flavor="hive"),
        existing_data_behavior="delete_matching",
        max_partitions=1 << 20,
    )
    return path


def day_window(start: int | None, end: int | None) -> str | None:
    """Condition on ``day`` keeping the partitions that can hold seconds in ``[start, end)`` (None = open)."""
    conds = []
    if start is not None:
        conds.append(f"day >= {int(start) // DAY}")
    if end is not None:
        conds.append(f"day <= {(int(end) - 1) // DAY}")
    return " AND ".join(conds) or None
