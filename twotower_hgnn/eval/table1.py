"""Table 1 of the paper: the full 2T-HGNN beside its ablations A-F (warm users, audiobooks), and the
HGNN training time of the balanced sampler (full) against all edges (ablation A)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def time_to_metric(history: Sequence[Mapping[str, Any]], threshold: float, key: str = "val_mrr") -> dict | None:
    """``{"wall_s", "step", "epoch"}`` at the first validation reaching ``threshold`` (None if never)."""
    for h in history:
        if h.get(key) is not None and h[key] >= threshold:
            return {"wall_s": float(h.get("wall_s", 0.0)), "step": h.get("step"), "epoch": h.get("epoch")}
    return None


def hgnn_training_time(full: Mapping[str, Any], off: Mapping[str, Any]) -> dict[str, dict]:
    """Time and steps to stop, and to a common validation MRR, of two HGNN runs' ``history.json``.

    The common level is the lower of the two best validation MRRs: both runs reach it, so the comparison
    is time (and steps) to the same quality (0.95 x that was passed by both within the first epoch on
    synthetic data: too loose to separate them)."""
    thr = min(full["best_metric"], off["best_metric"])
    return {
        key: {
            "wall_s_to_stop": h["wall_s"],
            "steps_to_stop": h["steps"],
            "epochs": h["epochs_run"],
            "stop_reason": h["stop_reason"],
            "best_val_mrr": h["best_metric"],
            "val_mrr_threshold": thr,
            "to_threshold": time_to_metric(h["history"], thr),
        }
        for key, h in (("full", full), ("A", off))
    }


def format_table1(table: Mapping[str, Any], k: int) -> str:
    """Table 1 (``{"rows", "hgnn_training_time"}``) as console text."""
    from twotower_hgnn.eval.report import format_console

    text = format_console({"meta": {"k": k, "depth": 100}, "ablations": table["rows"], "results": []})
    timing = table.get("hgnn_training_time") or {}
    if timing:
        text += "\n\nHGNN training wall-clock, balanced sampler (full) vs all edges (A):\n"
        for key, t in timing.items():
            thr = t["to_threshold"]
            to_thr = "never" if thr is None else f"{thr['wall_s']:.1f}s / step {thr['step']}"
            text += (
                f"  {key:<5} to stop {t['wall_s_to_stop']:.1f}s / {t['steps_to_stop']} steps ({t['epochs']} epochs, "
                f"{t['stop_reason']}); to val MRR >= {t['val_mrr_threshold']:.3f}: {to_thr}\n"
            )
        text += (
            "  (seconds on a shared machine are noisy; steps are the robust figure; the level is seen only "
            "at validations: epoch ends, and every val_every_steps steps where the configuration sets it)\n"
        )
    return text
