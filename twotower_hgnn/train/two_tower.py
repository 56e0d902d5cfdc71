"""Two-tower training: jitted, data-parallel over a mesh, checkpointed and resumable.

the paper's §4: Adam, learning rate 1e-3, batch 128, 10 epochs. One example per first stream of a
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
* **Modules.** Settings and result in ``train.two_tower_config``, examples and batches in
  ``train.two_tower_batches``, the loop and its hooks in ``train.two_tower_loop``; all re-exported here.
* **2T baseline.** ``use_hgnn=False`` drops the HGNN input of the item tower and builds the user
  history means from the content embeddings instead (the paper's production 2T has no HGNN at all).
"""

from __future__ import annotations

import dataclasses
import functools
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
from twotower_hgnn.rng import jax_key, np_rng  # noqa: F401  (np_rng: kept importable from here)
from twotower_hgnn import tracking as T
from twotower_hgnn.tracking import MetricWriter, Progress
from twotower_hgnn.train.two_tower_batches import (  # noqa: F401  (batch helpers re-exported for callers)
    _known_items,
    batch_rows,
    make_batch,
    pad_slots,
    prior_log_frequency,
    recency_weights,
    training_data,
)
from twotower_hgnn.train.two_tower_init import svd_item_embeddings, with_svd_ids
from twotower_hgnn.train.two_tower_config import TwoTowerResult, TwoTowerTrainConfig
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


FULL_SOFTMAX_MAX_ITEMS = 20_000  # above this catalogue size "full" negatives fall back to in-batch + logQ


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


def _optimizer(cfg: TwoTowerTrainConfig) -> optax.GradientTransformation:
    """Adam (AdamW with ``weight_decay``) at ``cfg.learning_rate``."""
    return (
        optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay)
        if cfg.weight_decay
        else optax.adam(cfg.learning_rate)
    )


@functools.lru_cache(maxsize=8)
def _jitted_init(model_cfg: TwoTowerConfig) -> Callable:
    """The jitted Flax init of one model config, kept for the process: the selection run and the refit
    of :func:`twotower_hgnn.pipeline.model_stages.fit_two_tower` share it (one trace, not two)."""
    return jax.jit(TwoTowerModel(model_cfg).init)


def _init_params(model_cfg: TwoTowerConfig, cfg: TwoTowerTrainConfig, batch: F.TwoTowerBatch, table: F.ItemFeatures):
    """Fresh host parameters from the seed. Jitted init: eager Flax init compiles every initialiser op
    separately (65 compiles, ~10 s on 2 cores)."""
    return jax.device_get(
        _jitted_init(model_cfg)(
            jax_key(cfg.seed, "2t-init"), batch.user, jax.tree_util.tree_map(lambda a: a[:2], table)
        )
    )


def _initial_state(
    ckpt: Checkpointer,
    params: Any,
    tx: optax.GradientTransformation,
    cfg: TwoTowerTrainConfig,
    fingerprint: dict,
    workdir: Path,
    keep_best: bool,
    init_params_path: str | os.PathLike | None,
) -> tuple[dict, Any, LoopState, int | None]:
    """``(state, best, loop, resumed_from)``: restored from the latest checkpoint if there is one, else
    fresh (warm-started from ``init_params_path`` when given)."""
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
    return state, best, loop, resumed_from


def _result_fn(
    cfg: TwoTowerTrainConfig,
    model_cfg: TwoTowerConfig,
    vocab: F.FeatureVocab,
    table: F.ItemFeatures,
    hist: np.ndarray,
    loop: LoopState,
    n_examples: int,
) -> Callable[[Any, int], TwoTowerResult]:
    """``result(params, step)``: a :class:`TwoTowerResult` carrying ``params`` (copied to the host)."""

    def result(p: Any, st: int) -> TwoTowerResult:
        return TwoTowerResult(
            params=jax.device_get(p),
            cfg=cfg,
            model_cfg=model_cfg,
            vocab=vocab,
            item_table=table,
            history_emb=hist,
            history=loop.history,
            step=st,
            n_examples=n_examples,
        )

    return result


def _step_fn(
    model_cfg: TwoTowerConfig,
    tx: optax.GradientTransformation,
    mesh: Any,
    cfg: TwoTowerTrainConfig,
    train_table: F.ItemFeatures,
    prior: np.ndarray | None,
    host_batch: Callable[[int], F.TwoTowerBatch],
) -> tuple[Callable[[dict, int], tuple[dict, jax.Array]], list[int]]:
    """``(step_fn(state, step) -> (state, loss), counter)``: the jitted step fed global step ``step``'s batch;
    ``counter[0]`` counts its traces. The time-aware prior goes to the device padded to a bucket of its
    slot count (``pad_slots``), so runs over windows a few days apart (select and refit, the next day's
    run) compile one program."""
    counter = [0]
    jitted = make_train_step(model_cfg, tx, mesh, counter, cfg.ema_decay)
    table_dev, prior_dev = replicate(train_table, mesh), (None if prior is None else replicate(pad_slots(prior), mesh))

    def step_fn(st: dict, s: int) -> tuple[dict, jax.Array]:
        return jitted(st, table_dev, shard_batch(host_batch(s), mesh), prior_dev)

    return step_fn, counter


