"""Two-tower training: jitted, data-parallel over a mesh, checkpointed and resumable.

PAPER.md §4: Adam, learning rate 1e-3, batch 128, 10 epochs. One example per first stream of a
(user, target item) pair in the training window, user features as of the stream (``features.py``).

* **Static shapes.** Every step sees exactly ``batch_size`` rows: the last batch of an epoch is
  padded and masked (padding rows are neither rows nor negatives of the loss), so the step compiles
  once (``TwoTowerResult.n_compiles`` counts traces).
* **Data parallelism.** Parameters/optimiser state/item table replicated, the batch split over the
  mesh (``parallel.shard_batch``); the loss is written on the global batch so negatives are shared
  across devices (XLA all-gathers the item vectors) and the gradient all-reduce is implicit.
* **Loop and hooks.** ``run_loop`` calls the jitted step, then hooks with one job each: logging,
  validation/early stopping, the time-cap safety net, checkpointing (``LoopState`` is checkpointed as
  one) and, for tests, fault injection (``FailAfterStep``).
* **Resume.** The example order of epoch e is a permutation from ``rng.np_rng(seed, "2t-shuffle", e)``
  and step s covers rows ``[s mod spe * B, ...)`` of epoch ``s // spe``: a run resumed from a
  checkpoint sees exactly the batches the uninterrupted run would have seen.
* **Encoding** (``user_vectors``, ``item_vectors``, ``rank_items``) lives in ``models.encode``, re-exported
  here for old imports.
* **2T baseline.** ``use_hgnn=False`` drops the HGNN input of the item tower and builds the user
  history means from the content embeddings instead (the paper's production 2T has no HGNN at all).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from twotower_hgnn import features as F
from twotower_hgnn.checkpoint import Checkpointer, CheckpointError
from twotower_hgnn.data.schema import Dataset
from twotower_hgnn.models.encode import (  # noqa: F401  (re-exported: encoding moved to models.encode)
    ENCODE_CHUNK,
    _encoder,
    encode_chunked,
    item_vectors,
    rank_items,
    user_vectors,
)
from twotower_hgnn.models.two_tower import TwoTowerConfig, TwoTowerModel, full_softmax_loss, in_batch_softmax_loss
from twotower_hgnn.parallel import make_mesh, replicate, shard_batch
from twotower_hgnn.rng import jax_key, np_rng
from twotower_hgnn.tracking import MetricWriter, Progress
from twotower_hgnn.train.two_tower_loop import (  # noqa: F401  (the loop's names are re-exported for callers)
    CheckpointHook,
    FailAfterStep,
    Hook,
    InjectedFailure,
    LogHook,
    LoopState,
    TimeCapHook,
    TrainRun,
    ValidationHook,
    _with_best,
    run_loop,
)


@dataclasses.dataclass(frozen=True)
class TwoTowerTrainConfig:
    """Training settings; defaults are the paper's (PAPER.md §4).

    Attributes:
      target_type: "audiobook" (Tables 2-3) or "podcast" (Table 4).
      use_hgnn: False = the paper's "2T" baseline (no HGNN inputs anywhere).
      batch_size: global batch (split over devices; must be a multiple of the device count).
      max_steps: step budget (None = ``epochs`` epochs). time_budget_s: a wall-clock safety net only
        (None by default; its hit is the logged stop reason "time_cap" and makes runs machine-dependent).
      patience / eval_every: with a ``validate`` hook, validate every ``eval_every`` steps (None = once
        per epoch) and stop after ``patience`` validations without improvement; the best parameters
        are returned (early stopping).
      example_history: "as_of" (paper: history strictly before each example) or "leave_one_out" (the
        whole training history minus the target item; ``features.build_training_examples``).
      recency_halflife_days: per-example loss weight halving every this many days before the last
        training example (None = uniform, the paper): recent behaviour counts more.
      prior_days: the item-bias prior (``model.item_bias``) is the log frequency of the positives of the
        last ``prior_days`` days of training (None = all of it): what is popular now.
      id_history_len: most recent history items per type fed to the item-id embedding (``model.id_dim``
        > 0 turns the shared item-id embedding on; 0 here then means "item tower ids only").
      history_days: user-history window (None = unbounded); positive_events: events that are positives.
      q_smoothing: additive smoothing of the item frequency q behind the logQ / inverse weights.
      checkpoint_every: steps between checkpoints (and one at the end); log_every: steps between logs.
      num_devices: devices of the data mesh (None = all).
    """

    target_type: str = "audiobook"
    use_hgnn: bool = True
    batch_size: int = 128
    epochs: int = 10
    learning_rate: float = 1e-3
    max_steps: int | None = None
    time_budget_s: float | None = None
    seed: int = 0
    history_days: float | None = 90.0
    positive_events: tuple[str, ...] = ("stream",)
    first_only: bool = False
    q_smoothing: float = 1.0
    patience: int = 2
    eval_every: int | None = None
    id_history_len: int = 0
    example_history: str = "as_of"
    recency_halflife_days: float | None = None
    weight_decay: float = 0.0
    prior_days: float | None = None
    prior_as_of: bool = False
    ema_decay: float | None = None
    checkpoint_every: int = 500
    log_every: int = 50
    num_devices: int | None = None
    progress: bool = True
    model: TwoTowerConfig = dataclasses.field(default_factory=TwoTowerConfig)

    def __post_init__(self) -> None:
        if self.target_type not in ("audiobook", "podcast"):
            raise ValueError(f"target_type must be 'audiobook' or 'podcast', got {self.target_type!r}")
        for name in ("batch_size", "epochs", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.prior_as_of and (self.prior_days is None or not self.model.item_bias):
            raise ValueError("prior_as_of needs prior_days and model.item_bias")

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = dataclasses.asdict(self.model)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TwoTowerTrainConfig":
        d = dict(d)
        m = dict(d.pop("model"))
        m["tower_dims"] = tuple(m["tower_dims"])
        d["positive_events"] = tuple(d["positive_events"])
        return cls(model=TwoTowerConfig(**m), **d)


FULL_SOFTMAX_MAX_ITEMS = 20_000  # above this catalogue size "full" negatives fall back to in-batch + logQ


@dataclasses.dataclass
class TwoTowerResult:
    """A trained two-tower model and everything needed to encode users and items with it.

    Attributes:
      params: host NumPy pytree of the Flax ``TwoTowerModel`` variables.
      cfg: the training config; model_cfg: the model config with vocabulary sizes filled in.
      vocab: categorical vocabularies and feature sizes.
      item_table: ItemFeatures of every target-type item (row r = global id ``item_table.item_idx[r]``).
      history_emb: float32 ``[n_items, d_hist]`` embedding the user history means are built from.
      history: list of ``{"step", "loss"}`` logged so far (including before a resume).
      step: steps done in total (including resumed ones); n_examples: training examples;
      n_compiles: traces of the train step in this run (1 with static shapes).
    """

    params: Any
    cfg: TwoTowerTrainConfig
    model_cfg: TwoTowerConfig
    vocab: F.FeatureVocab
    item_table: F.ItemFeatures
    history_emb: np.ndarray
    history: list[dict]
    step: int
    n_examples: int
    n_compiles: int = 0
    resumed_from: int | None = None
    stop_reason: str = "epochs"
    best_step: int | None = None
    val_history: list[dict] = dataclasses.field(default_factory=list)


# ------------------------------------------------------------------------------------------ steps
def make_loss_fn(model_cfg: TwoTowerConfig):
    """``loss(params, item_table, batch, prior=None) -> scalar`` on the global batch.

    ``prior`` (float32 ``[S, N]``, ``features.PriorTable.log_prior``) with ``batch.prior_slot``: the
    time-aware popularity prior, added to each example's logits (the item table's ``log_prior`` is then
    zero, so the item-bias coordinate carries only the learned correction)."""
    model = TwoTowerModel(model_cfg)

    def loss_fn(params: Any, item_table: F.ItemFeatures, batch: F.TwoTowerBatch, prior: Any = None) -> jax.Array:
        u = model.apply(params, batch.user, method=TwoTowerModel.encode_user)
        offset = None if prior is None else prior[batch.prior_slot]  # [B, N]
        if model_cfg.negatives == "full":
            v_all = model.apply(params, item_table, method=TwoTowerModel.encode_item)
            return full_softmax_loss(
                u,
                v_all,
                batch.item_row,
                model_cfg.temperature,
                mask=batch.mask,
                weight=batch.weight,
                logit_offset=offset,
            )
        items = jax.tree_util.tree_map(lambda a: a[batch.item_row], item_table)
        v = model.apply(params, items, method=TwoTowerModel.encode_item)
        offset = None if offset is None else offset[:, batch.item_row]
        return in_batch_softmax_loss(
            u, v, batch.item_row, batch.log_q, model_cfg, mask=batch.mask, weight=batch.weight, logit_offset=offset
        )

    return loss_fn


def make_train_step(
    model_cfg: TwoTowerConfig,
    tx: optax.GradientTransformation,
    mesh: Any,
    counter: list[int],
    ema_decay: float | None = None,
):
    """Jitted ``step(state, item_table, batch, prior) -> (state, loss)``; ``counter[0]`` += 1 per trace.

    With ``ema_decay`` the state carries ``"ema"``, an exponential moving average of the parameters
    (``ema <- d * ema + (1 - d) * params`` after every update)."""
    loss_fn = make_loss_fn(model_cfg)
    from twotower_hgnn.parallel import batch_sharding, replicated_sharding

    rep, bat = replicated_sharding(mesh), batch_sharding(mesh)

    def step(state: dict, item_table: F.ItemFeatures, batch: F.TwoTowerBatch, prior: Any) -> tuple[dict, jax.Array]:
        counter[0] += 1  # Python side effect: runs only while tracing
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], item_table, batch, prior)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        out = {"params": params, "opt_state": opt_state, "step": state["step"] + 1}
        if ema_decay is not None:
            out["ema"] = optax.incremental_update(params, state["ema"], 1.0 - ema_decay)
        return out, loss

    return jax.jit(step, in_shardings=(rep, rep, bat, rep), out_shardings=(rep, rep), donate_argnums=(0,))


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
    item_row = np.concatenate([ex.item_row[rows], np.zeros(pad, np.int32)]).astype(np.int32)
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    w = mask if weights is None else np.concatenate([weights[rows], np.zeros(pad)]).astype(np.float32)
    return F.TwoTowerBatch(
        user=F.pad_users(F.take_users(ex.user, rows), batch_size),
        item_row=item_row,
        log_q=(log_q_items[item_row] * mask).astype(np.float32),
        mask=mask,
        weight=w,
        prior_slot=None
        if prior_slot is None
        else np.concatenate([prior_slot[rows], np.zeros(pad, np.int32)]).astype(np.int32),
    )


def prior_log_frequency(ex: F.TrainingExamples, days: float | None, alpha: float = 1.0) -> np.ndarray:
    """float32 ``[N]`` smoothed log frequency of each item row among the examples of the last ``days``."""
    keep = np.ones(len(ex), bool) if days is None else ex.timestamp >= ex.timestamp.max() - days * F.DAY_S
    counts = np.bincount(ex.item_row[keep], minlength=len(ex.item_counts))
    return F.smoothed_log_q(counts, alpha)


def recency_weights(timestamps: np.ndarray, halflife_days: float | None) -> np.ndarray | None:
    """float64 ``[E]`` example weights ``2^(-(t_last - t) / halflife)`` normalised to mean 1 (None = uniform)."""
    if halflife_days is None:
        return None
    ts = np.asarray(timestamps, np.float64)
    w = np.exp2(-(ts.max() - ts) / (float(halflife_days) * F.DAY_S))
    return w / w.mean()


def batch_rows(n_examples: int, batch_size: int, seed: int, step: int, _cache: dict | None = None) -> np.ndarray:
    """Example rows of global step ``step`` (deterministic in (seed, step): resumable)."""
    spe = math.ceil(n_examples / batch_size)
    epoch, pos = divmod(step, spe)
    if _cache is not None and _cache.get("epoch") == epoch:
        perm = _cache["perm"]
    else:
        perm = np_rng(seed, "2t-shuffle", epoch).permutation(n_examples)
        if _cache is not None:
            _cache.update(epoch=epoch, perm=perm)
    return perm[pos * batch_size : (pos + 1) * batch_size]


# ------------------------------------------------------------------------------------------ train
def _check_embeddings(ds: Dataset, content_emb: Any, hgnn_emb: Any, use_hgnn: bool) -> None:
    if content_emb is None:
        raise ValueError("content_emb (the SBERT/text item embedding, [n_items, d]) is required")
    for name, e in (("content_emb", content_emb), ("hgnn_emb", hgnn_emb)):
        if e is not None and (np.ndim(e) != 2 or np.shape(e)[0] != ds.num_items):
            raise ValueError(
                f"{name} has shape {np.shape(e)}; expected ({ds.num_items}, d), one row per item of {ds.name}"
            )
        if e is not None and not np.isfinite(np.asarray(e)).all():
            raise ValueError(f"{name} contains NaN/inf")
    if use_hgnn and hgnn_emb is None:
        raise ValueError("use_hgnn=True needs hgnn_emb; pass use_hgnn=False for the 2T baseline")


def prepare(
    ds: Dataset,
    content_emb: np.ndarray,
    hgnn_emb: np.ndarray | None,
    cfg: TwoTowerTrainConfig,
    known_items: np.ndarray | None = None,
):
    """(model_cfg, vocab, item_table, history_emb) for a dataset and config (no training).

    ``known_items``: global ids with a training interaction (the only ones given an id vector)."""
    _check_embeddings(ds, content_emb, hgnn_emb, cfg.use_hgnn)
    hist = np.asarray(hgnn_emb if cfg.use_hgnn else content_emb, np.float32)
    ids_on = cfg.model.id_dim > 0 or cfg.model.item_bias
    vocab = F.build_vocab(
        ds,
        cfg.target_type,
        d_hist=hist.shape[1],
        history_days=cfg.history_days,
        id_history_len=cfg.id_history_len if cfg.model.id_dim > 0 else 0,
    )
    if ids_on:
        vocab = dataclasses.replace(vocab, n_items=int(ds.num_items))
    model = cfg.model
    n_target = int(np.subtract(*F.target_item_range(ds, cfg.target_type)[::-1]))
    if model.negatives == "full" and n_target > FULL_SOFTMAX_MAX_ITEMS:
        print(
            f"[2T] {n_target:,} {cfg.target_type}s > {FULL_SOFTMAX_MAX_ITEMS:,}: in-batch negatives with logQ "
            "instead of the full softmax",
            flush=True,
        )
        model = dataclasses.replace(model, negatives="in_batch", correction="logq")
    model_cfg = dataclasses.replace(
        model,
        use_hgnn=cfg.use_hgnn,
        n_countries=vocab.n_countries,
        n_languages=vocab.n_languages,
        n_genres=vocab.n_genres,
        n_item_tokens=int(ds.num_items) + 1 if ids_on else 1,
    )
    table = F.item_feature_table(
        ds, content_emb, hgnn_emb if cfg.use_hgnn else None, cfg.target_type, vocab, known_items=known_items
    )
    return model_cfg, vocab, table, hist


def warm_start_params(params: Any, path: str | os.PathLike) -> tuple[Any, int, int]:
    """Copies every leaf of an exported ``params.npz`` (``serving.save_model``) whose path and shape
    match into ``params``; leaves whose shape changed (e.g. a vocabulary grew) keep their fresh init.

    Returns ``(params, n_copied, n_leaves)``.
    """
    from flax import traverse_util

    with np.load(path, allow_pickle=False) as z:
        saved = {k: z[k] for k in z.files}
    flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
    n_ok = 0
    for k, v in flat.items():
        if k in saved and saved[k].shape == np.shape(v):
            flat[k] = saved[k].astype(np.asarray(v).dtype)
            n_ok += 1
    return traverse_util.unflatten_dict(flat, sep="/"), n_ok, len(flat)


def _known_items(split: Any) -> np.ndarray:
    train = getattr(split, "train", split)
    return np.unique(train["item_idx"].to_numpy(np.int64))


def _training_data(
    ds: Dataset, split: Any, cfg: TwoTowerTrainConfig, vocab: F.FeatureVocab, table: F.ItemFeatures, hist: np.ndarray
):
    """(examples, ``host_batch(step)``: the padded host batch of global step ``step``, train_table, prior).

    Sets ``table.log_prior`` (float32 ``[N]``, the served prior); with ``prior_as_of`` the step reads
    ``train_table`` (``log_prior`` zeroed) and ``prior`` (float32 ``[S, N]``), else ``table`` and None."""
    ex = F.build_training_examples(
        ds,
        split,
        cfg.target_type,
        hist,
        vocab,
        positive_events=cfg.positive_events,
        first_only=cfg.first_only,
        example_history=cfg.example_history,
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
    cache: dict = {}

    def host_batch(step):
        return make_batch(
            ex, batch_rows(len(ex), cfg.batch_size, cfg.seed, step, cache), log_q_items, cfg.batch_size, weights, slots
        )

    return ex, host_batch, train_table, prior


def _restore(ckpt: Checkpointer, state: dict, meta_fingerprint: dict, workdir: Path):
    """(state, meta) of the latest checkpoint, refusing one written by a different config/dataset."""
    step = ckpt.latest_step()
    state, meta = ckpt.restore(state, step)
    saved = meta.get("fingerprint")
    ignore = ("max_steps", "time_budget_s", "checkpoint_every", "log_every", "progress", "epochs", "patience")
    strip = lambda f: {**f, "train_config": {k: v for k, v in f["train_config"].items() if k not in ignore}}  # noqa: E731
    if saved is None or strip(saved) != strip(meta_fingerprint):
        raise CheckpointError(
            f"checkpoint in {workdir / 'checkpoints'} was written by a different config or dataset; use a fresh workdir"
        )
    return state, meta


def _fresh_state(params: Any, tx: optax.GradientTransformation, ema_decay: float | None) -> dict:
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    if ema_decay is not None:
        state["ema"] = jax.tree_util.tree_map(np.copy, params)
    return state


# ------------------------------------------------------------------------------------------ train
def train_two_tower(
    ds: Dataset,
    split: Any,
    content_emb: np.ndarray,
    hgnn_emb: np.ndarray | None,
    cfg: TwoTowerTrainConfig,
    workdir: str | os.PathLike,
    *,
    init_params_path: str | os.PathLike | None = None,
    validate: Callable[[TwoTowerResult], float] | None = None,
    hooks: Sequence[Hook] = (),
) -> TwoTowerResult:
    """Trains (or resumes training of) a two-tower model; checkpoints under ``workdir/checkpoints``,
    metrics (TensorBoard + metrics.jsonl) under ``workdir/tb``.

    ``validate(result) -> float`` (higher is better; e.g. validation HR@10 of a result carrying the
    current parameters) turns on early stopping: the returned parameters are the best validated ones.
    Stops on ``epochs`` / ``max_steps`` / early stopping; ``time_budget_s`` is only a safety net.
    ``run_loop`` calls the hooks logging, validation, time cap, then ``hooks`` (e.g. ``FailAfter``), then
    checkpointing (so a stop a hook asks for is checkpointed).
    """
    workdir = Path(workdir).expanduser().resolve()
    model_cfg, vocab, table, hist = prepare(ds, content_emb, hgnn_emb, cfg, known_items=_known_items(split))
    ex, host_batch, train_table, prior = _training_data(ds, split, cfg, vocab, table, hist)
    mesh = make_mesh(cfg.num_devices)
    if cfg.batch_size % mesh.devices.size:
        raise ValueError(
            f"batch_size={cfg.batch_size} is not a multiple of the {mesh.devices.size} devices of the mesh"
        )
    spe = math.ceil(len(ex) / cfg.batch_size)
    total = cfg.epochs * spe if cfg.max_steps is None else min(cfg.epochs * spe, int(cfg.max_steps))
    tx = (
        optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay)
        if cfg.weight_decay
        else optax.adam(cfg.learning_rate)
    )
    # jitted init: eager Flax init compiles every initialiser op separately (65 compiles, ~10 s on 2 cores)
    params = jax.device_get(
        jax.jit(TwoTowerModel(model_cfg).init)(
            jax_key(cfg.seed, "2t-init"), host_batch(0).user, jax.tree_util.tree_map(lambda a: a[:2], table)
        )
    )
    keep_best = validate is not None
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=2)
    # JSON round trip so that tuples compare equal to the lists a restored meta holds.
    fingerprint = json.loads(json.dumps({"train_config": cfg.to_json(), "n_examples": len(ex), "n_items": len(table)}))
    resumed_from = ckpt.latest_step()
    if resumed_from is None and init_params_path is not None:
        # Warm start (a new daily version from the previous one): weights only, fresh optimiser state.
        params, n_ok, n_all = warm_start_params(params, init_params_path)
        print(f"[2T] warm start: {n_ok}/{n_all} parameter arrays from {init_params_path}", flush=True)
    state, best, loop = _fresh_state(params, tx, cfg.ema_decay), params, LoopState()
    if resumed_from is not None:
        both, meta = _restore(ckpt, _with_best(state, best, keep_best), fingerprint, workdir)
        best = both.pop("best", best)
        state, loop = both, LoopState(**meta.get("loop", {}))
    result = lambda p, st: TwoTowerResult(  # noqa: E731
        params=jax.device_get(p),
        cfg=cfg,
        model_cfg=model_cfg,
        vocab=vocab,
        item_table=table,
        history_emb=hist,
        history=loop.history,
        step=st,
        n_examples=len(ex),
    )
    counter = [0]
    jitted = make_train_step(model_cfg, tx, mesh, counter, cfg.ema_decay)
    table_dev, prior_dev = replicate(train_table, mesh), (None if prior is None else replicate(prior, mesh))
    step_fn = lambda st, s: jitted(st, table_dev, shard_batch(host_batch(s), mesh), prior_dev)  # noqa: E731
    run = TrainRun(
        cfg=cfg,
        spe=spe,
        total=total,
        step=int(state["step"]),
        state=replicate(state, mesh),
        served="params" if cfg.ema_decay is None else "ema",
        loop=loop,
        best=best,
        result=result,
    )
    eval_every = spe if cfg.eval_every is None else int(cfg.eval_every)
    with (
        ckpt,
        MetricWriter(workdir / "tb") as writer,
        Progress(total - run.step, desc=f"2T {cfg.target_type}", enabled=cfg.progress) as prog,
    ):
        validation = [ValidationHook(validate, writer, eval_every)] if keep_best else []
        run.t0 = time.perf_counter()
        run_loop(
            run,
            step_fn,
            [LogHook(writer, prog), *validation, TimeCapHook(), *hooks, CheckpointHook(ckpt, fingerprint, keep_best)],
        )
    reason = (
        run.stop
        or loop.stopped
        or ("max_steps" if cfg.max_steps is not None and total == int(cfg.max_steps) else "epochs")
    )
    out = result(run.best if keep_best else run.state[run.served], run.step)
    out.n_compiles, out.resumed_from, out.stop_reason = counter[0], resumed_from, reason
    out.best_step, out.val_history = (loop.best_step if keep_best else None), loop.val_history
    print(
        f"[2T] {cfg.target_type}: stopped at step {run.step} ({run.step / spe:.2f} epochs): {reason}"
        + (f"; best validation {loop.best_metric:.4f} at step {loop.best_step}" if keep_best else ""),
        flush=True,
    )
    return out
