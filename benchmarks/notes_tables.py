"""BUILD_NOTES.md's generated tables (Markdown) from the JSON in ``benchmarks/results/``.

    .venv/bin/python -m benchmarks.notes_tables            # print them
    .venv/bin/python -m benchmarks.notes_tables --write    # replace BUILD_NOTES.md's generated blocks

Two blocks: ``quality`` (§6: quality benchmark, two-tower ladders) and ``measurements`` (§7: scale,
paper-size model, retrieval, operational figures), each between ``<!-- BEGIN generated: NAME -->`` and
``<!-- END generated: NAME -->``; rerun after a benchmark run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SEGMENTS = [("audiobook", "warm"), ("audiobook", "cold"), ("podcast", "all"), ("audiobook", "all")]


def _hr_table(setting: Mapping[str, Any]) -> list[str]:
    seeds = setting["seeds"]
    rows: dict[tuple, dict[str, list[float]]] = {}
    for res in seeds.values():
        for r in res["rows"]:
            rows.setdefault((r["target"], r["segment"]), {}).setdefault(r["model"], []).append(r["hr@10"])
    out = []
    for key in [k for k in SEGMENTS if k in rows]:
        models = rows[key]
        out.append(
            f"| {key[0]} / {key[1]} | "
            + "; ".join(
                f"{m} {np.mean(v):.3f}" + (f" [{min(v):.3f}..{max(v):.3f}]" if len(v) > 1 else "")
                for m, v in models.items()
            )
            + " |"
        )
    return out


def quality_tables(q: Mapping[str, Any]) -> str:
    lines = []
    for name, setting in q["settings"].items():
        m = q.get("machine_by_setting", {}).get(name, q["machine"])
        lines += (
            [
                f"**{name}** (seeds {', '.join(map(str, setting['seeds']))}; written {m['date_utc']} at git "
                f"{str(m['git_sha'])[:10]} on {m['cpus']} CPUs, preset `{q['preset']}`): HR@10, mean [min..max] "
                "over seeds",
                "",
                "| target / segment | models |",
                "|---|---|",
            ]
            + _hr_table(setting)
            + [""]
        )
        lines += ["| goal | verdict | per seed: difference [95 % paired-bootstrap interval] |", "|---|---|---|"]
        for g in setting["goals"]:
            verdict = (
                "met"
                if g["significant_every_seed"]
                else "above in every seed, not significant in all"
                if g["holds_every_seed"]
                else "missed"
            )
            per = "; ".join(
                "n/a" if c is None else f"s{s}: {c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]"
                for s, c in g["per_seed"].items()
            )
            lines.append(f"| {g['goal']} | {verdict} | {per} |")
        lines.append("")
    return "\n".join(lines)


KEPT = ("kept", "reference", "applied")  # decisions that make up the current recipe (or its reference)


def change_groups(changes: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The ladder's rows grouped by change: a row named "the same, seed N" joins the row before it."""
    groups: list[list[Mapping[str, Any]]] = []
    for ch in changes:
        if groups and ch["change"].startswith("the same, seed"):
            groups[-1].append(ch)
        else:
            groups.append([ch])
    return groups


def _change_row(g: Sequence[Mapping[str, Any]], ref_cov: float, with_test: bool) -> str:
    first = g[0]
    vals = ", ".join(f"{ch['val_hr10']:.3f}" for ch in g)
    seeds = f" ({len(g)} seeds)" if len(g) > 1 else ""
    why = f": {first['why']}" if first["why"] else ""
    row = f"| {first['change']} (`{first['run']}`){seeds} | {first['decision']}{why} | {vals} |"
    if not with_test:
        return row
    mean = {s: sum(ch["test_hr10"][s] for ch in g) / len(g) for s in ("warm", "cold", "all")}
    cov = sum(ch["coverage100_all"] for ch in g) / len(g)
    drop = " (!)" if cov < 0.8 * ref_cov else ""  # > 20 % relative below the reference row
    return row + f" {mean['warm']:.3f} / {mean['cold']:.3f} / {mean['all']:.3f} | {cov:.2f}{drop} |"


