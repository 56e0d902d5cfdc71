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
faiss is optional (``pip install twotower_hgnn[ann]``): only the faiss kinds import it.

**Bounded compilation.** ``ExactIndex`` compiles one program per ``k`` *bucket* (:func:`k_bucket`: 10,
100, 1000, 10000 or the whole catalogue, never more than the catalogue), searches the bucket and keeps
the first ``k`` columns (the same items: the order is a total order, score then item index), so a
service answering arbitrary ``k`` holds at most ``len(K_BUCKETS) + 1`` programs per batch bucket.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from twotower_hgnn.io import atomic_dir
from twotower_hgnn.topk import top_k_columns
from twotower_hgnn.retrieval_kernels import FEW, GROUP, _block_top_k, _device_chunks, _make_exact_search  # noqa: F401

# The default serving index, chosen by measurement (benchmarks/retrieval.py; BUILD_NOTES.md, appendix B):
# IVF (nlist ~ 4 sqrt(N), a power of two) over 8-bit scalar-quantised vectors, 64 lists probed:
# recall@100 0.978 at 0.8 ms p50 on one core over 250K x 128 (HNSW: slower at equal recall and a
# 3-7 min build; IVF-flat: 4x the bytes per probed vector; nprobe 48 only reached 0.965 — too
# little margin for real embeddings, whose recall may be lower than on the synthetic set).
DEFAULT_KIND = "ivf_sq8"
DEFAULT_PARAMS = {"nprobe": 64}
# Beyond 2048 lists (> ~262K items) nprobe grows as nlist / 64, and k-means trains on >= 39 rows per list
# (faiss's minimum; 100K rows below 2565 lists). At 3.5M items (8192 lists; benchmarks/results/
# retrieval_paper.json, one core, CPU-time p99 of two runs on a shared box): the old fixed nprobe 64 on 100K
# training rows reached recall@100 0.91; 128 lists on 100K rows 0.95 (no margin); nlist / 32 = 256 0.97 at
# 9.5-10.8 ms (at the budget); 128 lists on ~320K training rows 0.97 at 5.2-5.7 ms (build 339-370 s, not
# 221-254 s, on two shared cores).
NPROBE_DIVISOR = 64
TRAIN_ROWS_PER_LIST = 39
MIN_TRAIN_ROWS = 100_000
# The export's index kinds (``export.index``): "exact"; "ivf" (the measured IVF default above); "auto"
# (IVF from IVF_MIN_ITEMS items when faiss is installed, exact below: brute force is fast enough there).
EXPORT_KINDS = ("exact", "ivf", "auto")
IVF_MIN_ITEMS = 50_000
K_BUCKETS = (10, 100, 1000, 10_000)


def k_bucket(k: int, num_items: int) -> int:
    """The compiled top-k size serving ``k``: the first of :data:`K_BUCKETS` >= k, capped at ``num_items``."""
    k = min(int(k), int(num_items))
    return min(next((b for b in K_BUCKETS if k <= b), num_items), num_items)


def _import_faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "this index kind needs faiss, which is optional: pip install 'twotower_hgnn[ann]' (or faiss-cpu)"
        ) from None
    return faiss


def faiss_available() -> bool:
    try:
        _import_faiss()
    except ImportError:
        return False
    return True


def resolve_index_kind(kind: str, num_items: int) -> str:
    """A concrete index kind (``INDEX_KINDS``) for an export kind (``EXPORT_KINDS``) or a concrete one."""
    if kind == "ivf":
        _import_faiss()
        return DEFAULT_KIND
    if kind == "auto":
        return DEFAULT_KIND if num_items >= IVF_MIN_ITEMS and faiss_available() else "exact"
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {EXPORT_KINDS + INDEX_KINDS}")
    return kind


