"""Cost of every pipeline stage against the number of interactions, tiny -> small -> ... -> paper.

For each synthetic scale (``data.synthetic.SCALES``, in order, up to ``--max_scale``) and each stage of
``pipeline.driver.STAGE_TABLE`` (data, split, valid, graph, content, hgnn, two_tower, evaluate, export, topk),
a **fresh child process** opens the run (``pipeline.context.open_run``: the dataset is generated and
validated, as the pipeline holds it) and runs that one stage with ``pipeline.driver.run_stage`` (its
upstream stages' outputs already exist, so they are skipped: the child says so). The pseudo-stage
``open`` is the opening alone (every pipeline run pays it; the ``data`` stage only records what was
loaded). Per (scale, stage):

* ``rows``: what the stage reads or writes (``rows_what`` says which: interactions, graph edges, items);
  ``interactions``: the dataset's interactions (the x axis);
* ``seconds`` / ``cpu_s``: wall and CPU seconds (process incl. threads, plus finished children such as
  the text encoder) of ``run_stage`` alone; ``open_seconds``: the run's opening (data load) before it;
* ``peak_rss_bytes``: the child's peak RSS (``wait4`` rusage ``ru_maxrss``): the dataset plus the stage;
  ``rss_after_open_bytes``: the peak before the stage started;
* ``spill_bytes``: the peak size of the child's private temporary folder (its ``TMPDIR`` and working
  directory, where an engine such as DuckDB spills), polled every ``--poll_s``; ``output_bytes``: the
  stage folder's size on disk.

Then per stage and cost (seconds, CPU seconds, peak RSS) a least-squares line in log-log space,
``cost = a * interactions**b``, over the scales measured (slope ``b``; with one scale ``b = 1`` is
assumed and the fit says so). Scales not run (above ``--max_scale``, or refused by the memory guard:
a scale whose estimated peak RSS (:func:`guard_estimate`) exceeds ``--mem_fraction`` of the available
memory is skipped with a note, and so is every larger one) get rows with ``extrapolated: true`` from those fits, their
interactions estimated from the scale's users x mean events, corrected by the measured scales' ratio.
Training stages run the preset's budgets (``--config``, default ``test``, plus ``--set`` overrides): with
a step cap (``--set=two_tower.max_steps=300``) their slope measures the per-item work around training
(examples, sampling set-up, inference, evaluation), not an epoch; without one, the test preset's fixed
epochs make training grow with the data.

  .venv/bin/python -m benchmarks.scale --max_scale=small --fresh --set=two_tower.max_steps=300 --set=hgnn.max_steps=30
  .venv/bin/python -m benchmarks.scale --max_scale=medium --config=demo --stages=data,split,graph
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.measure import dir_bytes  # noqa: E402

SCALE_ORDER = ("tiny", "small", "medium", "large", "xlarge", "paper")
STAGES = ("open", "data", "split", "valid", "graph", "content", "hgnn", "two_tower", "evaluate", "export", "topk")
COSTS = ("seconds", "cpu_s", "peak_rss_bytes")
RESULTS = ROOT / "benchmarks" / "results"

Runner = Callable[[str, str], dict]


# ------------------------------------------------------------------------------------ sizes
def _synthetic_scales() -> Mapping[str, Any]:
    """``data.synthetic_config.SCALES``, loaded from its file alone: the ``twotower_hgnn.data`` package
    imports pandas (seconds), which the parent process and the unit test do not need."""
    import importlib.util

    mod = sys.modules.get("twotower_hgnn.data.synthetic_config")
    if mod is None:
        path = ROOT / "twotower_hgnn" / "data" / "synthetic_config.py"
        spec = importlib.util.spec_from_file_location("_scale_synthetic_config", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses resolve their module by name
        spec.loader.exec_module(mod)
    return mod.SCALES


def expected_interactions(scale: str) -> float:
    """The generator's target: users x mean events per user (the measured count differs a little)."""
    c = _synthetic_scales()[scale]
    return float(c.n_users * c.mean_interactions)


