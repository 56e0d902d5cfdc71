"""Static-shape heterogeneous neighbour sampling for the 2T-HGNN.

A :class:`SamplingSpec` (made with :func:`make_spec`) fixes every array shape; its :class:`Layout`
says where seeds and neighbours sit; every backend returns the same :class:`PaddedBatch`:

* :class:`NumpySampler` — the host backend (NumPy), fed through :class:`Loader` worker pools;
* :class:`DeviceSampler` — the jitted device backend (:mod:`sampler.device`: :class:`DeviceGraph`,
  :class:`FusedSampler` for sampling inside the train step's jit);
* :func:`to_graphs_tuple` — a batch hop as a ``jraph.GraphsTuple``.

Choosing a backend (:mod:`sampler.factory`): :func:`resolve_sampler` (``auto|numpy|device``) and
:func:`sampler_factory` give a ``f(graph, spec, holdout) ->`` :class:`TrainSampler` — the interface
a trainer uses; :func:`fused_parts` gives the device backend's pieces of a fused train step.

The graph contract is :class:`HeteroCSR` (:mod:`sampler.csr`). The NumPy-only names are imported
here eagerly; the jax/jraph ones (:mod:`sampler.device`, :mod:`sampler.jraph_convert`) on first use,
so ``import sampler`` stays light and never imports jax.
"""

from __future__ import annotations

import importlib
from typing import Any

from sampler.batch import PaddedBatch, batch_shapes
from sampler.csr import CSR, Direction, HeteroCSR, Relation, direction_name, relation_name
from sampler.factory import (
    SAMPLER_BACKENDS,
    SamplerFactory,
    TrainSampler,
    fused_parts,
    resolve_sampler,
    sampler_factory,
)
from sampler.loader import Loader
from sampler.numpy_backend import NumpySampler
from sampler.spec import Layout, SamplingSpec, SpecError, make_spec

_LAZY = {  # name -> module that defines it (imported on first access)
    "DeviceGraph": "sampler.device",
    "DeviceGraphError": "sampler.device",
    "DeviceSampler": "sampler.device",
    "FusedSampler": "sampler.device",
    "to_graphs_tuple": "sampler.jraph_convert",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sampler' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CSR",
    "Direction",
    "HeteroCSR",
    "Relation",
    "direction_name",
    "relation_name",
    "Layout",
    "SamplingSpec",
    "SpecError",
    "make_spec",
    "PaddedBatch",
    "batch_shapes",
    "NumpySampler",
    "Loader",
    "SAMPLER_BACKENDS",
    "TrainSampler",
    "SamplerFactory",
    "resolve_sampler",
    "sampler_factory",
    "fused_parts",
    "DeviceGraph",
    "DeviceGraphError",
    "DeviceSampler",
    "FusedSampler",
    "to_graphs_tuple",
]
