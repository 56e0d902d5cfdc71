"""The two executors of the log queries: DuckDB (default) and Apache Spark (local mode or a cluster).

Both take the same query text, written once in DuckDB's SQL dialect (:mod:`.queries`); Spark runs it
after SQLGlot transpiles it (``sqlglot.transpile(q, read="duckdb", write="spark")``). Both read the
same inputs: the validated interactions as a Parquet dataset partitioned by day
(:func:`.tables.write_interactions`), or an in-memory table. Results come back as NumPy columns.

* :class:`DuckDBEngine` -- embedded, out-of-core: ``memory_limit`` bounds its buffer memory and what
  does not fit spills to ``temp_directory``.
* :class:`SparkEngine` -- a ``SparkSession`` (default ``local[*]``); needs the ``[spark]`` extra and Java 17+.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twotower_hgnn import errors
from twotower_hgnn.logs.sizes import size_bytes

ENGINES = ("duckdb", "spark")


class EngineError(errors.UserError):
    """A log engine that cannot run here (missing package, bad setting)."""


class DuckDBEngine:
    """DuckDB in this process. memory_limit: e.g. "4GB" (None = DuckDB's default, 80 % of RAM);
    temp_directory: where operators spill (None = a fresh temporary folder); threads: None = all cores."""

    name = "duckdb"
    topn_aggregate = True  # min(x, k): the k smallest values of a group

    def __init__(self, memory_limit: str | None = None, temp_directory: str | os.PathLike | None = None, threads=None):
        import duckdb

        self._tmp = None
        self.memory_limit = memory_limit
        self.peak_spilled = 0  # the most bytes seen in temp_directory after a statement (spilled_bytes)
        if temp_directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="twotower-duckdb-")
            temp_directory = self._tmp.name
        self.temp_directory = str(temp_directory)
        cfg: dict[str, Any] = {"temp_directory": self.temp_directory, "preserve_insertion_order": False}
        if memory_limit is not None:
            cfg["memory_limit"] = str(memory_limit)
        if threads is not None:
            cfg["threads"] = int(threads)
        try:
            self.con = duckdb.connect(":memory:", config=cfg)
            self.con.execute("SET enable_progress_bar = false")
        except duckdb.Error as e:
            raise EngineError(f"duckdb: {str(e).splitlines()[0]}") from None

    def _run(self, sql: str):
        import duckdb

        try:
            return self.con.execute(sql)
        except duckdb.OutOfMemoryException:
            raise EngineError(
                f"duckdb: out of memory under memory_limit={self.memory_limit or 'default'} with spilling to "
                f"{self.temp_directory} (raise graph.memory_limit or free disk there)"
            ) from None
        except duckdb.IOException as e:
            raise EngineError(f"duckdb: {str(e).splitlines()[0]} (spilling to {self.temp_directory})") from None

    def register_frame(self, name: str, df: pd.DataFrame) -> None:
        """``df`` as the view ``name`` (scanned in place, not copied)."""
        self.con.register(name, df)

    def register_parquet(self, name: str, path: str | os.PathLike, where: str | None = None) -> None:
        """The hive-partitioned Parquet dataset at ``path`` as the view ``name``; ``where`` (a condition on
        the partition column ``day``) prunes whole partitions before any file is opened."""
        glob = str(Path(path) / "**" / "*.parquet").replace("'", "''")
        cond = f" WHERE {where}" if where else ""
        self.con.execute(
            f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true){cond}"
        )

    def materialize(self, name: str, sql: str) -> None:
        """The result of ``sql`` as the temporary table ``name`` (spilled to disk beyond the memory limit)."""
        self._run(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
        self._note_spill()

    def append(self, name: str, sql: str) -> None:
        """Appends the rows of ``sql`` to the table ``name``."""
        self._run(f"INSERT INTO {name} {sql}")
        self._note_spill()

    def wave_keys(self, disk_fraction: float = 0.7, bytes_per_key: int = 24) -> int:
        """How many 8-byte keys a wave of :meth:`spill_partitions` may write so that it uses at most
        ``disk_fraction`` of the free disk under ``temp_directory``, at ``bytes_per_key`` of disk per key:
        a wave's Parquet partitions (unsorted keys, ~10 bytes each) plus the ``COPY``'s own spill beside
        them, measured together at ~23 bytes per key on the paper's log (a wave sized at 6 bytes per
        key filled a 72 GB disk; at 10, one left 4 GB of 49 GB). Every wave re-reads the sequences, so
        fewer, larger waves are faster."""
        import shutil

        folder = Path(self.temp_directory)
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return max(1, int(shutil.disk_usage(folder).free * disk_fraction) // int(bytes_per_key))

    def spill_partitions(self, wave_sql, n_parts: int, per_wave: int):
        """Yields a FROM item per partition ``0 .. n_parts - 1``; ``wave_sql(a, b)``: a query of the rows of
        partitions ``[a, b)`` with their partition number in the column ``part``. Waves of ``per_wave``
        partitions are written to Parquet under ``temp_directory`` by one query each (``COPY ...
        PARTITION_BY``); a partition is read back alone, and a wave's files are removed before the next
        is written, so the disk holds one wave."""
        import shutil

        root = Path(self.temp_directory) / "partitions"
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EngineError(f"duckdb: cannot create the spill folder {root.parent}: {e.strerror}") from None
        for a in range(0, int(n_parts), int(per_wave)):
            b = min(int(n_parts), a + int(per_wave))
            shutil.rmtree(root, ignore_errors=True)
            self._run(f"COPY ({wave_sql(a, b)}) TO '{root}' (FORMAT parquet, PARTITION_BY (part))")
            self._note_spill()
            try:
                for p in range(a, b):
                    folder = root / f"part={p}"
                    if folder.is_dir():
                        yield f"read_parquet('{folder}/*.parquet')"
                    else:  # no key fell in this partition
                        yield "(SELECT NULL::BIGINT AS key WHERE false)"
            finally:
                shutil.rmtree(root, ignore_errors=True)

    def drop(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {name}")

    def fetch(self, sql: str) -> dict[str, np.ndarray]:
        """The columns of ``sql``'s result as NumPy arrays."""
        return {k: np.asarray(v) for k, v in self._run(sql).fetchnumpy().items()}

    def spilled_bytes(self) -> int:
        """Bytes now in DuckDB's temporary files (what spilled past the memory limit) and in the
        partition files of :meth:`spill_partitions`."""
        rows = self.con.execute("SELECT coalesce(sum(size), 0) FROM duckdb_temporary_files()").fetchone()
        parts = Path(self.temp_directory) / "partitions"
        written = sum(f.stat().st_size for f in parts.rglob("*.parquet")) if parts.is_dir() else 0
        return int(rows[0]) + written

    def _note_spill(self) -> None:
        """Raises :attr:`peak_spilled` to what is on disk now (after each writing statement)."""
        self.peak_spilled = max(self.peak_spilled, self.spilled_bytes())

    def close(self) -> None:
        self.con.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (bytes), or None where there is none (not Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def auto_memory_limit(fraction: float = 0.5, floor_mib: int = 1024) -> str | None:
    """A DuckDB ``memory_limit`` of ``fraction`` of the memory available now (at least ``floor_mib``),
    e.g. "9800MiB"; None where the available memory is unknown (DuckDB's default then). DuckDB's own
    default, 80 % of RAM, ignores what the calling process already holds: a graph build at the
    ``xlarge`` scale from an in-memory log peaked at 22.4 GiB of a 24 GiB machine under it."""
    avail = available_memory_bytes()
    if avail is None:
        return None
    return f"{max(int(floor_mib), int(avail * fraction) >> 20)}MiB"


def spark_memory(size: str) -> str:
    """A size in DuckDB's units (:mod:`.sizes`: "4GB", "3072MiB", "1.5 GiB") as a JVM/Spark memory string
    in whole mebibytes ("3814m"; at least 1m)."""
    n = size_bytes(size)
    if n is None:
        raise EngineError(f"memory size {size!r} is not a size such as '4GB' or '512MiB'")
    return f"{max(1, n >> 20)}m"


def _first_line(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[0] if lines else type(e).__name__


def to_spark_sql(sql: str) -> str:
    """DuckDB SQL -> Spark SQL (SQLGlot)."""
    import sqlglot

    (out,) = sqlglot.transpile(sql, read="duckdb", write="spark")
    return out


class SparkEngine:
    """The same queries on Spark SQL. session: an existing ``SparkSession``; None = a local one
    (``master``, e.g. ``local[2]``; ``memory``: its driver heap in DuckDB's units, e.g. "4GB" -- local
    mode runs every task in the driver -- None = Spark's default, 1g; ``conf``: more Spark settings),
    stopped by :meth:`close`.

    Every failure is one :class:`EngineError` line: a query Spark rejects or a job that fails gives
    Spark's first line; a local driver that runs out of heap exits at once
    (``-XX:+ExitOnOutOfMemoryError``: a JVM that does not exit leaves the caller waiting on it) and
    reads as the driver having stopped, with its heap size."""

    name = "spark"
    topn_aggregate = False

    def __init__(
        self,
        session=None,
        master: str = "local[*]",
        shuffle_partitions: int = 4,
        conf: dict | None = None,
        memory: str | None = None,
    ):
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise EngineError(
                "engine 'spark' needs pyspark: pip install 'twotower_hgnn[spark]' (and Java 17+)"
            ) from None
        self._own = session is None
        self._warehouse = None
        self._gone = False  # the driver JVM has stopped (set by _guard)
        conf = dict(conf or {})
        if memory is not None:
            conf.setdefault("spark.driver.memory", spark_memory(memory))
        java = conf.get("spark.driver.extraJavaOptions", "")
        conf["spark.driver.extraJavaOptions"] = f"-XX:+ExitOnOutOfMemoryError {java}".strip()
        self.heap = conf.get("spark.driver.memory", "1g (Spark's default)") if self._own else "the session's"
        if session is None:
            # only temporary views are made; without this Spark leaves an empty spark-warehouse/ in the cwd
            self._warehouse = tempfile.mkdtemp(prefix="twotower-spark-warehouse-")
            session = (
                SparkSession.builder.master(master)
                .config("spark.sql.warehouse.dir", self._warehouse)
                .appName("twotower_hgnn-logs")
                .config("spark.sql.shuffle.partitions", str(int(shuffle_partitions)))
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.session.timeZone", "UTC")
            )
            for k, v in conf.items():
                session = session.config(k, str(v))
            try:
                session = self._guard(session.getOrCreate)
            except EngineError as e:  # e.g. a heap under Spark's 450 MiB floor: name where the heap comes from
                raise EngineError(f"{e} (driver heap {self.heap}: graph.memory_limit or spark.driver.memory)") from None
            # py4j logs every broken connection with a traceback and pyspark every rejected query as a JSON
            # record with the JVM's stack: the failure is reported as one line here
            for name in ("py4j", "SQLQueryContextLogger"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        self.spark = session
        if self._own:
            session.sparkContext.setLogLevel("ERROR")

    def _guard(self, fn):
        """``fn()``, with Spark's and py4j's failures as one :class:`EngineError` line."""
        from py4j.protocol import Py4JError, Py4JJavaError
        from pyspark.errors import PySparkException

        if self._gone:
            raise EngineError("spark: the Spark driver has stopped (an earlier query ended it)")
        try:
            return fn()
        except PySparkException as e:  # a query Spark rejects (analysis, parse) or a failed job
            raise EngineError(f"spark: {_first_line(e)}") from None
        except Py4JJavaError as e:  # a JVM exception pyspark does not convert
            raise EngineError(f"spark: {_first_line(e.java_exception)}") from None
        except (Py4JError, ConnectionError):  # the driver JVM is gone
            self._gone = True
            raise EngineError(
                f"spark: the Spark driver stopped during a query (a driver out of heap exits; heap: {self.heap}; "
                "raise graph.memory_limit or spark.driver.memory)"
            ) from None

    def register_frame(self, name: str, df: pd.DataFrame) -> None:
        self._guard(lambda: self.spark.createDataFrame(df).createOrReplaceTempView(name))

    def register_parquet(self, name: str, path: str | os.PathLike, where: str | None = None) -> None:
        def run():
            df = self.spark.read.parquet(str(path))
            if where:
                df = df.where(to_spark_sql(f"SELECT * FROM t WHERE {where}").split(" WHERE ", 1)[1])
            df.createOrReplaceTempView(name)

        self._guard(run)

    def materialize(self, name: str, sql: str) -> None:
        self._guard(lambda: self.spark.sql(to_spark_sql(sql)).cache().createOrReplaceTempView(name))

    def append(self, name: str, sql: str) -> None:
        def run():
            old = self.spark.table(name)
            new = old.unionByName(self.spark.sql(to_spark_sql(sql))).cache()
            new.count()  # materialise before the old cache goes
            old.unpersist()
            new.createOrReplaceTempView(name)

        self._guard(run)

    def drop(self, name: str) -> None:
        def run():
            if self.spark.catalog.tableExists(name):
                self.spark.table(name).unpersist()
                self.spark.catalog.dropTempView(name)

        if not self._gone:  # nothing to drop in a stopped driver (cleanup after its error)
            self._guard(run)

    def fetch(self, sql: str) -> dict[str, np.ndarray]:
        def run():
            with warnings.catch_warnings():  # Arrow's fallback note repeats the failure the error reports
                warnings.simplefilter("ignore", UserWarning)
                return self.spark.sql(to_spark_sql(sql)).toPandas()

        pdf = self._guard(run)
        return {k: pdf[k].to_numpy() for k in pdf.columns}

    def spilled_bytes(self) -> int:
        return 0  # not tracked for Spark

    def close(self) -> None:
        if self._own and not self._gone:
            self.spark.stop()
        if self._warehouse is not None:
            import shutil

            shutil.rmtree(self._warehouse, ignore_errors=True)
            self._warehouse = None


def open_engine(name: str = "duckdb", **opts):
    """A new engine by name (:data:`ENGINES`); ``opts`` go to its constructor."""
    if name == "duckdb":
        return DuckDBEngine(**opts)
    if name == "spark":
        return SparkEngine(**opts)
    raise EngineError(f"log engine {name!r} is not one of {ENGINES}")
