"""``PaddedBatch``: the static-shape output of every sampler backend (NumPy or device).

All shapes are fixed by the :class:`~sampler.spec.SamplingSpec` (``spec.layout()``): nothing here
depends on the graph or on which edges were drawn, so a jitted consumer compiles once.

Ids are *global* node ids (no relabelling): consumers gather rows from one feature table of
``num_nodes + 1`` rows whose last row (``pad_id == num_nodes``) is the padding row. Padding slots
hold ``pad_id`` and ``False`` in the mask.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sampler.csr import direction_name
from sampler.spec import Layout, SamplingSpec


@dataclasses.dataclass
class PaddedBatch:
    """One batch of supervision edges plus their sampled L-hop neighbourhoods.

    Attributes:
      seeds: node type -> int32 ``[S_t]`` global ids of the hop-0 frontier, in the spec's seed layout
        (anchors / positives per relation, then negatives; ``Layout.anchor`` etc. index the
        concatenation over ``node_types``).
      nbrs: per hop k (``0..L-1``), direction name ("dst<-src") -> int32 ``[N_k[dst], f_k]`` global ids
        of sampled ``src``-type neighbours of each frontier-k node of type ``dst``; ``pad_id`` where
        the mask is False.
      masks: same keys and shapes as ``nbrs``, bool, True for a real sampled neighbour.
      positive_mask: bool ``[P]``; False for filler positives (the last, partial batch of an edge set
        such as the validation edges). Filler rows still hold valid ids.
    """

    seeds: dict[str, np.ndarray]
    nbrs: tuple[dict[str, np.ndarray], ...]
    masks: tuple[dict[str, np.ndarray], ...]
    positive_mask: np.ndarray

    # -------------------------------------------------------------- pytree view
    def as_dict(self) -> dict[str, Any]:
        """Plain nested dict/tuple (a JAX pytree with no registration needed)."""
        return {"seeds": self.seeds, "nbrs": self.nbrs, "masks": self.masks, "positive_mask": self.positive_mask}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PaddedBatch":
        return cls(d["seeds"], tuple(d["nbrs"]), tuple(d["masks"]), d["positive_mask"])

    def frontier(self, hop: int, layout: Layout) -> dict[str, np.ndarray]:
        """Global ids of frontier ``hop`` per type (hop 0 = seeds), rebuilt from ``nbrs`` (debug/tests)."""
        if hop == 0:
            return self.seeds
        out = {}
        for t, parts in layout.frontier_parts[hop - 1].items():
            chunks = [np.asarray(self.nbrs[hop - 1][direction_name(d)]).reshape(-1) for d, _, _, _ in parts]
            out[t] = np.concatenate(chunks) if chunks else np.zeros(0, np.int32)
        return out

    def check_shapes(self, spec: SamplingSpec, layout: Layout | None = None) -> None:
        """Raises AssertionError if any array's shape/dtype differs from what the spec fixes."""
        layout = layout or spec.layout()
        for t in spec.node_types:
            s = self.seeds[t]
            assert s.shape == (layout.seeds_per_type[t],) and s.dtype == np.int32, (t, s.shape, s.dtype)
        assert len(self.nbrs) == spec.num_hops and len(self.masks) == spec.num_hops
        for k in range(spec.num_hops):
            assert set(self.nbrs[k]) == {direction_name(d) for d in layout.directions}, self.nbrs[k].keys()
            for d in layout.directions:
                name = direction_name(d)
                want = (layout.frontier_sizes[k][d[0]], layout.fanout[k][d])
                assert self.nbrs[k][name].shape == want and self.nbrs[k][name].dtype == np.int32, (
                    k,
                    name,
                    self.nbrs[k][name].shape,
                )
                assert self.masks[k][name].shape == want and self.masks[k][name].dtype == np.bool_, (k, name)
        assert self.positive_mask.shape == (spec.num_positives,) and self.positive_mask.dtype == np.bool_


def batch_shapes(spec: SamplingSpec) -> dict[str, Any]:
    """``{"seeds": {t: (S_t,)}, "nbrs": ({dir: (N, f)}, ...), "positive_mask": (P,)}`` — for
    building abstract inputs (``jax.ShapeDtypeStruct``) without sampling."""
    lay = spec.layout()
    return {
        "seeds": {t: (lay.seeds_per_type[t],) for t in spec.node_types},
        "nbrs": tuple(
            {direction_name(d): (lay.frontier_sizes[k][d[0]], lay.fanout[k][d]) for d in lay.directions}
            for k in range(spec.num_hops)
        ),
        "positive_mask": (spec.num_positives,),
    }