def changes_table(c: Mapping[str, Any]) -> str:
    """The demo's two-tower ladder as two tables: the changes the current recipe is made of (and its
    references), then those tried and not kept; repeated seeds of one change share a row (validation per
    seed, test and coverage as the mean over seeds)."""
    ref_cov = c["changes"][0]["coverage100_all"]
    groups = change_groups(c["changes"])
    kept = [g for g in groups if g[0]["decision"].startswith(KEPT)]
    other = [g for g in groups if not g[0]["decision"].startswith(KEPT)]
    lines = [
        c["what"] + ".",
        "",
        "What the current demo recipe is made of, in the order the changes were measured:",
        "",
        "| change | decision | val HR@10 (per seed) | test HR@10 warm / cold / all | cov@100 |",
        "|---|---|---|---|---|",
        *(_change_row(g, ref_cov, True) for g in kept),
        "",
        f"(!) = Coverage@100 more than 20 % (relative) below the reference row ({ref_cov:.2f}); test and "
        "coverage are means over the row's seeds.",
        "",
        "Tried and not kept as measured (a part may live on inside a later row; test figures in "
        "`benchmarks/results/quality_changes.json`):",
        "",
        "| change | decision | val HR@10 (per seed) |",
        "|---|---|---|",
        *(_change_row(g, ref_cov, False) for g in other),
    ]
    b = c["baselines_test_hr10"]
    lines += [
        "",
        "Baselines on the same test users (warm / cold / all): "
        + "; ".join(f"{m} {v['warm']:.3f} / {v['cold']:.3f} / {v['all']:.3f}" for m, v in b.items())
        + ".",
    ]
    return "\n".join(lines)


def random_changes_table(r: Mapping[str, Any]) -> str:
    lines = [r["what"] + ".", "", "| change | settings | decision | val HR@10 (at step) |", "|---|---|---|---|"]
    for ch in r["changes"]:
        sets = ", ".join(f"`{k}={v}`" for k, v in ch["settings"].items()) or "-"
        lines.append(
            f"| {ch['change']} (`{ch['run']}`) | {sets} | {ch['decision']}: {ch['why']} | "
            f"{ch['val_hr10']:.3f} ({ch['at_step']}) |"
        )
    lines += [
        "",
        f"On the same validation part: ItemKNN {r['itemknn_val_hr10']:.3f}, EASE {r['ease_val_hr10']:.3f} "
        f"(tuned on it). Machine: {r['machine']}.",
    ]
    return "\n".join(lines)


def _stamp(m: Mapping[str, Any]) -> str:
    return f"{m['date_utc'][:10]}, git {m['git_sha'][:10]}{' (dirty)' if m.get('git_dirty') else ''}, {m['cpus']} CPUs"


def _sweep_text(sweep: Mapping[str, Any] | None) -> str:
    """The automatic flag sweep's part of the reliability row ('' for a JSON without one)."""
    if not sweep:
        return ""
    progs, c = sweep["programs"].values(), sweep["counts"]
    n = sum(p["n_flags"] for p in progs)
    allowed = sum(p["n_allow_listed"] for p in progs)
    other = c["cases"] - c.get("clean_error", 0) - c.get("accepted", 0)
    return (
        f"; automatic sweep of all {n} flags of {len(sweep['programs'])} launch programs ({n - allowed} with "
        f"generated bad values, {allowed} free-text allow-listed): {c['cases']} cases, {c.get('clean_error', 0)} "
        f"one-line errors, {c.get('accepted', 0)} accepted controls, {other} other"
    )


