"""The HGNN trainer's loop: its state, a flat loop over steps, and the hooks that do its jobs.

:func:`run_loop` runs the jitted step and then a list of :class:`Hook` s until one of them sets
``stop_reason``. Each built-in hook has one job: :class:`ValidationHook` (validation, best params,
early stopping, the epoch/step/time budgets), :class:`LoggingHook` (history, TensorBoard,
progress), :class:`CheckpointHook` (the :class:`LoopState`, saved as one checkpoint), and
:class:`FailAfterStep` (fault injection for tests). ``twotower_hgnn.train.hgnn.train_hgnn`` builds
the :class:`TrainContext` and the state, and appends the caller's hooks to the built-in ones. The
steps' inputs (:class:`FusedStep`, the prefetching feed) live in :mod:`twotower_hgnn.train.hgnn_feed`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sampler.csr import Relation, relation_name
from sampler.spec import Layout, SamplingSpec
from twotower_hgnn import losses
from twotower_hgnn.parallel import block_on_cpu, shard_batch
from twotower_hgnn.rng import np_rng
from twotower_hgnn import tracking as T
from twotower_hgnn.tracking import EarlyStopping, MetricWriter, Progress
from twotower_hgnn.train.hgnn_feed import FusedStep, _Feed

if TYPE_CHECKING:
    from twotower_hgnn.train.hgnn import StepSampler
    from twotower_hgnn.train.hgnn_config import HGNNTrainConfig

STOP_REASONS = ("max_epochs", "early_stopping", "max_steps", "max_time")


class InjectedFailure(RuntimeError):
    """Raised by the :class:`FailAfterStep` hook (a test hook simulating a crash)."""


# ---------------------------------------------------------------------------- state and validation
def host_copy(tree: Any) -> Any:
    """A host (NumPy) copy: survives buffer donation of the device state."""
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def evaluate(eval_step: Callable, params, features, groups: Sequence[dict], mesh, relations) -> dict[str, float]:
    """``losses.ranking_metrics`` of ``params`` over the evaluation groups (summed on the devices)."""
    tot = None
    for grp in groups:
        sums = eval_step(params, features, shard_batch(grp, mesh))
        block_on_cpu(sums)
        tot = sums if tot is None else jax.tree_util.tree_map(jnp.add, tot, sums)
    return losses.ranking_metrics(jax.device_get(tot), [relation_name(r) for r in relations])


def random_baseline(
    batches: Sequence[dict],
    layout: Layout,
    num_nodes: int,
    dim: int,
    margin: float,
    seed: int,
    relations: Sequence[Relation],
) -> dict[str, float]:
    """Validation metrics of random unit embeddings (one fixed random vector per node) on the
    stacked evaluation groups (``seeds[type]`` ``[G, n_type]``, ``positive_mask`` ``[G, P]``)."""
    emb = np_rng(seed, "random-baseline").normal(size=(num_nodes + 1, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    tot: dict[str, Any] = {}
    for grp in batches:
        for g in range(grp["positive_mask"].shape[0]):
            ids = np.concatenate([grp["seeds"][t][g] for t in layout.seeds_per_type])
            part = losses.ranking_sums_np(
                emb[ids],
                layout.anchor,
                layout.positive,
                layout.negative,
                margin,
                grp["positive_mask"][g],
                layout.positive_relation,
                len(relations),
            )
            tot = part if not tot else {k2: tot[k2] + part[k2] for k2 in tot}
    return losses.ranking_metrics(tot, [relation_name(r) for r in relations])


def cap_edges(
    val_edges: Mapping[Relation, np.ndarray], relations: Sequence[Relation], cap: int | None, seed: int
) -> dict[Relation, np.ndarray]:
    """Held-out edges of the relations in use, at most ``cap`` per relation (seeded uniform subset)."""
    out = {}
    for r in relations:
        e = np.asarray(val_edges.get(r, np.zeros((0, 2), np.int64)))
        if cap is not None and e.shape[0] > cap:
            sel = np_rng(seed, "val-cap", relation_name(r)).choice(e.shape[0], cap, replace=False)
            e = e[np.sort(sel)]
        out[r] = e
    return out


@dataclasses.dataclass
class LoopState:
    """What the loop carries from step to step, checkpointed as one (:meth:`arrays` + :meth:`meta`).

    Checkpointed:
      train: ``{"params", "opt_state", "step"}`` (``step`` int32 ``[]``), on the mesh, replicated.
      best_params: host params of the best ``val_mrr`` so far; best_epoch: its epoch (0 = untrained).
      stopper: early stopping on ``val_mrr`` (best value, validations without improvement).
      history: one dict per validation (``HGNNTrainResult.history``).
      step: global steps done (host mirror of ``train["step"]``: no device sync per step).
      epoch / next_step: the sampler position (1-based epoch, next step index inside it).
      epoch_loss / epoch_steps: the epoch's training loss summed over folded steps, and their count.
      wall_s: training wall time of the earlier runs (resumes add up).
    Per run only:
      epoch_len: steps in the current epoch; t_epoch / n_here: when this run entered it and the
        steps run in it since (steps/s); loss_acc / done_here: float32 ``[]`` device sum of the step
        losses not yet folded into ``epoch_loss``, and their count; loss: the last step's loss;
        step_epoch: the last step's epoch (a hook may already have moved ``epoch`` on).
      record: the validation record made at this step (or at start), for the hooks after the one
        that made it; stop_reason: set by a hook to end the run (one of STOP_REASONS).
    """

    train: dict
    best_params: Any
    stopper: EarlyStopping
    history: list[dict] = dataclasses.field(default_factory=list)
    step: int = 0
    epoch: int = 1
    next_step: int = 0
    epoch_loss: float = 0.0
    epoch_steps: int = 0
    best_epoch: int = 0
    wall_s: float = 0.0
    epoch_len: int = 0
    t_epoch: float = 0.0
    n_here: int = 0
    loss_acc: Any = None
    done_here: int = 0
    loss: Any = None
    step_epoch: int = 0
    record: dict | None = None
    stop_reason: str | None = None

    def arrays(self) -> dict[str, Any]:
        """The checkpointed arrays as host copies (orbax cannot save a multi-process global array)."""
        return {"state": host_copy(self.train), "best_params": self.best_params}

    def meta(self, wall_s: float) -> dict[str, Any]:
        """The checkpointed scalars (JSON); ``wall_s``: training wall time up to now, over resumes."""
        return {
            "epoch": self.epoch,
            "next_step": self.next_step,
            "epoch_loss": self.epoch_loss,
            "epoch_steps": self.epoch_steps,
            "early_stopping": self.stopper.state_dict(),
            "history": self.history,
            "wall_s": wall_s,
            "best_epoch": self.best_epoch,
        }

    def restore(self, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Loads what :meth:`arrays` and :meth:`meta` saved (``train`` comes back on the host)."""
        self.train, self.best_params = host_copy(arrays["state"]), host_copy(arrays["best_params"])
        self.stopper.load_state_dict(meta["early_stopping"])
        self.history, self.epoch, self.next_step = list(meta["history"]), int(meta["epoch"]), int(meta["next_step"])
        self.epoch_loss, self.epoch_steps = float(meta["epoch_loss"]), int(meta["epoch_steps"])
        self.wall_s, self.best_epoch = float(meta["wall_s"]), int(meta["best_epoch"])

    def enter_epoch(self, epoch_len: int) -> None:
        self.epoch_len, self.t_epoch, self.n_here, self.loss_acc, self.done_here = (
            epoch_len,
            time.perf_counter(),
            0,
            None,
            0,
        )

    def count_step(self, loss: jax.Array) -> None:
        """Books one step (loss float32 ``[]``); clears the previous step's record."""
        self.loss, self.step_epoch, self.record = loss, self.epoch, None
        self.loss_acc = loss if self.loss_acc is None else self.loss_acc + loss
        self.step, self.next_step, self.done_here, self.n_here = (
            self.step + 1,
            self.next_step + 1,
            self.done_here + 1,
            self.n_here + 1,
        )

    def fold_loss(self) -> None:
        """Moves the device-side running loss into ``epoch_loss`` (a Python float)."""
        if self.loss_acc is not None:
            self.epoch_loss, self.epoch_steps = (
                self.epoch_loss + float(self.loss_acc),
                self.epoch_steps + self.done_here,
            )
        self.loss_acc, self.done_here = None, 0

    def next_epoch(self) -> None:
        self.epoch, self.next_step, self.epoch_loss, self.epoch_steps = self.epoch + 1, 0, 0.0, 0


