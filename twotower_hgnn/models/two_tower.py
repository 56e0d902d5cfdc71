"""The two-tower (2T) model: user tower, item tower and the in-batch sampled-softmax loss.

the paper's §4: each tower is a 3-layer MLP 512-256-128 scored by dot product, trained with in-batch
negatives weighted by inverse item frequency. Choices where the paper is silent (§9), documented:

* **Activation**: ReLU between layers, none after the last (a linear output keeps the full sphere).
* **Normalisation**: outputs L2-normalised and logits divided by a temperature (default 0.05) —
  cosine scores with a learned-scale-free softmax are the standard stable choice for in-batch
  softmax (Yi et al. 2019 also normalise); ``normalize=False`` gives raw dot products.
* **Loss**: Eq. 5 as printed is linear in the scores and unbounded, so we use the paper's cited
  reference (Yi et al. 2019): softmax cross-entropy over the batch's items with the logQ correction
  (``correction="logq"``, default: subtract log q_j from every logit of column j). The paper's
  per-example inverse-frequency weighting is ``correction="inverse_frequency"``; ``"none"`` is the
  plain in-batch softmax.
* **Item bias** (``item_bias``; off in the paper preset): one more output coordinate, 1 for users and
  ``temperature * log_prior + delta`` for items, so that a logit is ``<u, v> / temperature + log_prior
  + delta / temperature``: the score starts from the item's log training frequency (the popularity prior,
  ``ItemFeatures.log_prior``) and a learned per-item correction ``delta`` (zero-initialised, an item-id
  embedding of width 1) moves it. Retrieval stays one dot product. ``personal_scale_init`` multiplies the
  user vector by a learned scale starting there (e.g. the temperature: personal logits start in [-1, 1]
  instead of [-1/t, 1/t], so that training starts from the prior rather than from random scores).
* **Negatives**: ``negatives="in_batch"`` (the paper: the other examples' items, with the correction
  above) or ``"full"`` — an exact softmax over every item of the catalogue (:func:`full_softmax_loss`;
  no sampling, so no correction), affordable when the catalogue has up to some 10^4 items.
* **Categoricals**: learned embeddings (age bucket 8-d, country / language / genre 16-d each).
* **Item ids** (``id_dim > 0``; off in the paper preset): one learned item-id embedding table shared
  by both towers — the item tower reads its item's row, the user tower the mean of the rows of the
  user's most recent history items per type (``UserFeatures.history_ids``). Token 0 (padding, or an
  item with no training interaction) contributes nothing. No per-user free embedding.

Multi-device: the loss is written on the global batch. Under ``jax.jit`` with the batch sharded
over a mesh, ``user_vecs @ item_vecs.T`` makes XLA all-gather the item vectors, so every device
scores its users against the negatives of the whole global batch — the same loss as on one device.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from twotower_hgnn.features import N_AGE_BUCKETS, ItemFeatures, UserFeatures
from twotower_hgnn.models.two_tower_config import CORRECTIONS, NEGATIVES, TwoTowerConfig  # noqa: F401  (re-exported)

_NEG = -1e9  # masked logit; finite so that a fully masked row cannot produce NaN gradients


class MLP(nn.Module):
    dims: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, d in enumerate(self.dims):
            x = nn.Dense(d, name=f"dense_{i}")(x)
            if i < len(self.dims) - 1:
                x = nn.relu(x)
        return x


def _l2n(x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def pooled_ids(table: nn.Module, tokens: jax.Array) -> jax.Array:
    """Mean id embedding over the non-zero tokens of the last axis: int ``[..., L]`` -> ``[..., d]``."""
    mask = (tokens > 0).astype(jnp.float32)[..., None]
    e = table(tokens) * mask
    return jnp.sum(e, axis=-2) / jnp.maximum(jnp.sum(mask, axis=-2), 1.0)


class UserTower(nn.Module):
    """UserFeatures ``[B]`` -> float32 ``[B, out_dim]``."""

    cfg: TwoTowerConfig
    ids: nn.Module | None = None

    @nn.compact
    def __call__(self, u: UserFeatures) -> jax.Array:
        c = self.cfg
        b = u.age_bucket.shape[0]
        parts = [
            nn.Embed(N_AGE_BUCKETS, c.age_embed_dim, name="age")(u.age_bucket),
            nn.Embed(c.n_countries, c.country_embed_dim, name="country")(u.country),
            u.music,
            u.has_music[:, None],
            u.history_mean.reshape(b, -1),
            u.has_history,
            u.history_count,
        ]
        if self.ids is not None:
            parts.append(pooled_ids(self.ids, u.history_ids).reshape(b, -1))
        x = MLP(c.tower_dims, name="mlp")(jnp.concatenate(parts, axis=-1).astype(jnp.float32))
        x = _l2n(x) if c.normalize else x
        if c.personal_scale_init is not None:
            # learned scale of the personal part <u, v>, starting small so that the item-bias prior leads
            log_s = self.param("log_scale", lambda _: jnp.log(jnp.asarray(c.personal_scale_init, jnp.float32)))
            x = x * jnp.exp(log_s)
        return jnp.concatenate([x, jnp.ones((b, 1), x.dtype)], axis=-1) if c.item_bias else x


class ItemTower(nn.Module):
    """ItemFeatures ``[N]`` -> float32 ``[N, out_dim]``; the HGNN input is dropped unless ``use_hgnn``."""

    cfg: TwoTowerConfig
    ids: nn.Module | None = None

    @nn.compact
    def __call__(self, it: ItemFeatures) -> jax.Array:
        c = self.cfg
        parts = [
            nn.Embed(c.n_languages, c.language_embed_dim, name="language")(it.language),
            nn.Embed(c.n_genres, c.genre_embed_dim, name="genre")(it.genre),
            it.content,
        ]
        if c.use_hgnn:
            parts.append(it.hgnn)
        if self.ids is not None:
            parts.append(self.ids(it.id_token) * (it.id_token > 0).astype(jnp.float32)[:, None])
        x = MLP(c.tower_dims, name="mlp")(jnp.concatenate(parts, axis=-1).astype(jnp.float32))
        x = _l2n(x) if c.normalize else x
        if not c.item_bias:
            return x
        # Item bias in the last coordinate (the user tower's is 1): logit += log_prior + delta / temperature,
        # i.e. the model starts from the popularity prior and learns each known item's correction.
        delta = nn.Embed(c.n_item_tokens, 1, embedding_init=nn.initializers.zeros, name="bias")(it.id_token)[:, 0]
        delta = delta * (it.id_token > 0).astype(jnp.float32)
        return jnp.concatenate([x, (c.temperature * it.log_prior + delta)[:, None]], axis=-1)


class TwoTowerModel(nn.Module):
    """Both towers under one parameter tree: ``{"user": ..., "item": ...}`` (+ ``"item_ids"``, shared)."""

    cfg: TwoTowerConfig

    def setup(self) -> None:
        self.item_ids = (
            nn.Embed(self.cfg.n_item_tokens, self.cfg.id_dim, embedding_init=nn.initializers.normal(0.05))
            if self.cfg.id_dim > 0
            else None
        )
        self.user = UserTower(self.cfg, ids=self.item_ids)
        self.item = ItemTower(self.cfg, ids=self.item_ids)

    def __call__(self, u: UserFeatures, it: ItemFeatures) -> tuple[jax.Array, jax.Array]:
        return self.user(u), self.item(it)

    def encode_user(self, u: UserFeatures) -> jax.Array:
        return self.user(u)

    def encode_item(self, it: ItemFeatures) -> jax.Array:
        return self.item(it)


def in_batch_softmax_loss(
    user_vecs: jax.Array,
    item_vecs: jax.Array,
    item_ids: jax.Array,
    log_q: jax.Array,
    cfg: TwoTowerConfig,
    mask: jax.Array | None = None,
    weight: jax.Array | None = None,
    logit_offset: jax.Array | None = None,
) -> jax.Array:
    """Mean in-batch sampled-softmax cross-entropy over the valid rows of the (global) batch.

    Args:
      user_vecs: float ``[B, d]``; item_vecs: float ``[B, d]`` (row i is example i's positive item).
      item_ids: int ``[B]`` item identity (for accidental-hit masking).
      log_q: float ``[B]`` log sampling probability of each example's item.
      cfg: ``temperature``, ``correction`` and ``mask_accidental_hits`` are read.
      mask: float/bool ``[B]`` (1 = real example); padding is neither a row nor a negative column.
      weight: float ``[B]`` per-example loss weights (e.g. recency); the mean is then
        ``sum(weight * ce) / sum(mask)`` (``none``/``logq`` modes).
      logit_offset: float ``[B, B]`` added to the logits (e.g. each example's time-aware popularity
        prior of every column's item).

    logits[i, j] = <u_i, v_j> / temperature, then per mode:
      * ``logq``: logits[i, j] -= log_q[j]; loss_i = CE(logits[i], i); mean over valid rows.
      * ``inverse_frequency``: plain logits; loss = sum_i w_i CE_i / sum_i w_i with w_i = 1 / q_i
        (= exp(-log_q_i)), i.e. each example weighted by the inverse frequency of its positive item.
      * ``none``: plain logits, unweighted mean.
    With ``mask_accidental_hits`` the columns j != i with item_ids[j] == item_ids[i] are removed from
    row i's softmax (they are the positive again, not negatives).
    """
    b = user_vecs.shape[0]
    valid = jnp.ones((b,), bool) if mask is None else jnp.asarray(mask).astype(bool)
    logits = jnp.dot(user_vecs, item_vecs.T, precision=jax.lax.Precision.HIGHEST) / cfg.temperature
    if logit_offset is not None:
        logits = logits + logit_offset
    if cfg.correction == "logq":
        logits = logits - log_q[None, :]
    eye = jnp.eye(b, dtype=bool)
    keep = valid[None, :] | eye
    if cfg.mask_accidental_hits:
        keep = keep & ((item_ids[:, None] != item_ids[None, :]) | eye)
    logits = jnp.where(keep, logits, _NEG)
    ce = jax.nn.logsumexp(logits, axis=-1) - jnp.diagonal(logits)
    w = valid.astype(jnp.float32)
    if weight is not None and cfg.correction != "inverse_frequency":
        return jnp.sum(w * weight * ce) / jnp.maximum(jnp.sum(w), 1e-12)
    if cfg.correction == "inverse_frequency":
        # Scale-free: only ratios of 1/q matter; shift by the min log_q of valid rows so weights lie in (0, 1].
        lq = jnp.where(valid, log_q, jnp.inf)
        w = w * jnp.exp(jnp.min(lq) - log_q)
    return jnp.sum(w * ce) / jnp.maximum(jnp.sum(w), 1e-12)


def full_softmax_loss(
    user_vecs: jax.Array,
    all_item_vecs: jax.Array,
    item_row: jax.Array,
    temperature: float,
    mask: jax.Array | None = None,
    weight: jax.Array | None = None,
    logit_offset: jax.Array | None = None,
) -> jax.Array:
    """Mean softmax cross-entropy over the whole catalogue: ``sum(weight * ce) / sum(mask)``.

    Args:
      user_vecs: float ``[B, d]``; all_item_vecs: float ``[N, d]`` (every catalogue item).
      item_row: int ``[B]`` row of each example's positive item, or ``[B, M]``: M positives per row
        scored against the row's one softmax (multinomial likelihood); mask: ``[B]`` / ``[B, M]`` (1 =
        real example / target); weight: same shape, per-target loss weights (default: the mask).
      logit_offset: float ``[B, N]`` added to the logits (e.g. each example's time-aware prior).
    """
    logits = jnp.dot(user_vecs, all_item_vecs.T, precision=jax.lax.Precision.HIGHEST) / temperature
    if logit_offset is not None:
        logits = logits + logit_offset
    rows = item_row if item_row.ndim == 2 else item_row[:, None]
    ce = jax.nn.logsumexp(logits, axis=-1, keepdims=True) - jnp.take_along_axis(logits, rows, axis=-1)
    ce = ce if item_row.ndim == 2 else ce[:, 0]
    m = jnp.ones_like(ce) if mask is None else jnp.asarray(mask, jnp.float32)
    w = m if weight is None else jnp.asarray(weight, jnp.float32) * m
    return jnp.sum(w * ce) / jnp.maximum(jnp.sum(m), 1e-12)
