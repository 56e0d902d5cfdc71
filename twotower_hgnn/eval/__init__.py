"""Offline evaluation: the paper's protocol (§5.1), metrics (App. A), baselines and the report.

A "model" for the evaluator is anything that produces, for a set of users, a ranked list of target-type
items (:class:`twotower_hgnn.eval.protocol.Rankings`); nothing here knows how the lists were made.
"""