@dataclasses.dataclass
class TrainContext:
    """What the hooks read and never change: the config, spec and mesh; ``feats`` ``[N + 1, d]`` on
    the mesh; the jitted steps; the step sampler (or the fused step); the validation groups; this
    process's index; the run's start (``time.perf_counter``)."""

    cfg: HGNNTrainConfig
    spec: SamplingSpec
    mesh: Any
    feats: jax.Array
    train_step: Callable
    eval_step: Callable
    steps_src: StepSampler
    fused: FusedStep | None
    val_groups: list[dict]
    p_idx: int
    t_start: float

    def elapsed(self, s: LoopState) -> float:
        return s.wall_s + time.perf_counter() - self.t_start


# ---------------------------------------------------------------------------- the loop and its hooks
class Hook:
    """One job in :func:`run_loop`. ``on_start`` once, then per step ``before_step`` (a hook ends
    the run by setting ``s.stop_reason``), the jitted step, ``after_step``; ``on_end`` always (also
    after an error). Hooks run in list order and share the :class:`LoopState` ``s``."""

    def on_start(self, ctx: TrainContext, s: LoopState) -> None:
        pass

    def before_step(self, ctx: TrainContext, s: LoopState) -> None:
        pass

    def after_step(self, ctx: TrainContext, s: LoopState) -> None:
        pass

    def on_end(self, ctx: TrainContext, s: LoopState) -> None:
        pass


