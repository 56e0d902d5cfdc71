"""Checkpointer: bit-exact round trip, resume, best tracking, and the error cases."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from twotower_hgnn.checkpoint import CheckpointError, Checkpointer


def _state(seed: int = 0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = {
        "dense": {"w": jax.random.normal(k1, (5, 3)), "b": jax.random.normal(k2, (3,))},
        "emb": jnp.arange(8, dtype=jnp.bfloat16),
    }
    tx = optax.adam(1e-3)
    opt = tx.init(params)
    # Two real Adam steps so mu/nu/count are non-trivial floats.
    for _ in range(2):
        grads = jax.tree.map(lambda p: jnp.sin(p.astype(jnp.float32) * 3.1).astype(p.dtype), params)
        upd, opt = tx.update(grads, opt, params)
        params = optax.apply_updates(params, upd)
    return {"params": params, "opt": opt, "step": jnp.asarray(2, jnp.int32)}


def _bits_equal(a, b) -> bool:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in zip(la, lb)
    )


@pytest.fixture(scope="module")
def state():
    return _state()


def test_round_trip_bit_exact_with_meta(tmp_path, state):
    meta = {"epoch": 3, "sampler_position": 1234, "seeds": {"data": 7}, "config": {"lr": 1e-3, "dims": [512, 256, 128]}}
    with Checkpointer(tmp_path / "ck") as ck:
        ck.save(10, state, meta)
        ck.wait()
        assert ck.latest_step() == 10
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
        restored, m = ck.restore(abstract)
        restored2, _ = ck.restore(jax.tree.map(jnp.zeros_like, state), step=10)
    assert m == meta
    assert _bits_equal(restored, state) and _bits_equal(restored2, state)
    assert isinstance(restored["opt"][0], optax.ScaleByAdamState)  # structure, not plain dicts


def test_resume_latest_retention_and_best(tmp_path, state):
    ck = Checkpointer(tmp_path / "ck", max_to_keep=2, best_metric_mode="max")
    for step, metric in [(1, 0.5), (2, 0.9), (3, 0.1), (4, 0.2), (5, float("nan"))]:
        ck.save(step, state, {"epoch": step}, metric=metric)
    ck.close()
    # A new process resuming: the latest two plus the best survive.
    ck = Checkpointer(tmp_path / "ck", max_to_keep=2, best_metric_mode="max")
    assert ck.all_steps() == [2, 4, 5]
    assert ck.latest_step() == 5 and ck.best_step() == 2
    _, meta = ck.restore(state)
    assert meta == {"epoch": 5}
    with pytest.raises(CheckpointError, match="already exists"):
        ck.save(5, state, {"epoch": 99})
    ck.save(5, state, {"epoch": 99}, overwrite=True)
    assert ck.restore(state)[1] == {"epoch": 99}
    with pytest.raises(CheckpointError, match="step 3 not found"):
        ck.restore(state, step=3)
    ck.close()
    ck_min = Checkpointer(tmp_path / "ck_min", max_to_keep=1, best_metric_mode="min")
    for step, metric in [(1, 0.5), (2, 0.1), (3, 0.3)]:
        ck_min.save(step, state, metric=metric)
    assert ck_min.best_step() == 2 and ck_min.all_steps() == [2, 3]
    ck_min.close()


def test_mismatched_target_names_the_leaf(tmp_path, state):
    with Checkpointer(tmp_path / "ck") as ck:
        ck.save(0, state)
        bad_shape = jax.tree.map(lambda x: x, state)
        bad_shape["params"]["dense"]["w"] = jnp.zeros((5, 4))
        with pytest.raises(CheckpointError, match=r"leaf 'params/dense/w' has shape \(5, 3\).*\(5, 4\)"):
            ck.restore(bad_shape)
        bad_dtype = dict(state, step=jnp.asarray(0.0, jnp.float32))
        with pytest.raises(CheckpointError, match="leaf 'step' has dtype int32"):
            ck.restore(bad_dtype)
        missing = {"params": state["params"], "step": state["step"]}
        with pytest.raises(CheckpointError, match="'opt/0/count' has no counterpart"):
            ck.restore(missing)
        extra = dict(state, extra=jnp.zeros(2))
        with pytest.raises(CheckpointError, match="target leaf 'extra' is not in the checkpoint"):
            ck.restore(extra)


def test_not_a_checkpoint_dir_and_corrupt_step(tmp_path, state):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        Checkpointer(junk)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        Checkpointer(tmp_path / "file")
    with Checkpointer(tmp_path / "empty") as ck:
        with pytest.raises(CheckpointError, match="no checkpoint to restore"):
            ck.restore(state)
    d = tmp_path / "ck"
    with Checkpointer(d) as ck:
        ck.save(1, state)
    # Damage the saved arrays: delete the array store of the 'state' item.
    for p in (d / "1" / "state").iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        elif p.name != "_METADATA":
            p.unlink()
    with Checkpointer(d) as ck:
        with pytest.raises(CheckpointError, match="step 1 .* corrupt"):
            ck.restore(state)
    shutil.rmtree(d / "1" / "state")
    with Checkpointer(d) as ck:
        with pytest.raises(CheckpointError, match="corrupt"):
            ck.restore(state)
