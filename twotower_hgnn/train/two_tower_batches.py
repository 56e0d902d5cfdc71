"""Two-tower training data: examples, per-example weights, the item prior, and the padded batch of each step.

``batch_rows`` makes the batch of global step ``s`` a pure function of ``(seed, s)``, so a resumed run sees
exactly the batches of an uninterrupted one. Re-exported from :mod:`twotower_hgnn.train.two_tower`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from twotower_hgnn.arrays import sorted_unique
from twotower_hgnn import features as F
from twotower_hgnn.data.schema import Dataset
from twotower_hgnn.rng import np_rng
from twotower_hgnn.train.two_tower_config import TwoTowerTrainConfig


def make_batch(
    ex: F.TrainingExamples,
    rows: np.ndarray,
    log_q_items: np.ndarray,
    batch_size: int,
    weights: np.ndarray | None = None,
    prior_slot: np.ndarray | None = None,
) -> F.TwoTowerBatch:
    """Host batch of ``rows`` padded to ``batch_size`` (mask 0 on padding); ``weights`` ``[E]`` per example,
    ``prior_slot`` ``[E]`` each example's slot of the time-aware prior (None = static prior)."""
    n = len(rows)
    pad = batch_size - n
    at = ex.positions(rows)  # the rows themselves, or their places in a compacted ``ex``
    item_row = np.concatenate([ex.item_row[at], np.zeros(pad, np.int32)]).astype(np.int32)
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    w = mask if weights is None else np.concatenate([weights[at], np.zeros(pad)]).astype(np.float32)
    return F.TwoTowerBatch(
        user=F.pad_users(ex.users_of(rows), batch_size),
        item_row=item_row,
        log_q=(log_q_items[item_row] * mask).astype(np.float32),
        mask=mask,
        weight=w,
        prior_slot=None
        if prior_slot is None
        else np.concatenate([prior_slot[at], np.zeros(pad, np.int32)]).astype(np.int32),
    )


def prior_log_frequency(ex: F.TrainingExamples, days: float | None, alpha: float = 1.0) -> np.ndarray:
    """float32 ``[N]`` smoothed log frequency of each item row among the examples of the last ``days``."""
    keep = np.ones(len(ex.item_row), bool) if days is None else ex.timestamp >= ex.timestamp.max() - days * F.DAY_S
    counts = np.bincount(ex.item_row[keep], minlength=len(ex.item_counts))
    return F.smoothed_log_q(counts, alpha)