def run_loop(ctx: TrainContext, s: LoopState, hooks: Sequence[Hook]) -> None:
    """The flat loop over steps: hooks before, the jitted step, hooks after, until a hook stops it."""
    feed = _Feed(ctx)
    try:
        for hook in hooks:
            hook.on_start(ctx, s)
        while True:
            for hook in hooks:
                hook.before_step(ctx, s)
            if s.stop_reason is not None:
                return
            run, batch = feed.next(s)
            s.train, loss = run(s.train, batch)
            block_on_cpu(loss)
            s.count_step(loss)
            for hook in hooks:
                hook.after_step(ctx, s)
    finally:
        feed.close()
        for hook in hooks:
            hook.on_end(ctx, s)


class ValidationHook(Hook):
    """Validation, best params, early stopping and the budgets. Validates the untrained model
    (epoch 0) on a fresh start, every ``val_every_steps`` steps, at each epoch end, and when
    ``max_steps`` / ``max_time_s`` ends a partial epoch; at each epoch boundary (and at start) it
    stops the run for ``max_epochs``, early stopping (``patience``), a spent ``max_steps`` or
    ``max_time_s``."""

    def __init__(self) -> None:
        self._boundary = True

    def on_start(self, ctx: TrainContext, s: LoopState) -> None:
        if not s.history:  # epoch 0: the untrained model, the reference for "validation loss went down"
            s.record = self._validate(ctx, s, 0, None, None)

    def before_step(self, ctx: TrainContext, s: LoopState) -> None:
        cfg = ctx.cfg
        if self._boundary and s.stop_reason is None:
            if s.epoch > cfg.max_epochs:
                s.stop_reason = "max_epochs"
            elif s.stopper.should_stop:
                s.stop_reason = "early_stopping"
            elif cfg.max_steps is not None and s.step >= cfg.max_steps:  # e.g. resumed with a spent budget
                s.stop_reason = "max_steps"
            elif cfg.max_time_s is not None and ctx.elapsed(s) >= cfg.max_time_s:
                s.stop_reason = "max_time"
        self._boundary = False

    def after_step(self, ctx: TrainContext, s: LoopState) -> None:
        cfg, budget = ctx.cfg, None
        if cfg.max_steps is not None and s.step >= cfg.max_steps:
            budget = "max_steps"
        elif cfg.max_time_s is not None and ctx.elapsed(s) >= cfg.max_time_s:
            budget = "max_time"
        if budget or s.next_step >= s.epoch_len:
            self._end_epoch(ctx, s, budget)
        elif cfg.val_every_steps and s.step % cfg.val_every_steps == 0:  # mid-epoch validation
            s.fold_loss()
            sps = s.n_here / max(time.perf_counter() - s.t_epoch, 1e-9)
            s.record = self._validate(ctx, s, s.epoch, s.epoch_loss / max(s.epoch_steps, 1), sps)
            if s.stopper.should_stop:
                self._end_epoch(ctx, s, "early_stopping")

    def _end_epoch(self, ctx: TrainContext, s: LoopState, reason: str | None) -> None:
        """Ends this run's part of the epoch: validates unless this step just did, moves to the next
        epoch when this one is complete, and stops the run for ``reason`` (None: go on)."""
        sps = s.n_here / max(time.perf_counter() - s.t_epoch, 1e-9) if s.n_here else None
        s.fold_loss()
        if s.record is None:
            s.record = self._validate(ctx, s, s.epoch, s.epoch_loss / max(s.epoch_steps, 1), sps)
        if s.next_step >= s.epoch_len:  # epoch complete: the next position is the start of the next epoch
            s.next_epoch()
        s.stop_reason, self._boundary = reason, reason is None

    @staticmethod
    def _validate(ctx: TrainContext, s: LoopState, epoch: int, train_loss: float | None, sps: float | None) -> dict:
        m = evaluate(ctx.eval_step, s.train["params"], ctx.feats, ctx.val_groups, ctx.mesh, ctx.spec.relations)
        rec = {
            "epoch": epoch,
            "step": s.step,
            "train_loss": train_loss,
            **m,
            "wall_s": ctx.elapsed(s),
            "steps_per_s": sps,
        }
        if s.stopper.update(m["val_mrr"]):
            s.best_params, s.best_epoch = host_copy(s.train["params"]), epoch
        return rec


