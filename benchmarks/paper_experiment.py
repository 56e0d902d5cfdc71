"""The paper-shaped experiment (issue 6, item 9): do PAPER.md's orderings hold on synthetic data, over seeds?

For each seed s (``data_seed = seed = s``: the synthetic data differs per seed, so the spread includes
data variation, not only training noise) this runs, as subprocesses of the daily job:

* the main pipeline (Tables 2-4: Popularity, LLM-KNN, HGNN, 2T, 2T-HGNN on audiobooks and podcasts)::

      python -m launch.pipeline --dataset=synthetic --scale=S --preset=P --data_seed=s --seed=s --out_dir=D

* ablation A (balanced sampler off), audiobook target only (Table 1 is warm/audiobook)::

      python -m launch.pipeline ... --ablation=A --targets=audiobook

  ``--ablation=A`` writes only under ``ablation-A/`` and reuses data/split/graph/content, and A is
  compared with the main run's 2T-HGNN (same HGNN, same audiobook two-tower config). Not
  ``launch.ablations``: its ``run_table1`` trains one more audiobook-only reference two-tower (under
  ``ablation-full/`` since commit 6a83e9e; before it, that reference replaced the main run's two-target
  ``two_tower``/``evaluate`` stages).

Valid stages are skipped by the pipeline, so rerunning this script after the runs exist only
collects (``--norun`` does not even start the subprocesses). It then reads every
``evaluate/report.json`` and ``hgnn/history.json`` and reports:

* mean, sample std (ddof=1), min and max over seeds per model x target x segment x metric;
* the paper's orderings on HR@K -- warm audiobooks 2T-HGNN > HGNN > 2T > Popularity, cold audiobooks
  2T-HGNN > Popularity > 2T -- checked per seed (every adjacent pair) and on the means;
* ablation A vs the full model: HR@K / MRR / Coverage deltas on warm audiobooks, and the HGNN training
  wall-clock to its stop (early stop or budget) and to a fixed validation MRR (0.95 x the lower of the
  two best values, the rule of ``pipeline.run_table1``), plus steps, epochs and steps/s;
* per-run diagnostics for the "why": HGNN best val MRR vs its random baseline and stop reason,
  two-tower steps/examples, stage seconds (of the stage's last (re)run: a resumed stage records only
  the resume), and with ``--diagnose`` the data behind the audiobook tables: how concentrated the
  relevant items are on the 10 most-streamed audiobooks, history sizes, how often a relevant item is
  in one of the user's true taste topics (generator ground truth), and a *topic oracle* ranking
  (popular audiobooks of the user's true topics first) as a reference ceiling for HR@K.

Run:
  .venv/bin/python -m benchmarks.paper_experiment --scale=small --preset=demo --seeds=0,1,2 \\
      --out_dir=runs_experiment --json=runs_experiment/paper_experiment.json
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twotower_hgnn.eval.report import load_report  # noqa: E402
from twotower_hgnn.io import atomic_write_json  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("scale", "small", "Synthetic scale.")
flags.DEFINE_enum("preset", "demo", ["demo", "tiny", "paper"], "Pipeline hyper-parameter preset.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (data_seed = seed).")
flags.DEFINE_string("out_dir", "runs_experiment", "Pipeline out_dir (versions live under it).")
flags.DEFINE_list("targets", ["audiobook", "podcast"], "Targets of the main runs.")
flags.DEFINE_boolean("ablation_a", True, "Also run and summarise ablation A.")
flags.DEFINE_boolean("run", True, "Start the pipeline subprocesses (valid stages are skipped); "
                     "--norun only collects existing reports.")
flags.DEFINE_boolean("rerun_existing", False, "Also start the pipeline for runs whose report exists. Off by default: "
                     "a code change that alters a stage fingerprint makes the pipeline resume the time-budgeted "
                     "two-tower training with a fresh budget, so a re-run would train those models longer.")
flags.DEFINE_integer("timeout_s", 1500, "Wall-clock limit of one pipeline subprocess.")
flags.DEFINE_string("json", None, "Write the summary here (atomically).")
flags.DEFINE_boolean("equal_steps", False, "Ablation A at equal steps: retrain A's HGNN (no checkpoints) for exactly "
                     "the steps the full model had at its first validation and compare val MRR there "
                     "(load-independent; A's own runs validate only once, at the budget's end).")
flags.DEFINE_boolean("diagnose", True, "Compute the data diagnostics (regenerates each seed's synthetic data).")

METRICS = ("hr@{k}", "mrr@100", "coverage@100", "recall@{k}", "ndcg@{k}")
# (name, target, segment, chain best -> worst) on HR@K, PAPER.md Tables 2-3.
ORDERINGS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("warm", "audiobook", "warm", ("2T-HGNN", "HGNN", "2T", "Popularity")),
    ("cold", "audiobook", "cold", ("2T-HGNN", "Popularity", "2T")),
)


# ------------------------------------------------------------------------------------- running
def version_dir(out_dir: str, scale: str, seed: int) -> Path:
    """Mirrors ``PipelineConfig.version_dir`` for synthetic data (tag ``synthetic-<scale>-s<seed>``)."""
    return Path(out_dir).resolve() / f"synthetic-{scale}-s{seed}" / "default"


def pipeline_cmd(scale: str, preset: str, seed: int, out_dir: str, targets: Sequence[str],
                 ablation: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "launch.pipeline", "--dataset=synthetic", f"--scale={scale}", f"--preset={preset}",
           f"--data_seed={seed}", f"--seed={seed}", f"--out_dir={Path(out_dir).resolve()}",
           f"--targets={','.join(targets)}", "--demo_users=none"]
    if ablation:
        cmd.append(f"--ablation={ablation}")
    return cmd


def run_one(cmd: list[str], log_path: Path, timeout_s: int) -> float:
    """Runs one pipeline subprocess, output to ``log_path``; returns its wall seconds."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.time()
    print(f"[experiment] {' '.join(cmd[1:])}  (log: {log_path})", flush=True)
    with open(log_path, "a") as log:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"pipeline ran past --timeout_s={timeout_s}: {' '.join(cmd)} (log: {log_path})") from None
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline failed (exit {proc.returncode}): {' '.join(cmd)}; see {log_path}")
    secs = time.time() - t0
    print(f"[experiment]   done in {secs:.0f}s", flush=True)
    return secs