def _run_with_hooks(
    run: TrainRun,
    step_fn: Callable,
    cfg: TwoTowerTrainConfig,
    logdir: Path,
    ckpt: Checkpointer,
    fingerprint: dict,
    validate: Callable[[TwoTowerResult], float] | None,
    hooks: Sequence[Hook],
) -> None:
    """Runs the loop with the hooks logging, validation (with ``validate``), time cap, ``hooks``, then
    checkpointing; closes the checkpointer, the metric writer and the progress bar."""
    keep_best = validate is not None
    eval_every = run.spe if cfg.eval_every is None else int(cfg.eval_every)
    with (
        ckpt,
        MetricWriter(logdir, strict=True) as writer,
        Progress(run.total - run.step, desc=f"2T {cfg.target_type}", enabled=cfg.progress) as prog,
    ):
        validation = [ValidationHook(validate, writer, eval_every)] if keep_best else []
        logs = LogHook(writer, prog)
        run.t0 = time.perf_counter()
        run_loop(run, step_fn, [logs, *validation, TimeCapHook(), *hooks, CheckpointHook(ckpt, fingerprint, keep_best)])
        # ended (not crashed): the last partial window of losses, then why it stopped
        logs.flush(run)
        writer.scalars({T.stop_tag(_stop_reason(run, cfg)): run.step}, run.step)


def _stop_reason(run: TrainRun, cfg: TwoTowerTrainConfig) -> str:
    """Why the run ended: its hooks' stop (early stopping, time cap), else the budget it spent."""
    return (
        run.stop
        or run.loop.stopped
        or ("max_steps" if cfg.max_steps is not None and run.total == int(cfg.max_steps) else "epochs")
    )


def _finish(
    run: TrainRun, cfg: TwoTowerTrainConfig, keep_best: bool, n_compiles: int, resumed_from: int | None
) -> TwoTowerResult:
    """The returned result (best validated or final parameters), with the stop reason logged."""
    loop, spe = run.loop, run.spe
    reason = _stop_reason(run, cfg)
    out = run.result(run.best if keep_best else run.state[run.served], run.step)
    out.n_compiles, out.resumed_from, out.stop_reason = n_compiles, resumed_from, reason
    out.best_step, out.val_history = (loop.best_step if keep_best else None), loop.val_history
    print(
        f"[2T] {cfg.target_type}: stopped at step {run.step} ({run.step / spe:.2f} epochs): {reason}"
        + (f"; best validation {run.metric_name} {loop.best_metric:.4f} at step {loop.best_step}" if keep_best else ""),
        flush=True,
    )
    return out


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
    logdir: str | os.PathLike | None = None,
) -> TwoTowerResult:
    """Trains (or resumes training of) a two-tower model; checkpoints under ``workdir/checkpoints``,
    metrics (TensorBoard + metrics.jsonl; the tag vocabulary of :mod:`twotower_hgnn.tracking`) under
    ``logdir`` (default ``workdir/tb``; the pipeline: ``<version>/tensorboard/two_tower/<model>/<run>``).

    ``validate(result) -> float`` (higher is better; e.g. validation HR@10 of a result carrying the
    current parameters; its ``metric_name`` attribute, if any, names it: ``valid/<name>``) turns on early
    stopping: the returned parameters are the best validated ones.
    Stops on ``epochs`` / ``max_steps`` / early stopping; ``time_budget_s`` is only a safety net.
    ``run_loop`` calls the hooks logging, validation, time cap, then ``hooks`` (e.g. ``FailAfter``), then
    checkpointing (so a stop a hook asks for is checkpointed).
    """
    workdir = Path(workdir).expanduser().resolve()
    model_cfg, vocab, table, hist = prepare(ds, content_emb, hgnn_emb, cfg, known_items=_known_items(split))
    if cfg.example_history == "leave_many_out" and model_cfg.negatives != "full":
        raise ValueError(
            f"example_history='leave_many_out' needs the full softmax (<= {FULL_SOFTMAX_MAX_ITEMS:,} items)"
        )
    ex, host_batch, train_table, prior = training_data(ds, split, cfg, vocab, table, hist)
    mesh = make_mesh(cfg.num_devices)
    if cfg.batch_size % mesh.devices.size:
        raise ValueError(
            f"batch_size={cfg.batch_size} is not a multiple of the {mesh.devices.size} devices of the mesh"
        )
    spe = math.ceil(len(ex) / cfg.batch_size)
    total = cfg.epochs * spe if cfg.max_steps is None else min(cfg.epochs * spe, int(cfg.max_steps))
    tx = _optimizer(cfg)
    params = _init_params(model_cfg, cfg, host_batch(0), table)
    if cfg.id_init == "svd" and model_cfg.id_dim > 0:
        svd = svd_item_embeddings(
            getattr(split, "train", split), ds.num_users, ds.num_items, model_cfg.id_dim, cfg.seed, cfg.positive_events
        )
        params = with_svd_ids(params, svd)
    keep_best = validate is not None
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=2)
    # JSON round trip so that tuples compare equal to the lists a restored meta holds.
    fingerprint = json.loads(json.dumps({"train_config": cfg.to_json(), "n_examples": len(ex), "n_items": len(table)}))
    state, best, loop, resumed_from = _initial_state(
        ckpt, params, tx, cfg, fingerprint, workdir, keep_best, init_params_path
    )
    step_fn, counter = _step_fn(model_cfg, tx, mesh, cfg, train_table, prior, host_batch)
    run = TrainRun(
        cfg=cfg,
        spe=spe,
        total=total,
        step=int(state["step"]),
        state=replicate(state, mesh),
        served="params" if cfg.ema_decay is None else "ema",
        loop=loop,
        best=best,
        result=_result_fn(cfg, model_cfg, vocab, table, hist, loop, len(ex)),
        metric_name=str(getattr(validate, "metric_name", "metric")),
    )
    logdir = Path(logdir).expanduser().resolve() if logdir is not None else workdir / "tb"
    _run_with_hooks(run, step_fn, cfg, logdir, ckpt, fingerprint, validate, hooks)
    return _finish(run, cfg, keep_best, counter[0], resumed_from)
