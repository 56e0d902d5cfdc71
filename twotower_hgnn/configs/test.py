"""Tests and smoke runs: the whole pipeline on the tiny synthetic data in seconds; the demo's quality options
(but the parameters' moving average: a few dozen steps are too few for it), budgets cut to a few epochs
(the two-tower to at most 80 steps); the opt-in batch top-K stage on (top 5 of every user), so that the
tiny run exercises every stage."""

from __future__ import annotations

from twotower_hgnn.configs.base import RunConfig, TopKConfig
from twotower_hgnn.configs.demo import IMPROVED, IMPROVED_MODEL
from twotower_hgnn.models.hgnn_config import HGNNConfig
from twotower_hgnn.models.two_tower_config import TwoTowerConfig
from twotower_hgnn.train.hgnn_config import HGNNTrainConfig
from twotower_hgnn.train.two_tower_config import TwoTowerTrainConfig


def get_config() -> RunConfig:
    return RunConfig(
        name="test",
        hgnn=HGNNTrainConfig(
            model=HGNNConfig(hidden_dim=64, out_dim=32),
            batch_positives=64,
            fanouts=(5, 3),
            max_epochs=6,
            max_steps=30,
            val_every_steps=10,
            patience=3,
            val_max_edges=256,
            lr=5e-3,
            progress=False,
            log_every_steps=5,
        ),
        two_tower=TwoTowerTrainConfig(
            batch_size=256,
            epochs=3,
            learning_rate=3e-3,
            checkpoint_every=200,
            log_every=20,
            patience=1,
            max_steps=80,  # tiny's podcasts: 62 steps an epoch, validated at 62 and 80
            id_history_len=8,
            **IMPROVED,
            model=TwoTowerConfig(tower_dims=(64, 32), id_dim=8, **IMPROVED_MODEL),
        ),
        topk=TopKConfig(k=5),
    )