# ------------------------------------------------------------------------------------- collecting
def _read_json(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run without --norun first)")
    return json.loads(path.read_text())


def stage_seconds(vdir: Path, prefix: str = "") -> dict[str, float]:
    """Seconds each stage took when it last ran (from its ``_STAGE.json`` marker)."""
    out = {}
    for stage in ("data", "split", "graph", "content", "hgnn", "two_tower", "evaluate", "export"):
        m = vdir / prefix / stage / "_STAGE.json"
        if m.exists():
            out[stage] = round(float(json.loads(m.read_text())["seconds"]), 1)
    return out


def hgnn_summary(hist: Mapping[str, Any]) -> dict[str, Any]:
    h = hist["history"]
    sps = [r["steps_per_s"] for r in h if r.get("steps_per_s")]
    return {"best_val_mrr": hist["best_metric"], "random_val_mrr": hist["baseline"].get("val_mrr"),
            "untrained_val_mrr": h[0].get("val_mrr") if h else None, "best_epoch": hist["best_epoch"],
            "epochs_run": hist["epochs_run"], "steps": hist["steps"], "wall_s": hist["wall_s"],
            "stop_reason": hist["stop_reason"], "steps_per_s": float(np.mean(sps)) if sps else None,
            "n_validations": len(h)}


def time_to_metric(history: Sequence[Mapping[str, Any]], threshold: float, key: str = "val_mrr",
                   clock: str = "wall_s") -> float | None:
    """Training wall-clock (or ``clock="step"``: steps) at the first validation reaching ``threshold``
    (None = never); the rule of ``pipeline.time_to_metric`` (not imported: benchmarks sit below the
    pipeline's floor). Resolution = one validation (an epoch, or the budget's end)."""
    for h in history:
        if h.get(key) is not None and h[key] >= threshold:
            return float(h.get(clock, 0.0))
    return None


def _first_val_level(hist: Mapping[str, Any], hist_a: Mapping[str, Any]) -> dict[str, Any]:
    first = next(r for r in hist["history"] if r["step"] > 0)
    lvl = float(first["val_mrr"])
    return {"level": lvl, "full_step": int(first["step"]), "full_wall_s": float(first["wall_s"]),
            "A_step": time_to_metric(hist_a["history"], lvl, clock="step"),
            "A_wall_s": time_to_metric(hist_a["history"], lvl), "A_steps_run": int(hist_a["steps"])}


