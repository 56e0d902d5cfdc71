"""BUILD_NOTES' generated quality ladder: repeated seeds share a row, kept and not-kept changes apart."""

from benchmarks.notes_tables import change_groups, changes_table


def _change(run, change, decision, val, warm=0.6, cold=0.8, cov=0.7, why="because"):
    return {
        "run": run,
        "change": change,
        "decision": decision,
        "why": why,
        "val_hr10": val,
        "test_hr10": {"warm": warm, "cold": cold, "all": (warm + cold) / 2},
        "coverage100_all": cov,
    }


LADDER = {
    "what": "ladder",
    "baselines_test_hr10": {"Popularity": {"warm": 0.5, "cold": 0.6, "all": 0.55}},
    "changes": [
        _change("base", "the starting point", "reference", 0.60, cov=0.80),
        _change("lr", "lr 3e-4", "rejected", 0.55),
        _change("ema-s0", "EMA, seed 0", "kept", 0.70, warm=0.60, cov=0.50),
        _change("ema-s1", "the same, seed 1", "kept", 0.72, warm=0.70, cov=0.70),
        _change("t01-s0", "temperature 0.1, seed 0", "rejected", 0.61),
        _change("t01-s1", "the same, seed 1", "rejected", 0.62),
        _change("2T", "without HGNN inputs (2T)", "applied to 2T", 0.69, why=""),
    ],
}


def test_seed_rows_join_the_row_before_them():
    groups = change_groups(LADDER["changes"])
    assert [[c["run"] for c in g] for g in groups] == [
        ["base"],
        ["lr"],
        ["ema-s0", "ema-s1"],
        ["t01-s0", "t01-s1"],
        ["2T"],
    ]


def test_kept_and_not_kept_are_separate_tables_with_seed_means():
    text = changes_table(LADDER)
    kept, rest = text.split("Tried and not kept")
    assert "| the starting point (`base`) | reference: because | 0.600 |" in kept
    # validation per seed; test and coverage averaged over the seeds; coverage 0.60 < 0.8 x 0.80 is flagged
    assert (
        "| EMA, seed 0 (`ema-s0`) (2 seeds) | kept: because | 0.700, 0.720 | 0.650 / 0.800 / 0.725 | 0.60 (!) |" in kept
    )
    assert "| without HGNN inputs (2T) (`2T`) | applied to 2T | 0.690 |" in kept  # no empty reason
    assert "lr 3e-4" not in kept and "temperature" not in kept
    assert "| lr 3e-4 (`lr`) | rejected: because | 0.550 |" in rest
    assert "| temperature 0.1, seed 0 (`t01-s0`) (2 seeds) | rejected: because | 0.610, 0.620 |" in rest
    assert "the same, seed" not in text
    assert rest.rstrip().endswith("Popularity 0.500 / 0.600 / 0.550.")


def test_write_notes_replaces_each_named_block_and_refuses_a_missing_one(tmp_path):
    import pytest

    from benchmarks.notes_tables import markers, write_notes

    (qb, qe), (mb, me) = markers("quality"), markers("measurements")
    notes = tmp_path / "NOTES.md"
    notes.write_text(f"# t\n{qb}\nold q\n{qe}\nprose kept\n{mb}\nold m\n{me}\ntail\n")
    write_notes({"quality": "new q", "measurements": "new m"}, notes)
    assert notes.read_text() == f"# t\n{qb}\nnew q\n{qe}\nprose kept\n{mb}\nnew m\n{me}\ntail\n"
    notes.write_text(f"{qb}\nx\n{qe}\n")
    with pytest.raises(SystemExit, match="measurements"):
        write_notes({"quality": "q", "measurements": "m"}, notes)
    assert notes.read_text() == f"{qb}\nx\n{qe}\n"  # nothing half-written
