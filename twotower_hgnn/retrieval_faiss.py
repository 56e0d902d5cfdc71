"""The faiss indexes behind ``retrieval``'s ``search`` interface (faiss is optional: the ``[ann]`` extra)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from twotower_hgnn.io import atomic_dir
from twotower_hgnn.retrieval import (
    DEFAULT_KIND,
    DEFAULT_PARAMS,
    FAISS_KINDS,
    ExcludeLike,
    _check_vectors,
    _empty_result,
    _import_faiss,
    _search_inputs,
    default_nlist,
    default_nprobe,
    default_train_size,
)

_SEARCH_PARAMS = {"hnsw": ("ef_search",), "ivf_flat": ("nprobe",), "ivf_sq8": ("nprobe",)}


class FaissIndex:
    """A faiss inner-product index behind the ``search`` interface.

    kind: "flat" (exact f32), "flat_sq8" / "flat_fp16" (exact scan of 8-bit / fp16 codes),
          "hnsw" (M, ef_construction, ef_search), "ivf_flat" / "ivf_sq8" (nlist, nprobe; by default
          ``retrieval.default_nlist(N)`` and ``retrieval.default_nprobe(nlist)``).
    Training (IVF k-means, SQ ranges) uses ``train_size`` rows sampled with ``seed`` (by default
    ``retrieval.default_train_size(nlist)``: 100K, or 39 per list where that is more).
    """

    def __init__(
        self,
        vectors: Any,
        kind: str = DEFAULT_KIND,
        M: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int | None = None,
        train_size: int | None = None,
        seed: int = 0,
        _index: Any = None,
    ) -> None:
        faiss = _import_faiss()
        if kind not in FAISS_KINDS:
            raise ValueError(f"unknown faiss index kind {kind!r}; choose one of {FAISS_KINDS}")
        self.kind = kind
        self.params = {
            "M": int(M),
            "ef_construction": int(ef_construction),
            "ef_search": int(ef_search),
            "nprobe": DEFAULT_PARAMS["nprobe"] if nprobe is None else int(nprobe),
            "train_size": None if train_size is None else int(train_size),
            "seed": int(seed),
        }
        if _index is not None:  # load()
            self._index = _index
            self.num_items, self.dim = int(_index.ntotal), int(_index.d)
            self.params["nlist"] = nlist
            if nprobe is None and kind.startswith("ivf"):  # the nprobe the file was written with
                nprobe = int(faiss.extract_index_ivf(_index).nprobe)
            self.set_search_params(ef_search=ef_search, nprobe=nprobe)
            return
        v = _check_vectors(vectors)
        self.num_items, self.dim = v.shape
        d = self.dim
        ip = faiss.METRIC_INNER_PRODUCT
        if nlist is None:
            nlist = default_nlist(self.num_items)
        nlist = int(min(nlist, max(1, self.num_items // 39)))  # faiss wants >= 39 points per centroid
        self.params["nlist"] = nlist
        if nprobe is None:
            nprobe = default_nprobe(nlist)
        if train_size is None:
            train_size = default_train_size(nlist)
        self.params["train_size"] = int(train_size)
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "flat_sq8":
            index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip)
        elif kind == "flat_fp16":
            index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, ip)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, int(M), ip)
            index.hnsw.efConstruction = int(ef_construction)
        elif kind == "ivf_flat":
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, ip)
        else:  # ivf_sq8
            index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
        if not index.is_trained:
            rng = np.random.default_rng(seed)
            n_train = min(self.num_items, int(train_size))
            sample = v if n_train == self.num_items else v[np.sort(rng.choice(self.num_items, n_train, replace=False))]
            if hasattr(index, "cp"):  # IVF k-means: seeded, fewer iterations than default are fine
                index.cp.seed = int(seed)
            index.train(sample)
        index.add(v)
        self._index = index
        self.set_search_params(ef_search=ef_search, nprobe=nprobe)

    def set_search_params(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Query-time accuracy/speed knobs (HNSW efSearch, IVF nprobe)."""
        faiss = _import_faiss()

        if ef_search is not None:
            self.params["ef_search"] = int(ef_search)
            if self.kind == "hnsw":
                self._index.hnsw.efSearch = int(ef_search)
        if nprobe is not None:
            self.params["nprobe"] = int(nprobe)
            if self.kind.startswith("ivf"):
                faiss.extract_index_ivf(self._index).nprobe = int(nprobe)

    def search(self, queries: Any, k: int, exclude: ExcludeLike = None) -> tuple[np.ndarray, np.ndarray]:
        k, q, ex, extra = _search_inputs(queries, k, exclude, self.dim, self.num_items)
        b = q.shape[0]
        if b == 0:
            return _empty_result(0, k)
        fetch = min(k + extra, self.num_items)
        if self.kind == "hnsw":  # HNSW returns at most efSearch candidates: keep ef >= fetch
            self._index.hnsw.efSearch = max(self.params["ef_search"], fetch)
        scores, idx = self._index.search(q, fetch)
        idx = idx.astype(np.int64, copy=False)
        scores = np.where(idx < 0, -np.inf, scores).astype(np.float32)
        if ex is not None and extra:
            keys = np.repeat(np.arange(b, dtype=np.int64), ex.row_lengths()) * self.num_items + ex.indices
            hit = np.isin(np.where(idx < 0, -1, np.arange(b, dtype=np.int64)[:, None] * self.num_items + idx), keys)
            scores = np.where(hit, -np.inf, scores)
            idx = np.where(hit, -1, idx)
            # Stable compaction: surviving candidates keep their (score-sorted) order.
            order = np.argsort(hit, axis=1, kind="stable")
            scores, idx = np.take_along_axis(scores, order, 1), np.take_along_axis(idx, order, 1)
        if fetch < k or scores.shape[1] < k:
            pad_s, pad_i = _empty_result(b, k)
            pad_s[:, : scores.shape[1]], pad_i[:, : idx.shape[1]] = scores[:, :k], idx[:, :k]
            return pad_s, pad_i
        return np.ascontiguousarray(scores[:, :k]), np.ascontiguousarray(idx[:, :k])

    def config(self) -> dict:
        return {"kind": self.kind, "num_items": self.num_items, "dim": self.dim, **self.params}

    def save(self, path: str | os.PathLike) -> Path:
        faiss = _import_faiss()
        with atomic_dir(path) as d:
            faiss.write_index(self._index, str(d / "index.faiss"))
            (d / "index.json").write_text(json.dumps(self.config(), indent=2, sort_keys=True))
        return Path(path)
