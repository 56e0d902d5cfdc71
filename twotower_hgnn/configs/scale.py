"""Scale runs (``benchmarks/scale.py``, ``--dataset=synthetic --scale=large|xlarge|paper``): the paper's
model with step budgets, on a seeded user sample, so that a stage's cost is the work around training and
not the number of epochs, and evaluation does not grow as users x catalogue.

* HGNN: the demo's 64-wide GraphSAGE, fan-out (5, 3), 200 steps of 128 positive edges (the issue's
  ">= 200 steps on the full graph"), validation every 50 steps; no wall-clock cap.
* Two-tower: the paper's 512-256-128 towers and in-batch negatives with the logQ correction (the demo's
  exact catalogue softmax costs batch x catalogue per step: 700K podcasts at ``large``), 200 steps of 128
  for the length selection and at most 200 for the refit, validated every 100 steps (a validation ranks
  the sampled validation users against the whole catalogue: 40K x 700K at ``large``); user features are
  built only for the 25,600 examples the 200 steps read.
* Evaluation on a seeded sample of at most 20,000 users per segment (``eval.sample_users``), the same
  users for every model; the two-tower's validations (model selection, early stopping) on 5,000 per
  segment (``eval.valid_sample_users``: each ranks its users against the whole catalogue, 3.5M podcasts
  at ``paper``); EASE only up to 5,000 items (its inverse is dense and cubic), ItemKNN up to
  10,000 (dense item x catalogue similarity blocks: 10 minutes at ``small``'s 15,000 on 2 cores): from
  ``small`` up the simple baselines are Popularity and RecentPop.
* Batch top-10 for a seeded sample of 20,000 users of the store (``topk.sample_users``).
* The graph's DuckDB queries under a 4 GB memory limit (the rest spills to disk): a scale run shares the
  machine with its other stages' data; the edges do not depend on the limit.
"""

from __future__ import annotations

import dataclasses

from twotower_hgnn.configs import demo
from twotower_hgnn.configs.base import EvalConfig, RunConfig, TopKConfig
from twotower_hgnn.graph_config import GraphConfig
from twotower_hgnn.train.two_tower_config import TwoTowerTrainConfig


def get_config() -> RunConfig:
    return RunConfig(
        name="scale",
        graph=GraphConfig(memory_limit="4GB"),
        hgnn=dataclasses.replace(demo.hgnn(), max_steps=200, max_time_s=None),
        two_tower=TwoTowerTrainConfig(max_steps=200, eval_every=100, patience=2, log_every=50),
        eval=EvalConfig(sample_users=20_000, valid_sample_users=5_000, ease_max_items=5_000, knn_max_items=10_000),
        topk=TopKConfig(k=10, sample_users=20_000),
    )