def ops_table(results: Path) -> str | None:
    """Reliability, HTTP serving and batch top-K rows from their JSON files (the ones present)."""
    rows = []
    rel = results / "reliability.json"
    if rel.exists():
        r = json.loads(rel.read_text())
        f, d = r["flags"]["counts"], r["data"]["counts"]
        bad = ", ".join(f"{k} {v}" for k, v in sorted(f.items()) if k not in ("cases", "clean_error")) or "nothing else"
        rows.append(
            f"| reliability (`benchmarks/reliability.py`) | {f['cases']} bad flag values over every launch script: "
            f"{f.get('clean_error', 0)} one-line errors (exit 2), {bad}; {d['cases']} corrupted-data cases: "
            f"{d.get('clean_error', 0)} one-line errors, {d.get('accepted_equal', 0)} accepted with the clean "
            f"input's result, {d['cases'] - d.get('clean_error', 0) - d.get('accepted_equal', 0)} other"
            f"{_sweep_text(r.get('sweep'))} | {_stamp(r['machine'])} |"
        )
    http = results / "serving_http.json"
    if http.exists():
        h = json.loads(http.read_text())
        s, g, ks = h["summary"], h["summary"]["GET known user"], h["summary"]["k_sweep"]
        rows.append(
            f"| HTTP serving (`benchmarks/serving_http.py`) | {s['requests']:,} requests from "
            f"{h['meta']['args']['clients']} clients, a quarter malformed, a reload in the middle: {s['5xx']} 5xx, "
            f"{s['malformed_not_4xx']} malformed without a 4xx; GET p50 {g['p50_ms']:.1f} ms, p99 {g['p99_ms']:.0f} ms; "
            f"{ks['distinct_k']:,} distinct k: {ks['programs_lowered']} programs compiled, RSS +{ks['rss_growth_mb']} MB | "
            f"{_stamp(h['meta']['machine'])} |"
        )
    bt = results / "batch_topk.json"
    if bt.exists():
        b = json.loads(bt.read_text())
        parts = [
            f"{r['users']:,} users: traced peak {r['peak_traced_mb']} MB, {r['users_per_s']:,} users/s"
            for r in b["rows"]
        ]
        rows.append(
            f"| batch top-K (`benchmarks/batch_topk.py`) | {'; '.join(parts)} | {_stamp(b['meta']['machine'])} |"
        )
    sp = results / "sampler_throughput.json"
    if sp.exists():
        rows.append(sampler_row(json.loads(sp.read_text())))
    un = results / "unique.json"
    if un.exists():
        rows.append(unique_row(json.loads(un.read_text())))
    if not rows:
        return None
    return "\n".join(["| what | result | measured |", "|---|---|---|", *rows])


def _dur(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.1f} s"


def unique_row(d: Mapping[str, Any]) -> str:
    """``benchmarks/unique.py``'s row: plain ``np.unique`` against the library's forms, per size."""
    parts = []
    for r in d["rows"]:
        k, i = r.get("keys"), r["ids"]
        keys = (
            ""
            if k is None
            else (
                f"int64 keys {_dur(k['np.unique_s'])} vs `sorted_unique` {_dur(k['sorted_unique_s'])} "
                f"({k['sorted_unique_speedup']:.0f}x), "
            )
        )
        parts.append(
            f"{r['n']:,}: {keys}int32 ids {_dur(i['np.unique_s'])} vs `distinct_ids` {_dur(i['distinct_ids_s'])} "
            f"({i['distinct_ids_speedup']:.0f}x)"
        )
    m = d["meta"]
    return (
        f"| distinct values, NumPy {m['numpy']} (`benchmarks/unique.py`) | plain `np.unique` vs the library's forms, "
        f"same arrays: {'; '.join(parts)} | {_stamp(m['machine'])} |"
    )


def sampler_row(d: Mapping[str, Any]) -> str:
    """The sampler benchmark's row: 1-worker seeds/s and per CPU-second, worker scaling, noise."""
    m, rows = d["meta"], d["rows"]
    one = next(r for r in rows if r["name"] == "numpy static-shape sampler (this repo)")
    scal = [r for r in rows if r["name"].startswith("scaling:")]
    sc = "; ".join(
        f"{r['name'].removeprefix('scaling: ')}: {r['ratio']:.2f}x"
        + ("" if r["met"] is None else (" (goal met)" if r["met"] else " (goal missed)"))
        for r in scal
    )
    noise = (
        f"NOISY (load {m['load_avg_start']:.2f} at start >= {m['quiet_load_below']}): ratios are not verdicts"
        if m.get("noisy")
        else f"quiet (load {m['load_avg_start']:.2f} at start)"
    )
    spc = one.get("seeds_per_cpu_s")
    return (
        f"| sampler (`benchmarks/sampler_throughput.py`) | 1 worker {one['seeds_per_s']:,.0f} seeds/s"
        + (f", {spc:,.0f} seeds per CPU-second" if spc else "")
        + f" ({m['args']['batch_seeds']} seeds, fan-out {'/'.join(map(str, m['args']['fanouts']))}); "
        f"{sc or 'no scaling rows'}; {noise} | {m['date'][:10]}, git {m['git_sha'][:10]} |"
    )


def _cell(r: Mapping[str, Any] | None) -> str:
    if r is not None and r.get("failed"):
        if r.get("seconds_at_least"):
            return f"> {r['seconds_at_least']:,.0f} s (stopped)"
        return "not run" if r["failed"].startswith("not run") else "failed"
    if r is None or r.get("seconds") is None:
        return "-"
    rss = r.get("peak_rss_bytes")
    text = f"{r['seconds']:,.1f} s" + (f", {rss / 2**30:.2f} GiB" if rss else "")
    return f"~{text}" if r["extrapolated"] else text


