"""Every ``python -m launch.…`` command of README.md runs, on the tiny data with the ``test`` preset,
sharing the session's tiny pipeline run (``tiny_run`` in conftest.py).

The substitution rule (what the test changes in a README command, and nothing else):

1. ``.venv/bin/python`` / ``python`` is this interpreter; a table cell's second command
   (``launch.train_two_tower …`` after ``… / ``) gets the same ``python -m`` prefix.
2. Data: ``--dataset=files`` keeps its three tables, which become the tiny synthetic data written as
   CSV; every other dataset becomes ``--dataset=synthetic --scale=tiny``. ``--train_interactions=…`` /
   ``--test_interactions=…`` are a temporal 80/20 cut of the tiny interactions.
3. Identity: ``--config=test --config.sampler=numpy`` (the tiny run's configuration; a
   ``--config.<path>`` the command sets itself is kept) and ``--out_dir=<the tiny run's root>`` are
   appended; ``runs/<dataset>/<version>`` paths become the tiny run's version folder, ``--user_id`` a
   user of the tiny data, ``launch.prepare_data``'s ``--out_dir`` a temporary folder.
4. A bare ``…`` is the script's smallest argument set (:data:`FILL`); ``launch.serve`` gets ``--check``
   (loads the export, answers one request and exits instead of serving forever).
5. Commands whose substituted form is the tiny run itself (its dataset, version and configuration) run
   to completion: every stage is skipped as valid, then the command does its own work (example
   recommendations, statistics, encoding, serving). Commands that would train new models (a new
   version, dataset, ablation, external split, a changed stage configuration, a standalone trainer)
   run with ``--print_config``: their flags, files and configuration are validated and they exit before
   any work. ``TWOTOWER_README_FULL=1`` runs those to completion too, with a smoke budget
   (:data:`SMOKE`; minutes, not part of the suite's budget).

Identical substituted commands run once.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
FULL = os.environ.get("TWOTOWER_README_FULL") == "1"
FILL = {
    "encode_text": ["--texts={texts}", "--out_dir={tmp}/content", "--cache_dir={cache}"],
    "train_hgnn": ["--dataset=synthetic", "--scale=tiny", "--out_dir={tmp}/hgnn"],
    "train_two_tower": ["--dataset=synthetic", "--scale=tiny", "--nouse_hgnn", "--out_dir={tmp}/two_tower"],
}
SMOKE = [
    "--config.hgnn.max_steps=2",
    "--config.two_tower.max_steps=2",
    "--config.two_tower.epochs=1",
    "--config.eval.targets=audiobook",
]


def readme_commands() -> list[str]:
    """The README's ``python -m launch.…`` commands, in order (code spans and fenced blocks)."""
    out: list[str] = []
    for line in (ROOT / "README.md").read_text().splitlines():
        spans = re.findall(r"`([^`]+)`", line) if "`" in line else []
        if not spans and re.match(r"\s*(\.venv/bin/)?python -m launch\.", line):
            spans = [line.split("#")[0].strip()]
        prefix_seen = False
        for span in spans:
            span = span.strip()
            if re.match(r"(\.venv/bin/)?python -m launch\.\w+", span):
                out.append(span)
                prefix_seen = True
            elif prefix_seen and re.match(r"launch\.\w+( |$)", span):
                out.append(f"python -m {span}")
    return out


def _script(cmd: str) -> str:
    return re.search(r"-m launch\.(\w+)", cmd).group(1)


def _trains(script: str, args: list[str]) -> bool:
    """Whether the command would train models beyond the tiny run's."""
    if script in ("prepare_data", "encode_text", "recommend", "serve"):
        return False
    if script != "pipeline":
        return True
    return any(a.startswith(("--as_of", "--dataset=files", "--config.", "--ablation")) for a in args)