def best_val_losses(hist: Mapping[str, Any]) -> dict[str, float]:
    """Per-relation validation losses at the best validation (which relations the training favoured)."""
    h = hist["history"]
    best = max(h, key=lambda r: r.get("val_mrr") if r.get("val_mrr") is not None else -1.0)
    return {k: v for k, v in best.items() if k.startswith("val_loss/")}


def collect_seed(vdir: Path, with_a: bool) -> dict[str, Any]:
    rep = load_report(vdir / "evaluate" / "report.json")
    k = int(rep["meta"]["k"])
    res = {(r["model"], r["target_type"], r["segment"]): r["metrics"] for r in rep["results"]}
    tt = {}
    for stage in ("two_tower",):
        marker = vdir / stage / "_STAGE.json"
        if marker.exists():
            tt = json.loads(marker.read_text()).get("summary", {})
    hist = _read_json(vdir / "hgnn" / "history.json")
    out: dict[str, Any] = {
        "k": k, "results": res, "stage_seconds": stage_seconds(vdir), "hgnn": hgnn_summary(hist),
        "two_tower": tt, "protocol_stats": rep["meta"].get("protocol_stats", {}),
        "split": rep["meta"].get("split", {}), "dataset": rep["meta"].get("dataset", {}),
    }
    if with_a:
        rep_a = load_report(vdir / "ablation-A" / "evaluate" / "report.json")
        hist_a = _read_json(vdir / "ablation-A" / "hgnn" / "history.json")
        full_row = res[("2T-HGNN", "audiobook", "warm")]
        a_row = {(r["model"], r["target_type"], r["segment"]): r["metrics"] for r in rep_a["results"]}
        a_row = a_row[("2T-HGNN", "audiobook", "warm")]
        thr = 0.95 * min(hist["best_metric"], hist_a["best_metric"])
        out["ablation_A"] = {
            "full": full_row, "A": a_row,
            "delta": {m: a_row[m] - full_row[m] for m in (f"hr@{k}", "mrr@100", "coverage@100")},
            "hgnn_full": {**hgnn_summary(hist), "wall_s_to_threshold": time_to_metric(hist["history"], thr),
                          "steps_to_threshold": time_to_metric(hist["history"], thr, clock="step"),
                          "best_val_losses": best_val_losses(hist)},
            "hgnn_A": {**hgnn_summary(hist_a), "wall_s_to_threshold": time_to_metric(hist_a["history"], thr),
                       "steps_to_threshold": time_to_metric(hist_a["history"], thr, clock="step"),
                       "best_val_losses": best_val_losses(hist_a)},
            "val_mrr_threshold": thr, "stage_seconds": stage_seconds(vdir, "ablation-A"),
            # A stricter level: the full model's val MRR at its first validation (one balanced epoch).
            "full_first_val": _first_val_level(hist, hist_a),
        }
    return out


# ------------------------------------------------------------------------------------- ablation A, equal steps
def equal_steps_a(vdir: Path) -> dict[str, Any]:
    """Trains ablation A's HGNN config for the full model's steps at its first validation (same graph,
    features, held-out edges, seed; no time budget, no checkpoints); returns both val MRRs there."""
    import dataclasses

    from sampler.csr import HeteroCSR
    from twotower_hgnn.train.hgnn import HGNNTrainConfig, train_hgnn

    full = _read_json(vdir / "hgnn" / "history.json")
    a_hist = _read_json(vdir / "ablation-A" / "hgnn" / "history.json")
    first = next(r for r in full["history"] if r["step"] > 0)
    cfg = HGNNTrainConfig.from_dict(a_hist["config"])
    cfg = dataclasses.replace(cfg, max_steps=int(first["step"]), max_time_s=None, progress=False)
    graph = HeteroCSR.load(vdir / "graph" / "train_graph")
    content = np.load(vdir / "content" / "content.npy")
    with np.load(vdir / "graph" / "val_edges.npz") as z:
        val = {tuple(k.split("-")): z[k] for k in z.files}
    t0 = time.time()
    res = train_hgnn(graph, content, val, cfg, None)
    last = res.history[-1]
    return {"steps": int(first["step"]), "full_val_mrr": float(first["val_mrr"]), "A_val_mrr": float(last["val_mrr"]),
            "A_untrained_val_mrr": float(res.history[0]["val_mrr"]), "full_untrained_val_mrr": float(full["history"][0]["val_mrr"]),
            "A_val_losses": {k: v for k, v in last.items() if k.startswith("val_loss/")},
            "full_val_losses": {k: v for k, v in first.items() if k.startswith("val_loss/")},
            "A_wall_s": time.time() - t0}


