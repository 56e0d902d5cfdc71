"""Nothing left behind: stale temporary stage folders are removed by the next run (never a live
run's), the text-encoding child ends with its parent, and a failed start leaves no version folder."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from twotower_hgnn import stages
from twotower_hgnn.stages import CLAIM, StageRunner, owner_record, remove_stale_tmp

ROOT = Path(__file__).resolve().parents[1]


def _tmp_dir(root: Path, name: str, owner: dict | None) -> Path:
    """A stage's temporary folder as a run leaves it, claimed by ``owner`` (None: no claim)."""
    d = root / f".{name}.abc123.tmp"
    d.mkdir(parents=True)
    (d / "half.npy").write_bytes(b"partial")
    if owner is not None:
        (root / f".{name}.{owner['pid']}-1{CLAIM}").write_text(json.dumps(owner))
    return d


def _record_of(proc: subprocess.Popen) -> dict:
    return {**owner_record(), "pid": proc.pid, "start": stages._proc_start(proc.pid)}


def _gone(pid: int) -> bool:
    """True once ``pid`` has ended (a zombie nobody reaps counts as ended)."""
    return stages._proc_start(pid) is None if Path("/proc").exists() else not _exists(pid)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stale_tmp_removed_live_owner_kept(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        keep_self = _tmp_dir(tmp_path, "hgnn", owner_record())
        keep_other = _tmp_dir(tmp_path, "graph", _record_of(live))
        gone_unclaimed = _tmp_dir(tmp_path, "split", None)  # a claim always precedes the folder
        gone_dead = _tmp_dir(tmp_path, "two_tower", {**owner_record(), "pid": dead.pid, "start": "1"})
        gone_reused = _tmp_dir(tmp_path / "ablation-B", "hgnn", {**owner_record(), "start": "1"})  # pid reused
        fresh_file, old_file = tmp_path / ".config.json.x1.tmp", tmp_path / ".config.json.x2.tmp"
        for f in (fresh_file, old_file):
            f.write_text("{")
        old = time.time() - stages.STALE_FILE_S - 60
        os.utime(old_file, (old, old))
        log = io.StringIO()
        StageRunner(tmp_path, log=log)
        assert keep_self.exists() and keep_other.exists() and fresh_file.exists()
        assert not gone_unclaimed.exists() and not gone_dead.exists() and not gone_reused.exists()
        assert not old_file.exists()
        assert sorted(p.name for p in tmp_path.glob(f".*{CLAIM}")) == sorted(
            [f".hgnn.{os.getpid()}-1{CLAIM}", f".graph.{live.pid}-1{CLAIM}"]
        )  # the dead claims went with their folders
        assert "removed .two_tower.abc123.tmp (left by an interrupted run)" in log.getvalue()
        live.kill()
        live.wait()
        assert remove_stale_tmp(tmp_path) == [tmp_path / f".graph.{live.pid}-1{CLAIM}", keep_other]
    finally:
        live.kill()
        live.wait()


def test_a_stage_is_claimed_while_written_and_leaves_nothing(tmp_path):
    seen = {}

    def fn(out):
        claims = list(tmp_path.glob(f".a.*{CLAIM}"))
        seen["owner"] = json.loads(claims[0].read_text())
        seen["removed"] = remove_stale_tmp(tmp_path)  # another runner starting meanwhile: nothing removed
        (out / "x.txt").write_text("x")
        return {}

    StageRunner(tmp_path, log=io.StringIO()).run("a", {}, fn)
    assert seen["owner"]["pid"] == os.getpid() and seen["removed"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["_STAGE.json", "x.txt"]

    def boom(out):
        raise RuntimeError("failed")

    with pytest.raises(RuntimeError):
        StageRunner(tmp_path, log=io.StringIO()).run("b", {}, boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


SLOW_ENCODER = """
import os, time
import numpy as np

def encode(texts):
    with open(os.environ["CHILD_PID_FILE"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)
    return np.ones((len(texts), 4), np.float32)
"""
PARENT = """
import slow_encoder
from twotower_hgnn.text import encode_texts_isolated
encode_texts_isolated(["a", "b"], model=slow_encoder.encode, cache_dir=__import__("sys").argv[1])
"""


def test_text_child_ends_with_its_killed_parent(tmp_path):
    (tmp_path / "slow_encoder.py").write_text(SLOW_ENCODER)
    pid_file = tmp_path / "child.pid"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "CHILD_PID_FILE": str(pid_file)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "cache")], env=env, cwd=ROOT)
    try:
        deadline = time.time() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert parent.poll() is None and time.time() < deadline, "the child never started encoding"
            time.sleep(0.1)
        child = int(pid_file.read_text())
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 5
        while not _gone(child) and time.time() < deadline:
            time.sleep(0.05)
        assert _gone(child), "the text-encoding child outlived its SIGKILLed parent"
    finally:
        parent.kill()
        parent.wait()


def _two_d(texts):
    return np.ones((len(texts), 2), np.float32)


def test_text_cache_drops_a_killed_encoders_temporaries(tmp_path):
    from twotower_hgnn.text import STALE_TMP_S, _safe_name, encode_texts

    d = tmp_path / _safe_name("fn-two-d")
    d.mkdir()
    old, fresh = d / ".shard-1-aa.npz.x1.tmp", d / ".shard-2-bb.npz.x2.tmp"
    for f in (old, fresh):
        f.write_bytes(b"half")
    t = time.time() - STALE_TMP_S - 60
    os.utime(old, (t, t))
    _two_d.cache_key = "fn-two-d"
    assert encode_texts(["a", "b"], model=_two_d, cache_dir=tmp_path, progress=False).shape == (2, 2)
    assert not old.exists() and fresh.exists()  # a live encoder's temporary is younger