class LoggingHook(Hook):
    """The history (every validation record), scalars (TensorBoard + ``metrics.jsonl`` in ``logdir``;
    process 0 only; the tag vocabulary of :mod:`twotower_hgnn.tracking`) and console progress:
    ``train/loss`` every ``log_every_steps`` steps; each validation as ``valid/<metric>`` with
    ``train/mean_loss``, ``train/steps_per_sec``, ``train/wall_s``; at the end ``stop/<reason>`` and one
    console line with the best validation MRR and why training stopped."""

    def __init__(self, logdir: Path | None, cfg: HGNNTrainConfig, p_idx: int, name: str = "hgnn") -> None:
        self.writer = MetricWriter(logdir, enabled=p_idx == 0, strict=True) if logdir is not None else None
        self.name = name
        self.prog = Progress(None, desc=name, enabled=cfg.progress and p_idx == 0)
        self.every, self.p_idx = cfg.log_every_steps, p_idx

    def on_start(self, ctx: TrainContext, s: LoopState) -> None:
        if ctx.cfg.max_steps is not None:  # steps left in this run: %, ETA (epoch-bound runs: rate only)
            self.prog.total = max(int(ctx.cfg.max_steps) - s.step, 0) or None
        self._record(s)

    def after_step(self, ctx: TrainContext, s: LoopState) -> None:
        if s.step % self.every == 0:
            lv = float(s.loss)
            self.prog.update(self.every, epoch=s.step_epoch, loss=lv)
            if self.writer is not None:
                self.writer.scalars({T.TRAIN_LOSS: lv, T.TRAIN_EPOCH: s.step_epoch}, s.step)
        self._record(s)
        if s.stop_reason == "max_time" and self.p_idx == 0:
            print(
                f"[hgnn] stopped by the wall-clock safety net max_time_s={ctx.cfg.max_time_s} at step {s.step} "
                "(not reproducible: set step/epoch budgets)",
                flush=True,
            )

    @staticmethod
    def scalars_of(record: Mapping[str, Any], best: float | None) -> dict[str, float]:
        """A validation record's scalars under the tag vocabulary."""
        names = {"train_loss": T.TRAIN_MEAN_LOSS, "steps_per_s": T.TRAIN_STEPS_PER_SEC, "wall_s": T.TRAIN_WALL_S}
        out = {
            names.get(k, T.valid_tag(k)): v for k, v in record.items() if k not in ("epoch", "step") and v is not None
        }
        if best is not None:
            out[T.VALID_BEST] = best
        return out

    def _record(self, s: LoopState) -> None:
        if s.record is not None:
            s.history.append(s.record)
            if self.writer is not None:
                self.writer.scalars(self.scalars_of(s.record, s.stopper.best), s.step)

    def on_end(self, ctx: TrainContext, s: LoopState) -> None:
        self.prog.close()
        if s.stop_reason is not None and self.p_idx == 0:
            best = s.stopper.best
            print(
                f"[{self.name}] stopped at step {s.step} (epoch {s.epoch - 1} complete): {s.stop_reason}"
                f" ({_STOP_WHY.get(s.stop_reason, s.stop_reason)}); best validation MRR "
                + (f"{best:.4f} at epoch {s.best_epoch}" if best is not None else "n/a"),
                flush=True,
            )
        if self.writer is not None:
            if s.stop_reason is not None:
                self.writer.scalars({T.stop_tag(s.stop_reason): s.step}, s.step)
            self.writer.close()


