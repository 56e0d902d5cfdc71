"""Progress line, MetricWriter (event file + jsonl) and EarlyStopping."""

import io

import pytest

from twotower_hgnn.tracking import EarlyStopping, MetricWriter, Progress, read_metrics_jsonl


def test_progress_throttles_and_reports_rate_and_eta():
    out = io.StringIO()
    p = Progress(total=100, desc="train", every_s=3600, stream=out)
    for _ in range(10):
        p.update(loss=0.5)
    assert out.getvalue() == ""  # throttled
    p.every_s = 0.0
    p.update(2, loss=0.25)
    line = out.getvalue().strip()
    assert line.startswith("train 12/100 (12%)") and "steps/s" in line and "ETA" in line and "loss=0.25" in line
    p.close()
    assert out.getvalue().strip().endswith("done")


def test_metric_writer_event_file_and_jsonl(tmp_path):
    with MetricWriter(tmp_path / "tb") as w:
        w.scalar("loss", 1.5, 0)
        w.scalars({"loss": 0.5, "val/hr_10": 0.25}, 1)
    rows = read_metrics_jsonl(tmp_path / "tb")
    assert [(r["step"], r["tag"], r["value"]) for r in rows] == [
        (0, "loss", 1.5),
        (1, "loss", 0.5),
        (1, "val/hr_10", 0.25),
    ]
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1
    # Read the event file back with tensorboardX's own record reader and proto.
    from tensorboardX.event_file_writer import EventFileWriter  # noqa: F401  (import check)
    from tensorboardX.proto import event_pb2

    data = events[0].read_bytes()
    seen, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 8], "little")
        ev = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n])
        pos += 12 + n + 4
        for v in ev.summary.value:
            seen.append((ev.step, v.tag, round(v.simple_value, 6)))
    assert seen == [(0, "loss", 1.5), (1, "loss", 0.5), (1, "val/hr_10", 0.25)]


def test_early_stopping_patience_min_delta_and_resume():
    es = EarlyStopping(patience=2, mode="max", min_delta=0.01)
    assert es.update(0.5) and es.best == 0.5
    assert not es.update(0.505)  # within min_delta: not an improvement
    assert not es.should_stop
    assert es.update(0.6) and es.bad_updates == 0
    assert not es.update(float("nan"))
    state = es.state_dict()
    es2 = EarlyStopping(patience=2)
    es2.load_state_dict(state)
    assert not es2.should_stop
    assert not es2.update(0.59)
    assert es2.should_stop and es2.best == 0.6 and es2.best_index == 2
    mn = EarlyStopping(patience=1, mode="min")
    assert mn.update(3.0) and mn.update(2.0) and not mn.update(2.5) and mn.should_stop
    with pytest.raises(ValueError):
        EarlyStopping(1, mode="best")


def test_metric_writer_does_not_import_torch_and_leaves_it_importable(tmp_path):
    """tensorboardX imports torch (when installed) only for tensor type checks; the writer keeps it out
    of the process (~2.7 s of start-up) and a later ``import torch`` still works."""
    import importlib.util

    from tests.snippets import run_python

    code = (
        "import sys\n"
        "from twotower_hgnn.tracking import MetricWriter, read_metrics_jsonl\n"
        f"w = MetricWriter({str(tmp_path)!r})\n"
        "w.scalar('train/loss', 0.5, 3)\n"
        "w.close()\n"
        "print('torch' in sys.modules, len(read_metrics_jsonl(" + repr(str(tmp_path / "metrics.jsonl")) + ")))\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('torch') is not None:\n"
        "    import torch\n"
        "    print(torch.zeros(3).sum().item())\n"
    )
    p = run_python(code)
    lines = p.stdout.split()
    assert lines[:2] == ["False", "1"], p.stdout
    if importlib.util.find_spec("torch") is not None:
        assert lines[2] == "0.0"
    assert list(tmp_path.glob("events.out.tfevents.*"))
