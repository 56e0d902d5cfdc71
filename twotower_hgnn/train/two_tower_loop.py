"""The two-tower training loop: a flat loop over steps and the hooks that do everything else.

:func:`run_loop` calls each hook's ``before_step``, the jitted step, then each hook's ``after_step``. Hooks
have one job each: :class:`LogHook` (loss history, TensorBoard, progress), :class:`ValidationHook` (early
stopping on a validation metric, best parameters), :class:`TimeCapHook` (the wall-clock safety net),
:class:`CheckpointHook` (the train state with :class:`LoopState` as one checkpoint) and, for tests,
:class:`FailAfterStep` (a simulated crash). ``train.two_tower.train_two_tower`` assembles them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import jax
import numpy as np

from twotower_hgnn.checkpoint import Checkpointer
from twotower_hgnn.parallel import block_on_cpu
from twotower_hgnn import tracking as T
from twotower_hgnn.tracking import MetricWriter, Progress

if TYPE_CHECKING:  # annotations only: the trainer imports this module
    from twotower_hgnn.train.two_tower_config import TwoTowerResult, TwoTowerTrainConfig


def _with_best(state: dict, best: Any, keep_best: bool) -> dict:
    """The checkpointed tree: the train state, plus the best validated parameters when early stopping."""
    return {**state, "best": best} if keep_best else state


# ------------------------------------------------------------------------------------------ loop
@dataclasses.dataclass
class LoopState:
    """Everything the loop carries besides the jitted state: checkpointed as one (``meta["loop"]``)."""

    history: list = dataclasses.field(default_factory=list)
    val_history: list = dataclasses.field(default_factory=list)
    best_metric: float = -math.inf
    best_step: int = 0
    bad_evals: int = 0
    stopped: str | None = None  # why the run stopped early (a resumed stopped run does not train on)
    train_s: float = 0.0


@dataclasses.dataclass
class TrainRun:
    """What the hooks of one run read and change: ``step`` (global, resumes included), ``total`` (budget),
    ``spe`` (steps per epoch), the replicated jitted ``state`` (its ``served`` key is validated and
    returned), ``loop``, ``best`` (host parameters of the best validation), ``result(params, step)`` (a
    TwoTowerResult carrying them) and ``stop`` (why the run ends after this step; None = go on)."""

    cfg: TwoTowerTrainConfig
    spe: int
    total: int
    step: int
    state: dict
    served: str
    loop: LoopState
    best: Any
    result: Callable[[Any, int], TwoTowerResult]
    stop: str | None = None
    t0: float = 0.0
    metric_name: str = "metric"  # the validation metric's name (``validate.metric_name``)  # time.perf_counter() when loop.train_s was last brought up to date

    def spent(self) -> float:
        """Training seconds summed over resumes."""
        return self.loop.train_s + time.perf_counter() - self.t0


class Hook:
    """One job of the loop: ``before_step(run)`` (a ``run.stop`` set here ends the run without the step)
    and ``after_step(run, loss)`` (``loss``: the step's scalar) around each step."""

    def before_step(self, run: TrainRun) -> None:
        pass

    def after_step(self, run: TrainRun, loss: jax.Array) -> None:
        pass


@dataclasses.dataclass
class LogHook(Hook):
    """Every ``log_every`` steps and at the end: the window's mean loss -> ``loop.history``, TensorBoard
    (``train/loss``, ``train/epoch``, ``train/steps_per_sec``), the progress bar; a non-finite mean raises
    FloatingPointError."""

    writer: MetricWriter
    prog: Progress
    window: list = dataclasses.field(default_factory=list)
    t_last: float | None = None  # when the last window was logged (None: the run's start, ``run.t0``)

    def after_step(self, run: TrainRun, loss: jax.Array) -> None:
        self.window.append(loss)
        step, every = run.step, run.cfg.log_every
        if step % every == 0 or step == run.total:
            mean_loss = float(np.mean(jax.device_get(self.window)))
            now, n = time.perf_counter(), len(self.window)
            rate = n / max(now - (run.t0 if self.t_last is None else self.t_last), 1e-9)
            self.window, self.t_last = [], now
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"two-tower loss is {mean_loss} at step {step}")
            run.loop.history.append({"step": step, "loss": mean_loss})
            tags = {T.TRAIN_LOSS: mean_loss, T.TRAIN_EPOCH: step / run.spe, T.TRAIN_STEPS_PER_SEC: rate}
            self.writer.scalars(tags, step)
            self.prog.update(every if step % every == 0 else step % every, loss=mean_loss)

    def flush(self, run: TrainRun) -> None:
        """A run stopped between two logging steps (early stopping, time cap): the curves get the last
        window's mean loss at the stop step too (TensorBoard only; ``loop.history`` is unchanged)."""
        if not self.window:
            return
        mean_loss = float(np.mean(jax.device_get(self.window)))
        now, n = time.perf_counter(), len(self.window)
        rate = n / max(now - (run.t0 if self.t_last is None else self.t_last), 1e-9)
        self.window, self.t_last = [], now
        tags = {T.TRAIN_LOSS: mean_loss, T.TRAIN_EPOCH: run.step / run.spe, T.TRAIN_STEPS_PER_SEC: rate}
        self.writer.scalars(tags, run.step)
        self.prog.update(n, loss=mean_loss)


