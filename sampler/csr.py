"""Heterogeneous CSR: the graph contract between the graph builder and every sampler backend.

Node ids are *global*: the nodes of type ``node_types[t]`` occupy the contiguous range
``[type_offsets[t], type_offsets[t + 1])``, so one feature table of ``num_nodes + 1`` rows (the last
row is the padding row, see :data:`pad_id`) serves every type.

Relations are *undirected* type pairs ``(a, b)`` with ``a`` not after ``b`` in ``node_types`` order
("audiobook-podcast"). Each relation is stored

* once as a canonical edge list ``edges[rel]`` (int64 ``[E, 2]``; column 0 has type ``a``; for a
  same-type relation ``col0 < col1``; sorted, unique), used to draw supervision edges, and
* as one CSR per *direction* (``adj[(dst, src)]``): rows are the nodes of type ``dst`` in local
  numbering (``global - type_offsets[dst]``), entries are global ids of type ``src``. A same-type
  relation has one symmetric CSR; a cross-type relation has two. Message passing reads these.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np

Relation = tuple[str, str]  # undirected (a, b), a not after b in node_types order
Direction = tuple[str, str]  # (dst_type, src_type): messages flow src -> dst

_FORMAT_VERSION = 1


def relation_name(rel: Relation) -> str:
    """``("audiobook", "podcast") -> "audiobook-podcast"``."""
    return f"{rel[0]}-{rel[1]}"


def direction_name(d: Direction) -> str:
    """``("audiobook", "podcast") -> "audiobook<-podcast"`` (dst <- src)."""
    return f"{d[0]}<-{d[1]}"


@dataclasses.dataclass(frozen=True)
class CSR:
    """One directed adjacency.

    Attributes:
      indptr: int64 ``[n_dst + 1]`` row offsets (int64 because counts can pass 2**31).
      indices: int32 ``[nnz]`` global ids of the source type, sorted within each row.
    """

    indptr: np.ndarray
    indices: np.ndarray

    @property
    def num_rows(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    def degrees(self) -> np.ndarray:
        """int64 ``[n_dst]``."""
        return np.diff(self.indptr)


@dataclasses.dataclass(frozen=True)
class HeteroCSR:
    """Item-only heterogeneous graph (see module docstring for the id conventions).

    Attributes:
      node_types: type names, e.g. ``("audiobook", "podcast")``.
      type_offsets: int64 ``[T + 1]``; type ``t`` owns global ids ``[type_offsets[t], type_offsets[t+1])``.
      edges: relation -> int64 ``[E_r, 2]`` canonical undirected edges (global ids).
      adj: direction ``(dst, src)`` -> :class:`CSR` over ``dst`` nodes.
    """

    node_types: tuple[str, ...]
    type_offsets: np.ndarray
    edges: Mapping[Relation, np.ndarray]
    adj: Mapping[Direction, CSR]

    # ----------------------------------------------------------------- properties
    @property
    def num_nodes(self) -> int:
        return int(self.type_offsets[-1])

    @property
    def pad_id(self) -> int:
        """Id of the padding row appended to every feature table (== ``num_nodes``)."""
        return self.num_nodes

    @property
    def relations(self) -> tuple[Relation, ...]:
        return tuple(self.edges.keys())

    def type_index(self, node_type: str) -> int:
        if node_type not in self.node_types:
            raise ValueError(f"unknown node type {node_type!r}; graph has {list(self.node_types)}")
        return self.node_types.index(node_type)

    def type_range(self, node_type: str) -> tuple[int, int]:
        t = self.type_index(node_type)
        return int(self.type_offsets[t]), int(self.type_offsets[t + 1])

    def num_nodes_of(self, node_type: str) -> int:
        lo, hi = self.type_range(node_type)
        return hi - lo

    def node_type_of(self, ids: np.ndarray) -> np.ndarray:
        """int8 type index of each global id (``ids`` must be in ``[0, num_nodes)``)."""
        return (np.searchsorted(self.type_offsets, ids, side="right") - 1).astype(np.int8)

    def num_edges(self, rel: Relation) -> int:
        return int(self.edges[rel].shape[0])

    # ----------------------------------------------------------------- building
    @classmethod
    def from_edges(
        cls, node_types: tuple[str, ...], type_counts: Mapping[str, int], edges: Mapping[Relation, np.ndarray]
    ) -> "HeteroCSR":
        """Builds the CSR from canonical undirected edge lists.

        Args:
          node_types: type order; defines global id ranges.
          type_counts: number of nodes of each type.
          edges: relation -> int ``[E, 2]`` global ids. Must already be canonical (column 0 of type
            ``rel[0]``, ``col0 < col1`` for same-type, unique, no self loops); checked here.
        """
        node_types = tuple(node_types)
        offsets = np.zeros(len(node_types) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([int(type_counts[t]) for t in node_types])
        canon: dict[Relation, np.ndarray] = {}
        adj: dict[Direction, CSR] = {}
        for rel, e in edges.items():
            a, b = rel
            ta, tb = node_types.index(a), node_types.index(b)
            if ta > tb:
                raise ValueError(f"relation {rel} is not in node_types order {node_types}")
            e = np.ascontiguousarray(np.asarray(e, dtype=np.int64).reshape(-1, 2))
            _check_range(e[:, 0], offsets[ta], offsets[ta + 1], rel, "column 0")
            _check_range(e[:, 1], offsets[tb], offsets[tb + 1], rel, "column 1")
            if a == b and np.any(e[:, 0] >= e[:, 1]):
                raise ValueError(f"relation {rel}: same-type edges must satisfy col0 < col1 (no self loops)")
            # sort + unique check in one pass on a combined key
            key = e[:, 0] * np.int64(offsets[-1]) + e[:, 1]
            order = np.argsort(key, kind="stable")
            key = key[order]
            if key.size > 1 and np.any(key[1:] == key[:-1]):
                raise ValueError(f"relation {rel}: duplicate edges")
            e = e[order]
            canon[rel] = e
            if a == b:
                src = np.concatenate([e[:, 0], e[:, 1]])
                dst = np.concatenate([e[:, 1], e[:, 0]])
                adj[(a, a)] = _csr(dst - offsets[ta], src, int(offsets[ta + 1] - offsets[ta]))
            else:
                adj[(a, b)] = _csr(e[:, 0] - offsets[ta], e[:, 1], int(offsets[ta + 1] - offsets[ta]))
                adj[(b, a)] = _csr(e[:, 1] - offsets[tb], e[:, 0], int(offsets[tb + 1] - offsets[tb]))
        return cls(node_types=node_types, type_offsets=offsets, edges=canon, adj=adj)

    # ----------------------------------------------------------------- queries
    def neighbors(self, direction: Direction, node: int) -> np.ndarray:
        """Global ids of ``src``-type neighbours of global node ``node`` (of type ``dst``). Test helper."""
        dst, _ = direction
        lo, _ = self.type_range(dst)
        c = self.adj[direction]
        r = int(node) - lo
        return c.indices[c.indptr[r] : c.indptr[r + 1]]

    def without_relations(self, drop: tuple[Relation, ...]) -> "HeteroCSR":
        """A view without some relations (ablations C/D). Node ids are unchanged."""
        keep = {r: e for r, e in self.edges.items() if r not in drop}
        adj = {d: c for d, c in self.adj.items() if tuple(sorted(d, key=self.node_types.index)) in keep}
        return HeteroCSR(self.node_types, self.type_offsets, keep, adj)

    def stats(self) -> dict:
        """Sizes and degree summaries, JSON-serialisable."""
        out: dict = {"num_nodes": self.num_nodes, "nodes": {}, "relations": {}}
        for t in self.node_types:
            out["nodes"][t] = self.num_nodes_of(t)
        for rel, e in self.edges.items():
            a, b = rel
            n_a, n_b = self.num_nodes_of(a), self.num_nodes_of(b)
            pairs = n_a * (n_a - 1) / 2 if a == b else n_a * n_b
            entry = {"edges": int(e.shape[0]), "density": float(e.shape[0] / pairs) if pairs else 0.0}
            for d in ((a, b), (b, a)) if a != b else ((a, a),):
                deg = self.adj[d].degrees()
                entry[direction_name(d)] = _degree_summary(deg)
            out["relations"][relation_name(rel)] = entry
        return out

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Writes a directory of ``.npy`` files + ``meta.json``, atomically (tmp dir + rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        if tmp.exists():
            _rmtree(tmp)
        tmp.mkdir(parents=True)
        np.save(tmp / "type_offsets.npy", self.type_offsets)
        meta = {"version": _FORMAT_VERSION, "node_types": list(self.node_types), "relations": []}
        for i, (rel, e) in enumerate(self.edges.items()):
            np.save(tmp / f"edges_{i}.npy", e)
            dirs = []
            for j, d in enumerate(((rel[0], rel[1]), (rel[1], rel[0])) if rel[0] != rel[1] else ((rel[0], rel[0]),)):
                np.save(tmp / f"indptr_{i}_{j}.npy", self.adj[d].indptr)
                np.save(tmp / f"indices_{i}_{j}.npy", self.adj[d].indices)
                dirs.append(list(d))
            meta["relations"].append({"relation": list(rel), "directions": dirs})
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if path.exists():
            _rmtree(path)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True) -> "HeteroCSR":
        """Loads a directory written by :meth:`save`; arrays are memory-mapped by default."""
        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"{path}: not a saved HeteroCSR (no meta.json)")
        meta = json.loads(meta_file.read_text())
        if meta.get("version") != _FORMAT_VERSION:
            raise ValueError(f"{path}: HeteroCSR format version {meta.get('version')} != {_FORMAT_VERSION}")
        mode = "r" if mmap else None
        edges, adj = {}, {}
        for i, r in enumerate(meta["relations"]):
            rel = tuple(r["relation"])
            edges[rel] = np.load(path / f"edges_{i}.npy", mmap_mode=mode)
            for j, d in enumerate(r["directions"]):
                adj[tuple(d)] = CSR(
                    np.load(path / f"indptr_{i}_{j}.npy", mmap_mode=mode),
                    np.load(path / f"indices_{i}_{j}.npy", mmap_mode=mode),
                )
        return cls(tuple(meta["node_types"]), np.load(path / "type_offsets.npy"), edges, adj)


def _check_range(col: np.ndarray, lo: int, hi: int, rel: Relation, what: str) -> None:
    if col.size and (col.min() < lo or col.max() >= hi):
        bad = int(np.flatnonzero((col < lo) | (col >= hi))[0])
        raise ValueError(
            f"relation {rel}: {what} id {int(col[bad])} at edge {bad} is outside its type range [{lo}, {hi})"
        )


def _csr(rows_local: np.ndarray, cols: np.ndarray, n_rows: int) -> CSR:
    order = np.lexsort((cols, rows_local))
    counts = np.bincount(rows_local, minlength=n_rows).astype(np.int64)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    idx_dtype = np.int32 if cols.size == 0 or cols.max() < 2**31 - 1 else np.int64
    return CSR(indptr, np.ascontiguousarray(cols[order].astype(idx_dtype)))


def _degree_summary(deg: np.ndarray) -> dict:
    if deg.size == 0:
        return {"mean": 0.0, "median": 0.0, "p99": 0.0, "max": 0, "isolated": 0}
    return {
        "mean": float(deg.mean()),
        "median": float(np.median(deg)),
        "p99": float(np.percentile(deg, 99)),
        "max": int(deg.max()),
        "isolated": int((deg == 0).sum()),
    }


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p)
