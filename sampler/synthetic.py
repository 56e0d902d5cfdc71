"""Synthetic power-law heterogeneous graphs for benchmarks and tests (NumPy only, vectorised).

Endpoint ``i`` of a type with ``n`` nodes is drawn as ``floor(n * u**alpha)`` (``u`` uniform), which
gives node rank ``r`` a degree proportional to ``r**(1/alpha - 1)`` — a heavy-tailed (Zipf-like)
distribution; a fixed random permutation per type then scatters the hubs over the id range.
Duplicates and self loops are removed, so relations end up slightly below the requested sizes
(the generator oversamples by a few percent to compensate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from sampler.csr import HeteroCSR, Relation
from sampler.neighbors import sorted_distinct


def _endpoints(rng: np.random.Generator, n: int, size: int, alpha: float, perm: np.ndarray) -> np.ndarray:
    r = np.floor(n * rng.random(size) ** alpha).astype(np.int64)
    np.minimum(r, n - 1, out=r)
    return perm[r]


def powerlaw_edges(
    rng: np.random.Generator,
    n_a: int,
    n_b: int,
    num_edges: int,
    *,
    same_type: bool,
    alpha: float,
    perm_a: np.ndarray,
    perm_b: np.ndarray,
) -> np.ndarray:
    """int64 ``[<=num_edges, 2]`` unique local-id pairs (``a < b`` when ``same_type``), sorted."""
    want = int(num_edges)
    out = np.zeros((0, 2), np.int64)
    for factor in (1.15, 1.5, 3.0):  # oversample; rarely needs a second round
        m = int(want * factor) + 16
        a = _endpoints(rng, n_a, m, alpha, perm_a)
        b = _endpoints(rng, n_b, m, alpha, perm_b)
        if same_type:
            a, b = np.minimum(a, b), np.maximum(a, b)
            keep = a != b
            a, b = a[keep], b[keep]
        key = sorted_distinct(a * np.int64(n_b) + b)
        if key.size >= want or factor == 3.0:
            break
    if key.size > want:
        key = np.sort(rng.choice(key, size=want, replace=False))
    out = np.stack([key // n_b, key % n_b], axis=1)
    return out


def powerlaw_hetero_graph(
    type_counts: Mapping[str, int], relation_edges: Mapping[Relation, int], *, seed: int = 0, alpha: float = 2.5
) -> HeteroCSR:
    """A heterogeneous power-law graph.

    Args:
      type_counts: node type -> count, in global-id order (dict order).
      relation_edges: relation ``(a, b)`` (types in that order) -> target number of undirected edges.
      seed: RNG seed.
      alpha: tail exponent knob (larger = heavier hubs).
    """
    rng = np.random.default_rng(seed)
    node_types = tuple(type_counts)
    offsets = np.concatenate([[0], np.cumsum([int(type_counts[t]) for t in node_types])]).astype(np.int64)
    perms = {t: rng.permutation(int(type_counts[t])) for t in node_types}
    edges = {}
    for (a, b), m in relation_edges.items():
        ta, tb = node_types.index(a), node_types.index(b)
        e = powerlaw_edges(
            rng,
            int(type_counts[a]),
            int(type_counts[b]),
            int(m),
            same_type=a == b,
            alpha=alpha,
            perm_a=perms[a],
            perm_b=perms[b],
        )
        e[:, 0] += offsets[ta]
        e[:, 1] += offsets[tb]
        edges[(a, b)] = e
    return HeteroCSR.from_edges(node_types, {t: int(type_counts[t]) for t in node_types}, edges)


def audiobook_podcast_graph(
    n_audiobooks: int = 200_000,
    n_podcasts: int = 1_000_000,
    num_edges: int = 20_000_000,
    *,
    seed: int = 0,
    shares: tuple[float, float, float] = (0.05, 0.25, 0.70),
) -> HeteroCSR:
    """The benchmark graph: |PC-PC| >> |AB-PC| >> |AB-AB| (default 70% / 25% / 5% of the edges)."""
    rel = {
        ("audiobook", "audiobook"): int(num_edges * shares[0]),
        ("audiobook", "podcast"): int(num_edges * shares[1]),
        ("podcast", "podcast"): int(num_edges * shares[2]),
    }
    return powerlaw_hetero_graph({"audiobook": n_audiobooks, "podcast": n_podcasts}, rel, seed=seed)


def cached_graph(path: str | Path, build) -> HeteroCSR:
    """Loads ``path`` if it holds a saved HeteroCSR, else ``build()``s, saves (atomically) and returns it."""
    path = Path(path)
    if (path / "meta.json").exists():
        return HeteroCSR.load(path)
    g = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    g.save(path)
    return HeteroCSR.load(path)


__all__ = ["powerlaw_edges", "powerlaw_hetero_graph", "audiobook_podcast_graph", "cached_graph"]
