"""Mesh + shard_batch on 8 fake CPU devices (in a subprocess), and the single-device path."""

import jax
import numpy as np
import pytest

from tests.multidevice import run_with_devices, xla_flags
from twotower_hgnn.parallel import batch_sharding, block_on_cpu, init_distributed, make_mesh, replicate, shard_batch


def test_shard_batch_on_8_devices_global_sum_and_divisibility_error():
    out = run_with_devices(
        """
        import json
        import jax, jax.numpy as jnp, numpy as np
        from twotower_hgnn.parallel import make_mesh, shard_batch, replicate, block_on_cpu
        mesh = make_mesh()
        assert mesh.axis_types == (jax.sharding.AxisType.Auto,)
        rng = np.random.default_rng(0)
        batch = {"x": rng.normal(size=(64, 3)).astype(np.float32), "ids": np.arange(64, dtype=np.int32)}
        g = shard_batch(batch, mesh)
        w = replicate(np.ones(3, np.float32), mesh)
        step = jax.jit(lambda b, w: (b["x"] @ w).sum() + b["ids"].sum())
        total = block_on_cpu(step(g, w))
        shard_rows = sorted({s.data.shape[0] for s in g["x"].addressable_shards})
        try:
            shard_batch({"a": {"bad": np.zeros((12, 2))}}, mesh)
            err = ""
        except ValueError as e:
            err = str(e)
        print(json.dumps({"n": len(jax.devices()), "total": float(total), "host": float(batch["x"].sum() + batch["ids"].sum()),
                          "shard_rows": shard_rows, "n_shards": len(g["x"].addressable_shards),
                          "w_replicated": bool(w.sharding.is_fully_replicated), "err": err}))
        """
    )
    assert out["n"] == 8 and out["n_shards"] == 8 and out["shard_rows"] == [8]
    assert out["w_replicated"]
    assert out["total"] == pytest.approx(out["host"], rel=1e-5)
    assert "['a']['bad']" in out["err"] and "12" in out["err"] and "8 local devices" in out["err"]


def test_single_device_helpers():
    mesh = make_mesh(axis_name="batch")
    assert mesh.axis_names == ("batch",) and batch_sharding(mesh).spec == jax.sharding.PartitionSpec("batch")
    g = shard_batch((np.arange(6.0),), mesh)
    assert float(block_on_cpu(jax.jit(jnp_sum)(g[0]))) == 15.0
    r = replicate({"w": np.ones(2)}, mesh)
    assert r["w"].sharding.is_fully_replicated
    init_distributed(None, 1, 0)  # no-op
    with pytest.raises(ValueError, match="num_devices=99"):
        make_mesh(99)
    with pytest.raises(ValueError, match="scalar"):
        shard_batch({"s": np.float32(1)}, mesh)


def jnp_sum(x):
    return x.sum()


_TWO_PROCESS = """
import json, sys
import numpy as np
from twotower_hgnn.parallel import init_distributed, make_mesh, shard_batch, block_on_cpu
pid, port = int(sys.argv[1]), sys.argv[2]
init_distributed(f"127.0.0.1:{port}", 2, pid)
import jax
mesh = make_mesh()
local = np.arange(4, dtype=np.float32) + 10 * pid  # process 0: 0..3, process 1: 10..13
g = shard_batch({"x": local}, mesh)
total = block_on_cpu(jax.jit(lambda b: b["x"].sum())(g))
print(json.dumps({"pid": pid, "global_shape": list(g["x"].shape), "devices": jax.device_count(),
                  "local_devices": jax.local_device_count(), "total": float(total)}))
"""


def test_shard_batch_two_processes_gloo():
    """Two local processes (gloo CPU collectives): each passes its own rows; the global sum agrees."""
    import json
    import os
    import socket
    import subprocess
    import sys

    from tests.multidevice import ROOT

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    env["XLA_FLAGS"] = xla_flags()  # one device per process
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TWO_PROCESS, str(i), str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    for o in outs:
        assert o["global_shape"] == [8] and o["devices"] == 2 and o["local_devices"] == 1
        assert o["total"] == float(np.arange(4).sum() * 2 + 40)
