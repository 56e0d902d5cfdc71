"""How interactions become co-listening edges (:class:`GraphConfig`), importable without pandas or jax
(configuration files and ``--print_config`` read it); the builder is :mod:`twotower_hgnn.graph`."""

from __future__ import annotations

import dataclasses
import importlib.util

from twotower_hgnn import errors
from twotower_hgnn.data.events import EVENTS
from twotower_hgnn.logs.sizes import size_bytes

RULES = ("any", "min_shared", "topk")
ENGINES = ("duckdb", "spark")


class GraphError(errors.DataError):
    """Invalid graph configuration or input."""


@dataclasses.dataclass(frozen=True)
class GraphConfig:
    """How to turn interactions into co-listening edges.

    Attributes:
      edge_events: events that create edges (default streams only; weak signals are noisy and the paper
        leaves it open — the paper's §1.1).
      rule: "any" (>= 1 shared user, the paper's rule), "min_shared" (>= ``min_shared`` users) or
        "topk" (each item keeps its ``topk`` most co-listened neighbours).
      min_shared: threshold for rule "min_shared".
      topk: neighbours per item for rule "topk".
      window: pair each item with the next ``window`` distinct items of the user (time order);
        None = all pairs within the (capped) sequence.
      max_items_per_user: keep only each user's most recent N distinct items; None = no cap.
      chunk_pairs: windowed pairs per counting partition (bounds what one count holds): DuckDB counts
        the pairs in ``ceil(pairs / chunk_pairs)`` partitions by their smaller item; Spark counts in one
        pass and leaves partitioning to its shuffle.
      engine: what runs the pair counting and the rule: "duckdb" (the queries of
        :mod:`twotower_hgnn.logs`, embedded, spilling to disk past ``memory_limit``), "spark" (the same
        queries on a local Spark; the ``[spark]`` extra and Java 17+). The NumPy builder they replaced
        is ``benchmarks/graph_numpy.py`` (the speed comparison of ``benchmarks/graph_engine.py``). Every
        engine gives the same edges, so ``engine`` and ``memory_limit`` are left out of :meth:`to_dict`
        (the graph stage's fingerprint and the report).
      memory_limit: DuckDB's memory limit, or the heap of the local Spark driver (which runs every
        task in local mode), e.g. "4GB"; None = half the memory available when the build starts
        (``logs.engines.auto_memory_limit``; DuckDB's own default, 80 % of RAM, does not leave room
        for what the process already holds; Spark's, 1g, is too small past MovieLens-size logs).
    """

    edge_events: tuple[str, ...] = ("stream",)
    rule: str = "topk"
    min_shared: int = 2
    topk: int = 20
    window: int | None = 20
    max_items_per_user: int | None = 1000
    chunk_pairs: int = 8_000_000
    engine: str = "duckdb"
    memory_limit: str | None = None

    def __post_init__(self):
        if self.rule not in RULES:
            raise GraphError(f"GraphConfig.rule: {self.rule!r} is not one of {RULES}")
        bad = [e for e in self.edge_events if e not in EVENTS]
        if bad or not self.edge_events:
            raise GraphError(
                f"GraphConfig.edge_events: {list(self.edge_events)} must be a non-empty subset of {list(EVENTS)}"
            )
        if self.min_shared < 1:
            raise GraphError(f"GraphConfig.min_shared must be >= 1, got {self.min_shared}")
        if self.topk < 1:
            raise GraphError(f"GraphConfig.topk must be >= 1, got {self.topk}")
        if self.window is not None and self.window < 1:
            raise GraphError(f"GraphConfig.window must be >= 1 or None, got {self.window}")
        if self.max_items_per_user is not None and self.max_items_per_user < 2:
            raise GraphError(f"GraphConfig.max_items_per_user must be >= 2 or None, got {self.max_items_per_user}")
        if self.chunk_pairs < 1:
            raise GraphError(f"GraphConfig.chunk_pairs must be >= 1, got {self.chunk_pairs}")
        self._check_engine()

    def _check_engine(self) -> None:
        if self.engine not in ENGINES:
            raise GraphError(f"GraphConfig.engine: {self.engine!r} is not one of {ENGINES}")
        if self.engine == "spark" and importlib.util.find_spec("pyspark") is None:
            raise GraphError(
                "GraphConfig.engine: 'spark' needs pyspark: pip install 'twotower_hgnn[spark]' (and Java 17+)"
            )
        if self.memory_limit is not None and size_bytes(self.memory_limit) is None:
            raise GraphError(f"GraphConfig.memory_limit: {self.memory_limit!r} is not a size such as '4GB' or '512MiB'")

    def to_dict(self) -> dict:
        """The fields that decide the edges (not ``engine`` / ``memory_limit``: every engine gives the same)."""
        d = dataclasses.asdict(self)
        d["edge_events"] = list(self.edge_events)
        del d["engine"], d["memory_limit"]
        return d
