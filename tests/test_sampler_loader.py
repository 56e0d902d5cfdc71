"""Loader: order, determinism across worker counts and modes, error propagation, no hangs."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from sampler.loader import Loader
from sampler.numpy_backend import NumpySampler
from sampler.spec import make_spec
from tests.test_sampler_numpy import tiny_graph


class FailingSampler(NumpySampler):
    """Raises on one batch index (module level: picklable for process workers)."""

    fail_at = 3

    def batch(self, epoch, index):
        if index == self.fail_at:
            raise KeyError(f"boom at {index}")
        return super().batch(epoch, index)


class SlowSampler(NumpySampler):
    def batch(self, epoch, index):
        time.sleep(1.5)
        return super().batch(epoch, index)


class DyingSampler(NumpySampler):
    def batch(self, epoch, index):
        os._exit(3)


@pytest.fixture(scope="module")
def setup():
    g = tiny_graph()
    spec = make_spec(g, positives_per_batch=24, fanouts=(4, 3), seed=11)
    s = NumpySampler(g, spec)
    ref = [s.batch(1, i) for i in range(s.num_batches(1))]
    return g, spec, s, ref


def _same(a, b):
    for t in a.seeds:
        np.testing.assert_array_equal(a.seeds[t], b.seeds[t])
    for k in range(len(a.nbrs)):
        for n in a.nbrs[k]:
            np.testing.assert_array_equal(a.nbrs[k][n], b.nbrs[k][n])
            np.testing.assert_array_equal(a.masks[k][n], b.masks[k][n])


@pytest.mark.parametrize("mode,workers", [("thread", 1), ("thread", 3), ("process", 2)])
def test_same_stream_for_any_workers_and_mode(setup, mode, workers):
    g, spec, s, ref = setup
    with Loader(s, 1, start=4, workers=workers, prefetch=3, mode=mode) as L:
        assert len(L) == len(ref) - 4
        out = list(L)
    assert len(out) == len(ref) - 4
    for a, b in zip(out, ref[4:]):
        _same(a, b)


def test_device_put_runs_one_batch_ahead(setup):
    g, spec, s, ref = setup
    placed = []

    def put(b):
        placed.append(int(b.seeds["audiobook"][0]))
        return ("dev", b)

    seen = []
    with Loader(s, 1, workers=2, device_put=put) as L:
        for i, (tag, b) in enumerate(L):
            assert tag == "dev"
            _same(b, ref[i])
            seen.append(i)
            # while batch i is being used, batch i+1 has already been handed to device_put
            assert len(placed) == min(i + 2, len(ref))
    assert seen == list(range(len(ref)))


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_worker_error_surfaces_in_consumer(setup, mode):
    g, spec, _, ref = setup
    s = FailingSampler(g, spec)
    got = []
    with pytest.raises(KeyError, match="boom at 3"):
        with Loader(s, 1, workers=2, mode=mode) as L:
            for b in L:
                got.append(b)
    assert len(got) == 3  # batches before the failing one were delivered, in order


def test_dead_process_worker_raises_not_hangs(setup):
    g, spec, _, _ = setup
    t0 = time.time()
    with pytest.raises(RuntimeError, match="died"):
        with Loader(DyingSampler(g, spec), 1, workers=1, mode="process") as L:
            next(L)
    assert time.time() - t0 < 60


def test_timeout_and_early_close(setup):
    g, spec, s, _ = setup
    with pytest.raises(TimeoutError):
        next(Loader(SlowSampler(g, spec), 1, workers=1, timeout=0.3))
    L = Loader(s, 1, workers=2, prefetch=2)
    next(L)
    t0 = time.time()
    L.close()  # workers blocked on full queues must stop
    assert time.time() - t0 < 5 and not any(p.is_alive() for p in L._procs)
    with pytest.raises(StopIteration):
        next(L)


def test_eval_edges_through_loader(setup):
    g, spec, s, _ = setup
    ev = {r: np.asarray(g.edges[r])[:19] for r in spec.relations}
    ref = list(s.edge_batches(ev, seed=5))
    with Loader(s, edges=ev, eval_seed=5, workers=2) as L:
        out = list(L)
    assert len(out) == len(ref) == 3
    for a, b in zip(out, ref):
        _same(a, b)
        np.testing.assert_array_equal(a.positive_mask, b.positive_mask)


def test_bad_arguments(setup):
    _, _, s, _ = setup
    with pytest.raises(ValueError, match="mode"):
        Loader(s, 0, mode="fork")
    with pytest.raises(ValueError, match="workers"):
        Loader(s, 0, workers=0)
    with pytest.raises(ValueError, match="start"):
        Loader(s, 0, start=10**6)