def _files(tmp_path, ds, bad_age: bool = False):
    paths = (tmp_path / "interactions.parquet", tmp_path / "items.csv", tmp_path / "users.csv")
    ds.interactions[["user_id", "item_id", "timestamp", "event"]].to_parquet(paths[0])
    ds.items.to_csv(paths[1], index=False)
    users = ds.users[["user_id", "age", "country"]].copy()
    if bad_age:
        users["age"] = users["age"].astype(object)
        users.loc[3, "age"] = "old"
    users.to_csv(paths[2], index=False)
    return [str(p) for p in paths]


def test_failed_start_leaves_no_version_folder(tmp_path):
    from twotower_hgnn import configs
    from twotower_hgnn.data import load_dataset
    from twotower_hgnn.pipeline import PipelineConfig, run_pipeline

    ds = load_dataset("synthetic", scale="tiny", seed=0)
    out = tmp_path / "runs"
    for as_of, bad_age in ((None, True), ("1990-01-01", False)):  # invalid data; valid data, impossible split
        inter, items, users = _files(tmp_path, ds, bad_age=bad_age)
        cfg = PipelineConfig(
            dataset="files", interactions=inter, items=items, users=users, out_dir=str(out), as_of=as_of,
            config=configs.load("test"),
        )  # fmt: skip
        with pytest.raises(Exception) as err:
            run_pipeline(cfg)
        assert not isinstance(err.value, (AssertionError, NameError, AttributeError)), err.value
        assert not cfg.version_dir().exists() and not cfg.version_dir().parent.exists(), str(err.value)
    # a version folder that existed before the failed run is kept
    cfg.version_dir().mkdir(parents=True)
    with pytest.raises(Exception):
        run_pipeline(cfg)
    assert cfg.version_dir().exists()


ENOSPC_TEXT = (
    'RESOURCE_EXHAUSTED: Error writing "w/0.0" in OCDBT database at local file "/x/0.orbax-checkpoint-tmp/": '
    "Failed to write 1808097 bytes to file 11: No space left on device [os_error_code='28']"
)  # what tensorstore raises inside orbax's save threads on a full disk


def test_checkpoint_disk_full_is_one_disk_error_and_orbax_threads_stay_quiet(tmp_path, monkeypatch):
    import logging

    import numpy as np

    from twotower_hgnn.checkpoint import Checkpointer, CheckpointError, _DropOrbaxDiskErrors
    from twotower_hgnn.errors import DiskError

    ck = Checkpointer(tmp_path / "ck", async_save=False)
    ck.save(0, {"w": np.zeros(3, np.float32)})

    def fail(text):
        def raise_(*a, **k):
            raise ValueError(text)

        return raise_

    monkeypatch.setattr(ck._mngr, "wait_until_finished", fail(ENOSPC_TEXT))
    with pytest.raises(DiskError, match=r"checkpoint step 0 to .*: no space left on device; free space") as err:
        ck.wait()
    assert err.value.__cause__ is None and err.value.__suppress_context__  # one line, no orbax chain
    monkeypatch.setattr(ck._mngr, "save", fail(ENOSPC_TEXT))
    with pytest.raises(DiskError, match="step 1"):
        ck.save(1, {"w": np.zeros(3, np.float32)})
    monkeypatch.setattr(ck._mngr, "wait_until_finished", fail("INTERNAL: something else"))
    with pytest.raises(CheckpointError, match="something else") as err:
        ck.wait()
    assert isinstance(err.value.__cause__, ValueError)  # not a disk error: the original stays chained

    def record(path, exc):
        return logging.LogRecord("absl", logging.ERROR, path, 1, "thread raised", None, (type(exc), exc, None))

    quiet = _DropOrbaxDiskErrors()
    orbax_file = os.path.join("site-packages", "orbax", "checkpoint", "future.py")
    assert not quiet.filter(record(orbax_file, ValueError(ENOSPC_TEXT)))  # dropped
    assert quiet.filter(record(orbax_file, ValueError("INTERNAL: something else")))  # kept
    assert quiet.filter(record(os.path.join("site-packages", "other", "x.py"), ValueError(ENOSPC_TEXT)))
    assert any(isinstance(f, _DropOrbaxDiskErrors) for f in logging.getLogger("absl").filters)
    # asyncio's "Future exception was never retrieved" for an orbax write task: its traceback is orbax's
    try:
        exec(compile("raise OSError(28, 'No space left on device')", orbax_file, "exec"))
    except OSError as e:
        task_error = e
    asyncio_file = os.path.join("lib", "asyncio", "base_events.py")
    assert not quiet.filter(record(asyncio_file, task_error))
    assert quiet.filter(record(asyncio_file, OSError(28, "No space left on device")))  # not orbax's: kept


def test_closed_event_loop_callbacks_after_a_failed_save_are_not_printed(tmp_path, monkeypatch):
    from twotower_hgnn.checkpoint import Checkpointer

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(str(u.exc_value)))
    Checkpointer(tmp_path / "ck")  # installs the hook in front of the one above
    code = "def call_soon_threadsafe():\n    raise RuntimeError(MSG)\ncall_soon_threadsafe()"
    for msg in ("Event loop is closed", "something else"):
        try:
            exec(compile(code, "base_events.py", "exec"), {"MSG": msg})
        except RuntimeError as e:
            args = types.SimpleNamespace(exc_type=RuntimeError, exc_value=e, exc_traceback=e.__traceback__)
            sys.unraisablehook(types.SimpleNamespace(**vars(args), err_msg=None, object=None))
    assert seen == ["something else"]
