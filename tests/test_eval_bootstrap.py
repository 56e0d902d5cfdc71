"""Per-user metrics, the paired bootstrap, and their use in the report (intervals, per_user.parquet, flags)."""

import json

import numpy as np
import pandas as pd
import pytest

from test_eval_protocol import SPLIT, _dataset
from twotower_hgnn.eval.bootstrap import best_baseline_intervals, paired_bootstrap, per_user_metrics
from twotower_hgnn.eval.metrics import ItemSets, compute_metrics, popularity_tiers
from twotower_hgnn.eval.protocol import EvalProtocol, Rankings, TargetProtocol, build_protocol
from twotower_hgnn.eval.report import (
    EvalReport,
    build_report,
    evaluate_models,
    format_console,
    format_markdown,
    load_report,
    reference_flags,
    write_report,
)


def test_paired_bootstrap_identical_inputs_give_zero():
    a = np.random.default_rng(0).integers(0, 2, 500).astype(float)
    out = paired_bootstrap(a, a.copy())
    assert out["diff"] == 0.0 and out["lo"] == 0.0 and out["hi"] == 0.0 and not out["excludes_zero"]
    assert out["n_users"] == 500 and out["n_boot"] == 1000


def test_paired_bootstrap_shift_excludes_zero_and_is_deterministic():
    rng = np.random.default_rng(1)
    b = rng.random(300)
    out = paired_bootstrap(b + 1.0, b)
    assert out["diff"] == pytest.approx(1.0) and out["lo"] == pytest.approx(1.0) and out["excludes_zero"]
    a = (rng.random(300) < 0.55).astype(float)
    c = (rng.random(300) < 0.45).astype(float)
    r1, r2, r3 = paired_bootstrap(a, c, seed=3), paired_bootstrap(a, c, seed=3), paired_bootstrap(a, c, seed=4)
    assert r1 == r2 and (r1["lo"], r1["hi"]) != (r3["lo"], r3["hi"])
    assert r1["lo"] < r1["diff"] < r1["hi"] and r1["diff"] == pytest.approx(a.mean() - c.mean())
    # the interval is about +-1.96 standard errors of the paired mean difference
    se = np.std(a - c) / np.sqrt(a.size)
    assert r1["hi"] - r1["lo"] == pytest.approx(2 * 1.96 * se, rel=0.15)
    # a small noisy difference is not significant; empty inputs are NaN, not an error
    assert not paired_bootstrap(a[:20], a[:20][::-1])["excludes_zero"]
    assert np.isnan(paired_bootstrap(np.zeros(0), np.zeros(0))["diff"])
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        paired_bootstrap(np.zeros(3), np.zeros(4))