@dataclasses.dataclass
class ValidationHook(Hook):
    """Every ``eval_every`` steps and at the end: ``validate(result)`` (higher is better); keeps the best
    parameters in ``run.best``; stops after ``patience`` validations without improvement (recorded in
    ``loop.stopped``: a resumed early-stopped run does not train on)."""

    validate: Callable[[TwoTowerResult], float]
    writer: MetricWriter
    eval_every: int

    def after_step(self, run: TrainRun, loss: jax.Array) -> None:
        step, loop = run.step, run.loop
        if step % self.eval_every and step != run.total:
            return
        metric = float(self.validate(run.result(run.state[run.served], step)))
        loop.val_history.append({"step": step, "val": metric})
        print(f"[2T] {run.cfg.target_type} step {step}: validation {run.metric_name} {metric:.4f}", flush=True)
        if metric > loop.best_metric:
            loop.best_metric, loop.best_step, loop.bad_evals = metric, step, 0
            run.best = jax.device_get(run.state[run.served])
        else:
            loop.bad_evals += 1
            if loop.bad_evals >= run.cfg.patience:
                run.stop = loop.stopped = "early_stopping"
        self.writer.scalars({T.valid_tag(run.metric_name): metric, T.VALID_BEST: loop.best_metric}, step)


class TimeCapHook(Hook):
    """The safety net: stops ("time_cap") once ``time_budget_s`` of training is spent, before a step (a
    resume with the budget gone makes none) or after one (unless already stopping)."""

    def before_step(self, run: TrainRun) -> None:
        if run.stop is None and run.cfg.time_budget_s is not None and run.spent() > run.cfg.time_budget_s:
            run.stop = "time_cap"

    def after_step(self, run: TrainRun, loss: jax.Array) -> None:
        self.before_step(run)


@dataclasses.dataclass
class CheckpointHook(Hook):
    """Saves the state (and ``run.best`` when ``keep_best``) with the LoopState in ``meta["loop"]`` every
    ``checkpoint_every`` steps, at the end and when the run stops."""

    ckpt: Checkpointer
    fingerprint: dict
    keep_best: bool

    def after_step(self, run: TrainRun, loss: jax.Array) -> None:
        if run.step % run.cfg.checkpoint_every == 0 or run.step == run.total or run.stop:
            run.loop.train_s, run.t0 = run.spent(), time.perf_counter()
            meta = {"fingerprint": self.fingerprint, "epoch": run.step / run.spe, "loop": dataclasses.asdict(run.loop)}
            self.ckpt.save(run.step, _with_best(run.state, run.best, self.keep_best), meta=meta, overwrite=True)


class InjectedFailure(RuntimeError):
    """The simulated crash of :class:`FailAfterStep`."""


@dataclasses.dataclass
class FailAfterStep(Hook):
    """Fault injection (tests): raises InjectedFailure after global step ``step``, before its checkpoint."""

    step: int

    def after_step(self, run: TrainRun, loss: jax.Array) -> None:
        if run.step == self.step:
            raise InjectedFailure(f"injected failure after step {run.step}")


def run_loop(run: TrainRun, step_fn: Callable[[dict, int], tuple[dict, jax.Array]], hooks: Sequence[Hook]) -> None:
    """Until ``run.total`` or a stop: every ``before_step``, ``step_fn(state, step) -> (state, loss)`` (global
    step ``step``, its batch included), every ``after_step``; hooks in list order."""
    while run.step < run.total and run.stop is None and run.loop.stopped is None:
        for hook in hooks:
            hook.before_step(run)
        if run.stop is not None:
            break
        run.state, loss = step_fn(run.state, run.step)
        block_on_cpu(loss)
        run.step += 1
        for hook in hooks:
            hook.after_step(run, loss)
