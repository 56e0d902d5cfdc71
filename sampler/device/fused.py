"""The fused step: sampling inside the trainer's jit, on one or many devices (:class:`FusedSampler`).

The epoch's order of supervision edges goes to the device once per epoch; per step only a
batch/step index (and the epoch key) crosses. ``step`` returns the HGNN trainer's G stacked
sub-batches; with a mesh every device samples its own sub-batches against its replica of the CSR
(``jax.shard_map``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sampler.csr import Relation, relation_name
from sampler.device.batch import sample_batch
from sampler.device.graph import DeviceGraph
from sampler.spec import SamplingSpec, SpecError


class FusedSampler:
    """Samples on the device from an epoch *order* uploaded once per epoch, so that per step only a
    batch (or step) index and the epoch key cross from the host.

    The epoch order is relation name -> int32 ``[n_r]`` indices into ``DeviceGraph.edges[name]``:
    either the NumPy backend's draw (:meth:`host_order`, uploaded with :meth:`place_order` — then
    both backends train on the same supervision edges in the same batches) or drawn on the device
    (:meth:`device_order`). Batch ``b`` takes positions ``(b*q_r + arange(q_r)) % n_r`` of each
    relation's order — the NumPy backend's ``batch_slice`` — so ``num_batches`` is the same too,
    and its key is ``fold_in(epoch_key, b)`` (:func:`batch_key`).

    * ``__call__(g, order, index, key)``: batch ``index`` (``PaddedBatch.as_dict()`` layout).
    * ``step(g, order, step, key)``: the HGNN trainer's step — ``sub_batches`` consecutive batches
      ``step*G .. step*G+G-1`` stacked on a leading axis, batches past the epoch's end reusing
      ``i % num_batches`` with ``positive_mask`` zeroed (exactly ``StepSampler(DeviceSampler, G)``).
      With a ``mesh`` (1-D), the G axis is split over the devices under ``jax.shard_map``: every
      device samples its own sub-batches against its replica of the CSR (upload the graph with
      ``DeviceGraph.from_host(..., sharding=NamedSharding(mesh, P()))``) and the result is already
      laid out ``P(axis)`` for a data-parallel train step. ``G`` must be a multiple of the devices.

    All methods are pure and jittable (``jax.jit(fused.step)``, or call them inside the train step's
    own jit: the fused step).

    Attributes:
      spec / layout: the per-batch spec; sizes: relation -> supervision edges per epoch (``n_r``);
      num_batches: batches per epoch; sub_batches: G; mesh / axis_name.
    """

    def __init__(
        self, spec: SamplingSpec, edge_counts: Mapping[Relation, int], *, mesh: Mesh | None = None, sub_batches: int = 1
    ):
        from sampler.edges import epoch_sizes, num_batches  # NumPy; shared epoch arithmetic

        self.spec, self.layout = spec, spec.layout()
        self.edge_counts = {r: int(edge_counts[r]) for r in spec.relations}
        self.sizes = epoch_sizes(spec, self.edge_counts)
        self.num_batches = num_batches(spec, self.sizes)
        self.sub_batches = int(sub_batches)
        self.mesh = mesh
        if mesh is not None and len(mesh.axis_names) != 1:
            raise ValueError(f"FusedSampler needs a 1-D mesh, got axes {mesh.axis_names}")
        self.axis_name = None if mesh is None else mesh.axis_names[0]
        n_dev = 1 if mesh is None else int(mesh.devices.size)
        if self.sub_batches < 1 or self.sub_batches % n_dev:
            raise SpecError(
                f"sub_batches={sub_batches} must be a positive multiple of the {n_dev} devices: every device "
                "samples whole sub-batches"
            )

    # ---------------------------------------------------------------- epoch orders
    def host_order(self, epoch: int) -> dict[str, np.ndarray]:
        """The NumPy backend's epoch draw (``sampler.edges.draw_epoch``), as int32 arrays."""
        from sampler.edges import draw_epoch

        order = draw_epoch(self.spec, self.edge_counts, epoch)
        return {relation_name(r): np.asarray(o, np.int32) for r, o in order.items()}

    def place_order(self, order: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """Uploads an epoch order (replicated over the mesh); once per epoch."""
        sh = None if self.mesh is None else NamedSharding(self.mesh, P())
        return {k: jax.device_put(np.asarray(v, np.int32), sh) for k, v in order.items()}

    def device_order(self, key: jax.Array) -> dict[str, jax.Array]:
        """The epoch draw on the device (jittable): per relation ``n_r`` of ``E_r`` edge indices,
        uniformly without replacement, in random order (a sort-based permutation of ``E_r``)."""
        out = {}
        for i, r in enumerate(self.spec.relations):
            perm = jax.random.permutation(jax.random.fold_in(key, i), self.edge_counts[r])
            out[relation_name(r)] = perm[: self.sizes[r]].astype(jnp.int32)
        return out

    # ---------------------------------------------------------------- sampling
    def batch_edges(self, g: DeviceGraph, order: Mapping[str, jax.Array], index: jax.Array) -> dict[str, jax.Array]:
        """Relation name -> int32 ``[q_r, 2]`` supervision edges of batch ``index`` (on the device)."""
        out = {}
        for r in self.spec.relations:
            name = relation_name(r)
            q, n = int(self.spec.positives_per_relation[name]), self.sizes[r]
            if g.edges[name].shape[0] != self.edge_counts[r]:
                raise ValueError(
                    f"DeviceGraph.edges[{name!r}] has {g.edges[name].shape[0]} edges, the sampler expects "
                    f"{self.edge_counts[r]}: upload the training graph with with_edges=True"
                )
            pos = (index * q + jnp.arange(q, dtype=jnp.int32)) % n
            out[name] = g.edges[name][order[name][pos]]
        return out

    def __call__(
        self, g: DeviceGraph, order: Mapping[str, jax.Array], index: jax.Array, key: jax.Array
    ) -> dict[str, Any]:
        """Batch ``index`` of the epoch whose order and key are given (pure and jittable)."""
        index = jnp.asarray(index, jnp.int32)
        return sample_batch(
            g, self.batch_edges(g, order, index), jax.random.fold_in(key, index), spec=self.spec, layout=self.layout
        )

    def _sub_batches(
        self, g: DeviceGraph, order: Mapping[str, jax.Array], idx: jax.Array, key: jax.Array
    ) -> dict[str, Any]:
        def one(i):
            b = self(g, order, i % self.num_batches, key)
            b["positive_mask"] = b["positive_mask"] & (i < self.num_batches)
            return b

        return jax.vmap(one)(idx)

    def step(self, g: DeviceGraph, order: Mapping[str, jax.Array], step: jax.Array, key: jax.Array) -> dict[str, Any]:
        """Step ``step``: G stacked batches (leading axis; split over the mesh's devices if any)."""
        idx = jnp.asarray(step, jnp.int32) * self.sub_batches + jnp.arange(self.sub_batches, dtype=jnp.int32)
        if self.mesh is None:
            return self._sub_batches(g, order, idx, key)
        ax = self.axis_name
        return jax.shard_map(
            self._sub_batches, mesh=self.mesh, in_specs=(P(), P(), P(ax), P()), out_specs=P(ax), check_vma=False
        )(g, order, idx, key)

    def num_steps(self) -> int:
        return math.ceil(self.num_batches / self.sub_batches)


__all__ = ["FusedSampler"]
