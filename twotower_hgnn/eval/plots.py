"""PNG plots of a report: metrics per model per segment, and training curves (matplotlib, Agg backend).

Every PNG is rendered into memory and written with :func:`twotower_hgnn.io.atomic_write_bytes`, so a
killed run never leaves half an image.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: no display on the CI / device machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from twotower_hgnn.io import atomic_write_bytes  # noqa: E402

X_KEYS: tuple[str, ...] = ("step", "epoch", "iteration")


def _margins(fig: Any, left: float, right: float, top: float, bottom: float, hspace: float, wspace: float) -> None:
    """Fixed spacing: the four margins in inches (whatever the figure's size), the gaps between panels as
    fractions of a panel (matplotlib's ``hspace`` / ``wspace``)."""
    h, w = fig.get_figheight(), fig.get_figwidth()
    fig.subplots_adjust(
        left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, hspace=hspace, wspace=wspace
    )


def _save(fig: Any, path: str | Path) -> Path:
    """Renders ``fig`` once (its spacing fixed by the caller, not by ``tight_layout`` or a tight bounding
    box: each measures every tick label, which took half of the evaluate stage's time on the tiny run)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_metrics(report: Mapping[str, Any], path: str | Path, metrics: Sequence[str] | None = None) -> Path:
    """Grouped bars: one row of panels per (target type, segment), one panel per metric, one bar per model."""
    k, depth = int(report["meta"]["k"]), int(report["meta"]["depth"])
    metrics = list(metrics or (f"hr@{k}", f"mrr@{depth}", f"coverage@{depth}", f"ndcg@{k}"))
    rows = report["results"]
    seg_order = {"warm": 0, "cold": 1, "all": 2}  # the paper's tables first: warm, cold; then all
    groups = sorted(
        dict.fromkeys((r["target_type"], r["segment"]) for r in rows),
        key=lambda g: (g[0] != "audiobook", g[0], seg_order.get(g[1], 3), g[1]),
    )
    if not groups:
        raise ValueError("plot_metrics: the report has no results to plot")
    models = list(dict.fromkeys(r["model"] for r in rows))
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(groups), len(metrics), figsize=(3.2 * len(metrics), 2.6 * len(groups)), squeeze=False)
    for gi, (target, seg) in enumerate(groups):
        by_model = {r["model"]: r["metrics"] for r in rows if (r["target_type"], r["segment"]) == (target, seg)}
        for mi, metric in enumerate(metrics):
            ax = axes[gi, mi]
            present = [m for m in models if m in by_model]
            vals = [float(by_model[m][metric]) for m in present]
            ax.bar(range(len(present)), vals, color=[colours(models.index(m) % 10) for m in present])
            ax.set_xticks(range(len(present)), present, rotation=45, ha="right", fontsize=7)
            ax.set_title(f"{target}/{seg}: {metric}", fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
    # rotated model names below each row, a title above it
    _margins(fig, left=0.5, right=0.15, top=0.35, bottom=1.0, hspace=1.0, wspace=0.35)
    return _save(fig, path)


def _x_key(history: Sequence[Mapping[str, Any]]) -> str | None:
    return next((x for x in X_KEYS if all(x in h for h in history)), None)


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "training") -> Path:
    """One panel per numeric logged quantity against ``step``/``epoch`` (or the record index)."""
    if not history:
        raise ValueError(f"plot_training_curves({title}): empty history")
    xk = _x_key(history)
    keys = [
        key
        for key in dict.fromkeys(k for h in history for k in h)
        if key != xk and all(isinstance(h.get(key, 0.0), (int, float, np.number)) for h in history)
    ]
    if not keys:
        raise ValueError(f"plot_training_curves({title}): no numeric quantity besides {xk!r} in the history")
    ncol = min(3, len(keys))
    nrow = math.ceil(len(keys) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 2.8 * nrow), squeeze=False)
    for i, key in enumerate(keys):
        ax = axes[i // ncol, i % ncol]
        pts = [(h[xk] if xk else j, h[key]) for j, h in enumerate(history) if key in h and h[key] is not None]
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="." if len(xs) < 50 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(xk or "record", fontsize=8)
    for j in range(len(keys), nrow * ncol):
        axes[j // ncol, j % ncol].axis("off")
    fig.suptitle(title)
    _margins(fig, left=0.6, right=0.2, top=0.6, bottom=0.5, hspace=0.55, wspace=0.3)
    return _save(fig, path)


def plot_report(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Writes ``metrics.png`` and ``training_<stage>.png`` for every training stage with a history."""
    out_dir = Path(out_dir)
    paths = [plot_metrics(report, out_dir / "metrics.png")] if report["results"] else []
    for stage, info in report.get("training", {}).items():
        if isinstance(info, Mapping) and info.get("history"):
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stage)
            paths.append(plot_training_curves(info["history"], out_dir / f"training_{safe}.png", title=stage))
    return paths
