"""Epoch iterator with background prefetch (threads or processes) and device placement of the next batch.

Batch ``i`` of an epoch is produced by worker ``(i - start) % workers`` and travels through that
worker's own bounded queue (``ceil(prefetch / workers)`` slots), and the consumer reads the queues
round-robin. So batches come out in index order with no reorder buffer, at most ``prefetch`` (+1 per
worker in flight) are held, and — because ``sampler.batch(epoch, i)`` is a pure function of
``(seed, epoch, i)`` — the stream is identical for any number of workers and either mode.

* ``mode="thread"``: workers share the sampler; NumPy releases the GIL in its large kernels but not
  between the many small calls, so threads scale sub-linearly (measured: BUILD_NOTES.md, appendix C).
* ``mode="process"``: ``spawn``ed workers (never ``fork``: the parent usually runs JAX threads); the
  sampler is pickled once per worker, memory-mapped graph arrays by file name (cheap), so load the
  graph with ``HeteroCSR.load`` for big graphs. Batches come back pickled through the queues.
* ``device_put(batch) -> Any`` (e.g. ``parallel.shard_batch`` splitting the global batch over the
  mesh) is called on batch ``i + 1`` before batch ``i`` is returned: JAX transfers are asynchronous,
  so the copy overlaps the caller's step on batch ``i``.

Errors: an exception in a worker is re-raised in the consumer (original type; the worker's traceback
is attached as a note); a dead worker process or a batch not arriving within ``timeout`` seconds
raises instead of hanging. Workers are daemons and stop when the loader is closed (``close()``,
``with``, exhaustion, garbage collection).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import pickle
import queue
import threading
import traceback
from typing import Any, Callable, Mapping

import numpy as np

from sampler.batch import PaddedBatch
from sampler.csr import CSR, HeteroCSR

_POLL = 0.05  # seconds between liveness checks while waiting


# ---------------------------------------------------------------------------- pickling helpers
def _portable_array(a: np.ndarray) -> Any:
    """A memory-mapped array pickles as its file name; anything else as itself."""
    if isinstance(a, np.memmap) and getattr(a, "filename", None) and a.base is not None:
        return (
            "__mmap__",
            str(a.filename),
            int(a.offset),
            a.shape,
            a.dtype.str,
            bool(a.flags.f_contiguous and not a.flags.c_contiguous),
        )
    return np.asarray(a)


def _restore_array(x: Any) -> np.ndarray:
    if isinstance(x, tuple) and x and x[0] == "__mmap__":
        _, fn, off, shape, dt, fortran = x
        return np.memmap(fn, dtype=np.dtype(dt), mode="r", offset=off, shape=shape, order="F" if fortran else "C")
    return x


def portable_graph(g: HeteroCSR) -> dict:
    return {
        "node_types": g.node_types,
        "type_offsets": np.asarray(g.type_offsets),
        "edges": {r: _portable_array(e) for r, e in g.edges.items()},
        "adj": {d: (_portable_array(c.indptr), _portable_array(c.indices)) for d, c in g.adj.items()},
    }


def restore_graph(d: dict) -> HeteroCSR:
    return HeteroCSR(
        d["node_types"],
        d["type_offsets"],
        {r: _restore_array(e) for r, e in d["edges"].items()},
        {k: CSR(_restore_array(p), _restore_array(i)) for k, (p, i) in d["adj"].items()},
    )


# ---------------------------------------------------------------------------- workers
def _make_fn(sampler: Any, epoch: int, edges: Mapping | None, eval_seed: int) -> Callable[[int], PaddedBatch]:
    if edges is None:
        return lambda i: sampler.batch(epoch, i)
    canon = sampler._canon_eval(edges)
    return lambda i: sampler.edge_batch(canon, eval_seed, i, _canon=True)


def _put(q: Any, item: Any, stop: Any) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _run_worker(fn: Callable[[int], Any], indices: range, q: Any, stop: Any, pickle_errors: bool) -> None:
    for i in indices:
        if stop.is_set():
            return
        try:
            item = ("ok", i, fn(i))
        except BaseException as exc:  # noqa: BLE001 - everything must reach the consumer
            tb = traceback.format_exc()
            if pickle_errors:
                try:
                    pickle.dumps(exc)
                except Exception:  # noqa: BLE001
                    exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            _put(q, ("err", i, (exc, tb)), stop)
            return
        if not _put(q, item, stop):
            return


def _process_main(payload: bytes, epoch: int, edges: Any, eval_seed: int, indices: range, q: Any, stop: Any) -> None:
    sampler = pickle.loads(payload)
    _run_worker(_make_fn(sampler, epoch, edges, eval_seed), indices, q, stop, pickle_errors=True)


# ---------------------------------------------------------------------------- loader
class Loader:
    """Iterator over the batches ``start..n-1`` of one epoch (or of an evaluation edge set).

    Args:
      sampler: a :class:`~sampler.numpy_backend.NumpySampler` (anything with ``batch(epoch, i)`` and
        ``num_batches(epoch)``; picklable for process mode).
      epoch: the epoch to iterate.
      start: first batch index (resume mid-epoch).
      workers: background workers (>= 1).
      prefetch: batches buffered ahead in total (>= workers).
      mode: "thread" or "process".
      device_put: optional callable applied to the next batch while the current one is in use.
      timeout: seconds to wait for one batch before raising TimeoutError.
      edges / eval_seed: iterate ``sampler.edge_batches(edges, eval_seed)`` instead of the epoch.
      mp_context: multiprocessing start method for process mode (default "spawn").
    """

    def __init__(
        self,
        sampler: Any,
        epoch: int = 0,
        *,
        start: int = 0,
        workers: int = 1,
        prefetch: int = 4,
        mode: str = "thread",
        device_put: Callable[[PaddedBatch], Any] | None = None,
        timeout: float = 600.0,
        edges: Mapping | None = None,
        eval_seed: int = 0,
        mp_context: str = "spawn",
    ) -> None:
        if mode not in ("thread", "process"):
            raise ValueError(f"Loader mode={mode!r}: expected 'thread' or 'process'")
        if workers < 1:
            raise ValueError(f"Loader workers={workers}: need at least 1")
        if prefetch < 1:
            raise ValueError(f"Loader prefetch={prefetch}: need at least 1")
        n = sampler.num_batches(epoch) if edges is None else sampler.num_edge_batches(edges)
        if not 0 <= start <= n:
            raise ValueError(f"Loader start={start}: outside [0, {n}] for epoch {epoch}")
        self.n, self.start, self.epoch = n, int(start), int(epoch)
        self.workers, self.mode, self.timeout = int(workers), mode, float(timeout)
        self._device_put = device_put
        self._next = self.start
        self._pending: Any = None  # (index, device batch) already placed
        self._closed = False
        per = max(1, math.ceil(prefetch / workers))
        W = min(self.workers, max(1, n - self.start))
        self._W = W
        if mode == "thread":
            self._stop: Any = threading.Event()
            self._queues = [queue.Queue(maxsize=per) for _ in range(W)]
            fn = _make_fn(sampler, epoch, edges, eval_seed)
            self._procs = [
                threading.Thread(
                    target=_run_worker,
                    args=(fn, range(self.start + w, n, W), self._queues[w], self._stop, False),
                    name=f"sampler-loader-{w}",
                    daemon=True,
                )
                for w in range(W)
            ]
        else:
            ctx = mp.get_context(mp_context)
            self._stop = ctx.Event()
            self._queues = [ctx.Queue(maxsize=per) for _ in range(W)]
            payload = pickle.dumps(sampler, protocol=pickle.HIGHEST_PROTOCOL)
            self._procs = [
                ctx.Process(
                    target=_process_main,
                    args=(payload, epoch, edges, eval_seed, range(self.start + w, n, W), self._queues[w], self._stop),
                    name=f"sampler-loader-{w}",
                    daemon=True,
                )
                for w in range(W)
            ]
        for p in self._procs:
            p.start()

    def __len__(self) -> int:
        return self.n - self.start

    def __iter__(self) -> "Loader":
        return self

    def _get(self, i: int) -> PaddedBatch:
        w = (i - self.start) % self._W
        q, proc = self._queues[w], self._procs[w]
        waited = 0.0
        while True:
            try:
                kind, j, payload = q.get(timeout=_POLL)
                break
            except queue.Empty:
                waited += _POLL
                if not proc.is_alive():
                    try:  # it may have put its last item just before exiting
                        kind, j, payload = q.get(timeout=_POLL)
                        break
                    except queue.Empty:
                        pass
                    code = getattr(proc, "exitcode", None)
                    self.close()
                    raise RuntimeError(f"sampler loader worker {w} died (exit code {code}) before producing batch {i}")
                if waited >= self.timeout:
                    self.close()
                    raise TimeoutError(f"sampler loader: batch {i} not ready after {self.timeout:.0f} s")
        if kind == "err":
            exc, tb = payload
            self.close()
            if hasattr(exc, "add_note"):
                exc.add_note(f"[raised in sampler loader worker {w} on batch {j}]\n{tb}")
            raise exc
        assert j == i, (j, i)
        return payload

    def __next__(self) -> Any:
        if self._closed and self._pending is None:
            raise StopIteration
        if self._pending is None:
            if self._next >= self.n:
                self.close()
                raise StopIteration
            b = self._get(self._next)
            self._pending = self._device_put(b) if self._device_put else b
            self._next += 1
        cur = self._pending
        self._pending = None
        if self._device_put is not None and self._next < self.n:
            # place batch i+1 now: the transfer overlaps the caller's work on batch i
            self._pending = self._device_put(self._get(self._next))
            self._next += 1
        if self._next >= self.n and self._pending is None:
            self.close()
        return cur

    def close(self) -> None:
        """Stops and joins the workers (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for q in self._queues:  # unblock producers waiting on a full queue
            try:
                while True:
                    q.get_nowait()
            except (queue.Empty, OSError, ValueError):
                pass
        for p in self._procs:
            p.join(timeout=2.0)
            if self.mode == "process" and p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
        if self.mode == "process":
            for q in self._queues:
                q.cancel_join_thread()
                q.close()

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


__all__ = ["Loader", "portable_graph", "restore_graph"]