def scale_table(d: Mapping[str, Any], title: str = "scale", plot: str | None = None) -> str:
    """``benchmarks/results/scale*.json``: per stage, seconds and peak RSS at each scale (``~`` =
    extrapolated) and the fitted slopes; rows reused from an earlier run (``--reuse``) are named.
    ``plot``: the run's log-log plot (a path relative to the notes), shown under the table."""
    m, rows = d["meta"], d["rows"]
    scales = list(dict.fromkeys(r["scale"] for r in rows))
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    by = {(r["scale"], r["stage"]): r for r in rows}
    inter = {sc: next((r["interactions"] for r in rows if r["scale"] == sc and r["interactions"]), 0) for sc in scales}
    measured = [sc for sc in scales if not by[(sc, stages[0])]["extrapolated"]]
    head = (
        f"**{title}** (`benchmarks/scale.py`, preset `{m['preset']}`"
        + "".join(f", {k}={v}" for k, v in m.get("overrides", {}).items())
        + f", measured {', '.join(measured)}; written "
        f"{m['date'][:19]}Z at git {m['git_sha'][:10]} on {m['cpus']} CPUs, load {m['load_avg_start']:.1f} at start): "
        "wall seconds and peak RSS of each stage in its own process; `~` = EXTRAPOLATED from the log-log fit "
        "`cost = a * interactions^b` over the measured scales; b = the fitted slope (seconds / peak RSS)"
    )
    cols = [f"{sc} ({inter[sc]:,.0f})" for sc in scales]
    lines = [head, "", "| stage | " + " | ".join(cols) + " | b |", "|---|" + "---|" * (len(scales) + 1)]
    for st in stages:
        sl = d["slopes"][st]
        f = d["fits"][st]["seconds"]
        b = "-" if sl["seconds"] is None else f"{sl['seconds']:.2f}" + (" (assumed)" if f["assumed_slope"] else "")
        b += " / " + ("-" if sl["peak_rss_bytes"] is None else f"{sl['peak_rss_bytes']:.2f}")
        cells = [_cell(by.get((sc, st))) for sc in scales]
        if f["assumed_slope"]:  # one measured point: no fit, nothing extrapolated
            cells = ["no fit (1 point)" if c.startswith("~") else c for c in cells]
        lines.append(f"| {st} | " + " | ".join(cells) + f" | {b} |")
    skipped = [f"{s['scale']}: {s['reason']}" for s in d["skipped_scales"]]
    skipped += [
        f"{r['scale']} {r['stage']}: {r['failed']}" for r in rows if r.get("failed") and r.get("seconds_at_least")
    ]
    if skipped:
        lines += ["", "Not run: " + "; ".join(skipped) + "."]
    reused = _reused(rows, stages, m)
    if reused:
        lines += ["", "Reused from an earlier run (`--reuse`): " + "; ".join(reused) + "."]
    if plot:
        lines += ["", f"![{title}: cost of each stage against interactions, log-log]({plot})"]
    return "\n".join(lines)


