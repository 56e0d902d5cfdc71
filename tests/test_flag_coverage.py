"""Every flag of every launch program (read from ``--helpxml``) is covered by the reliability sweep's case
generators (benchmarks/flag_sweep.py) or allow-listed as free text with a reason: a new flag without a
kind/validation fails here. The sweep itself runs in ``benchmarks/reliability.py``, not in the suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import flag_sweep as fs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def by_program():
    return fs.all_flags(workers=2)


def test_the_sweep_knows_every_launch_program():
    programs = {p.stem for p in (ROOT / "launch").glob("*.py") if p.stem not in ("__init__", "common", "cli")}
    assert programs == set(fs.PROGRAMS)


def test_every_flag_is_covered_or_allow_listed(by_program):
    uncovered = {p: c["uncovered"] for p, c in fs.coverage(by_program).items() if c["uncovered"]}
    assert not uncovered, (
        f"flags with no sweep case generator: {uncovered} — validate them while parsing and give them a kind in "
        "benchmarks/flag_sweep.py (STRING_KINDS), or allow-list free text in FREE_TEXT with the reason"
    )
    for program, fl in by_program.items():
        assert len(fl) >= 10, (program, [f["name"] for f in fl])  # --helpxml listed the adopted key flags too


def test_cases_stay_validation_only(by_program):
    cases = fs.sweep_cases(by_program)
    assert {c["flag"] for c in cases} >= {f["name"] for fl in by_program.values() for f in fl}
    for c in cases:
        if "--print_config" not in c["args"] and c["flag"] != "print_config":
            assert c["program"] in ("encode_text", "prepare_data", "recommend", "serve"), c
    assert all(c["must_fail"] == (c["flag"] not in fs.FREE_TEXT and c["flag"] != "model") for c in cases)