# ------------------------------------------------------------------------------------- diagnostics
def _split_parts(vdir: Path):
    """The run's split as the protocol reads it (train/test tables, from the split stage)."""
    import types

    import pandas as pd

    return types.SimpleNamespace(train=pd.read_parquet(vdir / "split" / "train.parquet"),
                                 test=pd.read_parquet(vdir / "split" / "test.parquet"))


def diagnose(vdir: Path, scale: str, seed: int, k: int = 10) -> dict[str, Any]:
    """Audiobook-side facts behind Tables 2-3 for one run (module docstring), per segment."""
    from twotower_hgnn.data import load_dataset
    from twotower_hgnn.data.schema import ITEM_TYPES
    from twotower_hgnn.eval.baselines import rank_users
    from twotower_hgnn.eval.metrics import compute_metrics
    from twotower_hgnn.eval.protocol import build_protocol

    ds = load_dataset("synthetic", scale=scale, seed=seed)
    if ds.truth is None:
        raise ValueError(f"{scale}/seed {seed}: the dataset carries no generator ground truth")
    split = _split_parts(vdir)
    tp = build_protocol(ds, split, ["audiobook"], exclude_seen=True)["audiobook"]
    item_topic = np.asarray(ds.truth["item_topic"], np.int64)
    tastes = np.asarray(ds.truth["user_topics"], np.int64)  # [n_users, 3] topic ids
    n_topics = int(max(item_topic.max(), tastes.max())) + 1
    cat_topic = item_topic[tp.catalogue]
    top10 = tp.catalogue[np.argsort(-tp.train_streams, kind="stable")[:k]]
    # Distinct podcasts each evaluated user streamed/engaged with in the train part.
    tr = split.train
    pc_code = ITEM_TYPES.index("podcast")
    is_pc = ds.item_type_codes()[tr["item_idx"].to_numpy()] == pc_code
    pairs = np.unique(tr.loc[is_pc, ["user_idx", "item_idx"]].to_numpy(np.int64), axis=0)
    n_pc = np.bincount(pairs[:, 0], minlength=ds.num_users)
    # Topic oracle: score = (# of the user's taste slots on the item's topic + 1e-3) x (train streams + 1).
    uvec = np.zeros((ds.num_users, n_topics + 1), np.float32)
    np.add.at(uvec, (np.repeat(np.arange(ds.num_users), tastes.shape[1]), tastes.ravel()), 1.0)
    uvec[:, n_topics] = 1e-3
    ivec = np.zeros((tp.catalogue.size, n_topics + 1), np.float32)
    pop = (tp.train_streams + 1).astype(np.float32)
    ivec[np.arange(tp.catalogue.size), cat_topic] = pop
    ivec[:, n_topics] = pop
    # (user, item) keys of train weak signals (preview/follow/intent) on audiobooks: the generator
    # converts many of them into later streams of the same item, which are not excluded (not streamed).
    from twotower_hgnn.data.schema import WEAK_EVENTS

    ab_code = ITEM_TYPES.index("audiobook")
    weak_m = (ds.item_type_codes()[tr["item_idx"].to_numpy()] == ab_code) & tr["event"].astype(str).isin(WEAK_EVENTS).to_numpy()
    weak_keys = np.unique(tr["user_idx"].to_numpy(np.int64)[weak_m] * ds.num_items + tr["item_idx"].to_numpy(np.int64)[weak_m])
    out: dict[str, Any] = {"catalogue": int(tp.catalogue.size),
                           "top10_share_of_train_streams": float(np.sort(tp.train_streams)[::-1][:k].sum()
                                                                 / max(tp.train_streams.sum(), 1))}
    for seg in ("warm", "cold"):
        pos = tp.segment(seg)
        rel = tp.relevant.take(pos)
        users = tp.users[pos]
        rel_user = users[rel.row_ids()]
        in_taste = (tastes[rel_user] == item_topic[rel.indices][:, None]).any(1)
        from_weak = np.isin(rel_user * ds.num_items + rel.indices, weak_keys)
        ranked = rank_users(tp, uvec[users], ivec, pos).items
        oracle = compute_metrics(ranked, rel, tp.catalogue, k=k, name=f"topic-oracle/audiobook/{seg}")
        hist = tp.history.take(pos).sizes()
        out[seg] = {
            "users": int(pos.size), "relevant_per_user": float(rel.sizes().mean()) if pos.size else None,
            "relevant_in_top10_popular": float(np.isin(rel.indices, top10).mean()) if rel.nnz else None,
            "users_with_a_top10_popular_relevant": float(np.bincount(rel.row_ids()[np.isin(rel.indices, top10)],
                                                                     minlength=pos.size).astype(bool).mean())
            if pos.size else None,
            "relevant_in_user_taste_topics": float(in_taste.mean()) if rel.nnz else None,
            "relevant_with_train_weak_signal": float(from_weak.mean()) if rel.nnz else None,
            "users_with_a_weak_signal_relevant": float(np.bincount(rel.row_ids()[from_weak], minlength=pos.size)
                                                       .astype(bool).mean()) if pos.size else None,
            "audiobook_history_mean": float(hist.mean()) if pos.size else None,
            "audiobook_history_median": float(np.median(hist)) if pos.size else None,
            "podcast_history_mean": float(n_pc[users].mean()) if pos.size else None,
            "users_with_podcast_history": float((n_pc[users] > 0).mean()) if pos.size else None,
            "topic_oracle": {m: oracle[m] for m in (f"hr@{k}", "mrr@100", "coverage@100")},
        }
    return out