def _reused(rows: Sequence[Mapping[str, Any]], stages: Sequence[str], meta: Mapping[str, Any]) -> list[str]:
    """``"scale [stages] (measured DATE at git SHA)"`` per scale and earlier run its reused rows come from
    (the stages named only where a scale was partly reused, e.g. a paper run resumed after its graph);
    older JSONs without per-row flags: the meta's ``reused_scales``."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for r in rows:
        if r.get("reused"):
            w = r.get("measured") or (meta.get("reused_scales") or {}).get(r["scale"], {})
            groups.setdefault((r["scale"], w.get("date", "?")[:16], w.get("git_sha", "?")[:10]), []).append(r["stage"])
    if not groups:
        groups = {
            (sc, w.get("date", "?")[:16], w.get("git_sha", "?")[:10]): list(stages)
            for sc, w in (meta.get("reused_scales") or {}).items()
        }
    return [
        f"{sc}{'' if len(sts) == len(stages) else ' ' + ', '.join(sts)} (measured {date} at git {sha})"
        for (sc, date, sha), sts in groups.items()
    ]


def paper_model_table(d: Mapping[str, Any]) -> str:
    """``benchmarks/results/paper_model.json`` (``benchmarks/paper_model.py``): the HGNN's graph, features,
    training and full-catalogue inference on a generated graph of the paper's size, one process each."""
    m, ph, plan = d["meta"], d["phases"], d["plan"]
    g, t, i = ph.get("graph", {}), ph.get("training", {}), ph.get("inference", {})
    f = t.get("features", {})
    rel = ", ".join(f"{k} {v:,}" for k, v in g.get("edges", {}).items())
    size = "a DRY RUN's tiny size" if m.get("dry_run") else "the paper's size"
    head = (
        f"**paper-size HGNN on this CPU** (`benchmarks/paper_model.py`; a GENERATED power-law graph of {size}: "
        f"{', '.join(f'{n:,} {k}s' for k, n in plan['counts'].items())}; edges {rel}; not the pipeline's "
        f"co-listening graph; preset `{plan['config']}` HGNN; written {m['date'][:19]}Z at git {m['git_sha'][:10]} "
        f"on {m['cpus']} CPUs, load {m['load_avg_start']:.1f} at start"
        + (", noisy" if m.get("noisy") else "")
        + "): wall / CPU seconds of the phase, peak RSS of its whole process"
    )
    rc = sum((t.get("recompiles_after_first_step") or {}).values())
    cells = {
        "graph build": g.get("edges_total")
        and (f"{g['edges_total']:,} undirected edges; {plan['holdout_frac']:.0%} held out (training reads the rest)"),
        "features": f.get("bytes")
        and (
            f"{f['bytes']:,} bytes {f['dtype']} {f['shape'][0]:,} x {f['shape'][1]}"
            + (", memory-mapped" if f.get("memory_mapped") else ", in memory")
        ),
        "training": t.get("steps")
        and (
            f"{t['steps_per_s_after_first']:.2f} steps/s after the first ({t['steps']} steps, validations included); "
            f"first step {t['first_step_seconds']:.1f} s, setup {t['setup_seconds']:.1f} s, {rc} recompiles after "
            "the first step"
        ),
        "inference": i.get("items")
        and (
            f"{i['items_per_s']:,.0f} items/s over {i['items']:,} items; finite {i['finite']}, L2 norms "
            f"{i['norm_min']:.4f}-{i['norm_max']:.4f}"
        ),
    }
    lines = [head, "", "| phase | figure | wall s | CPU s | peak RSS GiB |", "|---|---|---|---|---|"]
    for r in d["rows"]:
        num = lambda v, p=1: "-" if v is None else f"{v:,.{p}f}"  # noqa: E731
        rss = None if r["peak_rss_bytes"] is None else r["peak_rss_bytes"] / 2**30
        cell = "FAILED: " + r["failed"] if r.get("failed") else (cells.get(r["phase"]) or "-")
        lines.append(f"| {r['phase']} | {cell} | {num(r['seconds'])} | {num(r['cpu_s'])} | {num(rss, 2)} |")
    return "\n".join(lines)


