"""The host-facing device backend (:class:`DeviceSampler`): the NumPy backend's methods, with
batches sampled on the device by jitted functions compiled once per spec.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import numpy as np

from sampler.batch import PaddedBatch
from sampler.csr import HeteroCSR, Relation, relation_name
from sampler.device.batch import sample_batch
from sampler.device.draws import epoch_key
from sampler.device.fused import FusedSampler
from sampler.device.graph import DeviceGraph
from sampler.spec import SamplingSpec

_TAG_EVAL = 0x4556414C  # "EVAL": key stream of evaluation edge batches
_COMPILED: dict[tuple, dict[str, Any]] = {}


def _compiled_fns(spec: SamplingSpec, edge_counts: Mapping[Relation, int]) -> dict[str, Any]:
    """The jitted functions of a spec, shared by every :class:`DeviceSampler` built for the same spec
    and edge counts (a rebuilt sampler does not recompile). ``traces`` counts traces per function."""
    key = (spec.to_json(), tuple(sorted((relation_name(r), int(c)) for r, c in edge_counts.items())))
    fns = _COMPILED.get(key)
    if fns is None:
        fused = FusedSampler(spec, edge_counts)
        lay = fused.layout
        traces = {"batch": 0, "draw": 0, "eval": 0}

        def counted(name: str, fn: Callable) -> Callable:
            @functools.wraps(fn)
            def traced(*a, **k):
                traces[name] += 1  # runs at trace time only
                return fn(*a, **k)

            return traced

        def eval_batch(g, pairs, pmask, key):
            return sample_batch(g, pairs, key, spec=spec, positive_mask=pmask, orient=False, layout=lay)

        fns = {
            "fused": fused,
            "traces": traces,
            "batch": jax.jit(counted("batch", fused.__call__)),
            "draw": jax.jit(counted("draw", fused.device_order)),
            "eval": jax.jit(counted("eval", eval_batch)),
        }
        _COMPILED[key] = fns
    return fns


class DeviceSampler:
    """The device backend behind the NumPy backend's interface (``num_batches``, ``epoch_edges``,
    ``batch_edges``, ``batch``, ``iter_epoch``, ``num_edge_batches``, ``edge_batch``,
    ``edge_batches``); batches are :class:`PaddedBatch` es of jax arrays on the device.

    Everything that is not sampling is the NumPy backend's own code (a :class:`NumpySampler` is kept
    as ``self.host``): spec validation, holdout removal, the balanced per-epoch draw of supervision
    edges (``epoch_draw="host"``: one permutation per relation per epoch on the host, uploaded once;
    the same edges in the same batches as the NumPy backend for the same seed) — or
    ``epoch_draw="device"``: the draw is made on the device too (same distribution, other stream).

    ``batch(epoch, index)`` is a pure function of ``(spec.seed, epoch, index)``: its key is
    :func:`batch_key`. The jitted functions are compiled once per spec (``self.traces`` counts traces per function, shared
    by samplers of the same spec and edge counts).
    """

    def __init__(
        self,
        graph: HeteroCSR,
        spec: SamplingSpec,
        *,
        holdout: Mapping[Relation, np.ndarray] | None = None,
        epoch_draw: str = "host",
    ) -> None:
        from sampler.numpy_backend import NumpySampler

        if epoch_draw not in ("host", "device"):
            raise ValueError(f"epoch_draw must be 'host' or 'device', got {epoch_draw!r}")
        self.host = NumpySampler(graph, spec, holdout=holdout)
        self.graph, self.spec, self.layout = self.host.graph, spec, self.host.layout
        self.epoch_draw = epoch_draw
        self.dgraph = DeviceGraph.from_host(self.graph)
        fns = _compiled_fns(spec, self.host.edge_counts)
        self.fused: FusedSampler = fns["fused"]
        self.traces: dict[str, int] = fns["traces"]  # shared by samplers of the same spec
        self._step, self._draw, self._eval = fns["batch"], fns["draw"], fns["eval"]
        self._orders: dict[int, dict[str, jax.Array]] = {}

    # ---------------------------------------------------------------- epochs (host plan)
    def num_batches(self, epoch: int = 0) -> int:
        return self.host.num_batches(epoch)

    def epoch_edges(self, epoch: int) -> dict[Relation, np.ndarray]:
        """Relation -> int64 ``[n_r, 2]`` supervision edges of ``epoch`` in order (host copy)."""
        if self.epoch_draw == "host":
            return self.host.epoch_edges(epoch)
        order = self.epoch_order(epoch)
        return {r: np.asarray(self.graph.edges[r])[np.asarray(order[relation_name(r)])] for r in self.spec.relations}

    def epoch_order(self, epoch: int) -> dict[str, jax.Array]:
        """The epoch's order on the device (relation name -> int32 ``[n_r]`` edge indices); cached
        for the last two epochs."""
        order = self._orders.get(epoch)
        if order is None:
            if self.epoch_draw == "host":
                order = self.fused.place_order(self.fused.host_order(epoch))
            else:
                order = self._draw(epoch_key(self.spec.seed, epoch))
            self._orders[epoch] = order
            for old in sorted(self._orders)[:-2]:
                del self._orders[old]
        return order

    def batch_edges(self, epoch: int, index: int) -> dict[Relation, np.ndarray]:
        """Relation -> int64 ``[q_r, 2]`` canonical supervision edges of one batch (host copy)."""
        if self.epoch_draw == "host":
            return self.host.batch_edges(epoch, index)
        self._check_index(epoch, index)
        out = {}
        for r in self.spec.relations:
            o = np.asarray(self.epoch_order(epoch)[relation_name(r)])
            q = int(self.spec.positives_per_relation[relation_name(r)])
            out[r] = np.asarray(self.graph.edges[r])[o[(index * q + np.arange(q)) % o.shape[0]]]
        return out

    def _check_index(self, epoch: int, index: int) -> None:
        if not 0 <= index < self.num_batches(epoch):
            raise IndexError(f"batch index {index} outside [0, {self.num_batches(epoch)}) for epoch {epoch}")

    # ---------------------------------------------------------------- batches (device)
    def batch(self, epoch: int, index: int) -> PaddedBatch:
        """Training batch ``index`` of ``epoch`` (jax arrays; a pure function of seed/epoch/index)."""
        self._check_index(epoch, index)
        out = self._step(self.dgraph, self.epoch_order(epoch), np.int32(index), epoch_key(self.spec.seed, epoch))
        return PaddedBatch.from_dict(out)

    def iter_epoch(self, epoch: int, start: int = 0):
        for i in range(int(start), self.num_batches(epoch)):
            yield self.batch(epoch, i)

    def num_edge_batches(self, edges: Mapping[Relation, np.ndarray]) -> int:
        return self.host.num_edge_batches(edges)

    def _canon(self, edges: Mapping[Relation, np.ndarray]) -> dict[Relation, np.ndarray]:
        from sampler.numpy_backend import canonical_edges

        unknown = [r for r in edges if tuple(r) not in self.spec.relations]
        if unknown:
            raise ValueError(f"edge_batches: relation(s) {[relation_name(tuple(r)) for r in unknown]} not in the spec")
        edges = {tuple(r): e for r, e in edges.items()}
        return {
            r: canonical_edges(self.graph, r, edges[r], "edge_batches") if r in edges else np.zeros((0, 2), np.int64)
            for r in self.spec.relations
        }

    def edge_batch(
        self, edges: Mapping[Relation, np.ndarray], seed: int, index: int, *, canonical: bool = False
    ) -> PaddedBatch:
        """Batch ``index`` of an evaluation edge set, like ``NumpySampler.edge_batch``: each
        relation's edges in order, ``q_r`` per batch, filler rows (``positive_mask`` False) where a
        relation runs out, no re-orientation."""
        spec = self.spec
        canon = edges if canonical else self._canon(edges)
        pairs, pmask, start = {}, np.zeros(spec.num_positives, bool), 0
        for r in spec.relations:
            q = int(spec.positives_per_relation[relation_name(r)])
            e = canon[r]
            take = e[index * q : (index + 1) * q]
            pmask[start : start + take.shape[0]] = True
            if take.shape[0] < q:  # filler: valid ids, masked
                fill = e[:1] if e.shape[0] else self.host._filler_pair(r)
                take = np.concatenate([take, np.repeat(fill, q - take.shape[0], axis=0)])
            pairs[relation_name(r)] = take.astype(np.int32)
            start += q
        key = jax.random.fold_in(
            jax.random.fold_in(jax.random.fold_in(jax.random.key(spec.seed), _TAG_EVAL), seed), index
        )
        return PaddedBatch.from_dict(self._eval(self.dgraph, pairs, pmask, key))

    def edge_batches(self, edges: Mapping[Relation, np.ndarray], seed: int = 0):
        """Batches over an evaluation edge set, in order, each edge once (see ``edge_batch``)."""
        canon = self._canon(edges)
        for i in range(self.num_edge_batches(canon)):
            yield self.edge_batch(canon, seed, i, canonical=True)


__all__ = ["DeviceSampler"]
