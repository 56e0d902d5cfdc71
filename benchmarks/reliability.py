"""Reliability: bad flag values across every launch script, run as a user would (subprocesses), plus
the data catalogue of ``benchmarks/reliability_data.py`` (corrupted inputs, in-process) when present.

Each flag case is a command line that must be refused; its outcome is

* ``clean_error`` — exit code 2 and exactly one non-empty stderr line, starting with ``error:``, no traceback;
* ``traceback`` — a Python traceback on stderr;
* ``unclean_error`` — refused, but not with one ``error:`` line and exit 2 (absl's two-line FATAL, a
  warning around the error, another exit code);
* ``silent_success`` — exit code 0;
* ``hang`` — no exit within 60 s.

A few control cases must be accepted (``accepted`` / ``wrongly_refused``). Cases never start a training:
configuration-taking scripts get ``--print_config`` (an accepted value prints the configuration and
exits 0), and the rest fail on flags or on reading a small file. ``launch.recommend`` cases use a model
exported by a tiny pipeline run (``--config=test``, built once in a temporary folder, ~1 min; or pass
``--model_dir``; ``--nomodel`` skips them). The JSON (``--out_json``, default ``benchmarks/results/reliability.json``)
carries the machine, date and git sha, every case with its outcome and stderr, and the counts.

The **sweep** (``benchmarks/flag_sweep.py``; ``--nosweep`` skips it) adds cases generated from absl itself:
every flag of every launch program, as ``--helpxml`` lists it, gets bad values by type (int/float: a
non-number, NaN, out of range; enum: an unknown value; bool: ``maybe``; list: malformed elements) or, for
strings, by kind (input paths: missing / a folder; output paths: under a regular file; ISO dates:
``2026-02-30`` ...; deprecated aliases: bad values of the field they map to). Free-text flags are
allow-listed there with the reason and get one accepted control. Its JSON section ``sweep`` has per-program
coverage (flags, covered, allow-listed, cases, outcomes) and every case; a coverage table is printed.

    .venv/bin/python -m benchmarks.reliability                 # flag catalogue + data catalogue
    .venv/bin/python -m benchmarks.reliability --nomodel --nodata
    .venv/bin/python -m benchmarks.reliability --nosweep           # the hand-written catalogue only
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60
flags.DEFINE_string("out_json", str(ROOT / "benchmarks" / "results" / "reliability.json"), "Output JSON.")
flags.DEFINE_boolean("model", True, "Run the launch.recommend cases (needs an exported model; see --model_dir).")
flags.DEFINE_string(
    "model_dir", None, "An exported two-tower model of the tiny synthetic data (default: a tiny pipeline run is made)."
)
flags.DEFINE_boolean("data", True, "Also run benchmarks/reliability_data.py's catalogue (corrupted inputs).")
flags.DEFINE_integer("workers", 2, "Cases run in parallel.", lower_bound=1)
flags.DEFINE_boolean("sweep", True, "Run the automatic sweep: bad values for every flag of every launch program.")
FLAGS = flags.FLAGS


def fixtures(d: Path) -> dict[str, str]:
    """Small files and folders the cases point at (``{name}`` placeholders in the catalogue)."""
    (d / "dir").mkdir()
    (d / "i.csv").write_text("user_id,item_id,timestamp,event\nu1,a1,1700000000,stream\n")
    (d / "it.csv").write_text("item_id,item_type,title,description,language,genre\na1,audiobook,T,D,en,g\n")
    (d / "u.csv").write_text("user_id,age,country\nu1,30,SE\n")
    (d / "notext.csv").write_text("a,b\n1,2\n")
    (d / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (d / "texts.csv").write_text("text\nhello\n")
    (d / "locked.csv").write_text("text\nsecret\n")
    os.chmod(d / "locked.csv", 0)
    (d / "garbage.npy").write_bytes(b"not an array")
    (d / "broken.py").write_text("def get_config(:\n    pass\n")
    (d / "readonly").mkdir()
    os.chmod(d / "readonly", 0o555)
    return {
        "tmp": str(d),
        "missing": str(d / "missing.csv"),
        "file": str(d / "i.csv"),
        "dir": str(d / "dir"),
        "readonly": str(d / "readonly"),
    }


def _cases_pipeline() -> list[tuple[str, list[str]]]:
    p = "pipeline"
    files = ["--dataset=files", "--interactions={tmp}/i.csv", "--items={tmp}/it.csv", "--users={tmp}/u.csv"]
    bad = [
        ["--seed=-1"],
        ["--seed=abc"],
        ["--data_seed=-3"],
        ["--as_of=2026-02-30"],
        ["--as_of=1694736000"],
        ["--as_of=2026/03/02"],
        ["--scale=huge"],
        ["--dataset=netflix"],
        ["--from_stage=training"],
        ["--ablation=Z"],
        ["--demo_users=maybe"],
        ["--warm_start=maybe"],
        ["--encoding=klingon"],
        ["--timestamp_unit=us"],
        ["--duplicates=sum"],
        ["--dataset=files"],
        [*files[:1], "--interactions={dir}", *files[2:]],
        [*files[:1], "--interactions={missing}", *files[2:]],
        [*files[:1], "--interactions={tmp}/locked.csv", *files[2:]],
        ["--out_dir={file}"],
        ["--out_dir={file}/sub"],
        ["stray_argument"],
        ["--config=fastest"],
        ["--config={tmp}/missing.py"],
        ["--config={tmp}/broken.py"],
        ["--config.eval.k=0"],
        ["--config.eval.k=-5"],
        ["--config.eval.k=1000000"],
        ["--config.eval.k=ten"],
        ["--config.two_tower.max_steps=-1"],
        ["--config.hgnn.max_steps=0"],
        ["--config.eval.targets="],
        ["--config.eval.targets=sci-fi"],
        ["--config.hgnn.nope=1"],
        ["--config.nosection.x=1"],
        ["--config.hgnn.lr=-0.1"],
        ["--config.split.valid_frac=1.5"],
        ["--config.sampler=gpu"],
        ["--config.hgnn.fanouts=0,0"],
        ["--config.hgnn"],
    ]
    return [(p, [*a, "--print_config"]) for a in bad]


def _cases_other() -> list[tuple[str, list[str]]]:
    ev = ["--train_interactions={file}", "--test_interactions={file}", "--items={tmp}/it.csv", "--users={tmp}/u.csv"]
    return [
        ("ablations", ["--variants=A,Z", "--print_config"]),
        ("ablations", ["--variants=", "--print_config"]),
        ("ablations", ["--seed=-1", "--print_config"]),
        ("evaluate", ["--train_interactions={missing}", *ev[1:], "--print_config"]),
        ("evaluate", [ev[0], "--test_interactions={dir}", *ev[2:], "--print_config"]),
        ("evaluate", ["--items={tmp}/it.csv", "--print_config"]),
        ("evaluate", [*ev, "--valid_interactions={tmp}/locked.csv", "--print_config"]),
        ("evaluate", [*ev, "--config.eval.k=0", "--print_config"]),
        ("prepare_data", ["--holdout_frac=1.5"]),
        ("prepare_data", ["--cut_quantile=0"]),
        ("prepare_data", ["--cut_date=yesterday"]),
        ("prepare_data", ["--history_days=-3"]),
        ("prepare_data", ["--window=0"]),
        ("prepare_data", ["--edge_events=play"]),
        ("prepare_data", ["--graph_rule=all"]),
        ("prepare_data", ["--min_shared=0"]),
        ("prepare_data", ["--min_segment_users=-1"]),
        ("prepare_data", ["--out_dir={file}"]),
        ("encode_text", ["--out_dir={tmp}/o"]),
        ("encode_text", ["--texts={dir}", "--out_dir={tmp}/o"]),
        ("encode_text", ["--texts={missing}", "--out_dir={tmp}/o"]),
        ("encode_text", ["--texts={tmp}/texts.csv", "--batch_size=0", "--out_dir={tmp}/o"]),
        ("encode_text", ["--texts={tmp}/notext.csv", "--out_dir={tmp}/o"]),
        ("encode_text", ["--texts={tmp}/binary.csv", "--out_dir={tmp}/o"]),
        ("encode_text", ["--texts={tmp}/texts.csv", "--dataset=synthetic", "--out_dir={tmp}/o"]),
        ("train_hgnn", ["--dataset=synthetic", "--print_config"]),
        ("train_hgnn", ["--dataset=synthetic", "--out_dir={tmp}/h", "--process_id=2", "--num_processes=2"]),
        ("train_hgnn", ["--dataset=synthetic", "--out_dir={tmp}/h", "--val_frac=0"]),
        ("train_hgnn", ["--graph_dir={missing}", "--features={file}", "--out_dir={tmp}/h"]),
        ("train_hgnn", ["--graph_dir={dir}", "--features={tmp}/garbage.npy", "--out_dir={tmp}/h"]),
        ("train_hgnn", ["--dataset=synthetic", "--out_dir={tmp}/h", "--max_neighbors=0"]),
        ("train_hgnn", ["--dataset=synthetic", "--out_dir={tmp}/h", "--coordinator=localhost"]),
        ("train_hgnn", ["--dataset=synthetic", "--out_dir={tmp}/h", "--config.hgnn.batch_positives=0"]),
        ("train_two_tower", ["--out_dir={tmp}/t", "--print_config"]),
        ("train_two_tower", ["--out_dir={tmp}/t", "--hgnn_embeddings={tmp}/garbage.npy"]),
        ("train_two_tower", ["--out_dir={tmp}/t", "--nouse_hgnn", "--target_type=", "--print_config"]),
        ("train_two_tower", ["--out_dir={tmp}/t", "--nouse_hgnn", "--config.two_tower.batch_size=0"]),
    ]


def _cases_recommend() -> list[tuple[str, list[str]]]:
    r = "recommend"
    return [
        (r, ["--export={model}", "--user_id={user}", "--k=0"]),
        (r, ["--export={model}", "--user_id={user}", "--k=-5"]),
        (r, ["--export={model}", "--user_id={user}", "--as_of=-1"]),
        (r, ["--export={model}", "--user_id={user}", "--as_of=1e30"]),
        (r, ["--export={missing}", "--user_id=u1"]),
        (r, ["--export={file}", "--user_id=u1"]),
        (r, ["--export={model}", "--user_id=nobody_at_all"]),
        (r, ["--export={model}", "--age=-5", "--country=SE"]),
        (r, ["--export={model}", "--age=200", "--country=SE"]),
        (r, ["--export={model}", "--user_id={user}", "--age=30"]),
    ]


CONTROLS: list[tuple[str, list[str]]] = [
    ("pipeline", ["--as_of=2026-03-02", "--config=test", "--config.eval.k=20", "--print_config"]),
    (
        "evaluate",
        [
            "--train_interactions={file}",
            "--test_interactions={file}",
            "--items={file}",
            "--users={file}",
            "--print_config",
        ],
    ),  # fmt: skip
    ("train_hgnn", ["--dataset=synthetic", "--out_dir={tmp}/h", "--print_config"]),
    ("recommend", ["--export={model}", "--user_id={user}", "--k=1000000000"]),  # capped at the catalogue, noted
]


def classify(rc: int | None, stderr: str, must_fail: bool) -> str:
    if rc is None:
        return "hang"
    if not must_fail:
        return "accepted" if rc == 0 else "wrongly_refused"
    lines = [s for s in stderr.splitlines() if s.strip()]
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    if rc == 0:
        return "silent_success"
    if rc == 2 and len(lines) == 1 and lines[0].startswith("error:"):
        return "clean_error"
    return "unclean_error"


def _excerpt(text: str, keep: int = 400) -> str:
    """The head and tail of a long stderr (a native crash's cause is at the top, Python's at the bottom)."""
    return text if len(text) <= 2 * keep else f"{text[:keep]} [...] {text[-keep:]}"


def run_case(
    script: str, args: list[str], subst: dict[str, str], must_fail: bool = True, sentinel: str | None = None
) -> dict[str, Any]:
    """One command line; ``sentinel``: the base flags' own failure after parsing (a case ending in it had its
    value accepted while parsing: a silent success, or an accepted control)."""
    argv = [a.format(**subst) for a in args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, "-m", f"launch.{script}", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = None, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    outcome = classify(rc, err, must_fail)
    if sentinel and rc == 2 and sentinel in err and "Traceback" not in err:
        outcome = "silent_success" if must_fail else "accepted"
    return {
        "case": f"launch.{script} {' '.join(args)}",
        "outcome": outcome,
        "rc": rc,
        "message": _excerpt(err.strip()),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def tiny_model(d: Path) -> tuple[str, str]:
    """``(model_dir, a user id)`` of a tiny pipeline run's export (the ``test`` configuration)."""
    out = d / "tiny_run"
    cmd = [sys.executable, "-m", "launch.pipeline", "--dataset=synthetic", "--scale=tiny", "--config=test"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    p = subprocess.run(
        [*cmd, f"--out_dir={out}", "--demo_users=none"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if p.returncode != 0:
        raise RuntimeError(f"the tiny run failed:\n{p.stderr[-2000:]}")
    return str(next(out.glob("*/default/two_tower/audiobook-hgnn"))), tiny_user()


def tiny_user() -> str:
    """The first user of the tiny synthetic data (the tiny run's users)."""
    from twotower_hgnn.data import load_dataset

    return str(load_dataset("synthetic", scale="tiny", seed=0).users["user_id"].iloc[0])


def flag_cases(with_model: bool) -> list[tuple[str, list[str], bool]]:
    cases = [(s, a, True) for s, a in _cases_pipeline() + _cases_other()]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root reads any file: an unreadable file cannot be made
        print("running as root: the unreadable-file cases are skipped")
        cases = [c for c in cases if "locked.csv" not in " ".join(c[1])]
    if (ROOT / "launch" / "serve.py").exists():
        cases += [
            ("serve", ["--export={missing}"], True),
            ("serve", ["--export={file}"], True),
            ("serve", ["--export={missing}", "--port=70000"], True),
            ("serve", ["--export={missing}", "--log_level=loud"], True),
            ("serve", ["--export={missing}", "--timeout_s=-1"], True),
            ("serve", ["--no_such_flag=1"], True),
        ]
    if with_model:
        cases += [(s, a, True) for s, a in _cases_recommend()]
    controls = [c for c in CONTROLS if with_model or "{model}" not in " ".join(c[1])]
    return cases + [(s, a, False) for s, a in controls]


def run_sweep(pool, subst: dict[str, str], with_model: bool) -> dict[str, Any]:
    """The automatic sweep (benchmarks/flag_sweep.py): every flag of every launch program from ``--helpxml``,
    bad values by type/kind (allow-listed free-text flags: one accepted control). Programs needing the
    exported model are left out without ``--model``."""
    from benchmarks import flag_sweep as fs

    by_program = fs.all_flags(FLAGS.workers)
    if not with_model:
        by_program = {p: f for p, f in by_program.items() if "{model}" not in " ".join(fs.BASE[p])}
    cases = fs.sweep_cases(by_program)
    if not fs.WRITABLE_CHECK:
        print("running as root: the non-writable output parent cases are not generated")

    def one(c: dict[str, Any]) -> dict[str, Any]:
        row = run_case(c["program"], c["args"], subst, c["must_fail"], fs.SENTINEL.get(c["program"]))
        row.update(program=c["program"], flag=c["flag"])
        return row

    rows = list(pool.map(one, cases))
    cov = fs.coverage(by_program)
    programs = {}
    for program, c in cov.items():
        mine = [r for r in rows if r["program"] == program]
        programs[program] = {
            **c,
            "n_flags": len(c["flags"]),
            "n_covered": len(c["covered"]),
            "n_allow_listed": len(c["allow_listed"]),
            "cases": len(mine),
            "outcomes": counts(mine),
        }
    for r in rows:
        if r["outcome"] not in ("clean_error", "accepted"):
            print(f"  sweep {r['outcome']:<15} {r['case']}\n      {r['message'][-300:]!r}")
    return {"counts": counts(rows), "programs": programs, "cases": rows}


def print_sweep(sweep: dict[str, Any]) -> None:
    print(f"{'program':<16} {'flags':>5} {'covered':>7} {'allowed':>7} {'uncov':>5} {'cases':>5}  outcomes")
    for program, p in sweep["programs"].items():
        outs = ", ".join(f"{k} {v}" for k, v in p["outcomes"].items() if k != "cases")
        print(
            f"{program:<16} {p['n_flags']:>5} {p['n_covered']:>7} {p['n_allow_listed']:>7} "
            f"{len(p['uncovered']):>5} {p['cases']:>5}  {outs}"
        )
    print(f"sweep cases:   {json.dumps(sweep['counts'])}")


def data_rows() -> list[dict[str, Any]] | None:
    """benchmarks/reliability_data.py's rows, or None where that module is not in this tree."""
    try:
        from benchmarks import reliability_data
    except ImportError as e:
        if getattr(e, "name", None) not in ("benchmarks.reliability_data", "reliability_data"):
            raise
        return None
    return reliability_data.run_all()


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {"cases": len(rows)}
    for r in rows:
        out[r["outcome"]] = out.get(r["outcome"], 0) + 1
    return out


def main(argv):
    del argv
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        d = Path(tmp)
        subst = fixtures(d)
        if FLAGS.model:
            if FLAGS.model_dir:
                subst["model"], subst["user"] = FLAGS.model_dir, tiny_user()
            else:
                print("building a tiny exported model (pipeline, --config=test) ...", flush=True)
                subst["model"], subst["user"] = tiny_model(d)
        cases = flag_cases(FLAGS.model)
        with ThreadPoolExecutor(FLAGS.workers) as pool:
            rows = list(pool.map(lambda c: run_case(c[0], c[1], subst, c[2]), cases))
            sweep = run_sweep(pool, subst, FLAGS.model) if FLAGS.sweep else None
    flag_rows = [r for r in rows if r["outcome"] not in ("accepted", "wrongly_refused")]
    control_rows = [r for r in rows if r["outcome"] in ("accepted", "wrongly_refused")]
    for r in rows:
        if r["outcome"] not in ("clean_error", "accepted"):
            print(f"  {r['outcome']:<15} {r['case']}\n      {r['message'][-300:]!r}")
    from benchmarks.quality import machine  # the shared machine / date / git sha record (defines its flags late)

    result: dict[str, Any] = {
        "machine": machine(),
        "flags": {"counts": counts(flag_rows), "cases": flag_rows},
        "controls": {"counts": counts(control_rows), "cases": control_rows},
    }
    print(f"flag cases:    {json.dumps(result['flags']['counts'])}")
    print(f"controls:      {json.dumps(result['controls']['counts'])}")
    if sweep is not None:
        result["sweep"] = sweep
        print_sweep(sweep)
    if FLAGS.data:
        drows = data_rows()
        if drows is None:
            print("data catalogue: not run (benchmarks/reliability_data.py is not in this tree)")
            result["data"] = None
        else:
            result["data"] = {"counts": counts(drows), "cases": drows}
            print(f"data cases:    {json.dumps(result['data']['counts'])}")
    result["seconds"] = round(time.time() - t0, 1)
    Path(FLAGS.out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.out_json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {FLAGS.out_json} ({result['seconds']} s)")


if __name__ == "__main__":
    app.run(main)
