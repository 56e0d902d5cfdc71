"""Launch flags: ``--help`` lists every flag of a script (its own and the shared ones of launch.common),
bad values are refused while parsing with one line and exit 2, deprecated names still work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
# every launch program with absl flags (launch/cli.py only dispatches to them)
SCRIPTS = sorted(
    p.stem for p in (ROOT / "launch").glob("*.py") if p.stem not in ("__init__", "common") and "absl" in p.read_text()
)


def _launch(script: str, *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"launch.{script}", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_every_flag_of_the_script(script, tmp_path):
    """``python -m launch.<script> --help`` (run as ``-m`` does, by runpy) lists every flag the script
    defines, its own and launch.common's; the defined names are collected when the program exits."""
    names_file = tmp_path / "names"
    code = (
        "import atexit, runpy, sys\nfrom absl import flags\n"
        "def dump():\n"
        "    mods = flags.FLAGS.flags_by_module_dict()\n"
        f"    names = {{f.name for m, fl in mods.items() if m.endswith('launch/{script}.py') or m == 'launch.common' "
        "for f in fl}\n"
        f"    open({str(names_file)!r}, 'w').write('\\n'.join(sorted(names)))\n"
        "atexit.register(dump)\n"
        f"sys.argv = ['launch/{script}.py', '--help']\nrunpy.run_module('launch.{script}', run_name='__main__', alter_sys=True)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    names = names_file.read_text().split()
    assert len(names) >= 3, (names, p.stderr)
    # run_main exits 0 after --help; a script on absl's plain app.run exits 1 (absl's convention)
    assert p.returncode == (0 if "run_main(" in (ROOT / "launch" / f"{script}.py").read_text() else 1), p.stderr
    missing = [n for n in names if f"--{n}" not in p.stdout and f"--[no]{n}" not in p.stdout]
    assert not missing, f"launch.{script} --help does not list {missing}"
    assert "--helpfull" in p.stdout  # the help itself, not an error


@pytest.mark.parametrize(
    "script, args, expect",
    [
        ("pipeline", ["--seed=-1"], "--seed=-1"),
        ("pipeline", ["--as_of=2026-02-30"], "ISO date"),
        ("pipeline", ["--scale=huge"], "--scale"),
        (
            "pipeline",
            ["--dataset=files", "--items={tmp}", "--interactions={tmp}/i.csv", "--users={tmp}/i.csv"],
            "is a directory",
        ),
        ("pipeline", ["--dataset=files", "--interactions={tmp}/missing.csv"], "no such file"),
        ("pipeline", ["--dataset=files"], "--dataset=files needs --interactions, --items, --users"),
        ("pipeline", ["--out_dir={tmp}/i.csv"], "is a file"),
        ("pipeline", ["stray"], "unexpected argument"),
        ("ablations", ["--variants=A,Z"], "--variants"),
        ("evaluate", ["--train_interactions={tmp}/i.csv"], "--test_interactions"),
        ("prepare_data", ["--holdout_frac=1.5"], "--holdout_frac"),
        ("encode_text", ["--out_dir={tmp}"], "exactly one of --texts or --dataset"),
        ("train_hgnn", ["--dataset=synthetic", "--out_dir={tmp}", "--process_id=3"], "--process_id"),
        ("train_hgnn", ["--out_dir={tmp}"], "give --dataset, or both --graph_dir and --features"),
        ("train_two_tower", ["--out_dir={tmp}", "--val=1"], "Unknown command line flag 'val'"),
        ("train_two_tower", ["--out_dir={tmp}"], "--hgnn_embeddings is required"),
    ],
)
def test_bad_flags_are_one_line_exit_2_before_any_work(script, args, expect, tmp_path):
    (tmp_path / "i.csv").write_text("user_id,item_id,timestamp,event\n")
    p = _launch(script, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    lines = [s for s in p.stderr.splitlines() if s.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (p.returncode, p.stderr)
    assert expect in lines[0] and not p.stdout.strip()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["i.csv"]  # nothing written


def test_deprecated_names_still_work_with_one_warning(tmp_path):
    (tmp_path / "f").write_text("")
    p = _launch("train_hgnn", "--dataset=synthetic", f"--workdir={tmp_path}/f")
    # a refused value prints its one error line alone (the deprecation line only once the command line parsed)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [f"error: flag --out_dir={tmp_path}/f: is a file, not a directory"]
    p = _launch("train_hgnn", "--dataset=synthetic", f"--workdir={tmp_path}/w", "--print_config")
    assert p.returncode == 0 and p.stderr.strip().splitlines() == ["warning: --workdir is deprecated; use --out_dir"]
    p = _launch("pipeline", "--config=test", "--k=5", "--text_model=/models/x", "--noexclude_seen", "--print_config")
    assert p.returncode == 0, p.stderr
    # the shared vocabulary (--text_model, --exclude_seen) sets the configuration without a warning
    assert p.stderr.strip().splitlines() == ["warning: --k is deprecated; use --config.eval.k=5"]
    cfg = json.loads(p.stdout)
    assert cfg["eval"]["k"] == 5 and cfg["text"]["model"] == "/models/x" and cfg["eval"]["exclude_seen"] is False
