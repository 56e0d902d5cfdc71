"""The paper's configuration (De Nadai et al., WWW 2024, section 4): HGNN Adam 1e-3, 256 positive edges
per step, <= 50 epochs with patience 10, fan-out (10, 5); two-tower 512-256-128 towers, batch 128, in-batch
negatives with the logQ correction, as-of example histories, 10 epochs."""

from __future__ import annotations

from twotower_hgnn.configs.base import RunConfig, SplitConfig
from twotower_hgnn.train.hgnn_config import HGNNTrainConfig
from twotower_hgnn.train.two_tower_config import TwoTowerTrainConfig


def get_config() -> RunConfig:
    return RunConfig(
        name="paper", split=SplitConfig(), hgnn=HGNNTrainConfig(), two_tower=TwoTowerTrainConfig(patience=3)
    )
