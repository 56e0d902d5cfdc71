"""The demo's sizes and budgets with the paper's two-tower recipe (batch 128, in-batch negatives with logQ,
as-of example histories, no item bias or ids): reported beside the improved ``demo`` models."""

from __future__ import annotations

from twotower_hgnn.configs import demo
from twotower_hgnn.configs.base import RunConfig
from twotower_hgnn.models.two_tower_config import TwoTowerConfig
from twotower_hgnn.train.two_tower_config import TwoTowerTrainConfig


def get_config() -> RunConfig:
    return RunConfig(
        name="demo_faithful",
        hgnn=demo.hgnn(),
        two_tower=TwoTowerTrainConfig(
            batch_size=128,
            epochs=10,
            learning_rate=1e-3,
            patience=2,
            checkpoint_every=1000,
            log_every=100,
            history_days=None,
            model=TwoTowerConfig(tower_dims=(256, 128, 64)),
        ),
    )
