"""The README's run: MovieLens-1M as a two-type proxy on a 2-core CPU in well under 20 minutes.

Smaller widths and budgets than the paper (BUILD_NOTES.md, deviations). Every budget is steps, epochs
or early stopping on validation, so a run is reproducible; the HGNN's 900 s wall-clock cap is only a
logged safety net. The two-towers use the quality options measured one at a time on the demo split
(``benchmarks/results/quality_changes.json``): leave-one-out example histories, the exact catalogue
softmax, the item-bias coordinate from a time-aware popularity prior (the 7 days before each example, and
before the cut when serving; 7 days is RecentPop's window chosen on the validation split) with a learned
correction, a learned personal scale, a shared item-id embedding, and validation of an exponential moving
average of the parameters; 2T gets every one of them too.
"""

from __future__ import annotations

from twotower_hgnn.configs.base import RunConfig
from twotower_hgnn.models.hgnn_config import HGNNConfig
from twotower_hgnn.models.two_tower_config import TwoTowerConfig
from twotower_hgnn.train.hgnn_config import HGNNTrainConfig
from twotower_hgnn.train.two_tower_config import TwoTowerTrainConfig

# the quality options shared by the demo and test presets
IMPROVED = dict(example_history="leave_one_out", prior_days=7.0, prior_as_of=True)
IMPROVED_MODEL = dict(negatives="full", item_bias=True, personal_scale_init=0.05)


def hgnn() -> HGNNTrainConfig:
    # 64-wide, fan-out (5, 3), 128 positives per step; 400 steps (3.8 balanced epochs of 106 steps on
    # MovieLens-1M), validation every 50 steps with patience 5 validations. Measured incl. validation on the
    # shared 2-core box: 1.6-1.8 steps/s at load ~6, 2.3-2.9 at load ~4, 3.5-4 idle (fan-out (10, 5) and
    # 256/128 widths ran at 0.16 steps/s there).
    return HGNNTrainConfig(
        model=HGNNConfig(hidden_dim=64, out_dim=64),
        batch_positives=128,
        fanouts=(5, 3),
        max_epochs=50,
        max_steps=400,
        val_every_steps=50,
        patience=5,
        max_time_s=900.0,
        val_max_edges=500,
        lr=2e-3,
        log_every_steps=20,
    )


def two_tower() -> TwoTowerTrainConfig:
    # 256-128-64 towers, batch 512, validation every 24 steps (patience 5) of the parameters' moving average
    # (decay 0.95); no history window (90 % of MovieLens-1M's ratings fall in 8 months)
    return TwoTowerTrainConfig(
        batch_size=512,
        epochs=10,
        learning_rate=1e-3,
        eval_every=24,
        patience=5,
        ema_decay=0.95,
        id_history_len=50,
        checkpoint_every=1000,
        log_every=100,
        history_days=None,
        **IMPROVED,
        model=TwoTowerConfig(tower_dims=(256, 128, 64), id_dim=32, **IMPROVED_MODEL),
    )


def get_config() -> RunConfig:
    return RunConfig(name="demo", hgnn=hgnn(), two_tower=two_tower())
