"""The steps that read the interaction log, written once as relational queries and run by an engine.

The queries are SQL text in DuckDB's dialect (:mod:`.colisten`: co-listening pairs and the graph rule;
:mod:`.counts`: popularity, weak-event counts, relation support, the temporal split; :mod:`.examples`:
the two-tower's positive examples and, per example, the index ranges of its as-of history, queried by
chunks of users, whose means and id tokens NumPy makes). DuckDB runs them
as written (default; embedded, out-of-core: ``memory_limit`` bounds its memory, the rest spills to
``temp_directory``); Spark runs the same text after SQLGlot transpiles it (the ``[spark]`` extra, Java
17+). The one step with a second form is the top-k rule's selection (DuckDB's top-n aggregate, a window
ranking elsewhere), and a test checks the two agree. Inputs (:mod:`.tables`) are the validated
interactions, in memory or as a Parquet dataset partitioned by day so that a window reads only its days.
Results come back as NumPy arrays; the CSR, the sampler and everything downstream stay NumPy/JAX.

The outputs equal the NumPy code's, checked against the golden digests ``tests/golden/log_digests.json``
(:mod:`.digest`, :mod:`.outputs`; written by ``benchmarks/log_golden.py``). Data floor: imports
``twotower_hgnn.data`` and nothing above. ``twotower_hgnn.graph.build_graph`` uses it through
``GraphConfig.engine`` (default ``"duckdb"``); the pipeline's other log steps still run their NumPy
forms (``data.split``, ``features_examples``, ``history``) while the whole dataset is in memory.
"""
