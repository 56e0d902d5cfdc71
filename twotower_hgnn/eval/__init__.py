"""Offline evaluation: the paper's protocol (§5.1), metrics (App. A), baselines and the report.

A "model" for the evaluator is anything that produces, for a set of users, a ranked list of target-type
items (:class:`twotower_hgnn.eval.protocol.Rankings`); nothing here knows how the lists were made.

Modules: ``protocol`` (the paper's §5.1 sets), ``metrics`` (App. A + long tail), ``baselines`` (the
paper's Popularity / LLM-KNN / HGNN-KNN), ``item_baselines`` (item-kNN and EASE, tuned on validation),
``bootstrap`` (per-user metrics, paired-bootstrap intervals), ``report`` (report.json / .md / console,
per_user.parquet), ``plots``, ``compare`` (one two-tower model against Popularity).
"""