# ------------------------------------------------------------------------------------- summarising
def stats(values: Sequence[float]) -> dict[str, float | int]:
    v = np.asarray([x for x in values if x is not None], np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def aggregate(per_seed: Mapping[int, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """mean/std/min/max over seeds for every (model, target, segment, metric) present in all seeds."""
    seeds = list(per_seed)
    k = per_seed[seeds[0]]["k"]
    keys = set.intersection(*(set(per_seed[s]["results"]) for s in seeds))
    order = ["Popularity", "LLM-KNN", "HGNN", "2T", "2T-HGNN"]
    rows = []
    for key in sorted(keys, key=lambda x: (x[1], ["warm", "cold", "all"].index(x[2]) if x[2] in ("warm", "cold", "all")
                                           else 9, order.index(x[0]) if x[0] in order else 9)):
        row = {"model": key[0], "target_type": key[1], "segment": key[2], "metrics": {}}
        for m in (t.format(k=k) for t in METRICS):
            row["metrics"][m] = {**stats([per_seed[s]["results"][key][m] for s in seeds]),
                                 "per_seed": [per_seed[s]["results"][key][m] for s in seeds]}
        row["n_users"] = [per_seed[s]["results"][key].get("n_users") for s in seeds]
        rows.append(row)
    return rows


def check_orderings(per_seed: Mapping[int, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Each paper ordering on HR@K: per adjacent pair, the seeds where it holds, and on the means."""
    seeds = list(per_seed)
    k = per_seed[seeds[0]]["k"]
    hr = f"hr@{k}"
    mean = {(r["model"], r["target_type"], r["segment"]): r["metrics"][hr]["mean"] for r in rows}
    out = []
    for name, target, seg, chain in ORDERINGS:
        if any((m, target, seg) not in mean for m in chain):
            out.append({"ordering": name, "chain": list(chain), "error": "a model is missing from the reports"})
            continue
        pairs = []
        for a, b in zip(chain[:-1], chain[1:]):
            per = {s: per_seed[s]["results"][(a, target, seg)][hr] > per_seed[s]["results"][(b, target, seg)][hr]
                   for s in seeds}
            pairs.append({"pair": f"{a} > {b}", "holds_seeds": [s for s in seeds if per[s]],
                          "holds_in_mean": bool(mean[(a, target, seg)] > mean[(b, target, seg)]),
                          "mean_diff": mean[(a, target, seg)] - mean[(b, target, seg)]})
        full_seed = [s for s in seeds if all(
            per_seed[s]["results"][(a, target, seg)][hr] > per_seed[s]["results"][(b, target, seg)][hr]
            for a, b in zip(chain[:-1], chain[1:]))]
        mean_order = sorted(chain, key=lambda m: -mean[(m, target, seg)])
        out.append({"ordering": name, "target_type": target, "segment": seg, "metric": hr, "chain": list(chain),
                    "pairs": pairs, "holds_seeds": full_seed, "holds_in_mean": all(p["holds_in_mean"] for p in pairs),
                    "mean_order": mean_order})
    return out


def summarise_ablation(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    seeds = [s for s in per_seed if "ablation_A" in per_seed[s]]
    if not seeds:
        return {}
    a = {s: per_seed[s]["ablation_A"] for s in seeds}
    out: dict[str, Any] = {"seeds": seeds, "delta_A_minus_full": {}, "full": {}, "A": {}, "hgnn": {}}
    for m in a[seeds[0]]["delta"]:
        out["delta_A_minus_full"][m] = stats([a[s]["delta"][m] for s in seeds])
        out["full"][m] = stats([a[s]["full"][m] for s in seeds])
        out["A"][m] = stats([a[s]["A"][m] for s in seeds])
    for side in ("hgnn_full", "hgnn_A"):
        fields = ("wall_s", "wall_s_to_threshold", "steps_to_threshold", "steps", "epochs_run", "steps_per_s",
                  "best_val_mrr")
        out["hgnn"][side] = {f: stats([a[s][side][f] for s in seeds]) for f in fields}
        out["hgnn"][side]["best_val_losses"] = {r: stats([a[s][side]["best_val_losses"].get(r) for s in seeds])
                                                for r in a[seeds[0]][side]["best_val_losses"]}
        out["hgnn"][side]["stop_reasons"] = [a[s][side]["stop_reason"] for s in seeds]
        out["hgnn"][side]["reached_threshold"] = [a[s][side]["wall_s_to_threshold"] is not None for s in seeds]
    out["val_mrr_threshold"] = [a[s]["val_mrr_threshold"] for s in seeds]
    out["full_first_val"] = [a[s]["full_first_val"] for s in seeds]
    if all("equal_steps" in a[s] for s in seeds):
        e = {s: a[s]["equal_steps"] for s in seeds}
        out["equal_steps"] = {"steps": [e[s]["steps"] for s in seeds],
                              "full_val_mrr": stats([e[s]["full_val_mrr"] for s in seeds]),
                              "A_val_mrr": stats([e[s]["A_val_mrr"] for s in seeds]),
                              "A_minus_full": stats([e[s]["A_val_mrr"] - e[s]["full_val_mrr"] for s in seeds])}
    return out


def summarise_diagnostics(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """mean/std over seeds of every numeric diagnostic (and of the HGNN's val MRR vs its baselines)."""
    seeds = list(per_seed)
    out: dict[str, Any] = {"hgnn": {f: stats([per_seed[s]["hgnn"][f] for s in seeds])
                                    for f in ("best_val_mrr", "random_val_mrr", "untrained_val_mrr", "epochs_run",
                                              "steps", "wall_s", "steps_per_s")}}
    out["hgnn"]["stop_reasons"] = [per_seed[s]["hgnn"]["stop_reason"] for s in seeds]
    if all("diagnostics" in per_seed[s] for s in seeds):
        d = {s: per_seed[s]["diagnostics"] for s in seeds}
        out["top10_share_of_train_streams"] = stats([d[s]["top10_share_of_train_streams"] for s in seeds])
        for seg in ("warm", "cold"):
            fields = [f for f, v in d[seeds[0]][seg].items() if isinstance(v, (int, float))]
            out[seg] = {f: stats([d[s][seg][f] for s in seeds]) for f in fields}
            out[seg]["topic_oracle"] = {m: stats([d[s][seg]["topic_oracle"][m] for s in seeds])
                                        for m in d[seeds[0]][seg]["topic_oracle"]}
    return out


# ------------------------------------------------------------------------------------- printing
def _pm(st: Mapping[str, Any], scale: float = 1.0, digits: int = 3) -> str:
    if not st.get("n"):
        return "-"
    return f"{st['mean'] * scale:.{digits}f} ± {st['std'] * scale:.{digits}f}"


def format_tables(rows: Sequence[Mapping[str, Any]], orderings: Sequence[Mapping[str, Any]],
                  abl: Mapping[str, Any], k: int, n_seeds: int, diag: Mapping[str, Any] | None = None) -> str:
    lines = [f"Mean ± std over {n_seeds} seeds (min..max of HR@{k} in brackets); coverage in %"]
    titles = {("audiobook", "warm"): "Table 2 - audiobooks, warm users", ("audiobook", "cold"):
              "Table 3 - audiobooks, cold users", ("podcast", "all"): "Table 4 - podcasts, all users",
              ("podcast", "warm"): "podcasts, warm users", ("podcast", "cold"): "podcasts, cold users",
              ("audiobook", "all"): "audiobooks, all users"}
    groups: dict[tuple[str, str], list] = {}
    for r in rows:
        groups.setdefault((r["target_type"], r["segment"]), []).append(r)
    for key in [k_ for k_ in titles if k_ in groups]:
        lines.append(f"\n{titles[key]}")
        lines.append(f"  {'model':<11} {'HR@' + str(k):<28} {'MRR@100':<17} {'Coverage@100 %':<17} {'NDCG@' + str(k):<17}")
        for r in groups[key]:
            mt = r["metrics"]
            hr = mt[f"hr@{k}"]
            hr_txt = f"{_pm(hr)} [{hr['min']:.3f}..{hr['max']:.3f}]"
            lines.append(f"  {r['model']:<11} {hr_txt:<28} "
                         f"{_pm(mt['mrr@100']):<17} {_pm(mt['coverage@100'], 100, 1):<17} {_pm(mt[f'ndcg@{k}']):<17}")
    lines.append("\nPaper orderings on HR@%d:" % k)
    for o in orderings:
        if "error" in o:
            lines.append(f"  {o['ordering']}: {o['error']}")
            continue
        lines.append(f"  {o['ordering']:<5} {' > '.join(o['chain'])}: holds in mean: {o['holds_in_mean']}; "
                     f"all pairs hold in seeds {o['holds_seeds']} of {n_seeds}; mean order: {' > '.join(o['mean_order'])}")
        for p in o["pairs"]:
            lines.append(f"        {p['pair']:<24} seeds {p['holds_seeds']}  mean diff {p['mean_diff']:+.4f}")
    if abl:
        lines.append("\nAblation A (balanced sampler off) vs full 2T-HGNN, warm audiobooks:")
        for m, st in abl["delta_A_minus_full"].items():
            lines.append(f"  {m:<13} full {_pm(abl['full'][m])}  A {_pm(abl['A'][m])}  A-full {_pm(st, digits=4)}")
        lines.append("  HGNN training:")
        for side in ("hgnn_full", "hgnn_A"):
            h = abl["hgnn"][side]
            lines.append(f"    {side[5:]:<5} to stop {_pm(h['wall_s'], digits=0)} s ({', '.join(h['stop_reasons'])}); "
                         f"to val MRR >= 0.95*min(best): {_pm(h['wall_s_to_threshold'], digits=0)} s "
                         f"(reached {h['reached_threshold']}; steps to it {_pm(h['steps_to_threshold'], digits=0)}); "
                         f"steps {_pm(h['steps'], digits=0)}; "
                         f"epochs {_pm(h['epochs_run'], digits=1)}; steps/s {_pm(h['steps_per_s'], digits=2)}; "
                         f"best val MRR {_pm(h['best_val_mrr'])}; val loss at best: "
                         + ", ".join(f"{r[9:]} {_pm(v)}" for r, v in h["best_val_losses"].items()))
    if abl.get("full_first_val"):
        for f in abl["full_first_val"]:
            reach = "never" if f["A_step"] is None else f"at step {f['A_step']:.0f}"
            lines.append(f"  full model's first val MRR {f['level']:.3f} (step {f['full_step']}, {f['full_wall_s']:.0f} s): "
                         f"A reaches it {reach} (A ran {f['A_steps_run']} steps)")
    if abl.get("equal_steps"):
        e = abl["equal_steps"]
        lines.append(f"  equal steps ({e['steps']}): val MRR full {_pm(e['full_val_mrr'])}, A {_pm(e['A_val_mrr'])}, "
                     f"A-full {_pm(e['A_minus_full'], digits=4)}")
    if diag:
        h = diag["hgnn"]
        lines.append(f"\nHGNN (main runs): best val MRR {_pm(h['best_val_mrr'])} vs untrained {_pm(h['untrained_val_mrr'])} "
                     f"vs random embeddings {_pm(h['random_val_mrr'])}; epochs {_pm(h['epochs_run'], digits=1)}, "
                     f"steps {_pm(h['steps'], digits=0)}, stop {h['stop_reasons']}")
        if "warm" in diag:
            lines.append(f"Data (audiobooks): the 10 most-streamed audiobooks hold "
                         f"{_pm(diag['top10_share_of_train_streams'], 100, 1)} % of train audiobook streams")
            for seg in ("warm", "cold"):
                g = diag[seg]
                lines.append(f"  {seg}: users {_pm(g['users'], digits=0)}; relevant/user {_pm(g['relevant_per_user'], digits=2)}; "
                             f"relevant in top-10 popular {_pm(g['relevant_in_top10_popular'], 100, 1)} %; "
                             f"relevant in user's taste topics {_pm(g['relevant_in_user_taste_topics'], 100, 1)} %; "
                             f"users with a relevant item they had a train weak signal on "
                             f"{_pm(g['users_with_a_weak_signal_relevant'], 100, 1)} %; "
                             f"audiobook history {_pm(g['audiobook_history_mean'], digits=1)}; podcast history "
                             f"{_pm(g['podcast_history_mean'], digits=1)} (users with any {_pm(g['users_with_podcast_history'], 100, 1)} %); "
                             f"topic-oracle HR@{k} {_pm(g['topic_oracle'][f'hr@{k}'])}, MRR {_pm(g['topic_oracle']['mrr@100'])}")
    return "\n".join(lines)


def main(argv):
    del argv
    seeds = [int(s) for s in FLAGS.seeds]
    out_dir = str(Path(FLAGS.out_dir).resolve())
    timings: dict[int, dict[str, float]] = {}
    if FLAGS.run:
        for s in seeds:
            logs, vdir = Path(out_dir) / "logs", version_dir(out_dir, FLAGS.scale, s)
            timings[s] = {}
            jobs = [("main_s", None, FLAGS.targets, vdir / "evaluate" / "report.json")]
            if FLAGS.ablation_a:
                jobs.append(("ablation_A_s", "A", ["audiobook"], vdir / "ablation-A" / "evaluate" / "report.json"))
            for key, abl, targets, report in jobs:
                if report.exists() and not FLAGS.rerun_existing:
                    print(f"[experiment] seed {s} {abl or 'main'}: {report} exists, not re-run", flush=True)
                    continue
                timings[s][key] = run_one(pipeline_cmd(FLAGS.scale, FLAGS.preset, s, out_dir, targets, abl),
                                          logs / f"{FLAGS.scale}-s{s}-{abl or 'main'}.log", FLAGS.timeout_s)
    per_seed = {s: collect_seed(version_dir(out_dir, FLAGS.scale, s), FLAGS.ablation_a) for s in seeds}
    if FLAGS.diagnose:
        for s in seeds:
            per_seed[s]["diagnostics"] = diagnose(version_dir(out_dir, FLAGS.scale, s), FLAGS.scale, s,
                                                  per_seed[s]["k"])
    if FLAGS.equal_steps and FLAGS.ablation_a:
        for s in seeds:
            per_seed[s]["ablation_A"]["equal_steps"] = equal_steps_a(version_dir(out_dir, FLAGS.scale, s))
    rows = aggregate(per_seed)
    orderings = check_orderings(per_seed, rows)
    abl = summarise_ablation(per_seed) if FLAGS.ablation_a else {}
    k = per_seed[seeds[0]]["k"]
    diag = summarise_diagnostics(per_seed)
    print(format_tables(rows, orderings, abl, k, len(seeds), diag), flush=True)
    if FLAGS.json:
        def _plain(d):
            return {"|".join(key) if isinstance(key, tuple) else key: v for key, v in d.items()}
        seeds_out = {str(s): {**v, "results": _plain(v["results"])} for s, v in per_seed.items()}
        atomic_write_json(Path(FLAGS.json), {
            "config": {"scale": FLAGS.scale, "preset": FLAGS.preset, "seeds": seeds, "out_dir": out_dir,
                       "targets": list(FLAGS.targets), "std": "sample std, ddof=1",
                       "seed_meaning": "data_seed = training seed: spread includes data variation"},
            "results": rows, "orderings": orderings, "ablation_A": abl, "diagnostics": diag, "per_seed": seeds_out,
            "subprocess_seconds": {str(s): t for s, t in timings.items()},
        })
        print(f"[experiment] wrote {FLAGS.json}", flush=True)


if __name__ == "__main__":
    app.run(main)
