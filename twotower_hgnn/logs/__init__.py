"""The steps that read the interaction log, written once as relational queries (DuckDB SQL) and run by
DuckDB (default; embedded, out-of-core under a memory limit) or Apache Spark (the ``[spark]`` extra; the
same SQL transpiled by SQLGlot). Data floor: imports ``twotower_hgnn.data`` and nothing above."""
