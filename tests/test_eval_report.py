"""evaluate_models / report.json round trip / report.md tables / console tables / PNG plots."""

import json

import numpy as np
import pytest

from test_eval_protocol import SPLIT, _dataset
from twotower_hgnn.eval.plots import plot_report, plot_training_curves
from twotower_hgnn.eval.protocol import Rankings, build_protocol
from twotower_hgnn.eval.report import (
    ReportError,
    build_report,
    evaluate_models,
    format_console,
    load_report,
    table1_rows,
    validate_report,
    write_report,
)


@pytest.fixture(scope="module")
def proto():
    # audiobook users [0, 1, 2] (warm, cold, warm), relevant [[2], [1], [2]], user 0 excludes item 0;
    # podcast users [0] (warm), relevant [[4]], excludes [3]
    return build_protocol(_dataset(), SPLIT)


def _models():
    return {
        "Perfect": {
            "audiobook": Rankings(np.array([2, 0, 1]), np.array([[2, 1, -1], [2, 1, -1], [1, 2, 0]])),
            "podcast": Rankings(np.array([0]), np.array([[4, 5, -1]])),
        },
        # user 0 gets the relevant item at rank 2, user 2 never; ranks warm users only
        "WarmOnly": {"audiobook": Rankings(np.array([0, 2]), np.array([[1, 2, -1], [0, 1, -1]]))},
    }


def test_evaluate_models_values_and_skips(proto):
    ev = evaluate_models(_models(), proto, k=1, depth=3)
    res = {(r["model"], r["target_type"], r["segment"]): r["metrics"] for r in ev["results"]}
    assert res[("Perfect", "audiobook", "warm")] == {
        "hr@1": 1.0,
        "mrr@3": 1.0,
        "coverage@3": 2 / 3,
        "recall@1": 1.0,
        "ndcg@1": 1.0,
        "n_users": 2,
    }
    assert res[("Perfect", "audiobook", "all")]["coverage@3"] == 1.0
    wo = res[("WarmOnly", "audiobook", "warm")]
    assert wo["hr@1"] == 0.0 and wo["mrr@3"] == pytest.approx(0.25) and wo["n_users"] == 2
    skipped = {(s["model"], s["segment"]): s["reason"] for s in ev["skipped"]}
    assert skipped[("WarmOnly", "cold")] == "model ranks 0 of 1 users"
    assert skipped[("WarmOnly", "all")] == "model ranks 2 of 3 users"
    assert skipped[("Perfect", "cold")] == "segment has no evaluated user"  # podcast: nobody cold
    assert ("Perfect", "podcast", "all") in res
    # long tail: audiobook tiers by count over train streams [2, 0, 0]: items 1 and 2 are tiers 3 and 5
    lt = {(r["model"], r["segment"]): r["metrics"] for r in ev["long_tail"] if r["target_type"] == "audiobook"}
    assert lt[("Perfect", "warm")]["n_users"] == 2 and lt[("WarmOnly", "warm")]["hr@1"] == 0.0


def test_excluded_item_in_a_ranking_is_an_error(proto):
    bad = {"Leaky": {"audiobook": Rankings(np.array([0, 1, 2]), np.array([[0, 2], [1, 2], [2, 1]]))}}
    with pytest.raises(ReportError, match="user row 0 is recommended item 0 at rank 1, which the protocol excludes"):
        evaluate_models(bad, proto)
    with pytest.raises(ReportError, match="target type 'movie'"):
        evaluate_models({"X": {"movie": Rankings(np.array([0]), np.array([[1]]))}}, proto)


def test_report_round_trip_markdown_console_and_plots(proto, tmp_path):
    ev = evaluate_models(_models(), proto)
    history = [{"step": s, "loss": 1.0 / (s + 1), "val_hr@10": 0.1 * s} for s in range(5)]
    first = build_report(
        ev,
        proto,
        config={"seed": 0, "dims": np.int64(8)},
        dataset=_dataset(),
        split=SPLIT,
        training={"hgnn": {"history": history, "wall_s": 1.5}},
    )
    rows = table1_rows({"2T-HGNN": first, "A) no balanced sampler": first}, model="Perfect")
    report = build_report(
        ev,
        proto,
        config={"seed": 0},
        dataset=_dataset(),
        split=SPLIT,
        ablations=rows,
        training={"hgnn": {"history": history, "wall_s": 1.5}},
    )
    paths = write_report(report, tmp_path / "out")
    back = load_report(paths["json"])
    assert back == json.loads(json.dumps(report))
    assert back["meta"]["dataset"]["events"]["stream"] == 13 and back["meta"]["k"] == 10
    assert back["meta"]["protocol_stats"]["audiobook"]["warm_users"] == 2
    md = paths["md"].read_text()
    for title in (
        "Table 1 - ablations",
        "Table 2 - audiobook recommendations, warm-start users",
        "Table 3 - audiobook recommendations, cold-start users",
        "Table 4 - podcast recommendations",
    ):
        assert title in md
    assert "| A) no balanced sampler | 1.000 | 1.000 |" in md
    assert "WarmOnly / audiobook / cold: model ranks 0 of 1 users" in md
    console = format_console(report)
    assert console.index("Table 1") < console.index("Table 2") < console.index("Table 4")
    assert "Coverage@100" in console and "66.7%" in console  # Perfect warm: 2 of 3 audiobooks shown
    pngs = plot_report(report, tmp_path / "plots")
    assert [p.name for p in pngs] == ["metrics.png", "training_hgnn.png"]
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000
    with pytest.raises(ValueError, match="no numeric quantity"):
        plot_training_curves([{"step": 0, "note": "x"}], tmp_path / "x.png")


def test_validate_and_load_name_the_bad_field(proto, tmp_path):
    report = build_report(evaluate_models(_models(), proto), proto)
    broken = json.loads(json.dumps(report))
    del broken["results"][1]["metrics"]["ndcg@10"]
    with pytest.raises(ReportError, match=r"results\[1\] is missing \['ndcg@10'\]"):
        validate_report(broken)
    (tmp_path / "r.json").write_text("{not json")
    with pytest.raises(ReportError, match="r.json: cannot read"):
        load_report(tmp_path / "r.json")
    with pytest.raises(ReportError, match="no Perfect/audiobook/warm"):
        table1_rows({"B": {"results": []}}, model="Perfect")
