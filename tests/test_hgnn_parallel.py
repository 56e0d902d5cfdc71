"""Data parallelism: 8 fake CPU devices give the same loss and update as 1 device for the same global
batch (same stacked sub-batches); 2 jax.distributed CPU processes train (with checkpoints) to the
same params as 1 process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

from multidevice import ROOT, run_with_devices, xla_flags

# Shared set-up: tiny data, the CPU config, a global batch of G sub-batches (step 0 of epoch 1),
# two optimisation steps on the given mesh. Prints losses and a params checksum as JSON.
_BODY = """
import json, sys, numpy as np, jax
from twotower_hgnn.data.synthetic import generate
from twotower_hgnn.graph import build_graph, holdout_edges
from twotower_hgnn.parallel import block_on_cpu, make_mesh, replicate, shard_batch
from twotower_hgnn.train.hgnn import HGNNTrainConfig, StepSampler, build_spec, init_state, make_steps
from twotower_hgnn.models.hgnn import padded_features
from twotower_hgnn.rng import jax_key
from sampler.numpy_backend import NumpySampler

def run(num_devices, G, local):
    ds = generate("tiny", 0)
    g, _ = build_graph(ds)
    g, _ = holdout_edges(g, 0.1, 0)
    cfg = HGNNTrainConfig.cpu_small(batch_positives=64)
    spec = build_spec(g, cfg, G)
    mesh = make_mesh(num_devices)
    train_step, eval_step, opt = make_steps(cfg.model, spec, cfg.lr, cfg.margin, mesh)
    state = replicate(init_state(jax_key(0, "hgnn-init"), cfg.model, spec, 32, opt), mesh)
    feats = replicate(np.asarray(padded_features(ds.item_vectors, g.num_nodes)), mesh)
    src = StepSampler(NumpySampler(g, spec), G, local)
    losses = []
    for j in range(2):
        state, loss = train_step(state, feats, shard_batch(src.batch(1, j), mesh))
        block_on_cpu(loss)
        losses.append(float(loss))
    ev = eval_step(state["params"], feats, shard_batch(src.batch(1, 2), mesh))
    leaves = jax.tree_util.tree_leaves(jax.device_get(state["params"]))
    return {"losses": losses, "checksum": float(sum(np.abs(np.asarray(l, np.float64)).sum() for l in leaves)),
            "first": np.asarray(leaves[0]).ravel()[:8].tolist(), "eval_hinge": float(ev["hinge"]), "eval_rr": float(ev["rr"]),
            "devices": len(jax.devices()), "processes": jax.process_count()}
"""


def _close(a: dict, b: dict) -> None:
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5)
    np.testing.assert_allclose(a["checksum"], b["checksum"], rtol=1e-5)
    np.testing.assert_allclose(a["first"], b["first"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose([a["eval_hinge"], a["eval_rr"]], [b["eval_hinge"], b["eval_rr"]], rtol=1e-5, atol=1e-7)


def test_eight_devices_equal_one_device():
    code = _BODY + "\nprint(json.dumps({'one': run(1, 8, slice(0, 8)), 'eight': run(8, 8, slice(0, 8))}))\n"
    out = run_with_devices(code, n_devices=8, timeout=240)
    assert out["eight"]["devices"] == 8
    assert out["one"]["losses"][0] > 0 and out["one"]["losses"][1] != out["one"]["losses"][0]
    _close(out["eight"], out["one"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_TRAIN = """
import json, sys, numpy as np, jax
from twotower_hgnn.data.synthetic import generate
from twotower_hgnn.graph import build_graph, holdout_edges
from twotower_hgnn.train.hgnn import HGNNTrainConfig, train_hgnn

def train(workdir, num_devices):
    ds = generate("tiny", 0)
    g, _ = build_graph(ds)
    g, val = holdout_edges(g, 0.1, 0)
    cfg = HGNNTrainConfig.cpu_small(sub_batches=2, num_devices=num_devices, max_steps=4, ckpt_every_steps=2, val_max_edges=64)
    r = train_hgnn(g, ds.item_vectors, val, cfg, workdir)
    leaves = jax.tree_util.tree_leaves(r.last_params)
    return {"steps": r.steps, "val": [[h["val_loss"], h["val_mrr"]] for h in r.history] + [[r.baseline["val_loss"], r.baseline["val_mrr"]]],
            "checksum": float(sum(np.abs(np.asarray(l, np.float64)).sum() for l in leaves)),
            "first": np.asarray(leaves[0]).ravel()[:8].tolist(), "processes": jax.process_count(),
            "devices": len(jax.devices()), "ckpt_steps": r.resumed_from}
"""


def test_two_processes_equal_one_process(tmp_path):
    """``train_hgnn`` under jax.distributed with 2 local CPU processes (gloo collectives, 1 device
    each, each sampling its own sub-batch of every G = 2 step, one shared checkpoint directory)
    ends with the same params and validation metrics as 1 process with G = 2."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["XLA_FLAGS"] = xla_flags()  # one device per process
    errors = []
    for attempt in range(2):  # one retry: on a loaded 2-core box the coordinator start-up can time out
        port = _free_port()
        wd = tmp_path / f"mp{attempt}"
        code = _TRAIN + textwrap.dedent(f"""
            from twotower_hgnn.parallel import init_distributed
            pid = int(sys.argv[1])
            init_distributed("127.0.0.1:{port}", num_processes=2, process_id=pid)
            print(json.dumps(train("{wd}", None)))
        """)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(i)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        outs = []
        try:
            for p in procs:
                so, se = p.communicate(timeout=300)
                if p.returncode != 0:
                    errors.append(f"process failed (rc={p.returncode}):\n{se[-3000:]}")
                    break
                outs.append(json.loads(so.strip().splitlines()[-1]))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if len(outs) == 2:
            break
    assert len(outs) == 2, "\n".join(errors)
    ns: dict = {}
    exec(textwrap.dedent(_TRAIN), ns)
    ref = ns["train"](str(tmp_path / "single"), 1)
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())[-1] == 4
    for o in outs:
        assert o["processes"] == 2 and o["devices"] == 2 and o["steps"] == ref["steps"] == 4
        np.testing.assert_allclose(o["val"], ref["val"], rtol=1e-5)
        np.testing.assert_allclose(o["checksum"], ref["checksum"], rtol=1e-5)
        np.testing.assert_allclose(o["first"], ref["first"], rtol=1e-4, atol=1e-6)