def _random_protocol(n_users=60, n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    rel = [sorted(rng.choice(n_items, rng.integers(1, 5), replace=False).tolist()) for _ in range(n_users)]
    streams = rng.integers(0, 50, n_items)
    tp = TargetProtocol(
        "audiobook",
        np.arange(n_items),
        np.arange(n_users) * 2,
        rng.random(n_users) < 0.5,
        ItemSets.from_lists(rel),
        ItemSets.from_lists([[]] * n_users),
        ItemSets.from_lists([[]] * n_users),
        streams,
        popularity_tiers(streams),
    )
    return EvalProtocol({"audiobook": tp}, {"n_tiers": 5}), rng


def test_compute_metrics_are_the_means_of_the_per_user_metrics():
    proto, rng = _random_protocol()
    tp = proto["audiobook"]
    ranked = np.stack([rng.permutation(30)[:20] for _ in range(tp.n_users)])
    ranked[::7, 15:] = -1
    rk = Rankings(tp.users[::-1].copy(), ranked[::-1].copy())  # any user order
    for seg in ("all", "warm", "cold"):
        pos = tp.segment(seg)
        pu = per_user_metrics(tp, rk, seg, k=5, depth=20)
        np.testing.assert_array_equal(pu["users"], tp.users[pos])
        assert pu["covered"].all()
        ref = compute_metrics(ranked[pos], tp.relevant.take(pos), tp.catalogue, k=5, depth=20)
        assert pu["hit"].mean() == pytest.approx(ref["hr@5"]) and pu["rr"].mean() == pytest.approx(ref["mrr@20"])
        assert pu["recall"].mean() == pytest.approx(ref["recall@5"]) and pu["ndcg"].mean() == pytest.approx(
            ref["ndcg@5"]
        )
        assert set(np.unique(pu["hit"])) <= {0.0, 1.0}
    part = per_user_metrics(tp, Rankings(tp.users[:10], ranked[:10]), "all")
    assert part["covered"].sum() == 10 and np.isnan(part["hit"][10:]).all()


def _models(tp, rng):
    """Oracle (relevant item first), Popularity-like fixed order, Noise, and a warm-only model."""
    first = tp.relevant.indices[tp.relevant.indptr[:-1]]
    oracle = np.argsort(np.arange(30)[None, :] != first[:, None], axis=1, kind="stable")  # first relevant, then ids
    fixed = np.tile(np.argsort(-tp.train_streams, kind="stable"), (tp.n_users, 1))
    noise = np.stack([rng.permutation(30) for _ in range(tp.n_users)])
    warm = tp.segment("warm")
    return {
        "Oracle": {"audiobook": Rankings(tp.users, oracle)},
        "Popularity": {"audiobook": Rankings(tp.users, fixed)},
        "Noise": {"audiobook": Rankings(tp.users, noise)},
        "WarmOnly": {"audiobook": Rankings(tp.users[warm], oracle[warm])},
    }


def test_evaluate_models_intervals_against_the_best_baseline():
    proto, rng = _random_protocol(n_users=200)
    tp = proto["audiobook"]
    models = _models(tp, rng)
    ev = evaluate_models(models, proto, k=1, depth=30, baselines={"Popularity", "Noise"}, n_boot=500)
    res = {(r["model"], r["segment"]): r["metrics"]["hr@1"] for r in ev["results"]}
    for seg in ("all", "warm", "cold"):
        iv = ev["intervals"]["audiobook"][seg]
        best = "Popularity" if res[("Popularity", seg)] >= res[("Noise", seg)] else "Noise"
        assert {v["vs"] for v in iv.values()} == {best} and best not in iv
        o = iv["Oracle"]
        assert o["diff"] == pytest.approx(1.0 - res[(best, seg)]) and o["significant"] and o["lo"] > 0
        assert o["n_users"] == tp.segment(seg).size and o["metric"] == "hr@1"
    # the warm-only model is compared on the users both rank, also in segment "all" where it is not scored
    assert ev["intervals"]["audiobook"]["all"]["WarmOnly"]["n_users"] == tp.segment("warm").size
    assert ("WarmOnly", "all") not in res
    assert evaluate_models(models, proto, k=1, depth=30)["intervals"] == {}  # no baselines: no intervals
    # the same numbers from the per-user records directly
    again = best_baseline_intervals(ev["per_user"], ev["results"], proto, {"Popularity", "Noise"}, k=1, n_boot=500)
    assert again == ev["intervals"]


def test_report_carries_intervals_per_user_parquet_and_console_marks(tmp_path):
    proto, rng = _random_protocol(n_users=120, seed=2)
    models = _models(proto["audiobook"], rng)
    ev = evaluate_models(models, proto, baselines={"Popularity", "Noise"}, n_boot=200)
    report = build_report(ev, proto)
    assert isinstance(report, EvalReport) and report["intervals"] == json.loads(json.dumps(ev["intervals"]))
    paths = write_report(report, tmp_path)
    back = load_report(paths["json"])
    assert back["intervals"]["audiobook"]["warm"]["Oracle"]["significant"] is True
    pu = pd.read_parquet(paths["per_user"])
    assert list(pu.columns) == ["target", "segment", "model", "user_idx", "hit", "rr"]
    rows = {(r["model"], r["segment"]): r["metrics"] for r in report["results"]}
    for (model, seg), m in rows.items():
        sel = pu[(pu.model == model) & (pu.segment == seg)]
        assert len(sel) == m["n_users"] and sel.hit.mean() == pytest.approx(m["hr@10"])
        assert sel.rr.mean() == pytest.approx(m["mrr@100"])
    assert not ((pu.model == "WarmOnly") & (pu.segment == "all")).any()
    md = format_markdown(report)
    assert "dHR@10 vs" in md and "LT HR@10" in md and "(best baseline)" in md
    assert not (tmp_path / "x").exists() and "per_user" not in write_report(back, tmp_path / "x")  # loaded: no frame


def test_console_shows_interval_column_beside_hr_and_marks_significance():
    proto = build_protocol(_dataset(), SPLIT)
    models = {
        "Popularity": {"audiobook": Rankings(np.array([0, 1, 2]), np.array([[1, 2], [1, 2], [1, 2]]))},
        "Better": {"audiobook": Rankings(np.array([0, 1, 2]), np.array([[2, 1], [1, 2], [1, 2]]))},
    }
    report = build_report(evaluate_models(models, proto, k=1, baselines={"Popularity"}, n_boot=100), proto, k=1)
    console = format_console(report)
    table3 = console[console.index("Table 3") :]
    header = table3.splitlines()[1]
    assert header.split()[:3] == ["Model", "HR@1", "dHR@1"] and "LT HR@1" in header
    lines = {ln.split()[0]: ln for ln in table3.splitlines()[3:5]}
    assert "(best baseline)" in lines["Popularity"]
    table2 = console[console.index("Table 2") : console.index("Table 3")]
    better = [ln for ln in table2.splitlines() if ln.startswith("Better")][0]
    assert "+0.500 [+0.000, +1.000]" in better and " *" not in better  # 2 warm users: not significant
    assert "paired-bootstrap" in console


def test_reference_flags_coverage_and_long_tail_drops():
    proto, rng = _random_protocol(n_users=100, seed=4)
    ev = evaluate_models(_models(proto["audiobook"], rng), proto)
    ref = build_report(ev, proto)
    cur = json.loads(json.dumps(ref))
    for r in cur["results"]:
        if r["model"] == "Noise" and r["segment"] == "warm":
            r["metrics"]["coverage@100"] *= 0.7  # 30% below: flagged
        if r["model"] == "Oracle":
            r["metrics"]["coverage@100"] *= 0.85  # 15% below: not flagged
    for r in cur["long_tail"]:
        if r["model"] == "Oracle" and r["segment"] == "all":
            r["metrics"]["hr@10"] *= 0.5
    flags = reference_flags(cur, ref)
    got = {(f["model"], f["segment"], f["metric"]) for f in flags}
    assert got == {("Noise", "warm", "coverage@100"), ("Oracle", "all", "long_tail/hr@10")}
    f = [f for f in flags if f["model"] == "Noise"][0]
    assert f["rel_change"] == pytest.approx(-0.3)
    better = json.loads(json.dumps(ref))  # a reference 50% above on one row: this run is 33% below it
    for r in better["results"]:
        if (r["model"], r["segment"]) == ("Popularity", "cold"):
            r["metrics"]["coverage@100"] *= 1.5
    flagged = build_report(ev, proto, reference=better)
    assert [(x["model"], x["segment"], x["metric"]) for x in flagged["flags"]] == [
        ("Popularity", "cold", "coverage@100")
    ]
    console = format_console(flagged)
    assert "(!) Popularity / audiobook / cold: coverage@100" in console and "33% below the reference" in console
    assert "Popularity (!)" in console[console.index("Table 3") :] and "## Flags" in format_markdown(flagged)
    assert build_report(ev, proto)["flags"] == [] and build_report(ev, proto, reference=ref)["flags"] == []