def substitute(cmd: str, ctx: dict[str, str]) -> tuple[list[str], bool]:
    """``(argv, runs to completion)`` of a README command under the module docstring's rule."""
    script = _script(cmd)
    args = shlex.split(cmd.split(f"launch.{script}", 1)[1])
    if args == ["…"]:
        args = [a.format(**ctx) for a in FILL[script]]
    files = {
        "interactions": ctx["interactions"],
        "items": ctx["items"],
        "users": ctx["users"],
        "train_interactions": ctx["train"],
        "test_interactions": ctx["test"],
    }
    out = []
    for a in args:
        name, eq, value = a.partition("=")
        if value == "…" and name.lstrip("-") in files:
            a = f"{name}={files[name.lstrip('-')]}"
        elif name == "--dataset" and value != "files":
            a = "--dataset=synthetic"
        elif name == "--out_dir" and script == "prepare_data":
            a = f"--out_dir={ctx['tmp']}/prepare_data"
        elif name == "--user_id":
            a = f"--user_id={ctx['user']}"
        elif eq and re.match(r"runs/[^/]+/[^/]+", value):
            a = f"{name}={re.sub(r'^runs/[^/]+/[^/]+', ctx['version_dir'], value)}"
        out.append(a)
    trains = _trains(script, out)
    completes = FULL or not trains
    if script in ("pipeline", "ablations", "prepare_data", "train_hgnn", "train_two_tower", "encode_text"):
        if not any(a == "--dataset=files" or a.startswith("--texts") for a in out):
            out += ["--dataset=synthetic", "--scale=tiny"]
    if script in ("pipeline", "ablations"):
        out.append(f"--out_dir={ctx['out_dir']}")
    if script == "evaluate":
        out.append(f"--out_dir={ctx['tmp']}/evaluate")
    if script == "serve":
        out.append("--check")  # load the export, answer one request, exit (a server would never return)
    if script in ("pipeline", "ablations", "evaluate", "train_hgnn", "train_two_tower"):
        out.append("--config=test")
        out += [] if any(a.startswith("--config.sampler") for a in out) else ["--config.sampler=numpy"]
        out += ["--print_config"] if not completes else SMOKE if trains else []
    return [sys.executable, "-m", f"launch.{script}", *out], completes


@pytest.fixture(scope="session")
def readme_ctx(tiny_run, tmp_path_factory) -> dict[str, str]:
    """The tiny run's paths and the tiny data as files."""
    from twotower_hgnn.data import load_dataset

    cfg, _ = tiny_run
    tmp = tmp_path_factory.mktemp("readme")
    ds = load_dataset("synthetic", scale="tiny", seed=cfg.data_seed)
    inter = ds.interactions[["user_id", "item_id", "timestamp", "event"]].sort_values("timestamp", kind="stable")
    cut = inter["timestamp"].quantile(0.8)
    paths = {
        "interactions": inter,
        "items": ds.items,
        "users": ds.users,
        "train": inter[inter["timestamp"] <= cut],
        "test": inter[inter["timestamp"] > cut],
    }
    ctx = {}
    for name, df in paths.items():
        ctx[name] = str(tmp / f"{name}.csv")
        df.to_csv(ctx[name], index=False)
    (tmp / "texts.csv").write_text("text\n" + "\n".join(ds.items["title"].astype(str).head(5)) + "\n")
    ctx.update(
        texts=str(tmp / "texts.csv"),
        tmp=str(tmp),
        cache=str(ROOT / ".cache" / "readme-text"),
        out_dir=cfg.out_dir,
        version_dir=str(cfg.version_dir()),
        user=str(ds.users["user_id"].iloc[0]),
    )
    return ctx


def test_the_readme_has_launch_commands():
    cmds = readme_commands()
    assert len(cmds) >= 10 and {_script(c) for c in cmds} >= {"pipeline", "evaluate", "train_two_tower"}


def _check(cmd: str, argv: list[str], completes: bool, p: subprocess.CompletedProcess) -> str | None:
    """Why the command's run is wrong, or None."""
    if p.returncode != 0 or "Traceback" in p.stderr:
        return f"{cmd}\n  ran as: {shlex.join(argv)}\n  exit {p.returncode}: {p.stderr.strip()[-1500:]}"
    if not completes and not p.stdout.lstrip().startswith("{"):
        return f"{cmd}: --print_config printed no configuration"
    if completes and _script(cmd) == "pipeline" and "Top 5" not in p.stdout:
        return f"{cmd}: no example recommendations of the finished run"
    return None


def test_every_readme_command_runs(readme_ctx):
    """One test (one xdist worker, one tiny run): each README command under the substitution rule.
    Identical substituted commands run once; serving rows that fail only mark the test xfail while the
    serving flags are landing."""
    done: dict[tuple[str, ...], subprocess.CompletedProcess] = {}
    problems, serving = [], []
    for cmd in readme_commands():
        argv, completes = substitute(cmd, readme_ctx)
        if tuple(argv) not in done:
            done[tuple(argv)] = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
        why = _check(cmd, argv, completes, done[tuple(argv)])
        if why:
            (serving if _script(cmd) in ("recommend", "serve") else problems).append(why)
    assert not problems, "\n\n".join(problems)
    if serving:
        pytest.xfail("serving commands fail (serving flags not landed?):\n" + "\n".join(serving))