def mem_available_bytes() -> int:
    """``MemAvailable`` of /proc/meminfo (bytes)."""
    from twotower_hgnn.logs.engines import available_memory_bytes

    avail = available_memory_bytes()
    if avail is None:
        raise RuntimeError("/proc/meminfo has no MemAvailable")
    return avail


# ------------------------------------------------------------------------------------ fits
def fit_power(xs: Sequence[float], ys: Sequence[float]) -> dict[str, Any] | None:
    """Least squares of ``log y = log a + b log x`` over the points with x, y > 0.

    One point: ``b = 1`` (linear) assumed, ``assumed_slope: true``; none: None."""
    pts = [(float(x), float(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if not pts:
        return None
    if len({x for x, _ in pts}) < 2:
        x, y = pts[-1]
        return {"a": y / x, "b": 1.0, "points": len(pts), "assumed_slope": True, "r2": None}
    lx = [math.log(x) for x, _ in pts]
    ly = [math.log(y) for _, y in pts]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((v - mx) ** 2 for v in lx)
    b = sum((u - mx) * (v - my) for u, v in zip(lx, ly)) / sxx
    la = my - b * mx
    ss_tot = sum((v - my) ** 2 for v in ly)
    ss_res = sum((v - (la + b * u)) ** 2 for u, v in zip(lx, ly))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return {"a": math.exp(la), "b": b, "points": len(pts), "assumed_slope": False, "r2": r2}


def predict(fit: Mapping[str, Any] | None, x: float) -> float | None:
    return None if fit is None else float(fit["a"] * x ** fit["b"])


def fit_all(rows: Sequence[Mapping[str, Any]], stages: Sequence[str]) -> dict[str, dict[str, Any]]:
    """stage -> cost -> fit over the measured rows (not extrapolated, stage actually ran)."""
    out = {}
    for st in stages:
        meas = [r for r in rows if r["stage"] == st and not r["extrapolated"] and r.get("ran", True)]
        out[st] = {c: fit_power([r["interactions"] for r in meas], [r.get(c) for r in meas]) for c in COSTS}
        out[st]["scales"] = [r["scale"] for r in meas]
    return out


def interactions_factor(rows: Sequence[Mapping[str, Any]]) -> float:
    """Measured / expected interactions, averaged over the measured scales (1 when none)."""
    seen = {r["scale"]: r["interactions"] for r in rows if not r["extrapolated"] and r.get("interactions")}
    if not seen:
        return 1.0
    return sum(v / expected_interactions(s) for s, v in seen.items()) / len(seen)


def extrapolated_rows(
    scale: str, stages: Sequence[str], fits: Mapping[str, Any], factor: float, why: str
) -> list[dict[str, Any]]:
    x = expected_interactions(scale) * factor
    out = []
    for st in stages:
        f = fits.get(st, {})
        row = {"scale": scale, "stage": st, "interactions": x, "extrapolated": True, "rows": None}
        for c in COSTS:
            row[c] = predict(f.get(c), x)
        row["spill_bytes"] = None
        fs = f.get("seconds")
        row["note"] = f"EXTRAPOLATED ({why}) from {', '.join(f.get('scales', [])) or 'nothing'}: " + (
            f"seconds slope {fs['b']:.2f}" + (" (assumed)" if fs["assumed_slope"] else "") if fs else "no fit"
        )
        out.append(row)
    return out


def guard_estimate(rows: Sequence[Mapping[str, Any]], stages: Sequence[str], scale: str) -> float:
    """Estimated peak RSS (bytes) of the worst stage at ``scale``, from the measured rows.

    A stage fitted over >= 2 scales: its log-log fit. Over one scale (a one-point fit knows no slope):
    the part of its peak above that scale's smallest peak (the interpreter, jax and the dataset, which
    every stage holds) grows in proportion to the interactions: ``base + (peak - base) * x / x0``."""
    measured = [r for r in rows if not r["extrapolated"] and r.get("peak_rss_bytes") and r.get("interactions")]
    if not measured:
        return 0.0
    fits = fit_all(rows, stages)
    x = expected_interactions(scale) * interactions_factor(rows)
    last = [r for r in measured if r["scale"] == measured[-1]["scale"]]
    base = min(r["peak_rss_bytes"] for r in last)
    est = 0.0
    for r in last:
        f = fits[r["stage"]]["peak_rss_bytes"]
        if f and not f["assumed_slope"]:
            est = max(est, predict(f, x))
        else:
            est = max(est, base + (r["peak_rss_bytes"] - base) * x / r["interactions"])
    return est


class StageFailed(RuntimeError):
    """A (scale, stage) that did not finish: ``reason`` and whatever was measured (``fields``)."""

    def __init__(self, reason: str, fields: Mapping[str, Any] | None = None):
        super().__init__(reason)
        self.reason, self.fields = reason, dict(fields or {})


def _failed_row(scale: str, stage: str, reason: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    row = {"scale": scale, "stage": stage, "extrapolated": False, "ran": False, "failed": reason}
    row.update({c: None for c in COSTS}, spill_bytes=None, rows=None, interactions=None, **fields)
    return row


# ------------------------------------------------------------------------------------ driver
def run_scales(
    scales: Sequence[str],
    stages: Sequence[str],
    runner: Runner,
    *,
    max_scale: str,
    mem_available: Callable[[], int] = mem_available_bytes,
    mem_fraction: float = 0.8,
    log: Callable[[str], None] = print,
    reuse: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    on_row: Callable[[list[dict[str, Any]]], None] | None = None,
    skip: Sequence[str] = (),
) -> dict[str, Any]:
    """Runs ``runner(scale, stage)`` for every scale up to ``max_scale`` (memory guard first) and
    extrapolates the rest; returns ``{"rows", "fits", "skipped_scales", "interactions_factor"}``.
    ``reuse``: scale -> measured rows of an earlier run (same preset), taken instead of running them (a
    scale with only some stages measured, e.g. a paper run resumed after its graph, runs the others).
    A stage whose runner raises :class:`StageFailed` (an error, or a child past ``--timeout_s``) gets a
    row with ``failed`` (and ``ran: false``); the scale's later stages and every larger scale are then
    not run (they would recompute it). ``on_row(rows)`` is called after every measured row (partial
    results on disk). Scales in ``skip`` are not run (extrapolated, the reason recorded): e.g. ``xlarge``
    on the way to ``paper`` when only the paper's figures are wanted."""
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    stop = scales.index(max_scale) + 1
    refused = None
    for i, scale in enumerate(scales):
        if i >= stop:
            break
        if scale in skip:
            skipped.append({"scale": scale, "reason": "not run (--skip_scales)"})
            log(f"[scale] {scale}: skipped (--skip_scales)")
            continue
        if refused is None:
            est = guard_estimate(rows, stages, scale)
            avail = mem_available()
            if est > mem_fraction * avail:
                refused = (
                    f"memory guard: estimated peak RSS {est / 2**30:.1f} GiB > {mem_fraction:.0%} of the "
                    f"{avail / 2**30:.1f} GiB available at {scale}"
                )
                log(f"[scale] {scale}: skipped, {refused}")
        if refused is not None:
            skipped.append({"scale": scale, "reason": refused})
            continue
        old = {r["stage"]: r for r in (reuse or {}).get(scale, ())}
        if all(st in old for st in stages):
            rows.extend({**old[st], "reused": True} for st in stages)
            log(f"[scale] {scale}: measured rows reused from the earlier run")
            continue
        for j, st in enumerate(stages):
            if st in old:  # a resumed scale: the stages measured before are taken, the rest run
                rows.append({**old[st], "reused": True})
                log(f"[scale] {scale:7s} {st:10s} reused from the earlier run")
                continue
            try:
                r = {"scale": scale, "stage": st, "extrapolated": False, **runner(scale, st)}
            except StageFailed as e:
                refused = f"stage {st} failed at {scale}: {e.reason}"
                rows.append(_failed_row(scale, st, e.reason, e.fields))
                rows.extend(_failed_row(scale, later, f"not run: {refused}", {}) for later in stages[j + 1 :])
                log(f"[scale] {scale:7s} {st:10s} FAILED: {e.reason}")
                if on_row:
                    on_row(list(rows))
                break
            rows.append(r)
            log(
                f"[scale] {scale:7s} {st:10s} {r['seconds']:9.2f} s  cpu {r['cpu_s']:9.2f} s  "
                f"peak RSS {r['peak_rss_bytes'] / 2**30:6.2f} GiB  spill {r['spill_bytes'] / 2**20:8.1f} MiB  "
                f"rows {r.get('rows')} ({r.get('rows_what', '')})"
            )
            if on_row:
                on_row(list(rows))
    fits = fit_all(rows, stages)
    factor = interactions_factor(rows)
    for i, scale in enumerate(scales):
        if scale in {r["scale"] for r in rows}:
            continue
        why = next((s["reason"] for s in skipped if s["scale"] == scale), None) or f"above --max_scale={max_scale}"
        if i >= stop:
            skipped.append({"scale": scale, "reason": why})
        rows.extend(extrapolated_rows(scale, stages, fits, factor, why))
    return {"rows": rows, "fits": fits, "skipped_scales": skipped, "interactions_factor": factor}


# ------------------------------------------------------------------------------------ the real runner
def child_runner(work_dir: Path, preset: str, poll_s: float, timeout_s: float, overrides: Sequence[str] = ()) -> Runner:
    """A runner that runs each (scale, stage) in a fresh ``python -m benchmarks.scale --child`` process."""

    def run(scale: str, stage: str) -> dict:
        spill = work_dir / "_spill" / f"{scale}-{stage}"
        shutil.rmtree(spill, ignore_errors=True)
        spill.mkdir(parents=True)
        result = work_dir / "_spill" / f"{scale}-{stage}.json"
        result.unlink(missing_ok=True)
        env = {
            **os.environ,
            "TMPDIR": str(spill),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.scale",
            "--child",
            f"--scale={scale}",
            f"--stage={stage}",
            f"--work_dir={work_dir}",
            f"--config={preset}",
            f"--result={result}",
            *(f"--set={o}" for o in overrides),
        ]
        log_path = work_dir / "_spill" / f"{scale}-{stage}.log"
        t0, peak_spill = time.perf_counter(), 0
        with open(log_path, "w") as logf:
            proc = subprocess.Popen(cmd, cwd=spill, env=env, stdout=logf, stderr=subprocess.STDOUT)
            while True:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                peak_spill = max(peak_spill, dir_bytes(spill))
                if time.perf_counter() - t0 > timeout_s:
                    proc.kill()
                    _, status, ru = os.wait4(proc.pid, 0)
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    raise StageFailed(
                        f"timed out after {timeout_s:.0f} s (--timeout_s)",
                        {"seconds_at_least": time.perf_counter() - t0, "peak_rss_bytes_at_least": ru.ru_maxrss * 1024},
                    )
                time.sleep(poll_s)
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not result.exists():
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise StageFailed(f"child exited {proc.returncode}: " + " | ".join(tail[-3:]))
        out = json.loads(result.read_text())
        out.update(
            peak_rss_bytes=ru.ru_maxrss * 1024,
            child_cpu_s=ru.ru_utime + ru.ru_stime,
            child_wall_s=wall,
            spill_bytes=max(peak_spill, out.pop("spill_bytes_end", 0)),
        )
        shutil.rmtree(spill, ignore_errors=True)
        return out

    return run


def _cpu_all() -> float:
    import resource

    me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["two_tower.max_steps=300", ...]`` -> ``{"two_tower.max_steps": "300"}`` (configs.load's overrides)."""
    out = {}
    for it in items:
        key, sep, value = it.partition("=")
        if not sep or not key:
            raise ValueError(f"--set={it!r}: expected path=value, e.g. two_tower.max_steps=300")
        out[key] = value
    return out


def child_main(scale: str, stage: str, work_dir: str, preset: str, result: str, overrides: Sequence[str] = ()) -> None:
    """One (scale, stage) in this process; writes the measured figures to ``result``."""
    import resource

    from twotower_hgnn import configs
    from twotower_hgnn.io import atomic_write_json
    from twotower_hgnn.pipeline import PipelineConfig
    from twotower_hgnn.pipeline.context import open_run
    from twotower_hgnn.pipeline.driver import run_stage

    t0, c0 = time.perf_counter(), _cpu_all()
    cfg = PipelineConfig(
        dataset="synthetic", scale=scale, out_dir=work_dir, config=configs.load(preset, parse_overrides(overrides))
    )
    ctx = open_run(cfg)
    open_s, rss_open = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # counted before the stage: a stage that does not read the log may release the dataset
    n_inter, n_items = int(len(ctx.ds.interactions)), int(ctx.ds.num_items)
    t1, c1 = time.perf_counter(), _cpu_all()
    res = None if stage == "open" else run_stage(ctx, stage)
    seconds, cpu_s = time.perf_counter() - t1, _cpu_all() - c1
    if stage == "open":
        seconds, cpu_s = open_s, c1 - c0
    upstream_ran = [n for n, r in ctx.runner.results.items() if r.ran and n != ctx.names[stage]]
    summary = res.summary if res is not None else {}
    if stage == "graph" and "relations" in summary:
        rows, what = int(sum(summary["relations"].values())), "graph edges"
    elif stage in ("content", "hgnn", "export"):
        rows, what = n_items, "items"
    else:
        rows, what = n_inter, "interactions"
    out = {
        "interactions": n_inter,
        "rows": rows,
        "rows_what": what,
        "seconds": seconds,
        "cpu_s": cpu_s,
        "open_seconds": open_s,
        "open_cpu_s": c1 - c0,
        "rss_after_open_bytes": rss_open,
        "ran": stage == "open" or bool(res is not None and res.ran),
        "upstream_ran": upstream_ran,
        "output_bytes": dir_bytes(ctx.path(stage)) if res is not None else 0,
        "spill_bytes_end": dir_bytes(Path.cwd()),
        "data_reloads": ctx.reloads,
    }
    atomic_write_json(result, out)


# ------------------------------------------------------------------------------------ outputs
def plot(result: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, cost, label, scale_by in (
        (axes[0], "seconds", "seconds (wall)", 1.0),
        (axes[1], "peak_rss_bytes", "peak RSS (GiB)", 2**30),
    ):
        for i, st in enumerate(stages):
            color = f"C{i % 10}"
            pts = sorted(
                (r["interactions"], r[cost] / scale_by, r["extrapolated"])
                for r in rows
                if r["stage"] == st and r.get(cost)
            )
            meas = [(x, y) for x, y, e in pts if not e]
            extr = [(x, y) for x, y, e in pts if e]
            if meas:
                ax.plot(*zip(*meas), "o-", color=color, label=st)
            if extr:
                link = (meas[-1:] if meas else []) + extr
                ax.plot(*zip(*link), "--", color=color, alpha=0.6)
                ax.plot(*zip(*extr), "o", mfc="none", color=color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=2)
    m = result["meta"]
    fig.suptitle(
        f"pipeline stages vs interactions (preset {m['preset']}; filled = measured, hollow/dashed = EXTRAPOLATED) "
        f"— {m['date'][:10]}, git {m['git_sha'][:10]}",
        fontsize=9,
    )
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def build_result(run: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    slopes = {st: {c: (f[c]["b"] if f.get(c) else None) for c in COSTS} for st, f in run["fits"].items()}
    return {"benchmark": "scale", "meta": dict(meta), **run, "slopes": slopes}


def print_table(result: Mapping[str, Any]) -> None:
    print(
        f"\n{'scale':8s} {'stage':10s} {'interactions':>13s} {'seconds':>9s} {'cpu s':>9s} {'RSS GiB':>8s} {'spill MiB':>9s}"
    )
    for r in result["rows"]:
        f = lambda v, k=1.0, p=2: "-" if v is None else f"{v / k:.{p}f}"  # noqa: E731
        print(
            f"{r['scale']:8s} {r['stage']:10s} {f(r['interactions'], 1.0, 0):>13s} {f(r['seconds']):>9s} {f(r['cpu_s']):>9s} "
            f"{f(r['peak_rss_bytes'], 2**30):>8s} {f(r.get('spill_bytes'), 2**20, 1):>9s}"
            + ("  EXTRAPOLATED" if r["extrapolated"] else "")
            + (f"  FAILED: {r['failed']}" if r.get("failed") else "")
        )
    print("\nslope b of cost ~ a * interactions^b:")
    for st, s in result["slopes"].items():
        print(f"  {st:10s} " + "  ".join(f"{c} {'-' if v is None else f'{v:.2f}'}" for c, v in s.items()))


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max_scale", default="small", choices=SCALE_ORDER)
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of the pipeline stages")
    p.add_argument("--config", default="test", help="preset (twotower_hgnn.configs) every stage runs with")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="configuration override for every stage (repeatable), e.g. --set=two_tower.max_steps=300",
    )
    p.add_argument("--work_dir", default=str(ROOT / ".cache" / "scale_runs"), help="the runs' folder (kept)")
    p.add_argument("--fresh", action="store_true", help="remove --work_dir first (else valid stages are reused)")
    p.add_argument(
        "--reuse",
        default=None,
        help="an earlier scale.json (same preset and overrides): its measured scales are taken, not rerun",
    )
    p.add_argument("--skip_scales", default="", help="comma-separated scales not to run (extrapolated)")
    p.add_argument("--mem_fraction", type=float, default=0.8, help="memory guard: share of MemAvailable")
    p.add_argument("--poll_s", type=float, default=0.5, help="spill folder polling period")
    p.add_argument("--timeout_s", type=float, default=3600.0, help="per (scale, stage) child")
    p.add_argument("--json", default=str(RESULTS / "scale.json"))
    p.add_argument("--plot", default=str(RESULTS / "scale.png"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scale", help=argparse.SUPPRESS)
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child_main(a.scale, a.stage, a.work_dir, a.config, a.result, a.set)
        return
    stages = [s for s in a.stages.split(",") if s]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        p.error(f"--stages: unknown {bad}; known {list(STAGES)}")
    work = Path(a.work_dir)
    if a.fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    from twotower_hgnn.io import atomic_write_json
    from twotower_hgnn.provenance import git_sha, utc_now

    reuse: dict[str, list[dict]] = {}
    if a.reuse:
        old = json.loads(Path(a.reuse).read_text())
        same = old["meta"]["preset"] == a.config and old["meta"].get("overrides", {}) == parse_overrides(a.set)
        if not same:
            p.error(f"--reuse={a.reuse}: preset/overrides differ from this run's")
        when = {"date": old["meta"]["date"], "git_sha": old["meta"]["git_sha"]}
        for r in old["rows"]:
            if (
                not r["extrapolated"]
                and not r.get("failed")
                and r["scale"] in SCALE_ORDER[: SCALE_ORDER.index(a.max_scale) + 1]
            ):
                reuse.setdefault(r["scale"], []).append({**r, "measured": r.get("measured", when)})
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    base_meta = {
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()})",
        "cpus": os.cpu_count(),
        "git_sha": git_sha(ROOT),
        "preset": a.config,
        "overrides": parse_overrides(a.set),
        "max_scale": a.max_scale,
        "stages": stages,
        "load_avg_start": load0,
    }
    partial = Path(a.json + ".partial")

    def save_partial(rows: list[dict]) -> None:  # a killed run leaves its rows (usable with --reuse)
        atomic_write_json(
            partial, {"benchmark": "scale", "partial": True, "meta": {**base_meta, "date": utc_now()}, "rows": rows}
        )

    run = run_scales(
        SCALE_ORDER,
        stages,
        child_runner(work, a.config, a.poll_s, a.timeout_s, a.set),
        max_scale=a.max_scale,
        mem_fraction=a.mem_fraction,
        reuse=reuse,
        on_row=save_partial,
        skip=[x for x in a.skip_scales.split(",") if x],
    )
    meta = {
        **base_meta,
        "date": utc_now(),
        "reused_scales": {
            r["scale"]: r["measured"] for r in run["rows"] if r.get("reused")
        },  # per row: "reused" and "measured"
        "load_avg_end": os.getloadavg()[0],
        "mem_available_bytes_end": mem_available_bytes(),
        "wall_s": time.perf_counter() - t0,
    }
    result = build_result(run, meta)
    print_table(result)
    atomic_write_json(a.json, json.loads(json.dumps(result, default=float)))
    plot(result, Path(a.plot))
    partial.unlink(missing_ok=True)
    print(f"wrote {a.json} and {a.plot}")


if __name__ == "__main__":
    main()
