"""Where the items' content features come from, decided from the columns the data has.

The content vectors are the HGNN's input features and the LLM-KNN baseline's item space. One source per
dataset, in this order (:func:`content_source`):

* ``vectors`` — the source ships them (``Dataset.item_vectors``; large synthetic scales);
* ``text`` — some item has a ``title`` or ``description``: Sentence-BERT of ``title + ". " +
  description`` (``text.item_texts``; the paper's content, the default of every paper-shaped dataset);
* ``columns: genre, language`` (those present) — no item has text, but some have a genre or language:
  Sentence-BERT of those values ("genre: Drama. language: en"), so items that share them are close;
* ``none`` — nothing to describe an item with (e.g. items built from the interactions alone): a fixed
  random unit vector per item, seeded by its ``item_id`` (the HGNN then learns from the graph alone; the
  LLM-KNN baseline ranks at random). Zeros would make every item's HGNN embedding the same.

The report records the source in ``meta.dataset.content`` when it is one of the fallbacks (``columns: ...``
or ``none``); a report without the field used the items' text or the source's vectors, as every report
before the field did (so the paper-shaped reports are unchanged). The content stage's summary and the
console name the source in every case.
"""

from __future__ import annotations

import hashlib

import numpy as np

from twotower_hgnn.data.schema import Dataset

TEXT, VECTORS, NONE = "text", "vectors", "none"
FALLBACK_COLUMNS: tuple[str, ...] = ("genre", "language")
NONE_DIM = 64  # dimension of the random per-item vectors of a dataset without content


def _nonempty(ds: Dataset, column: str) -> bool:
    return bool((ds.items[column].astype(str).str.len() > 0).any())


def content_source(ds: Dataset) -> str:
    """``"vectors"``, ``"text"``, ``"columns: <cols>"`` or ``"none"`` (module docstring)."""
    if ds.item_vectors is not None:
        return VECTORS
    if _nonempty(ds, "title") or _nonempty(ds, "description"):
        return TEXT
    cols = [c for c in FALLBACK_COLUMNS if _nonempty(ds, c)]
    return f"columns: {', '.join(cols)}" if cols else NONE


def column_texts(ds: Dataset, columns: tuple[str, ...] | list[str]) -> list[str]:
    """One text per item from ``columns`` ("genre: X. language: Y"; empty values left out)."""
    vals = [ds.items[c].astype(str).to_numpy() for c in columns]
    return [". ".join(f"{c}: {v}" for c, v in zip(columns, row) if v) for row in zip(*vals)]


def random_item_vectors(ds: Dataset, dim: int = NONE_DIM) -> np.ndarray:
    """float32 ``[n_items, dim]`` unit vectors, each seeded by its item's id (the same item, the same vector)."""
    out = np.empty((ds.num_items, dim), np.float32)
    for r, item_id in enumerate(ds.items["item_id"].astype(str)):
        seed = int.from_bytes(hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).normal(size=dim)
        out[r] = v / max(float(np.linalg.norm(v)), 1e-12)
    return out


def content_features(ds: Dataset, model: str | None = None) -> tuple[np.ndarray, str]:
    """(float32 ``[n_items, d]`` content features, their source). Text is encoded in its own process
    (``text.encode_texts_isolated``: training never imports torch)."""
    source = content_source(ds)
    if source == VECTORS:
        return np.asarray(ds.item_vectors, np.float32), source
    if source == NONE:
        return random_item_vectors(ds), source
    from twotower_hgnn.text import encode_texts_isolated, item_texts

    if source == TEXT:
        texts = item_texts(ds)
    else:
        texts = column_texts(ds, [c.strip() for c in source.split(":", 1)[1].split(",")])
    emb = encode_texts_isolated(texts, model=model)
    if emb.shape[0] != ds.num_items:
        raise RuntimeError(f"text encoder returned {emb.shape[0]} rows for {ds.num_items} items")
    return np.asarray(emb, np.float32), source