def slot_bucket(n_slots: int) -> int:
    """Rows the time-aware prior is padded to on the device: ``n_slots`` rounded up to a multiple of
    ``max(4, 2^ceil(log2 n) / 8)`` (fewer than ``max(4, n / 4)`` rows more). A run's select
    and refit (the refit's window is longer by the validation days) and the next day's run then share
    one compiled step instead of compiling one per slot count."""
    n = max(int(n_slots), 1)
    g = max(4, (1 << (n - 1).bit_length()) // 8)
    return -(-n // g) * g


def pad_slots(log_prior: np.ndarray) -> np.ndarray:
    """``log_prior`` ``[S, N]`` with rows appended (copies of the last) up to :func:`slot_bucket` ``(S)``;
    examples index only the first ``S`` rows, so the padding is never read."""
    s = log_prior.shape[0]
    pad = slot_bucket(s) - s
    return log_prior if pad == 0 else np.concatenate([log_prior, np.repeat(log_prior[-1:], pad, axis=0)])


def recency_weights(timestamps: np.ndarray, halflife_days: float | None) -> np.ndarray | None:
    """float64 ``[E]`` example weights ``2^(-(t_last - t) / halflife)`` normalised to mean 1 (None = uniform)."""
    if halflife_days is None:
        return None
    ts = np.asarray(timestamps, np.float64)
    w = np.exp2(-(ts.max() - ts) / (float(halflife_days) * F.DAY_S))
    return w / w.mean()


def batch_rows(
    n_examples: int, batch_size: int, seed: int, step: int, _cache: dict | None = None, stream: str = "2t-shuffle"
) -> np.ndarray:
    """Example rows of global step ``step`` (deterministic in (seed, step): resumable); each epoch a
    permutation from the RNG stream ``stream`` (cached per epoch in ``_cache``)."""
    spe = math.ceil(n_examples / batch_size)
    epoch, pos = divmod(step, spe)
    if _cache is not None and _cache.get("epoch") == epoch:
        perm = _cache["perm"]
    else:
        # shuffles an int32 arange in place: the same permutation as permutation(n) (same swaps), half its
        # bytes and no second copy (250M podcast examples at the paper's scale); int64 above int32's range
        perm = np.arange(n_examples, dtype=np.int32 if n_examples < 2**31 else np.int64)
        np_rng(seed, stream, epoch).shuffle(perm)
        if _cache is not None:
            _cache.update(epoch=epoch, perm=perm)
    return perm[pos * batch_size : (pos + 1) * batch_size]


def budget_rows(n_examples: int, cfg: TwoTowerTrainConfig, steps_out: list | None = None) -> np.ndarray | None:
    """Sorted example rows that steps ``0 .. max_steps - 1`` read (:func:`batch_rows`; step 0 always: its
    batch initialises the parameters), or None when the budget is epochs or reads every example anyway:
    only these examples need user features. ``steps_out`` (a list) receives each step's rows, in step order."""
    steps = None if cfg.max_steps is None else max(int(cfg.max_steps), 1)
    if steps is None or steps * cfg.batch_size >= n_examples:
        return None
    cache: dict = {}
    rows = [batch_rows(n_examples, cfg.batch_size, cfg.seed, s, cache) for s in range(steps)]
    if steps_out is not None:
        steps_out[:] = rows
    return sorted_unique(np.concatenate(rows))


def _known_items(split: Any) -> np.ndarray:
    """Sorted int64 global ids of the items with a training row: one counting pass (``np.unique`` sorts
    the whole column, 25M rows at ``large``, and runs once per two-tower fit)."""
    item = getattr(split, "train", split)["item_idx"].to_numpy()
    return np.flatnonzero(np.bincount(item)) if item.size else np.zeros(0, np.int64)


def training_data(
    ds: Dataset, split: Any, cfg: TwoTowerTrainConfig, vocab: F.FeatureVocab, table: F.ItemFeatures, hist: np.ndarray
):
    """(examples, ``host_batch(step)``: the padded host batch of global step ``step``, train_table, prior).

    Sets ``table.log_prior`` (float32 ``[N]``, the served prior); with ``prior_as_of`` the step reads
    ``train_table`` (``log_prior`` zeroed) and ``prior`` (float32 ``[S, N]``), else ``table`` and None."""
    if cfg.example_history == "leave_many_out":  # one unit per user, targets drawn per step
        from twotower_hgnn.features_encoding import _interactions_frame
        from twotower_hgnn.train.two_tower_masked import build_units, units_host_batch

        units = build_units(ds, _interactions_frame(getattr(split, "train", split)), cfg, hist, vocab)
        if len(units) == 0:
            raise ValueError(f"no training users with two {cfg.positive_events} of {cfg.target_type}s")
        table.log_prior = prior_log_frequency(units, cfg.prior_days, cfg.q_smoothing)
        return units, units_host_batch(ds, units, cfg, hist), table, None
    step_rows: list = []  # each budget step's rows (filled when a step budget reads a subset)
    ex = F.build_training_examples(
        ds,
        split,
        cfg.target_type,
        hist,
        vocab,
        positive_events=cfg.positive_events,
        first_only=cfg.first_only,
        example_history=cfg.example_history,
        budget_rows=lambda n: budget_rows(n, cfg, step_rows),
    )
    if len(ex) == 0:
        raise ValueError(f"no training examples: no {cfg.positive_events} of {cfg.target_type}s in the training part")
    log_q_items = F.smoothed_log_q(ex.item_counts, cfg.q_smoothing)
    train_table, prior, slots = table, None, None
    if cfg.prior_as_of:
        pt = F.prior_table(ex.timestamp, ex.item_row, len(table), cfg.prior_days, cfg.q_smoothing)
        table.log_prior, prior, slots = pt.at_end, pt.log_prior, pt.slot
        train_table = dataclasses.replace(table, log_prior=np.zeros_like(pt.at_end))
    else:
        table.log_prior = prior_log_frequency(ex, cfg.prior_days, cfg.q_smoothing)
    weights = recency_weights(ex.timestamp, cfg.recency_halflife_days)
    if ex.built_rows is not None:
        # the priors and weights have seen every example: keep the budget's rows only, and each step's rows
        # instead of the epoch's permutation (~5 GB less for the paper's 250M podcast examples)
        at = ex.built_rows
        weights = None if weights is None else weights[at]
        slots = None if slots is None else slots[at]
        ex = ex.compact()
    cache: dict = {}

    def rows_of(step: int) -> np.ndarray:
        if step < len(step_rows):
            return step_rows[step]
        return batch_rows(len(ex), cfg.batch_size, cfg.seed, step, cache)

    def host_batch(step):
        return make_batch(ex, rows_of(step), log_q_items, cfg.batch_size, weights, slots)

    return ex, host_batch, train_table, prior