def exact_topk(queries: np.ndarray, vectors: np.ndarray, k: int, score_bytes: int = 1 << 28) -> np.ndarray:
    """int64 ``[Q, k]`` rows of the top-``k`` dot products (NumPy reference, ties to the lower row: the order
    of a stable argsort of ``-scores``).

    Memory: one block of scores of at most ``score_bytes`` (queries per block = score_bytes / (4 N)) and
    its selection, never ``[Q, N]``: at 3.5M items a block of 256 queries' int64 argsort alone was 7 GB.
    Selection by :func:`twotower_hgnn.topk.top_k_columns`: sorted by (score descending, row)."""
    vectors = np.asarray(vectors, np.float32)
    n = vectors.shape[0]
    k = int(min(k, n))
    out = np.zeros((len(queries), k), np.int64)
    if k == 0:
        return out
    chunk = max(1, int(score_bytes) // (4 * max(n, 1)))
    for s in range(0, len(queries), chunk):
        scores = np.asarray(queries[s : s + chunk], np.float32) @ vectors.T  # [c, N]
        out[s : s + len(scores)] = top_k_columns(scores, k)[0]
    return out


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


def default_nlist(num_items: int) -> int:
    """IVF lists for ``num_items``: ~4 sqrt(N), the usual faiss guidance, a power of two, with >= 39
    items per list (faiss's minimum per centroid)."""
    return int(min(next_pow2(int(4 * np.sqrt(num_items))), max(1, int(num_items) // 39)))


def default_nprobe(nlist: int) -> int:
    """Lists probed by default: ``DEFAULT_PARAMS["nprobe"]`` (64), or ``nlist / NPROBE_DIVISOR`` where that
    is more (128 of the 8192 lists at 3.5M items; see the comment at ``NPROBE_DIVISOR``)."""
    return max(DEFAULT_PARAMS["nprobe"], int(nlist) // NPROBE_DIVISOR)


def default_train_size(nlist: int) -> int:
    """Rows sampled to train the IVF k-means: ``MIN_TRAIN_ROWS``, or ``TRAIN_ROWS_PER_LIST`` per list
    where that is more (faiss warns below 39 points per centroid; 319,488 rows for 8192 lists)."""
    return max(MIN_TRAIN_ROWS, TRAIN_ROWS_PER_LIST * int(nlist))


def _empty_result(b: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((b, k), -np.inf, np.float32), np.full((b, k), -1, np.int64)


# ------------------------------------------------------------------------------------- exact


class ExactIndex:
    """Exact top-k by chunked matmul on the default jax device (see module docstring).

    vectors: float [N, d] item vectors (row = item index). dtype: storage and matmul dtype
    ("float32" or "bfloat16"; scores always accumulate in float32). max_batch: queries per jitted
    call (larger batches are split), bounding the [max_batch, chunk] score block. keep_host: keep a
    reference to ``vectors`` for :meth:`save`; ``False`` for a search-only index whose caller drops its
    host vectors once it is built (at 3.5M x 128 they are 1.8 GB beside the device copy).
    """

    kind = "exact"

    def __init__(
        self,
        vectors: Any,
        chunk_size: int = 16384,
        dtype: str = "float32",
        max_batch: int = 1024,
        min_exclude_width: int = 8,
        keep_host: bool = True,
    ) -> None:

        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"ExactIndex dtype must be 'float32' or 'bfloat16', got {dtype!r}")
        v = _check_vectors(vectors)
        self.num_items, self.dim = v.shape
        self.dtype = dtype
        self.chunk_size = int(min(chunk_size, next_pow2(self.num_items)))
        self.max_batch = next_pow2(max_batch)
        self.min_exclude_width = next_pow2(min_exclude_width)
        self._host = v if keep_host else None
        self._items = _device_chunks(v, self.chunk_size, dtype)
        self._fns: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._traces = [0]  # incremented at trace time: tests assert no recompilation

    @property
    def trace_count(self) -> int:
        """Programs traced so far (one per k bucket and batch/exclusion shape)."""
        return self._traces[0]

    def _fn(self, k: int):
        with self._lock:
            return self._fn_locked(k)

    def _fn_locked(self, k: int):
        if k not in self._fns:
            inner = _make_exact_search(self.chunk_size, self.num_items, k)
            traces = self._traces  # not ``self``: a closure over the index would make a reference cycle,
            # keeping its item chunks (1.8 GB for 3.5M x 128) alive until the cyclic GC happens to run

            def counted(items, queries, excl):
                traces[0] += 1
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
        kb = k_bucket(k, self.num_items)
        width = next_pow2(max_len, self.min_exclude_width)
        bucket = min(next_pow2(b), self.max_batch)
        n_blocks = -(-b // bucket)
        qp = np.zeros((n_blocks * bucket, self.dim), np.float32)
        qp[:b] = q
        excl = (
            ex.padded(width, n_blocks * bucket) if ex is not None else np.full((n_blocks * bucket, width), -1, np.int32)
        )
        fn = self._fn(kb)
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
        scores, idx = np.asarray(scores[:b, :k], np.float32), np.asarray(idx[:b, :k], np.int64)
        if k > kb:  # more than the catalogue: the contract's -inf / -1 tail
            pad_s, pad_i = _empty_result(b, k)
            pad_s[:, :kb], pad_i[:, :kb] = scores, idx
            return pad_s, pad_i
        return scores, idx

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
        if self._host is None:
            raise ValueError("ExactIndex built with keep_host=False is search-only: it cannot be saved")
        with atomic_dir(path) as d:
            np.save(d / "vectors.npy", self._host)
            (d / "index.json").write_text(json.dumps(self.config(), indent=2, sort_keys=True))
        return Path(path)


# ------------------------------------------------------------------------------------- faiss

FAISS_KINDS = ("flat", "flat_sq8", "flat_fp16", "hnsw", "ivf_flat", "ivf_sq8")


def __getattr__(name: str) -> Any:
    # FaissIndex lives in retrieval_faiss (imported on first use: faiss is optional)
    if name == "FaissIndex":
        from twotower_hgnn.retrieval_faiss import FaissIndex

        return FaissIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------- factory

INDEX_KINDS = ("exact", "exact_bf16") + FAISS_KINDS


def make_index(kind: str, vectors: Any, **kw: Any) -> Any:
    """``exact`` / ``exact_bf16`` (jax brute force) or one of ``FAISS_KINDS``."""
    if kind == "exact":
        return ExactIndex(vectors, **kw)
    if kind == "exact_bf16":
        return ExactIndex(vectors, dtype="bfloat16", **kw)
    if kind in FAISS_KINDS:
        from twotower_hgnn.retrieval_faiss import FaissIndex

        return FaissIndex(vectors, kind=kind, **kw)
    raise ValueError(f"unknown index kind {kind!r}; choose one of {INDEX_KINDS}")


def load_index(path: str | os.PathLike) -> Any:
    """Loads an index written by ``.save(path)`` (faiss is imported only for a faiss kind)."""
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
        index = _import_faiss().read_index(str(path / "index.faiss"))
        params = {
            k: cfg[k]
            for k in ("M", "ef_construction", "ef_search", "nlist", "nprobe", "train_size", "seed")
            if k in cfg
        }
        from twotower_hgnn.retrieval_faiss import FaissIndex

        return FaissIndex(None, kind=kind, _index=index, **params)
    raise ValueError(f"{meta_path}: unknown index kind {kind!r}")
