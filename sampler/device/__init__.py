"""Sampling on the accelerator: a jitted backend for the same :class:`~sampler.spec.SamplingSpec`.

The heterogeneous CSR lives on the device (:class:`DeviceGraph`); one jitted function turns a batch
of supervision edges and a PRNG key into the arrays of a :class:`~sampler.batch.PaddedBatch` with
exactly the NumPy backend's layout and conventions (shapes, dtypes, seed layout, frontier order,
padding id ``num_nodes``, masks, valid slots not necessarily first). Only the random streams differ.

Modules, from the bottom (every public name is re-exported here: ``from sampler.device import X``):

* :mod:`sampler.device.graph` — :class:`DeviceGraph` (the CSR on the device), :func:`device_bytes`,
  :class:`DeviceGraphError`; integer widths and memory limits.
* :mod:`sampler.device.draws` — randomness: one bit pool per batch, Floyd's uniform
  without-replacement subsets (the uniformity proof), :func:`epoch_key` / :func:`batch_key`.
* :mod:`sampler.device.rows` — :func:`sample_global_rows` / :func:`sample_rows`: fan-out for any
  mix of rows (all directions share one row space and one position space), every row at once,
  uniformly **without** replacement. The batch's supervision edges are removed exactly: each draw
  is over the row's *remaining* neighbours, then mapped back to a CSR position by skipping the
  row's removed positions (:func:`exclusion_table`, :func:`batch_exclusions`). No rejection loop,
  no bound on removed edges per row.
* :mod:`sampler.device.batch` — :func:`sample_neighbourhoods` (all hops for given seeds: one draw
  per hop and distinct fan-out), :func:`sample_negatives`, :func:`sample_batch` (seeds — anchors,
  positives, negatives — in the spec's layout + neighbourhoods). Pure and jittable: an HGNN train
  step can call it inside its own ``jax.jit`` (the fused step).
* :mod:`sampler.device.fused` — :class:`FusedSampler`: the epoch's order of supervision edges goes
  to the device once per epoch; per step only a batch/step index (and the epoch key) crosses.
  ``step`` returns the HGNN trainer's G stacked sub-batches; with a mesh every device samples its
  own sub-batches against its replica of the CSR (``jax.shard_map``).
* :mod:`sampler.device.backend` — :class:`DeviceSampler`: the host-facing backend with the NumPy
  backend's methods.
"""

from __future__ import annotations

from sampler.device.backend import DeviceSampler
from sampler.device.batch import sample_batch, sample_negatives, sample_neighbourhoods
from sampler.device.draws import batch_key, epoch_key
from sampler.device.fused import FusedSampler
from sampler.device.graph import _check_memory, _position_dtype  # noqa: F401  (used by tests through this package)
from sampler.device.graph import DeviceGraph, DeviceGraphError, device_bytes
from sampler.device.rows import (
    Exclusion,
    batch_exclusions,
    exclusion_table,
    find_in_rows,
    sample_global_rows,
    sample_rows,
)

# _check_memory / _position_dtype: private helpers the tests call as ``sampler.device._...``

__all__ = [
    "DeviceGraph",
    "DeviceGraphError",
    "device_bytes",
    "find_in_rows",
    "Exclusion",
    "exclusion_table",
    "batch_exclusions",
    "sample_global_rows",
    "sample_rows",
    "sample_neighbourhoods",
    "sample_negatives",
    "sample_batch",
    "batch_key",
    "epoch_key",
    "FusedSampler",
    "DeviceSampler",
]
