"""Item indexes behind one interface: ``search(queries, k, exclude) -> (scores, indices)``.

Scores are dot products (the two-tower score). Indices are item row indices (row i = item i of
the tower's item table); where fewer than ``k`` items remain (tiny catalogue, many exclusions, or
an approximate index that found fewer), the tail is ``-inf`` / ``-1``.

* ``ExactIndex`` — brute force on the jax device: the item matrix is stored as
  ``[n_chunks, chunk, d]`` and a jitted ``lax.scan`` computes one chunk of scores at a time and
  merges it into a running top-k, so memory is O(B * chunk), not O(B * N). Static shapes: queries
  are padded to a power-of-two bucket and exclusion lists to a power-of-two width, so a serving
  loop compiles once per bucket. Exclusions become ``-inf`` by a scatter into each chunk. Ties
  are broken towards the lower item index (same order as a stable argsort of ``-scores``).
* ``FaissIndex`` — faiss (CPU) with the inner-product metric: ``hnsw``, ``ivf_flat``, ``ivf_sq8``
  (approximate) and ``flat``, ``flat_sq8``, ``flat_fp16`` (exact scans, the last two at reduced
  precision). Exclusions by over-fetching ``k + max excluded`` and filtering.

Which kind serves by default is chosen by ``benchmarks/retrieval.py`` (see BUILD_NOTES.md, appendix B).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from twotower_hgnn.io import atomic_dir

# The default serving index, chosen by measurement (benchmarks/retrieval.py; BUILD_NOTES.md, appendix B):
# IVF (nlist ~ 4 sqrt(N), a power of two) over 8-bit scalar-quantised vectors, 64 lists probed:
# recall@100 0.978 at 0.8 ms p50 on one core over 250K x 128 (HNSW: slower at equal recall and a
# 3-7 min build; IVF-flat: 4x the bytes per probed vector; nprobe 48 only reached 0.965 — too
# little margin for real embeddings, whose recall may be lower than on the synthetic set).
DEFAULT_KIND = "ivf_sq8"
DEFAULT_PARAMS = {"nprobe": 64}


@dataclasses.dataclass(frozen=True)
class ExcludeCSR:
    """Per-query excluded item rows in CSR form.

    indptr:  int64 [B + 1], non-decreasing, indptr[0] = 0.
    indices: int64 [indptr[-1]], item rows in [0, num_items); row b excludes
             indices[indptr[b]:indptr[b + 1]] (duplicates allowed).
    """

    indptr: np.ndarray
    indices: np.ndarray

    @staticmethod
    def from_lists(rows: Sequence[np.ndarray | Sequence[int]]) -> "ExcludeCSR":
        arrays = [np.asarray(r, dtype=np.int64).reshape(-1) for r in rows]
        lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
        indptr = np.zeros(len(arrays) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
        return ExcludeCSR(indptr, indices.astype(np.int64, copy=False))

    @property
    def num_rows(self) -> int:
        return len(self.indptr) - 1

    def row_lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def validate(self, num_queries: int, num_items: int) -> None:
        if self.indptr.ndim != 1 or self.num_rows != num_queries:
            raise ValueError(f"exclude has {self.num_rows} rows but there are {num_queries} queries")
        if self.indptr[0] != 0 or np.any(np.diff(self.indptr) < 0) or self.indptr[-1] != len(self.indices):
            raise ValueError("exclude.indptr must start at 0, be non-decreasing and end at len(exclude.indices)")
        bad = np.flatnonzero((self.indices < 0) | (self.indices >= num_items))
        if bad.size:
            pos = int(bad[0])
            row = int(np.searchsorted(self.indptr, pos, side="right") - 1)
            raise ValueError(
                f"exclude row {row} names item {int(self.indices[pos])}, outside [0, {num_items}) items of the index"
            )

    def padded(self, width: int, num_rows: int, fill: int = -1) -> np.ndarray:
        """Dense ``int32 [num_rows, width]`` (rows past ``self.num_rows`` and tails = ``fill``)."""
        lengths = self.row_lengths()
        out = np.full((num_rows, width), fill, np.int32)
        rows = np.repeat(np.arange(self.num_rows), lengths)
        cols = np.arange(len(self.indices)) - np.repeat(self.indptr[:-1], lengths)
        out[rows, cols] = self.indices
        return out


ExcludeLike = ExcludeCSR | Sequence[np.ndarray] | None


def _as_exclude(exclude: ExcludeLike, num_queries: int, num_items: int) -> ExcludeCSR | None:
    if exclude is None:
        return None
    csr = exclude if isinstance(exclude, ExcludeCSR) else ExcludeCSR.from_lists(list(exclude))
    csr.validate(num_queries, num_items)
    return csr


def _check_queries(queries: Any, dim: int) -> np.ndarray:
    q = np.asarray(queries)
    if q.ndim == 1:
        raise ValueError(f"queries must be 2-D [B, {dim}]; got shape {q.shape} (wrap one query as q[None])")
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must have shape [B, {dim}], got {q.shape}")
    if not np.issubdtype(q.dtype, np.floating):
        raise ValueError(f"queries must be floating point, got dtype {q.dtype}")
    q = np.ascontiguousarray(q, dtype=np.float32)
    if not np.isfinite(q).all():
        row = int(np.flatnonzero(~np.isfinite(q).all(axis=1))[0])
        raise ValueError(f"query row {row} contains NaN or inf")
    return q


def _check_vectors(vectors: Any) -> np.ndarray:
    v = np.asarray(vectors)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise ValueError(f"item vectors must have shape [N > 0, d > 0], got {v.shape}")
    v = np.ascontiguousarray(v, dtype=np.float32)
    if not np.isfinite(v).all():
        row = int(np.flatnonzero(~np.isfinite(v).all(axis=1))[0])
        raise ValueError(f"item vector row {row} contains NaN or inf")
    return v


def _check_k(k: int) -> int:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return int(k)


def _search_inputs(queries: Any, k: int, exclude: ExcludeLike, dim: int, num_items: int):
    """Validated ``(k, queries float32 [B, d], exclusions or None, longest exclusion row)`` of a search."""
    k = _check_k(k)
    q = _check_queries(queries, dim)
    ex = _as_exclude(exclude, q.shape[0], num_items) if q.shape[0] else None
    longest = int(ex.row_lengths().max()) if ex is not None and ex.num_rows else 0
    return k, q, ex, longest


def next_pow2(n: int, minimum: int = 1) -> int:
    n = max(int(n), minimum)
    return 1 << (n - 1).bit_length()


def _empty_result(b: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((b, k), -np.inf, np.float32), np.full((b, k), -1, np.int64)


# ------------------------------------------------------------------------------------- exact


def _make_exact_search(chunk: int, num_items: int, k: int):
    """Scan (to be jitted): (items [C, chunk, d], queries [B, d], excl int32 [B, E]) -> top-k."""
    import jax
    import jax.numpy as jnp

    kc = min(k, chunk)

    def search(items, queries, excl):
        b = queries.shape[0]
        queries = queries.astype(items.dtype)
        rows = jnp.arange(b)[:, None]
        col = jnp.arange(chunk)

        def body(carry, xs):
            top_s, top_i = carry
            block, start = xs
            # q @ block.T measured faster than the equivalent einsum on XLA:CPU (1 core, B=1).
            s = jnp.matmul(queries, block.T, preferred_element_type=jnp.float32)
            s = jnp.where((start + col < num_items)[None, :], s, -jnp.inf)  # padded tail rows
            local = excl - start
            local = jnp.where((local >= 0) & (local < chunk), local, chunk)  # out of chunk -> dropped
            s = s.at[rows, local].set(-jnp.inf, mode="drop")
            cs, ci = jax.lax.top_k(s, kc)
            # Carry first: on equal scores top_k keeps the lower position, i.e. the lower item id.
            ms = jnp.concatenate([top_s, cs], axis=1)
            mi = jnp.concatenate([top_i, ci + start], axis=1)
            ns, pos = jax.lax.top_k(ms, k)
            return (ns, jnp.take_along_axis(mi, pos, axis=1)), None

        init = (jnp.full((b, k), -jnp.inf, jnp.float32), jnp.full((b, k), -1, jnp.int32))
        starts = jnp.arange(items.shape[0], dtype=jnp.int32) * chunk
        (top_s, top_i), _ = jax.lax.scan(body, init, (items, starts))
        return top_s, jnp.where(jnp.isneginf(top_s), -1, top_i)

    return search


class ExactIndex:
    """Exact top-k by chunked matmul on the default jax device (see module docstring).

    vectors: float [N, d] item vectors (row = item index). dtype: storage and matmul dtype
    ("float32" or "bfloat16"; scores always accumulate in float32). max_batch: queries per jitted
    call (larger batches are split), bounding the [max_batch, chunk] score block.
    """

    kind = "exact"

    def __init__(
        self,
        vectors: Any,
        chunk_size: int = 16384,
        dtype: str = "float32",
        max_batch: int = 1024,
        min_exclude_width: int = 8,
    ) -> None:
        import jax
        import jax.numpy as jnp

        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"ExactIndex dtype must be 'float32' or 'bfloat16', got {dtype!r}")
        v = _check_vectors(vectors)
        self.num_items, self.dim = v.shape
        self.dtype = dtype
        self.chunk_size = int(min(chunk_size, next_pow2(self.num_items)))
        self.max_batch = next_pow2(max_batch)
        self.min_exclude_width = next_pow2(min_exclude_width)
        n_chunks = -(-self.num_items // self.chunk_size)
        padded = np.zeros((n_chunks * self.chunk_size, self.dim), np.float32)
        padded[: self.num_items] = v
        self._host = v
        self._items = jax.device_put(jnp.asarray(padded.reshape(n_chunks, self.chunk_size, self.dim), dtype=dtype))
        self._fns: dict[int, Any] = {}
        self.trace_count = 0  # incremented at trace time: tests assert no recompilation

    def _fn(self, k: int):
        if k not in self._fns:
            inner = _make_exact_search(self.chunk_size, self.num_items, k)

            def counted(items, queries, excl):
                self.trace_count += 1
                return inner(items, queries, excl)

            import jax

            self._fns[k] = jax.jit(counted)
        return self._fns[k]

    def search(self, queries: Any, k: int, exclude: ExcludeLike = None) -> tuple[np.ndarray, np.ndarray]:
        import jax

        k, q, ex, max_len = _search_inputs(queries, k, exclude, self.dim, self.num_items)
        b = q.shape[0]
        if b == 0:
            return _empty_result(0, k)
        width = next_pow2(max_len, self.min_exclude_width)
        bucket = min(next_pow2(b), self.max_batch)
        n_blocks = -(-b // bucket)
        qp = np.zeros((n_blocks * bucket, self.dim), np.float32)
        qp[:b] = q
        excl = (
            ex.padded(width, n_blocks * bucket) if ex is not None else np.full((n_blocks * bucket, width), -1, np.int32)
        )
        fn = self._fn(k)
        outs = [
            fn(self._items, qp[i * bucket : (i + 1) * bucket], excl[i * bucket : (i + 1) * bucket])
            for i in range(n_blocks)
        ]
        scores, idx = (
            jax.device_get(outs[0])
            if n_blocks == 1
            else (
                np.concatenate([jax.device_get(o[0]) for o in outs]),
                np.concatenate([jax.device_get(o[1]) for o in outs]),
            )
        )
        return np.asarray(scores[:b], np.float32), np.asarray(idx[:b], np.int64)

    # ---------------------------------------------------------------- persistence
    def config(self) -> dict:
        return {
            "kind": self.kind,
            "dtype": self.dtype,
            "chunk_size": self.chunk_size,
            "max_batch": self.max_batch,
            "num_items": self.num_items,
            "dim": self.dim,
        }

    def save(self, path: str | os.PathLike) -> Path:
        with atomic_dir(path) as d:
            np.save(d / "vectors.npy", self._host)
            (d / "index.json").write_text(json.dumps(self.config(), indent=2, sort_keys=True))
        return Path(path)


# ------------------------------------------------------------------------------------- faiss

FAISS_KINDS = ("flat", "flat_sq8", "flat_fp16", "hnsw", "ivf_flat", "ivf_sq8")
_SEARCH_PARAMS = {"hnsw": ("ef_search",), "ivf_flat": ("nprobe",), "ivf_sq8": ("nprobe",)}


class FaissIndex:
    """A faiss inner-product index behind the ``search`` interface.

    kind: "flat" (exact f32), "flat_sq8" / "flat_fp16" (exact scan of 8-bit / fp16 codes),
          "hnsw" (M, ef_construction, ef_search), "ivf_flat" / "ivf_sq8" (nlist, nprobe).
    Training (IVF k-means, SQ ranges) uses ``train_size`` rows sampled with ``seed``.
    """

    def __init__(
        self,
        vectors: Any,
        kind: str = DEFAULT_KIND,
        M: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int = DEFAULT_PARAMS["nprobe"],
        train_size: int = 100_000,
        seed: int = 0,
        _index: Any = None,
    ) -> None:
        import faiss

        if kind not in FAISS_KINDS:
            raise ValueError(f"unknown faiss index kind {kind!r}; choose one of {FAISS_KINDS}")
        self.kind = kind
        self.params = {
            "M": int(M),
            "ef_construction": int(ef_construction),
            "ef_search": int(ef_search),
            "nprobe": int(nprobe),
            "train_size": int(train_size),
            "seed": int(seed),
        }
        if _index is not None:  # load()
            self._index = _index
            self.num_items, self.dim = int(_index.ntotal), int(_index.d)
            self.params["nlist"] = nlist
            self.set_search_params(ef_search=ef_search, nprobe=nprobe)
            return
        v = _check_vectors(vectors)
        self.num_items, self.dim = v.shape
        d = self.dim
        ip = faiss.METRIC_INNER_PRODUCT
        if nlist is None:  # ~4 sqrt(N) lists, the usual faiss guidance, power of two
            nlist = next_pow2(int(4 * np.sqrt(self.num_items)))
        nlist = int(min(nlist, max(1, self.num_items // 39)))  # faiss wants >= 39 points per centroid
        self.params["nlist"] = nlist
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
        import faiss

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
        import faiss

        with atomic_dir(path) as d:
            faiss.write_index(self._index, str(d / "index.faiss"))
            (d / "index.json").write_text(json.dumps(self.config(), indent=2, sort_keys=True))
        return Path(path)


# ------------------------------------------------------------------------------------- factory

INDEX_KINDS = ("exact", "exact_bf16") + FAISS_KINDS


def make_index(kind: str, vectors: Any, **kw: Any) -> ExactIndex | FaissIndex:
    """``exact`` / ``exact_bf16`` (jax brute force) or one of ``FAISS_KINDS``."""
    if kind == "exact":
        return ExactIndex(vectors, **kw)
    if kind == "exact_bf16":
        return ExactIndex(vectors, dtype="bfloat16", **kw)
    if kind in FAISS_KINDS:
        return FaissIndex(vectors, kind=kind, **kw)
    raise ValueError(f"unknown index kind {kind!r}; choose one of {INDEX_KINDS}")


def load_index(path: str | os.PathLike) -> ExactIndex | FaissIndex:
    """Loads an index written by ``.save(path)``."""
    import faiss

    path = Path(path)
    meta_path = path / "index.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a saved index: {meta_path.name} is missing")
    cfg = json.loads(meta_path.read_text())
    kind = cfg.get("kind")
    if kind == "exact":
        return ExactIndex(
            np.load(path / "vectors.npy"), chunk_size=cfg["chunk_size"], dtype=cfg["dtype"], max_batch=cfg["max_batch"]
        )
    if kind in FAISS_KINDS:
        index = faiss.read_index(str(path / "index.faiss"))
        params = {
            k: cfg[k]
            for k in ("M", "ef_construction", "ef_search", "nlist", "nprobe", "train_size", "seed")
            if k in cfg
        }
        return FaissIndex(None, kind=kind, _index=index, **params)
    raise ValueError(f"{meta_path}: unknown index kind {kind!r}")
