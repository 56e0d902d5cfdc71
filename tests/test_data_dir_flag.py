"""``--data_dir``: a RecBole dataset folder (``<name>.inter``, ``.item``, ``.user``) in one flag, the same as
``--dataset=files`` on those three files; a folder without them, or the flag combined with the file flags or
another ``--dataset``, is one line and exit 2 before anything is read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "TWOTOWER_HGNN_PROGRESS": "0"}
    return subprocess.run(
        [sys.executable, "-m", "launch.prepare_data", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def recbole(tmp_path_factory):
    """The tiny synthetic dataset as RecBole atomic files in ``<tmp>/tinyrb/``; returns (folder, dataset)."""
    from twotower_hgnn.data.synthetic import generate

    ds = generate("tiny", 0)
    d = tmp_path_factory.mktemp("rb") / "tinyrb"
    d.mkdir()

    def write(df, suffix, types):
        df = df.rename(columns={c: f"{c}:{types.get(c, 'token')}" for c in df.columns})
        df.to_csv(d / f"tinyrb.{suffix}", sep="\t", index=False)

    write(ds.interactions[["user_id", "item_id", "timestamp", "event"]], "inter", {"timestamp": "float"})
    write(ds.items[["item_id", "item_type", "title", "description", "language", "genre"]], "item", {})
    write(ds.users[["user_id", "age", "country"]], "user", {"age": "float"})
    return d, ds


def test_data_dir_reads_the_three_atomic_files(recbole, tmp_path):
    d, ds = recbole
    res = _run(f"--data_dir={d}", f"--out_dir={tmp_path / 'out'}")
    assert res.returncode == 0, res.stderr[-2000:]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["dataset"] == "files" and stats["interactions"] == len(ds.interactions)
    assert stats["users"] == ds.num_users and stats["items"] == {t: int(n) for t, n in ds.item_type_counts.items()}


def test_recbole_files_resolution(recbole, tmp_path):
    from absl import flags

    from launch.common import recbole_files

    d, _ = recbole
    assert recbole_files(str(d)) == {
        k: str(d / f"tinyrb.{s}") for k, s in (("interactions", "inter"), ("items", "item"), ("users", "user"))
    }
    only = tmp_path / "other"  # a folder of another name with one .inter and no .item/.user
    only.mkdir()
    (only / "x.inter").write_text((d / "tinyrb.inter").read_text())
    assert recbole_files(str(only)) == {"interactions": str(only / "x.inter"), "items": None, "users": None}
    (only / "y.inter").write_text("")
    with pytest.raises(flags.ValidationError, match=r"no other.inter and 2 .inter files \(x.inter, y.inter\)"):
        recbole_files(str(only))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data_dir={empty}"], "no empty.inter and no .inter file"),
        (
            ["--data_dir={d}", "--interactions={d}/tinyrb.inter"],
            "--data_dir names the files itself: leave out --interactions",
        ),
        (
            ["--dataset=synthetic", "--data_dir={d}"],
            "--data_dir reads files: it cannot be combined with --dataset=synthetic",
        ),
    ],
)
def test_bad_data_dir_is_one_line_exit_2(recbole, tmp_path, args, message):
    d, _ = recbole
    (tmp_path / "empty").mkdir()
    res = _run(*(a.format(d=d, empty=tmp_path / "empty") for a in args), f"--out_dir={tmp_path / 'out'}")
    assert res.returncode == 2 and message in res.stderr, res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()
