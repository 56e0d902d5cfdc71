"""Console progress, TensorBoard-readable metrics and early stopping.

``MetricWriter`` writes both TensorBoard event files (tensorboardX, readable by TensorBoard or
``tensorboard.backend.event_processing``) and a ``metrics.jsonl`` (one ``{"step", "tag", "value",
"time"}`` object per line) that tests and reports read without TensorBoard.

One tag vocabulary for every trainer (a writer made with ``strict=True`` refuses any other tag):

* ``train/loss`` (loss at the logging cadence), ``train/mean_loss`` (mean over the epoch so far, at each
  validation), ``train/epoch`` (epochs done, fractional), ``train/steps_per_sec``, ``train/wall_s``;
* ``valid/<metric>`` — the validation metrics (``valid/mrr``, ``valid/loss``, ``valid/loss/<relation>``,
  ``valid/hr@<k>`` ...), ``valid/best`` (the best validation metric so far);
* ``stop/<reason>`` — written once when training ends, at its last step, value = that step; ``<reason>``
  is one of :data:`STOP_REASONS` (why it stopped: ``epochs``/``max_epochs``/``max_steps`` budget spent,
  ``early_stopping`` patience, ``max_time``/``time_cap`` wall-clock safety net).

In a pipeline run every stage writes under ``<version>/tensorboard/<stage>`` (:func:`stage_logdir`), so
``tensorboard --logdir <version>/tensorboard`` shows every stage; the stand-alone trainers default to a
folder of their work directory.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Literal, Mapping


TRAIN_LOSS = "train/loss"
TRAIN_MEAN_LOSS = "train/mean_loss"
TRAIN_EPOCH = "train/epoch"
TRAIN_STEPS_PER_SEC = "train/steps_per_sec"
TRAIN_WALL_S = "train/wall_s"
VALID = "valid/"  # + metric name
VALID_BEST = "valid/best"
STOP = "stop/"  # + one of STOP_REASONS
STOP_REASONS = ("epochs", "max_epochs", "max_steps", "early_stopping", "max_time", "time_cap")
TRAIN_TAGS = (TRAIN_LOSS, TRAIN_MEAN_LOSS, TRAIN_EPOCH, TRAIN_STEPS_PER_SEC, TRAIN_WALL_S)
TENSORBOARD_DIR = "tensorboard"  # <version>/tensorboard/<stage>


def valid_tag(metric: str) -> str:
    """``valid/<metric>`` (a leading ``val_`` is dropped: ``val_mrr`` -> ``valid/mrr``)."""
    return VALID + (metric[4:] if metric.startswith("val_") else metric)


def stop_tag(reason: str) -> str:
    """``stop/<reason>``; ``reason`` must be one of :data:`STOP_REASONS`."""
    if reason not in STOP_REASONS:
        raise ValueError(f"stop reason {reason!r} is not one of {STOP_REASONS}")
    return STOP + reason


def in_vocabulary(tag: str) -> bool:
    """Whether ``tag`` belongs to the tag vocabulary (module docstring)."""
    if tag in TRAIN_TAGS:
        return True
    if tag.startswith(VALID):
        return len(tag) > len(VALID)
    return tag.startswith(STOP) and tag[len(STOP) :] in STOP_REASONS


def stage_logdir(version_dir: str | os.PathLike, stage: str, *sub: str) -> Path:
    """``<version_dir>/tensorboard/<stage>[/<sub>...]``: where a pipeline stage writes its metrics."""
    return Path(version_dir, TENSORBOARD_DIR, stage, *sub)


def progress_enabled(stream: IO[str] | None = None) -> bool:
    """Whether pipeline phases show progress by default: ``$TWOTOWER_HGNN_PROGRESS`` = 1/0 forces it on/off,
    else only when ``stream`` (default stderr) is a terminal (logs of batch jobs and tests stay quiet)."""
    env = os.environ.get("TWOTOWER_HGNN_PROGRESS")
    if env is not None and env.strip() != "":
        return env.strip().lower() not in ("0", "false", "no", "off")
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _fmt_value(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{f:.4g}"


class Progress:
    """Console progress: ``desc 120/1000 (12%) 35.2 steps/s ETA 00:25 loss=0.41``.

    Prints at most once every ``every_s`` seconds (plus a final line on ``close``) so a tight
    training loop is not slowed down by terminal I/O. Metrics shown are the latest passed.
    ``enabled=None``: :func:`progress_enabled` (a terminal, or ``$TWOTOWER_HGNN_PROGRESS``).
    ``final="shown"``: the final line only when a line was printed before (a phase that ended within
    ``every_s`` stays silent); ``"always"``: always. Progress only prints: it changes no result.
    """

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        every_s: float = 5.0,
        stream: IO[str] | None = None,
        unit: str = "steps",
        enabled: bool | None = True,
        final: Literal["always", "shown"] = "always",
    ) -> None:
        self.total = total
        self.desc = desc
        self.every_s = float(every_s)
        self.stream = stream if stream is not None else sys.stderr
        self.unit = unit
        self.enabled = progress_enabled(self.stream) if enabled is None else bool(enabled)
        self.final = final
        self._shown = False
        self.n = 0
        self.metrics: dict[str, Any] = {}
        self._t0 = time.perf_counter()
        self._last_print = self._t0
        self._closed = False

    def rate(self) -> float:
        dt = time.perf_counter() - self._t0
        return self.n / dt if dt > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        parts = [self.desc] if self.desc else []
        if self.total:
            parts.append(f"{self.n}/{self.total} ({100.0 * self.n / self.total:.0f}%)")
        else:
            parts.append(f"{self.n}")
        parts.append(f"{rate:.3g} {self.unit}/s")
        if self.total:
            eta = (self.total - self.n) / rate if rate > 0 else math.inf
            parts.append(f"ETA {_fmt_duration(eta)}")
        else:
            parts.append(f"elapsed {_fmt_duration(time.perf_counter() - self._t0)}")
        parts.extend(f"{k}={_fmt_value(v)}" for k, v in self.metrics.items())
        return " ".join(parts)

    def update(self, n: int = 1, **metrics: Any) -> None:
        self.n += n
        if metrics:
            self.metrics.update(metrics)
        now = time.perf_counter()
        if self.enabled and now - self._last_print >= self.every_s:
            self._last_print = now
            self._shown = True
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if not self._closed and self.enabled and (self.final == "always" or self._shown):
            print(self.line() + " done", file=self.stream, flush=True)
        self._closed = True

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _summary_writer_class() -> type:
    """tensorboardX's ``SummaryWriter``, imported lazily (only writers pay for it) and without torch.

    ``tensorboardX.writer`` imports torch, when it is installed, only to recognise torch tensors in its
    ``add_*`` methods; this project writes Python floats, and importing torch costs ~2.7 s of every
    process that writes metrics (sentence-transformers installs it). While tensorboardX is imported,
    ``sys.modules["torch"] = None`` makes that ``import torch`` fail as if torch were absent (the
    fallback tensorboardX has); the entry is removed again, so a later ``import torch`` works as usual.
    """
    if "tensorboardX.writer" in sys.modules or "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        from tensorboardX import SummaryWriter
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return SummaryWriter


class MetricWriter:
    """Scalars to TensorBoard event files and ``<logdir>/metrics.jsonl`` (appended: resume-safe).

    ``strict=True``: a tag outside the vocabulary (:func:`in_vocabulary`) raises ValueError."""

    def __init__(self, logdir: str | os.PathLike, enabled: bool = True, strict: bool = False) -> None:
        self.logdir = Path(logdir)
        self.enabled = enabled
        self.strict = strict
        self._tb = None
        self._jsonl = None
        if not enabled:
            return
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._tb = _summary_writer_class()(logdir=str(self.logdir), flush_secs=10)
        self._jsonl = open(self.logdir / "metrics.jsonl", "a", encoding="utf-8")

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars({tag: value}, step)

    def scalars(self, values: Mapping[str, Any], step: int) -> None:
        if not self.enabled:
            return
        now = time.time()
        lines = []
        for tag, value in values.items():
            if self.strict and not in_vocabulary(tag):
                raise ValueError(f"metric tag {tag!r} is not in the tag vocabulary (twotower_hgnn.tracking)")
            v = float(value)  # jax/NumPy scalars included; raises on non-numeric input
            self._tb.add_scalar(tag, v, global_step=int(step), walltime=now)
            lines.append(json.dumps({"step": int(step), "tag": tag, "value": v, "time": now}))
        self._jsonl.write("\n".join(lines) + "\n")
        self._jsonl.flush()

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()
            self._jsonl.flush()

    def close(self) -> None:
        if self.enabled and self._tb is not None:
            self._tb.close()
            self._jsonl.close()
            self._tb = None
            self.enabled = False

    def __enter__(self) -> "MetricWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_metrics_jsonl(path: str | os.PathLike) -> list[dict]:
    """Reads ``metrics.jsonl`` (a file or a logdir) into a list of dicts."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class EarlyStopping:
    """Stops after ``patience`` updates without an improvement larger than ``min_delta``.

    ``update(value)`` returns True when ``value`` is a new best. NaN never improves.
    ``state_dict()`` / ``load_state_dict()`` make it resumable (store the dict in checkpoint meta).
    """

    def __init__(self, patience: int, mode: Literal["max", "min"] = "max", min_delta: float = 0.0) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if patience < 0 or min_delta < 0:
            raise ValueError(f"patience and min_delta must be >= 0, got {patience}, {min_delta}")
        self.patience = int(patience)
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_index: int | None = None
        self.bad_updates = 0
        self.num_updates = 0

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, value: float) -> bool:
        value = float(value)
        improved = self._improves(value)
        if improved:
            self.best, self.best_index, self.bad_updates = value, self.num_updates, 0
        else:
            self.bad_updates += 1
        self.num_updates += 1
        return improved

    @property
    def should_stop(self) -> bool:
        # patience=0 behaves like 1: stop at the first update that does not improve.
        return self.bad_updates >= max(self.patience, 1)

    def state_dict(self) -> dict:
        return {
            "patience": self.patience,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "best": self.best,
            "best_index": self.best_index,
            "bad_updates": self.bad_updates,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("best", "best_index", "bad_updates", "num_updates"):
            if key not in state:
                raise KeyError(f"EarlyStopping state is missing '{key}' (have {sorted(state)})")
        self.best = None if state["best"] is None else float(state["best"])
        self.best_index = state["best_index"]
        self.bad_updates = int(state["bad_updates"])
        self.num_updates = int(state["num_updates"])
