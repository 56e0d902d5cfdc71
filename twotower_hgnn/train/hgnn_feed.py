"""The HGNN steps' inputs: the fused step (batches sampled on the device inside the train step's jit)
and the feed that hands :func:`twotower_hgnn.train.hgnn_loop.run_loop` each step's runner and batch.

Re-exported from :mod:`twotower_hgnn.train.hgnn_loop`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import jax
import numpy as np

from sampler.factory import TrainSampler, fused_parts
from twotower_hgnn.parallel import replicated_sharding, shard_batch

if TYPE_CHECKING:  # annotations only: the loop imports this module
    from twotower_hgnn.train.hgnn_loop import LoopState, TrainContext


# ---------------------------------------------------------------------------- step inputs
class FusedStep:
    """The train step with its batches sampled on the device inside the same jit."""

    def __init__(self, sampler: TrainSampler, mesh, sub_batches: int, train_step: Callable) -> None:
        # every device samples its own sub-batches against its replica of the CSR
        self.fused, self.dgraph = fused_parts(sampler, mesh, sub_batches, replicated_sharding(mesh))
        self.seed = sampler.spec.seed
        fused = self.fused
        self.step = jax.jit(lambda st, f, g, o, j, k: train_step(st, f, fused.step(g, o, j, k)))

    def epoch_runner(self, epoch: int, feats: Any) -> Callable:
        from sampler.device import epoch_key

        order = self.fused.place_order(self.fused.host_order(epoch))  # the NumPy backend's draw, once per epoch
        key = epoch_key(self.seed, epoch)
        return lambda st, j: self.step(st, feats, self.dgraph, order, np.int32(j), key)


class _Feed:
    """The steps' inputs across epochs: on entering an epoch, a prefetching ``Loader`` of stacked
    sub-batches from ``next_step`` on (or, fused, the epoch's order on the device and step indices).
    ``next(s) -> (run, batch)`` with ``run(train, batch) -> (train, loss)``."""

    def __init__(self, ctx: TrainContext) -> None:
        self.ctx, self.epoch, self.loader = ctx, None, None

    def next(self, s: LoopState) -> tuple[Callable, Any]:
        if self.epoch != s.epoch:
            self.close()
            self._enter(s)
        return self._run, next(self._it)

    def _enter(self, s: LoopState) -> None:
        from sampler.loader import Loader

        ctx, cfg = self.ctx, self.ctx.cfg
        s.enter_epoch(ctx.steps_src.num_batches(s.epoch))
        if ctx.fused is None:
            put = lambda b: shard_batch(b, ctx.mesh)  # noqa: E731 (runs in the loader threads)
            self.loader = Loader(
                ctx.steps_src,
                s.epoch,
                start=s.next_step,
                workers=cfg.workers,
                prefetch=cfg.prefetch,
                mode=cfg.loader_mode,
                device_put=put,
            )
            self._it, self._run = iter(self.loader), lambda st, b: ctx.train_step(st, ctx.feats, b)
        else:  # the step's batches are sampled inside its jit; only the step index crosses
            self._it, self._run = iter(range(s.next_step, s.epoch_len)), ctx.fused.epoch_runner(s.epoch, ctx.feats)
        self.epoch = s.epoch

    def close(self) -> None:
        if self.loader is not None:
            self.loader.close()
            self.loader = None
