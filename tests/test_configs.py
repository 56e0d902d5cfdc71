"""The typed run configuration: presets, ``--config.<path>=`` overrides, deprecated flag aliases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twotower_hgnn import configs
from tests.snippets import run_python
from twotower_hgnn.configs import ConfigError, RunConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", configs.PRESETS)
def test_every_preset_builds_and_serialises(name):
    cfg = configs.load(name)
    assert isinstance(cfg, RunConfig) and cfg.name == name
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["hgnn"]["fanouts"] == list(cfg.hgnn.fanouts) and d["two_tower"]["model"]["tower_dims"]
    assert set(configs.field_paths(cfg)) >= {"hgnn.lr", "two_tower.model.temperature", "eval.k", "split.valid_frac"}


def test_overrides_are_parsed_by_the_field_types():
    cfg = configs.load(
        "demo",
        {
            "hgnn.fanouts": "10,5",
            "two_tower.model.temperature": "0.1",
            "split.history_days": "none",
            "split.test_days": "30",
            "eval.targets": "audiobook",
            "hgnn.negatives_per_type": '{"podcast": 2}',
            "two_tower.max_steps": "7",
            "eval.exclude_seen": "false",
            "hgnn.max_time_s": "None",
            "text.model": "my-model",
        },
    )
    assert cfg.hgnn.fanouts == (10, 5) and cfg.two_tower.model.temperature == 0.1
    assert cfg.split.history_days is None and cfg.split.test_days == 30.0 and cfg.eval.targets == ("audiobook",)
    assert cfg.hgnn.negatives_per_type == {"podcast": 2} and cfg.two_tower.max_steps == 7
    assert cfg.eval.exclude_seen is False and cfg.hgnn.max_time_s is None and cfg.text.model == "my-model"
    assert configs.load("demo") == configs.load("demo")  # presets are values: overriding one leaves the others
    assert configs.load("demo").hgnn.fanouts == (5, 3)


def test_validation_sample_defaults_to_the_report_sample():
    assert configs.load("demo", {"eval.sample_users": "300"}).eval.validation_sample == 300
    cfg = configs.load("demo", {"eval.sample_users": "300", "eval.valid_sample_users": "0"})
    assert cfg.eval.validation_sample == 0 and cfg.eval.sample_users == 300  # 0: every validation user
    scale = configs.load("scale").eval
    assert (scale.sample_users, scale.validation_sample) == (20_000, 5_000)


@pytest.mark.parametrize(
    "over, message",
    [
        ({"hgnn.bogus": "1"}, "HGNNTrainConfig has no field 'bogus'"),
        ({"hgnn.lr": "fast"}, "--config.hgnn.lr=fast: not a float"),
        ({"eval.k": "0"}, "eval.k: 0 must be >= 1"),
        ({"eval.sample_users": "-5"}, "eval.sample_users: -5 must be >= 0"),
        ({"eval.knn_max_items": "-1"}, "eval.knn_max_items: -1 must be >= 0"),
        ({"eval.valid_sample_users": "-2"}, "eval.valid_sample_users: -2 must be >= 0"),
        ({"hgnn": "3"}, "is a section"),
        ({"two_tower.model.negatives": "some"}, "negatives must be one of"),
        ({"eval.targets": "sci-fi"}, "must be a non-empty list of item type names"),
        ({"sampler": "gpu"}, "sampler: 'gpu' is not one of"),
    ],
)
def test_bad_overrides_name_the_field(over, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        configs.load("demo", over)


def test_unknown_preset_and_config_file(tmp_path):
    with pytest.raises(ConfigError, match="neither a preset"):
        configs.load("fastest")
    f = tmp_path / "mine.py"
    f.write_text(
        "from twotower_hgnn.configs import demo\n"
        "def get_config():\n    import dataclasses\n    return dataclasses.replace(demo.get_config(), name='mine')\n"
    )
    assert configs.load(str(f), {"eval.k": "5"}).name == "mine" and configs.load(str(f), {"eval.k": "5"}).eval.k == 5
    assert configs.load("tiny") == configs.load("test")  # the previous round's name


def _launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "launch.pipeline", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_command_line_overrides_and_deprecated_aliases():
    p = _launch(
        "--config=test", "--config.hgnn.fanouts=4,2", "--config.two_tower.max_steps", "9", "--k=5", "--print_config"
    )
    assert p.returncode == 0, p.stderr
    cfg = json.loads(p.stdout)
    assert cfg["name"] == "test" and cfg["hgnn"]["fanouts"] == [4, 2] and cfg["two_tower"]["max_steps"] == 9
    assert cfg["eval"]["k"] == 5 and "--k is deprecated; use --config.eval.k=5" in p.stderr
    bad = _launch("--config.hgnn.lr=fast", "--print_config")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --config.hgnn.lr=fast: not a float"
    assert "Traceback" not in bad.stderr


def test_overrides_that_only_fit_together_apply_in_any_order():
    pair = {"two_tower.example_history": "leave_many_out", "two_tower.prior_as_of": "false"}
    for over in (pair, dict(reversed(list(pair.items())))):
        t = configs.load("demo", over).two_tower
        assert (t.example_history, t.prior_as_of) == ("leave_many_out", False)
    with pytest.raises(configs.ConfigError, match="example_history=leave_many_out"):
        configs.load("demo", {"two_tower.example_history": "leave_many_out"})  # alone it cannot apply


def test_configs_import_neither_jax_nor_pandas():
    """Configuration files and ``--print_config`` load the presets without the training stack."""
    code = (
        "import sys\n"
        "from twotower_hgnn import configs\n"
        "for name in configs.PRESETS:\n"
        "    configs.load(name).to_dict()\n"
        "print(sorted(m for m in ('jax', 'flax', 'optax', 'pandas', 'torch') if m in sys.modules))\n"
    )
    assert run_python(code).stdout.strip() == "[]"
