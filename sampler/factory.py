"""Choosing a sampling backend: one factory behind one typed interface.

``--sampler=auto|numpy|device`` -> :func:`resolve_sampler` (a backend name) -> :func:`sampler_factory`
(a :data:`SamplerFactory`, ``f(graph, spec, holdout) -> TrainSampler``). :class:`TrainSampler` is all
a trainer may use of a backend; :func:`fused_parts` gives, for the device backend only, what a train
step needs to sample its own batches inside its jit (the fused step).

NumPy-only at import, like the rest of the package: jax and :mod:`sampler.device` load on use.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Protocol

import numpy as np

from sampler.batch import PaddedBatch
from sampler.csr import HeteroCSR, Relation
from sampler.spec import SamplingSpec

SAMPLER_BACKENDS = ("auto", "numpy", "device")


class TrainSampler(Protocol):
    """What a trainer takes from a sampling backend (:class:`~sampler.NumpySampler` and
    :class:`~sampler.DeviceSampler` both are one; a wrapper exposing the same is one too).

    Attributes:
      graph: the training graph less the holdout edges (what the batches are sampled from).
      spec: the per-batch sampling spec.
    """

    graph: HeteroCSR
    spec: SamplingSpec

    def num_batches(self, epoch: int = 0) -> int:
        """Batches in ``epoch`` (balanced per-relation undersampling, redrawn each epoch)."""
        ...

    def batch(self, epoch: int, index: int) -> PaddedBatch:
        """Batch ``index`` of ``epoch``: a pure function of ``(spec.seed, epoch, index)``."""
        ...

    def edge_batches(self, edges: Mapping[Relation, np.ndarray], seed: int = 0) -> Iterable[PaddedBatch]:
        """Batches over relation -> int ``[E, 2]`` evaluation edges, each edge once, in order."""
        ...


SamplerFactory = Callable[[HeteroCSR, SamplingSpec, Mapping[Relation, np.ndarray]], TrainSampler]


def _in_graph(graph: HeteroCSR, holdout: Mapping[Relation, np.ndarray]) -> dict[Relation, np.ndarray]:
    return {r: e for r, e in holdout.items() if r in graph.edges}


def numpy_sampler(graph: HeteroCSR, spec: SamplingSpec, holdout: Mapping[Relation, np.ndarray]) -> TrainSampler:
    """The host backend (:class:`~sampler.numpy_backend.NumpySampler`); ``holdout`` relation -> ``[H, 2]``."""
    from sampler.numpy_backend import NumpySampler

    return NumpySampler(graph, spec, holdout=_in_graph(graph, holdout))


def device_sampler(graph: HeteroCSR, spec: SamplingSpec, holdout: Mapping[Relation, np.ndarray]) -> TrainSampler:
    """The jitted device backend (:class:`~sampler.device.DeviceSampler`: CSR resident on the accelerator)."""
    from sampler.device import DeviceSampler

    return DeviceSampler(graph, spec, holdout=_in_graph(graph, holdout))


def resolve_sampler(choice: str) -> str:
    """``"auto"`` -> ``"device"`` when jax's default backend is an accelerator, else ``"numpy"``."""
    if choice not in SAMPLER_BACKENDS:
        raise ValueError(f"sampler backend {choice!r} is not one of {SAMPLER_BACKENDS}")
    if choice != "auto":
        return choice
    import jax

    return "device" if jax.default_backend() in ("gpu", "tpu") else "numpy"


def sampler_factory(choice: str) -> SamplerFactory:
    """The factory for ``--sampler=auto|numpy|device``: the host NumPy backend or the jitted device
    backend; same spec, same batch layout (only the random streams differ)."""
    return device_sampler if resolve_sampler(choice) == "device" else numpy_sampler


def fused_parts(sampler: TrainSampler, mesh: Any = None, sub_batches: int = 1, sharding: Any = None) -> tuple[Any, Any]:
    """``(FusedSampler, DeviceGraph)`` for sampling inside a train step's jit: the fused sampler of
    ``sub_batches`` batches per step over ``mesh``, and the sampler's CSR on the device placed with
    ``sharding`` (replicated: every device samples its sub-batches against its own copy).

    Raises ValueError unless ``sampler`` is the device backend (the NumPy backend has no device CSR).
    """
    from sampler.device import DeviceGraph, DeviceSampler, FusedSampler

    if not isinstance(sampler, DeviceSampler):
        raise ValueError(
            "fused_sampling needs the device sampler backend (sampler_factory('device') / --sampler=device)"
        )
    spec = sampler.spec
    fused = FusedSampler(spec, sampler.host.edge_counts, mesh=mesh, sub_batches=sub_batches)
    return fused, DeviceGraph.from_host(sampler.graph, relations=spec.relations, sharding=sharding)


__all__ = [
    "SAMPLER_BACKENDS",
    "TrainSampler",
    "SamplerFactory",
    "numpy_sampler",
    "device_sampler",
    "resolve_sampler",
    "sampler_factory",
    "fused_parts",
]