def retrieval_table(d: Mapping[str, Any]) -> str:
    """``benchmarks/results/retrieval_paper.json`` (``benchmarks/retrieval.py`` at the paper's catalogue):
    per configuration build seconds, index and peak memory, one-core latency and recall@100."""
    m, rows = d["meta"], d["rows"]
    a = m["args"]
    goal = f"p99 < {a['max_p99_ms']:g} ms at recall@{a['k']} >= {a['min_recall']:g}"
    if a.get("export"):  # a trained model's catalogue and users (--export)
        world = (
            f"the trained `{a['target']}` item tower of a pipeline export ({m['num_items']:,} items); queries: "
            f"seeded users of its store, as-of features through the serving path and the trained user tower"
        )
    else:
        world = f"{m['num_items']:,} x {a['dim']}, {m['num_topics']:,} synthetic topics; held-out users"
    lines = [
        f"**retrieval at {m['num_items']:,} items** (`benchmarks/retrieval.py`, {world}; user tower + top-{a['k']} "
        f"on one pinned core; recall vs exact f32 on {a['recall_users']:,} users; written {m['date'][:19]}Z at git "
        f"{m['git_sha'][:10]} on {m['cpus']} CPUs, load {m['load_avg_start']:.1f} at start, "
        f"{m['load_avg_end_1_5_15'][0]:.1f} at end; goal {goal})",
        "",
        "| configuration | build s | index MiB | peak RSS GiB | p50 ms | p99 ms | p99 CPU ms | recall@100 | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rec = "-" if r["recall_at_100"] is None else f"{r['recall_at_100']:.3f}"
        mib = "-" if r.get("index_bytes") is None else f"{r['index_bytes'] / 2**20:,.0f}"
        nl = f", nlist {r['nlist']}" if r.get("nlist") else ""
        goal_cell = "met" if r["meets_goal"] else ("CPU time only" if r["meets_goal_cpu_time"] else "no")
        lines.append(
            f"| {r['name']}{nl} | {r['build_s']:.1f} | {mib} | {r['peak_rss_bytes'] / 2**30:.2f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['p99_cpu_ms']:.2f} | {rec} | {goal_cell} |"
        )
    auto = m.get("auto_export_choice", {})
    auto_row = next((r for r in rows if r["serving_default"]), None)  # the export's default build and nprobe
    best = m.get("fastest_meeting_goal")
    lines += [
        "",
        "build s: on all cores; index MiB: the index's data (serialised faiss index / exact's device array); peak "
        "RSS: the process's peak so far (the exact f32 reference built first holds it). goal: met = wall-clock p99 "
        "and recall; CPU time only = recall and the p99 of per-request process CPU time (wall p99 includes "
        "preemption by other jobs on a shared box; the tower-only row is the noise floor). Fastest configuration "
        f"meeting the goal (wall): {best or 'none'}. Export `index=auto` at this size builds "
        + ", ".join(f"{k} {v}" for k, v in auto.items())
        + (f" (row {auto_row['name']})." if auto_row else " (no row with exactly those settings)."),
    ]
    return "\n".join(lines)


NOTES = Path(__file__).resolve().parents[1] / "BUILD_NOTES.md"
BLOCKS = ("quality", "measurements")  # BUILD_NOTES' generated blocks, in the order they appear


def markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN generated: {name} -->", f"<!-- END generated: {name} -->"


def write_notes(blocks: Mapping[str, str], notes: Path = NOTES) -> None:
    """Replaces each named generated block of ``notes`` with its text (one atomic write)."""
    from twotower_hgnn.io import atomic_write_text

    doc = notes.read_text()
    for name, text in blocks.items():
        begin, end = markers(name)
        if doc.count(begin) != 1 or doc.count(end) != 1 or doc.index(begin) > doc.index(end):
            sys.exit(f"{notes}: needs exactly one {begin} ... {end} block")
        head, rest = doc.split(begin)
        doc = head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1]
    atomic_write_text(notes, doc)


def quality_block(results: Path = RESULTS) -> str:
    """§6: the quality benchmark's tables and the two-tower ladders."""
    parts = []
    q = results / "quality.json"
    if q.exists():
        parts.append(quality_tables(json.loads(q.read_text())))
    c = results / "quality_changes.json"
    if c.exists():
        changes = json.loads(c.read_text())
        parts.append(changes_table(changes))
        if "random_changes" in changes:
            parts.append(random_changes_table(changes["random_changes"]))
    return "\n\n".join(parts)


def measurements_block(results: Path = RESULTS) -> str:
    """§7: scale, paper-size model, retrieval and the one-row operational figures."""
    parts = []
    scales = (("scale.json", "scale"), ("scale_paper.json", "scale up to the paper's log"))
    if (results / "scale_paper.json").exists():  # it holds every scale measured up to the paper's
        scales = scales[1:]
    for name, title in scales:
        if (results / name).exists():
            png = (results / name).with_suffix(".png")
            plot = (
                png.relative_to(NOTES.parent).as_posix() if png.is_relative_to(NOTES.parent) and png.exists() else None
            )
            parts.append(scale_table(json.loads((results / name).read_text()), title, plot))
    pm = results / "paper_model.json"
    if pm.exists():
        parts.append(paper_model_table(json.loads(pm.read_text())))
    for name in ("retrieval_paper.json", "retrieval_paper_export.json", "retrieval_large_export.json"):
        if (results / name).exists():
            parts.append(retrieval_table(json.loads((results / name).read_text())))
    ops = ops_table(results)
    if ops:
        parts.append(ops)
    return "\n\n".join(parts)


def main() -> None:
    blocks = {"quality": quality_block(), "measurements": measurements_block()}
    if not any(blocks.values()):
        sys.exit(f"no results in {RESULTS}")
    if "--write" in sys.argv[1:]:
        write_notes(blocks)
        print(f"wrote the generated blocks of {NOTES}: {', '.join(BLOCKS)}")
    else:
        print("\n\n".join(t for t in blocks.values() if t))


if __name__ == "__main__":
    main()
