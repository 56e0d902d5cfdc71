"""The launch boundary (``launch.common.run_main``): a user error is one ``error:`` line and exit 2, an
internal error keeps its traceback and exits 1, Ctrl-C / SIGTERM end with one line (130 / 143)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}


def _run_with(body: str, *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    """A launch program whose ``main`` runs ``body`` (with ``--items`` an input and ``--out_dir`` an output)."""
    code = (
        textwrap.dedent(
            """
        import errno, os, sys, time
        from absl import flags
        from launch import common
        common.define_input("items", None, "an input")
        common.define_output("out_dir", None, "an output")
        def main(argv):
        """
        )
        + textwrap.indent(textwrap.dedent(body), "    ")
        + "\ncommon.run_main(main)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def _one_error_line(p: subprocess.CompletedProcess) -> str:
    lines = [s for s in p.stderr.splitlines() if s.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (p.returncode, p.stderr)
    return lines[0]


@pytest.mark.parametrize(
    "body, expect",
    [
        ("from twotower_hgnn.errors import DataError\nraise DataError('items.csv: column age, row 7: 200')", "row 7"),
        ("from sampler.spec import SpecError\nraise SpecError('relations: audiobook-audiobook is empty')", "empty"),
        ("raise OSError(errno.ENOSPC, 'No space left on device', '/data/out/x.npy')", "/data/out/x.npy"),
        ("raise OSError(errno.EROFS, 'Read-only file system', '/ro/x')", "read-only"),
        ("from absl import app\nraise app.UsageError('give --dataset')", "give --dataset"),
        ("from twotower_hgnn.errors import UserError\nraise UserError('first\\n  second')", "first | second"),
    ],
)
def test_user_errors_are_one_line_exit_2(body, expect):
    assert expect in _one_error_line(_run_with(body))


def test_the_library_user_errors_are_mapped():
    """Every user-facing error class of the library is a UserError or mapped explicitly at the boundary."""
    from launch import common
    from sampler.device.graph import DeviceGraphError
    from sampler.spec import SpecError
    from twotower_hgnn import errors
    from twotower_hgnn.checkpoint import CheckpointError
    from twotower_hgnn.data.readers_checks import DataError
    from twotower_hgnn.data.split import SplitError
    from twotower_hgnn.eval.report import ReportError
    from twotower_hgnn.eval.validation import ValidationError
    from twotower_hgnn.features_bundles import FeatureError
    from twotower_hgnn.graph import GraphError
    from twotower_hgnn.pipeline.config import PipelineError
    from twotower_hgnn.text import TextError

    for cls in (DataError, SplitError, PipelineError, TextError, FeatureError, ValidationError, GraphError):
        assert issubclass(cls, errors.UserError), cls
    assert issubclass(ReportError, errors.UserError)
    assert issubclass(CheckpointError, errors.PathError) and issubclass(CheckpointError, RuntimeError)
    mapped = common.user_error_types()
    assert SpecError in mapped and DeviceGraphError in mapped and not issubclass(RuntimeError, mapped)


def test_user_paths_vanishing_or_unreadable_are_one_line(tmp_path):
    f = tmp_path / "items.csv"
    f.write_text("item_id\n1\n")
    out = tmp_path / "out"
    body = "raise PermissionError(errno.EACCES, 'Permission denied', os.path.join(flags.FLAGS.out_dir, 'a', 'b'))"
    assert "Permission denied" in _one_error_line(_run_with(body, f"--out_dir={out}"))
    body = "os.remove(flags.FLAGS.items)\nopen(flags.FLAGS.items)"
    assert "no such file" in _one_error_line(_run_with(body, f"--items={f}"))


@pytest.mark.parametrize(
    "body",
    [
        "raise RuntimeError('a bug')",
        "open('/nonexistent/internal/state.json')",  # not a user-given path: a bug
    ],
)
def test_internal_errors_keep_their_traceback_and_exit_1(body):
    p = _run_with(body)
    assert p.returncode == 1, p.stderr
    assert "Traceback (most recent call last)" in p.stderr and not p.stderr.startswith("error:")


def test_a_stage_that_fails_internally_keeps_its_traceback(tmp_path):
    """A real launch script (launch.pipeline) with its pipeline replaced by one that raises a bug."""
    code = (
        "import sys\nimport twotower_hgnn.pipeline as tp\n"
        "def boom(cfg):\n    raise RuntimeError('injected internal failure')\n"
        "tp.run_pipeline = boom\n"
        "sys.argv[0] = 'pipeline'\nimport launch.pipeline as lp\nlp.run_main(lp.main)\n"
    )
    args = ["--dataset=synthetic", "--config=test", f"--out_dir={tmp_path}", "--demo_users=none"]
    p = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 1, p.stderr
    assert "Traceback (most recent call last)" in p.stderr and "RuntimeError: injected internal failure" in p.stderr


@pytest.mark.parametrize("sig, rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_and_sigterm_end_with_one_line(sig, rc, tmp_path):
    marker = tmp_path / "started"
    code = textwrap.dedent(
        f"""
        import signal, time
        # a terminal's Ctrl-C: SIGINT raises KeyboardInterrupt even when the test runner's worker passed
        # SIGINT down as ignored (an ignored SIGINT is inherited across exec, and Python keeps it ignored)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from launch import common
        def main(argv):
            open({str(marker)!r}, "w").close()
            time.sleep(60)
        common.run_main(main)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 30
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    lines = [s for s in err.splitlines() if s.strip()]
    assert proc.returncode == rc and len(lines) == 1 and lines[0].startswith("interrupted"), (proc.returncode, err)


def test_flag_enums_match_the_library():
    """launch.common spells the enums without importing the library at parse time: they must agree."""
    from launch import common
    from twotower_hgnn.data import DATASETS
    from twotower_hgnn.data.synthetic_config import SCALES
    from twotower_hgnn.pipeline.config import STAGES

    assert common.DATASETS == tuple(DATASETS) and common.STAGES == tuple(STAGES)
    assert set(common.SCALES) == set(SCALES)


def test_a_config_file_with_a_syntax_error_is_one_config_error(tmp_path):
    from twotower_hgnn import configs

    f = tmp_path / "mine.py"
    f.write_text("def get_config(:\n    pass\n")
    with pytest.raises(configs.ConfigError, match=r"mine\.py:1: "):
        configs.load(str(f))


@pytest.mark.parametrize(
    "over, message",
    [
        ({"eval.k": "0"}, "eval.k: 0 must be >= 1"),
        ({"eval.k": "-3"}, "eval.k: -3 must be >= 1"),
        ({"eval.k": "1000000"}, "<= 1000"),
        ({"two_tower.max_steps": "-1"}, "two_tower.max_steps: -1 must be >= 1"),
        ({"two_tower.time_budget_s": "0"}, "two_tower.time_budget_s: 0.0 must be > 0"),
        ({"two_tower.ema_decay": "1.5"}, "two_tower.ema_decay"),
        ({"two_tower.positive_events": ""}, "two_tower.positive_events"),
        ({"hgnn.max_steps": "-5"}, "max_steps"),
        ({"eval.targets": ""}, "eval.targets"),
    ],
)
def test_configuration_values_no_run_can_use_are_refused_at_load(over, message):
    """What ``--config.<path>=value`` refuses while the command line is parsed (before any work)."""
    from twotower_hgnn import configs

    with pytest.raises(configs.ConfigError, match=re.escape(message)):
        configs.load("test", over)