_STOP_WHY = {
    "max_epochs": "epoch budget spent",
    "max_steps": "step budget spent",
    "early_stopping": "no validation improvement within the patience",
    "max_time": "wall-clock safety net",
}


class CheckpointHook(Hook):
    """Owns the run's checkpoints in ``directory`` (None: none): :meth:`restore` resumes a
    :class:`LoopState` from the latest one; the hook saves the state (plus ``extra`` meta) with each
    validation — its ``val_mrr`` the checkpoint's metric, so the best one is kept besides the
    ``max_to_keep`` latest — and every ``every`` steps in between. At that cadence the running loss
    is folded into the state even with no directory, so a run's figures do not depend on saving."""

    def __init__(self, directory: Path | None, every: int, max_to_keep: int, extra: Mapping[str, Any]) -> None:
        self.every, self.extra, self.ckpt = every, dict(extra), None
        if directory is not None:
            from twotower_hgnn.checkpoint import Checkpointer

            self.ckpt = Checkpointer(directory, max_to_keep=max_to_keep, best_metric_mode="max")

    def restore(self, s: LoopState) -> int | None:
        """Loads the latest checkpoint into ``s``; its step, or None when there is none. Refuses a
        checkpoint written with another ``extra["spec"]`` (the sampling spec)."""
        from twotower_hgnn.checkpoint import json_roundtrip

        if self.ckpt is None or self.ckpt.latest_step() is None:
            return None
        arrays, meta = self.ckpt.restore(s.arrays())
        if meta.get("spec") != json_roundtrip(self.extra.get("spec")):
            raise ValueError(
                f"checkpoint in {self.ckpt.directory} was written for a different sampling spec; "
                "use a new workdir or the same config"
            )
        s.restore(arrays, meta)
        return int(self.ckpt.latest_step())

    def on_start(self, ctx: TrainContext, s: LoopState) -> None:
        if s.record is not None:
            self._save(ctx, s, s.record["val_mrr"])

    def after_step(self, ctx: TrainContext, s: LoopState) -> None:
        if s.record is not None:
            self._save(ctx, s, s.record["val_mrr"])
        elif self.every and s.step % self.every == 0:
            s.fold_loss()
            self._save(ctx, s, None)

    def _save(self, ctx: TrainContext, s: LoopState, metric: float | None) -> None:
        if self.ckpt is not None:
            self.ckpt.save(s.step, s.arrays(), {**s.meta(ctx.elapsed(s)), **self.extra}, metric=metric, overwrite=True)

    def on_end(self, ctx: TrainContext, s: LoopState) -> None:
        if self.ckpt is not None:
            self.ckpt.close()


class FailAfterStep(Hook):
    """Fault injection for tests: raises :class:`InjectedFailure` once global step ``n`` is done
    (after the hooks before it: after that step's checkpoint, if one is due)."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def after_step(self, ctx: TrainContext, s: LoopState) -> None:
        if s.step >= self.n:
            raise InjectedFailure(f"injected failure after step {s.step}")


__all__ = [
    "STOP_REASONS",
    "InjectedFailure",
    "LoopState",
    "TrainContext",
    "Hook",
    "run_loop",
    "ValidationHook",
    "LoggingHook",
    "CheckpointHook",
    "FailAfterStep",
    "FusedStep",
    "host_copy",
    "evaluate",
    "random_baseline",
]
