"""One two-tower change at a time on the README demo split: validation and test HR@10 of each variant.

Runs on a finished demo version (``python -m launch.pipeline`` first: its ``split``, ``content`` and
``hgnn`` stages are read, nothing is retrained but the two-tower). For each named variant of
:data:`VARIANTS`: the training length is chosen by early stopping on validation HR@10 (the last 10 % of
the training time, as in the pipeline), then a model is refitted on the whole training part for that
many steps and scored on the test part (warm / cold / all users, HR@10 and Coverage@100).

    .venv/bin/python -m benchmarks.quality_changes --run=loo,loo-full --json=/tmp/changes.json

``benchmarks/results/quality_changes.json`` holds the measured ladder with the decision taken on each
change (kept / rejected and why); BUILD_NOTES.md's table is generated from it
(``python -m benchmarks.notes_tables``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

flags.DEFINE_string("version_dir", "runs/movielens1m/default", "A finished demo version directory.")
flags.DEFINE_list("run", ["base", "loo"], "Variants to run (names of VARIANTS).")
flags.DEFINE_string("json", None, "Append the results to this JSON file (a list).")
FLAGS = flags.FLAGS

_BASE = dict(batch_size=128, epochs=10, eval_every=None, patience=2)
_LOO = dict(batch_size=512, epochs=10, eval_every=24, patience=5, example_history="leave_one_out")
_BEST = dict(_LOO, m_negatives="full", m_item_bias=True, m_personal_scale_init=0.05)
_DEMO = dict(_BEST, id_history_len=50, m_id_dim=32, prior_days=14)  # the demo preset
# name -> (target, use_hgnn, settings); "m_" settings go to the model config
VARIANTS: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "base": ("audiobook", True, _BASE),
    "ids": ("audiobook", True, dict(_BASE, id_history_len=50, m_id_dim=64)),
    "b512": ("audiobook", True, dict(_BASE, batch_size=512, eval_every=48, patience=3)),
    "loo": ("audiobook", True, dict(_LOO, eval_every=48, patience=3)),
    "loo-lr3e-4": ("audiobook", True, dict(_LOO, learning_rate=3e-4, patience=4)),
    "loo-t0.1": ("audiobook", True, dict(_LOO, m_temperature=0.1, patience=4)),
    "loo-full": ("audiobook", True, dict(_LOO, m_negatives="full", patience=4)),
    "loo-full-h14": ("audiobook", True, dict(_LOO, m_negatives="full", patience=4, recency_halflife_days=14)),
    "loo-full-h60": ("audiobook", True, dict(_LOO, m_negatives="full", patience=4, recency_halflife_days=60)),
    "loo-full-bias": ("audiobook", True, dict(_LOO, m_negatives="full", m_item_bias=True)),
    "loo-full-bias-ps": ("audiobook", True, _BEST),
    "2T-loo-full-bias-ps": ("audiobook", False, _BEST),
    "loo-full-bias-ps-ids": ("audiobook", True, dict(_BEST, id_history_len=50, m_id_dim=32)),
    "ids-p14-s0": ("audiobook", True, dict(_BEST, id_history_len=50, m_id_dim=32, prior_days=14)),
    "ids-p14-s2": ("audiobook", True, dict(_BEST, id_history_len=50, m_id_dim=32, prior_days=14, seed=2)),
    "asof-p14": ("audiobook", True, dict(_DEMO, prior_as_of=True)),
    "asof-p7": ("audiobook", True, dict(_DEMO, prior_as_of=True, prior_days=7)),
    "asof-p30": ("audiobook", True, dict(_DEMO, prior_as_of=True, prior_days=30)),
    "asof-p7-s1": ("audiobook", True, dict(_DEMO, prior_as_of=True, prior_days=7, seed=1)),
    "asof-p7-s2": ("audiobook", True, dict(_DEMO, prior_as_of=True, prior_days=7, seed=2)),
    "demo-s1": ("audiobook", True, dict(_DEMO, seed=1)),
    "demo-s2": ("audiobook", True, dict(_DEMO, seed=2)),
    **{
        f"asof-p7-ema{int(d * 100)}-s{sd}": (
            "audiobook",
            True,
            dict(_DEMO, prior_as_of=True, prior_days=7, ema_decay=d, seed=sd),
        )
        for d in (0.9, 0.95, 0.98)
        for sd in (0, 1, 2)
    },
    **{f"ema95-s{sd}": ("audiobook", True, dict(_DEMO, ema_decay=0.95, seed=sd)) for sd in (0, 1, 2)},
    **{
        f"asof-p14-ema95-s{sd}": ("audiobook", True, dict(_DEMO, prior_as_of=True, ema_decay=0.95, seed=sd))
        for sd in (0, 1, 2)
    },
    "2T-asof-p7-ema95-s0": ("audiobook", False, dict(_DEMO, prior_as_of=True, prior_days=7, ema_decay=0.95)),
    "2T-asof-p14": ("audiobook", False, dict(_DEMO, prior_as_of=True)),
    "podcast-demo": ("podcast", True, _DEMO),
    "podcast-asof-p14": ("podcast", True, dict(_DEMO, prior_as_of=True)),
    "ids-lr2e-3-s2": ("audiobook", True, dict(_BEST, id_history_len=50, m_id_dim=32, learning_rate=2e-3, seed=2)),
}


def run_variant(name: str, vdir: Path) -> dict[str, Any]:
    """Select on validation, refit, score on test; the result row."""
    from twotower_hgnn.data import load_dataset
    from twotower_hgnn.data.split import validation_split
    from twotower_hgnn.data.split_io import load_split
    from twotower_hgnn.eval.baselines import rank_users
    from twotower_hgnn.eval.metrics import compute_metrics
    from twotower_hgnn.eval.protocol import SEGMENTS, build_protocol
    from twotower_hgnn.eval.validation import two_tower_validator
    from twotower_hgnn.models.two_tower import TwoTowerConfig
    from twotower_hgnn.train.two_tower import TwoTowerTrainConfig, item_vectors, train_two_tower, user_vectors

    target, use_hgnn, kw = VARIANTS[name]
    ds = load_dataset("movielens1m")
    split = load_split(vdir / "split", ds)
    valid = validation_split(ds, split)
    content = np.load(vdir / "content" / "content.npy")
    hgnn = np.load(vdir / "hgnn" / "item_embeddings.npy") if use_hgnn else None
    model_kw = {k[2:]: v for k, v in kw.items() if k.startswith("m_")}
    cfg = TwoTowerTrainConfig(
        target_type=target,
        use_hgnn=use_hgnn,
        history_days=None,
        progress=False,
        checkpoint_every=100_000,
        log_every=100,
        model=TwoTowerConfig(**{"tower_dims": (256, 128, 64), **model_kw}),
        **{k: v for k, v in kw.items() if not k.startswith("m_")},
    )
    t0 = time.time()
    sel = train_two_tower(
        ds, valid, content, hgnn, cfg, tempfile.mkdtemp(), validate=two_tower_validator(ds, valid, target)
    )
    final = train_two_tower(
        ds, split, content, hgnn, dataclasses.replace(cfg, max_steps=sel.best_step), tempfile.mkdtemp()
    )
    tp = build_protocol(ds, split, [target])[target]
    ranked = rank_users(
        tp, user_vectors(final, ds, split.train, tp.users, split.user_as_of(tp.users)), item_vectors(final)[0]
    ).items
    test = {
        s: compute_metrics(ranked[tp.segment(s)], tp.relevant.take(tp.segment(s)), tp.catalogue, k=10) for s in SEGMENTS
    }
    return {
        "run": name,
        "target": target,
        "hgnn": use_hgnn,
        "settings": {k: str(v) for k, v in kw.items()},
        "val_hr10": round(max(v["val"] for v in sel.val_history), 4),
        "best_step": sel.best_step,
        "test_hr10": {s: round(m["hr@10"], 4) for s, m in test.items()},
        "coverage100_all": round(test["all"]["coverage@100"], 3),
        "seconds": round(time.time() - t0, 1),
    }


def main(argv):
    del argv
    from launch.common import quiet_library_logs

    quiet_library_logs()
    bad = [r for r in FLAGS.run if r not in VARIANTS]
    if bad:
        raise app.UsageError(f"--run: unknown variant(s) {bad}; known: {sorted(VARIANTS)}")
    rows = [run_variant(r, Path(FLAGS.version_dir).resolve()) for r in FLAGS.run]
    for r in rows:
        print(json.dumps(r), flush=True)
    if FLAGS.json:
        path = Path(FLAGS.json)
        old = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(old + rows, indent=1))


if __name__ == "__main__":
    app.run(main)
