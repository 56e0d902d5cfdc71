"""benchmarks/scale.py without the pipeline: a fake stage runner whose costs follow known power laws
checks the log-log fit, the memory guard, the extrapolation marking and the JSON layout (the plot is
made by the real runs: matplotlib's drawing alone takes seconds)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import scale as S

LAWS = {"graph": (2e-5, 1.3), "hgnn": (3.0, 0.0), "evaluate": (1e-4, 1.0)}  # seconds = a * x^b
RSS = {"graph": 1e5, "hgnn": 0.0, "evaluate": 1e3}  # peak RSS = 2e8 + c * x


def fake_runner(calls):
    def run(scale, stage):
        calls.append((scale, stage))
        x = S.expected_interactions(scale) * 0.9  # measured counts differ from the target
        a, b = LAWS[stage]
        return {
            "interactions": x,
            "rows": int(x),
            "rows_what": "interactions",
            "seconds": a * x**b,
            "cpu_s": 2 * a * x**b,
            "peak_rss_bytes": 2e8 + RSS[stage] * x,
            "spill_bytes": 0,
            "ran": True,
        }

    return run


def test_fit_recovers_slopes_and_marks_extrapolation(tmp_path):
    calls = []
    run = S.run_scales(S.SCALE_ORDER, list(LAWS), fake_runner(calls), max_scale="medium", mem_available=lambda: 1 << 50)
    assert [c[0] for c in calls] == ["tiny"] * 3 + ["small"] * 3 + ["medium"] * 3
    for st, (a, b) in LAWS.items():
        f = run["fits"][st]["seconds"]
        assert f["b"] == pytest.approx(b, abs=1e-9) and f["a"] == pytest.approx(a, rel=1e-6)
        assert not f["assumed_slope"] and f["points"] == 3
    assert run["fits"]["hgnn"]["peak_rss_bytes"]["b"] == pytest.approx(0.0, abs=1e-12)  # a constant peak
    assert run["interactions_factor"] == pytest.approx(0.9)
    extr = [r for r in run["rows"] if r["extrapolated"]]
    assert {r["scale"] for r in extr} == {"large", "xlarge", "paper"} and len(extr) == 9
    for r in extr:
        a, b = LAWS[r["stage"]]
        x = S.expected_interactions(r["scale"]) * 0.9
        assert r["interactions"] == pytest.approx(x)
        assert r["seconds"] == pytest.approx(a * x**b, rel=1e-6) and "EXTRAPOLATED" in r["note"]
        assert r["rows"] is None and r["spill_bytes"] is None
    assert [s["scale"] for s in run["skipped_scales"]] == ["large", "xlarge", "paper"]
    assert all("max_scale=medium" in s["reason"] for s in run["skipped_scales"])

    meta = {"date": "2026-11-30T00:00:00+00:00", "git_sha": "0123456789abcdef", "preset": "test", "machine": "m"}
    result = S.build_result(run, meta)
    path = tmp_path / "scale.json"
    path.write_text(json.dumps(result))
    back = json.loads(path.read_text())
    assert set(back) >= {"benchmark", "meta", "rows", "fits", "slopes", "skipped_scales"}
    assert back["benchmark"] == "scale" and back["meta"]["git_sha"] == meta["git_sha"]
    assert all(
        {"scale", "stage", "interactions", "seconds", "cpu_s", "peak_rss_bytes", "extrapolated"} <= set(r)
        for r in back["rows"]
    )
    assert back["slopes"]["graph"]["seconds"] == pytest.approx(1.3)

    from benchmarks.notes_tables import scale_table

    back["meta"] = {**back["meta"], "cpus": 2, "load_avg_start": 0.5, "reused_scales": {"tiny": meta}}
    text = scale_table(back, "scale up to the paper's log")
    assert text.startswith("**scale up to the paper's log** (`benchmarks/scale.py`, preset `test`")
    assert "| graph | " in text and "~" in text.split("| graph | ")[1].split("\n")[0]  # extrapolated cells
    assert "Reused from an earlier run (`--reuse`): tiny (measured 2026-11-30T00:00 at git 0123456789)." in text
    # a scale resumed after some of its stages: the reused stages are named, with their run
    early = {"date": "2026-11-29T10:00:00+00:00", "git_sha": "fedcba9876543210"}
    for r in back["rows"]:
        if (r["scale"], r["stage"]) == ("small", "graph") or r["scale"] == "tiny":
            r.update(reused=True, measured=early if r["scale"] == "small" else meta)
    text = scale_table(back, "scale", plot="benchmarks/results/scale.png")
    assert (
        "Reused from an earlier run (`--reuse`): tiny (measured 2026-11-30T00:00 at git 0123456789); "
        "small graph (measured 2026-11-29T10:00 at git fedcba9876)." in text
    )
    assert text.endswith("\n\n![scale: cost of each stage against interactions, log-log](benchmarks/results/scale.png)")
    assert "![" not in scale_table(back, "scale")  # no plot given, none shown


def test_memory_guard_skips_a_scale_and_every_larger_one():
    calls = []
    # tiny: graph 0.2 + 2.2 GB, hgnn 0.2 GB (the base); small: 0.2 + 2.2 x 25 = 54 GB > 80 % of 4 GiB
    run = S.run_scales(
        S.SCALE_ORDER, ["graph", "hgnn"], fake_runner(calls), max_scale="paper", mem_available=lambda: 4 << 30
    )
    assert calls == [("tiny", "graph"), ("tiny", "hgnn")]
    assert S.guard_estimate(run["rows"], ["graph", "hgnn"], "small") == pytest.approx(2e8 + 1e5 * 0.9 * 600_000)
    skipped = {s["scale"]: s["reason"] for s in run["skipped_scales"]}
    assert list(skipped) == ["small", "medium", "large", "xlarge", "paper"]
    assert all(v.startswith("memory guard") for v in skipped.values())
    f = run["fits"]["graph"]["seconds"]
    assert f["assumed_slope"] and f["b"] == 1.0  # one scale: linear assumed, and said so
    small = next(r for r in run["rows"] if r["scale"] == "small" and r["stage"] == "graph")
    assert small["extrapolated"] and "memory guard" in small["note"] and "(assumed)" in small["note"]


def test_fit_power_edge_cases():
    assert S.fit_power([], []) is None
    assert S.fit_power([1.0, 2.0], [0.0, 0.0]) is None  # zero costs carry no slope
    f = S.fit_power([10.0, 100.0, 1000.0], [5.0, 50.0, 500.0])
    assert f["b"] == pytest.approx(1.0) and f["r2"] == pytest.approx(1.0) and math.isclose(f["a"], 0.5)


def test_reuse_takes_earlier_rows_instead_of_running():
    calls = []
    first = S.run_scales(S.SCALE_ORDER, ["graph"], fake_runner(calls), max_scale="small", mem_available=lambda: 1 << 50)
    old = {}
    for r in first["rows"]:
        if not r["extrapolated"]:
            old.setdefault(r["scale"], []).append(r)
    calls.clear()
    run = S.run_scales(
        S.SCALE_ORDER, ["graph"], fake_runner(calls), max_scale="medium", mem_available=lambda: 1 << 50, reuse=old
    )
    assert calls == [("medium", "graph")]
    assert [r["scale"] for r in run["rows"] if r.get("reused")] == ["tiny", "small"]
    assert run["fits"]["graph"]["seconds"]["points"] == 3
    # a partly measured scale (a run resumed after its graph): its measured stage is taken, the rest run
    calls.clear()
    run = S.run_scales(
        S.SCALE_ORDER,
        ["graph", "hgnn"],
        fake_runner(calls),
        max_scale="small",
        mem_available=lambda: 1 << 50,
        reuse=old,
    )
    assert calls == [("tiny", "hgnn"), ("small", "hgnn")]
    got = {(r["scale"], r["stage"]): bool(r.get("reused")) for r in run["rows"] if not r["extrapolated"]}
    assert got == {("tiny", "graph"): True, ("tiny", "hgnn"): False, ("small", "graph"): True, ("small", "hgnn"): False}


def test_a_failed_stage_is_a_row_and_stops_the_larger_scales():
    calls = []
    ok = fake_runner(calls)

    def run(scale, stage):
        if (scale, stage) == ("small", "hgnn"):
            raise S.StageFailed("timed out after 60 s (--timeout_s)", {"seconds_at_least": 60.0})
        return ok(scale, stage)

    saved = []
    res = S.run_scales(
        S.SCALE_ORDER, list(LAWS), run, max_scale="large", mem_available=lambda: 1 << 50, on_row=saved.append
    )
    assert calls == [("tiny", st) for st in LAWS] + [("small", "graph")]
    small = {r["stage"]: r for r in res["rows"] if r["scale"] == "small"}
    assert small["hgnn"]["failed"].startswith("timed out") and small["hgnn"]["seconds_at_least"] == 60.0
    assert small["evaluate"]["failed"].startswith("not run") and small["evaluate"]["seconds"] is None
    assert not small["graph"].get("failed") and res["fits"]["graph"]["seconds"]["points"] == 2
    assert res["fits"]["hgnn"]["scales"] == ["tiny"]  # the failed row is not a point of the fit
    assert [s["scale"] for s in res["skipped_scales"]][:1] == ["medium"]
    assert "hgnn failed at small" in res["skipped_scales"][0]["reason"]
    assert len(saved) == 5 and len(saved[-1]) == 6  # a partial save after every row


def test_skipped_scales_are_extrapolated_not_run():
    calls = []
    run = S.run_scales(
        S.SCALE_ORDER, ["graph"], fake_runner(calls), max_scale="large", mem_available=lambda: 1 << 50, skip=["medium"]
    )
    assert [c[0] for c in calls] == ["tiny", "small", "large"]
    med = [r for r in run["rows"] if r["scale"] == "medium"]
    assert len(med) == 1 and med[0]["extrapolated"] and "--skip_scales" in med[0]["note"]
    assert {s["scale"]: s["reason"] for s in run["skipped_scales"]}["medium"] == "not run (--skip_scales)"
