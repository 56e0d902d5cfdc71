"""Stage runner: skip-if-valid, fingerprints propagate downstream, forced reruns, atomic outputs."""

import io

import pytest

from twotower_hgnn.stages import MARKER, StageRunner


def _runner(root, force=None):
    return StageRunner(root, force=force, log=io.StringIO())


def _writer(calls, name, text="x"):
    def fn(out):
        calls.append(name)
        (out / "out.txt").write_text(text)
        return {"n": 1}

    return fn


def test_skip_when_valid_and_rerun_on_change(tmp_path):
    calls = []
    r = _runner(tmp_path)
    a = r.run("a", {"p": 1}, _writer(calls, "a"))
    r.run("b", {"q": 1}, _writer(calls, "b"), depends=("a",))
    assert a.ran and (tmp_path / "a" / "out.txt").read_text() == "x" and (tmp_path / "a" / MARKER).exists()
    r2 = _runner(tmp_path)
    assert not r2.run("a", {"p": 1}, _writer(calls, "a")).ran
    assert not r2.run("b", {"q": 1}, _writer(calls, "b"), depends=("a",)).ran
    assert calls == ["a", "b"]
    # changed upstream config: upstream and downstream both recompute
    r3 = _runner(tmp_path)
    assert r3.run("a", {"p": 2}, _writer(calls, "a")).ran
    assert r3.run("b", {"q": 1}, _writer(calls, "b"), depends=("a",)).ran
    assert calls == ["a", "b", "a", "b"]


def test_forced_stage_reruns_downstream(tmp_path):
    calls = []
    r = _runner(tmp_path)
    r.run("a", {}, _writer(calls, "a"))
    r.run("b", {}, _writer(calls, "b"), depends=("a",))
    r2 = _runner(tmp_path, force={"a"})
    r2.run("a", {}, _writer(calls, "a"))
    r2.run("b", {}, _writer(calls, "b"), depends=("a",))
    assert calls == ["a", "b", "a", "b"]


def test_failed_stage_leaves_previous_outputs_and_no_marker(tmp_path):
    calls = []
    r = _runner(tmp_path)

    def boom(out):
        (out / "half.txt").write_text("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        r.run("a", {}, boom)
    assert not (tmp_path / "a").exists()
    assert not list(tmp_path.glob(".a.*"))  # temp dir removed
    # a later run computes it
    assert _runner(tmp_path).run("a", {}, _writer(calls, "a")).ran


def test_dependency_must_run_first(tmp_path):
    with pytest.raises(RuntimeError, match="have not run yet"):
        _runner(tmp_path).run("b", {}, lambda out: {}, depends=("a",))


def test_work_dir_is_keyed_by_fingerprint(tmp_path):
    r = _runner(tmp_path)
    seen = {}
    r.run("a", {"p": 1}, lambda out: seen.setdefault(1, r.work_dir("a")) and {})
    r2 = _runner(tmp_path)
    r2.run("a", {"p": 2}, lambda out: seen.setdefault(2, r2.work_dir("a")) and {})
    assert seen[1] != seen[2] and seen[1].parent == seen[2].parent == tmp_path / "_work" / "a"
    with pytest.raises(RuntimeError, match="only available while a stage runs"):
        _runner(tmp_path / "x").work_dir("a")
