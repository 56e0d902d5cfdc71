"""HGNN training: jitted data-parallel step, validation, early stopping, checkpoints, exact resume.

**Step.** A step consumes ``G = sub_batches`` consecutive sampler batches (each a full
``PaddedBatch`` of ``batch_positives / G`` positives), stacked on a new leading axis that is split
over the mesh's ``data`` axis (``jax.jit`` + ``NamedSharding``; params, Adam state and the feature
table replicated — no ``pmap``). The model is ``vmap``-ed over that axis, so each device
runs whole sub-batches and XLA only all-reduces gradients. The loss is the *global* mean hinge over
all valid triples of the step (sum / count across shards), so the value and the update do not
depend on how many devices share the ``G`` sub-batches: 1 device and 8 devices give the same loss
for the same global batch (tested). ``G`` defaults to the number of devices.

**Epoch.** The sampler's epoch (balanced per-relation undersampling, redrawn each epoch) has
``nb`` batches; step ``j`` uses batches ``j*G .. j*G+G-1``; indices past ``nb`` reuse batch
``i % nb`` with its ``positive_mask`` zeroed (static shapes, no edge counted twice).

**Validation metric** (early stopping, best model): ``val_mrr`` = mean reciprocal rank of each
held-out positive edge among itself and its K sampled negatives (ties count against it), on fixed
evaluation batches (``sampler.edge_batches(val_edges, seed)``; neighbourhoods from the training
graph, so held-out edges never carry messages). Also logged: ``val_loss`` (Eq. 4 on the same
triples), ``val_hits1`` and the per-relation loss. A random-embedding baseline on the same triples
is computed once (``HGNNTrainResult.baseline``); with K = 4 its MRR is about 0.46.

**Loop and resume** (:mod:`twotower_hgnn.train.hgnn_loop`): a flat loop over steps — the jitted
step, then hooks with one job each (validation + early stopping + budgets, logging, checkpointing,
fault injection; ``train_hgnn(..., hooks=[...])`` appends more). Everything random after
initialisation is a pure function of ``(seed, epoch, batch index)`` (the sampler contract), so a
checkpoint of the loop state (params, Adam state, step, best params, early stopping, sampler
position ``(epoch, next step)``) resumes to exactly the trajectory of an uninterrupted run. Moved
out, re-exported here: sampler choice (:mod:`sampler.factory`), parameter files
(:mod:`twotower_hgnn.checkpoint`), the config and result (:mod:`twotower_hgnn.train.hgnn_config`).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sampler.batch import PaddedBatch
from sampler.csr import HeteroCSR, Relation, relation_name
from sampler.factory import (  # noqa: F401  (resolve_sampler, sampler_factory, SAMPLER_BACKENDS: re-exported)
    SAMPLER_BACKENDS,
    SamplerFactory,
    TrainSampler,
    numpy_sampler,
    resolve_sampler,
    sampler_factory,
)
from sampler.spec import Layout, SamplingSpec, make_spec
from twotower_hgnn import losses
from twotower_hgnn.models.hgnn import HGNNConfig, hgnn_forward, init_hgnn, padded_features
from twotower_hgnn.parallel import batch_sharding, make_mesh, replicated_sharding
from twotower_hgnn.rng import jax_key
from twotower_hgnn.tracking import EarlyStopping
from twotower_hgnn.train.hgnn_config import HGNNTrainConfig, HGNNTrainResult
from twotower_hgnn.train.hgnn_loop import (  # noqa: F401  (evaluate, random_baseline, InjectedFailure...: re-exported)
    STOP_REASONS,
    CheckpointHook,
    FailAfterStep,
    Hook,
    InjectedFailure,
    LoggingHook,
    LoopState,
    TrainContext,
    ValidationHook,
    FusedStep,
    cap_edges,
    evaluate,
    host_copy,
    random_baseline,
    run_loop,
)


# ---------------------------------------------------------------------------- spec / features
def build_spec(graph: HeteroCSR, cfg: HGNNTrainConfig, sub_batches: int) -> SamplingSpec:
    """The per-sub-batch sampling spec of a training config."""
    if cfg.batch_positives % sub_batches:
        raise ValueError(f"batch_positives={cfg.batch_positives} is not divisible by sub_batches={sub_batches}")
    rels = None
    if cfg.relations is not None:
        by_name = {relation_name(r): r for r in graph.relations}
        missing = [n for n in cfg.relations if n not in by_name]
        if missing:
            raise ValueError(f"relations: {missing} not in the graph (has {sorted(by_name)})")
        rels = tuple(by_name[n] for n in cfg.relations)
    return make_spec(
        graph,
        positives_per_batch=cfg.batch_positives // sub_batches,
        fanouts=cfg.fanouts,
        negatives_per_type=cfg.negatives_per_type,
        relations=rels,
        balance=cfg.balance,
        ratios=cfg.ratios,
        replace=cfg.replace,
        exclude_supervision_edges=cfg.exclude_supervision_edges,
        avoid_known_positives=cfg.avoid_known_positives,
        seed=cfg.seed,
    )


# ---------------------------------------------------------------------------- jitted steps
_TRACES: dict[str, int] = {"train": 0, "eval": 0}
_STEP_CACHE: dict[tuple, tuple[Callable, Callable]] = {}


def _sub_batch_terms(params, mcfg: HGNNConfig, layout: Layout, margin: float, features, b, n_rel: int):
    """``losses.ranking_sums`` of one sub-batch ``b`` (``as_dict`` layout, ``positive_mask`` ``[P]``)."""
    z = hgnn_forward(params, mcfg, features, b, layout)
    return losses.ranking_sums(
        z, layout.anchor, layout.positive, layout.negative, margin, b["positive_mask"], layout.positive_relation, n_rel
    )


def make_steps(
    mcfg: HGNNConfig, spec: SamplingSpec, lr: float, margin: float, mesh
) -> tuple[Callable, Callable, optax.GradientTransformation]:
    """``(train_step, eval_step, optimizer)`` jitted for one (model, spec, mesh); cached per process.

    ``train_step(state, features, batch) -> (state, loss)``; ``eval_step(params, features, batch) ->
    dict of sums``. ``batch`` leaves carry a leading sub-batch axis split over the mesh; state and
    features are replicated. Shardings are pinned on inputs and outputs so no step recompiles.
    """
    layout = spec.layout()
    n_rel = len(spec.relations)
    opt = optax.adam(lr)
    key = (mcfg, spec.to_json(), float(lr), float(margin), tuple(d.id for d in mesh.devices.flat), mesh.axis_names)
    if key in _STEP_CACHE:
        return (*_STEP_CACHE[key], opt)
    repl, bsh = replicated_sharding(mesh), batch_sharding(mesh)
    terms = jax.vmap(lambda p, f, b: _sub_batch_terms(p, mcfg, layout, margin, f, b, n_rel), in_axes=(None, None, 0))

    def train_step(state, features, batch):
        _TRACES["train"] += 1  # runs only while tracing: counts compilations

        def loss_fn(params):
            t = terms(params, features, batch)
            return jnp.sum(t["hinge"]) / jnp.maximum(jnp.sum(t["count"]), 1.0)

        loss, grads = jax.value_and_grad(loss_fn)(state["params"])
        updates, opt_state = opt.update(grads, state["opt_state"], state["params"])
        new = {
            "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state,
            "step": state["step"] + 1,
        }
        return new, loss

    def eval_step(params, features, batch):
        _TRACES["eval"] += 1
        return jax.tree_util.tree_map(lambda x: jnp.sum(x, axis=0), terms(params, features, batch))

    donate = (0,) if jax.default_backend() != "cpu" else ()  # CPU cannot donate; avoids a warning per call
    train_j = jax.jit(train_step, in_shardings=(repl, repl, bsh), out_shardings=(repl, repl), donate_argnums=donate)
    eval_j = jax.jit(eval_step, in_shardings=(repl, repl, bsh), out_shardings=repl)
    _STEP_CACHE[key] = (train_j, eval_j)
    return train_j, eval_j, opt


def init_state(
    key: jax.Array, mcfg: HGNNConfig, spec: SamplingSpec, in_dim: int, opt: optax.GradientTransformation
) -> dict:
    """``{"params", "opt_state", "step"}`` (``step`` int32 ``[]``) of a fresh model for ``in_dim``-wide features."""
    params = init_hgnn(key, mcfg, spec, spec.node_types, in_dim)
    return {"params": params, "opt_state": opt.init(params), "step": jnp.zeros((), jnp.int32)}


# ---------------------------------------------------------------------------- batches
def stack_batches(batches: Sequence[PaddedBatch], keep: Sequence[bool] | None = None) -> dict[str, Any]:
    """Stacks sub-batches on a new leading axis (``as_dict`` layout); ``keep[i] = False`` zeroes
    sub-batch i's ``positive_mask`` (a filler that keeps the step's shape static)."""
    dicts = [b.as_dict() for b in batches]
    out = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *dicts)
    if keep is not None:
        out["positive_mask"] = out["positive_mask"] & np.asarray(keep, bool)[:, None]
    return out


class StepSampler:
    """Adapter presenting "one step = G stacked sampler batches" with the sampler's interface
    (``num_batches(epoch)``, ``batch(epoch, index)``), so the sampler ``Loader`` can prefetch steps.

    In a multi-process run each process samples only its ``local`` slice of the G sub-batches
    (``shard_batch`` assembles the global array in process order).
    """

    def __init__(self, sampler: TrainSampler, sub_batches: int, local: slice | None = None) -> None:
        self.sampler, self.g = sampler, int(sub_batches)
        self.local = local or slice(0, self.g)

    def num_batches(self, epoch: int) -> int:
        return math.ceil(self.sampler.num_batches(epoch) / self.g)

    def batch(self, epoch: int, index: int) -> dict[str, Any]:
        nb = self.sampler.num_batches(epoch)
        idx = list(range(index * self.g, (index + 1) * self.g))[self.local]
        return stack_batches([self.sampler.batch(epoch, i % nb) for i in idx], [i < nb for i in idx])


def group_eval_batches(
    batches: Sequence[PaddedBatch], sub_batches: int, local: slice | None = None
) -> list[dict[str, Any]]:
    """Evaluation batches grouped G per step; the last group is filled with masked copies."""
    if not batches:
        raise ValueError("validation: no evaluation batches (empty val_edges?)")
    out = []
    local = local or slice(0, sub_batches)
    for s in range(0, len(batches), sub_batches):
        grp = list(batches[s : s + sub_batches])
        keep = [True] * len(grp) + [False] * (sub_batches - len(grp))
        grp += [batches[0]] * (sub_batches - len(grp))
        out.append(stack_batches(grp[local], keep[local]))
    return out


# ---------------------------------------------------------------------------- setup and entry point
def _setup(
    graph: HeteroCSR,
    features: np.ndarray,
    val_edges: Mapping[Relation, np.ndarray],
    cfg: HGNNTrainConfig,
    make_sampler: SamplerFactory | None,
    t_start: float,
) -> tuple[TrainContext, optax.GradientTransformation, int, dict]:
    """A run's fixed parts: ``(ctx, optimizer, feature width d, random baseline metrics)``."""
    mesh = make_mesh(cfg.num_devices)
    n_dev = mesh.devices.size
    G = cfg.sub_batches or n_dev
    if G % n_dev:
        raise ValueError(f"sub_batches={G} must be a multiple of the {n_dev} mesh devices")
    n_proc, p_idx = jax.process_count(), jax.process_index()
    g_local = G // n_proc
    local = slice(p_idx * g_local, (p_idx + 1) * g_local)
    spec = build_spec(graph, cfg, G)
    feats_np = padded_features(features, graph.num_nodes)
    mcfg = cfg.model
    fdtype = jnp.bfloat16 if (mcfg.compute_dtype == "bfloat16" and cfg.features_in_compute_dtype) else jnp.float32
    feats = jax.device_put(jnp.asarray(feats_np, fdtype), replicated_sharding(mesh))
    train_step, eval_step, opt = make_steps(mcfg, spec, cfg.lr, cfg.margin, mesh)

    sampler = (make_sampler or numpy_sampler)(graph, spec, val_edges)
    if cfg.fused_sampling and n_proc > 1:
        raise ValueError("fused_sampling is single-process: each process would need its own slice of the step")
    fused = FusedStep(sampler, mesh, G, train_step) if cfg.fused_sampling else None
    val = cap_edges(val_edges, spec.relations, cfg.val_max_edges, cfg.seed)
    if sum(e.shape[0] for e in val.values()) == 0:
        raise ValueError(
            f"val_edges: no held-out edges for the relations in use {[relation_name(r) for r in spec.relations]}"
        )
    val_batches = list(sampler.edge_batches(val, cfg.seed))
    val_groups = group_eval_batches(val_batches, G, local)
    # the baseline over *all* sub-batches, so every process reports the same global figure
    baseline = random_baseline(
        val_groups if n_proc == 1 else group_eval_batches(val_batches, G),
        spec.layout(),
        graph.num_nodes,
        mcfg.out_dim,
        cfg.margin,
        cfg.seed,
        spec.relations,
    )
    ctx = TrainContext(
        cfg, spec, mesh, feats, train_step, eval_step, StepSampler(sampler, G, local), fused, val_groups, p_idx, t_start
    )
    return ctx, opt, feats_np.shape[1], baseline


def _initial_state(
    ctx: TrainContext,
    opt: optax.GradientTransformation,
    in_dim: int,
    init_params: Any | None,
    init_params_path: str | os.PathLike | None,
) -> LoopState:
    """The state of a fresh run: random initialisation, or the warm-start params with a fresh Adam state."""
    from twotower_hgnn.checkpoint import conform_params, load_params

    cfg = ctx.cfg
    state = init_state(jax_key(cfg.seed, "hgnn-init"), cfg.model, ctx.spec, in_dim, opt)
    if init_params_path is not None:
        init_params = load_params(init_params_path, like=state["params"])
    if init_params is not None:
        state = {**state, "params": conform_params(init_params, state["params"], "init_params")}
        state["opt_state"] = opt.init(state["params"])
    return LoopState(
        train=state, best_params=host_copy(state["params"]), stopper=EarlyStopping(cfg.patience, mode="max")
    )


def train_hgnn(
    graph: HeteroCSR,
    features: np.ndarray,
    val_edges: Mapping[Relation, np.ndarray],
    cfg: HGNNTrainConfig,
    workdir: str | os.PathLike | None,
    *,
    init_params: Any | None = None,
    init_params_path: str | os.PathLike | None = None,
    sampler_factory: SamplerFactory | None = None,
    fail_after_step: int | None = None,
    hooks: Sequence[Hook] = (),
    logdir: str | os.PathLike | None = None,
    name: str = "hgnn",
) -> HGNNTrainResult:
    """Trains the HGNN on ``graph`` (the training graph: held-out edges removed) and returns the
    best params by ``val_mrr``.

    Args:
      graph: training co-listening graph.
      features: float ``[N, d]`` node features (row i = global node i) or ``[N + 1, d]`` with a zero last row.
      val_edges: relation -> int ``[E, 2]`` held-out edges (``graph.holdout_edges``); they are also
        kept out of message passing (sampler ``holdout``).
      cfg: training config.
      workdir: checkpoints in ``workdir/checkpoints``, TensorBoard + ``metrics.jsonl`` in ``workdir/logs``
        (unless ``logdir`` is given). An existing checkpoint is resumed. None: no checkpoints, no logs.
      init_params / init_params_path: warm start (a params pytree, or an ``.npz`` from
        :func:`~twotower_hgnn.checkpoint.save_params`) instead of the random initialisation; ignored
        when a checkpoint is resumed. Shapes must match the config (error names the first mismatching leaf).
      sampler_factory: ``f(graph, spec, holdout) ->`` :class:`~sampler.factory.TrainSampler`; default
        the NumPy backend (``sampler.factory.sampler_factory(name)`` makes one by name). The seam for
        another sampling backend.
      fail_after_step: shorthand for ``hooks=[FailAfterStep(n)]`` (a test hook simulating a crash).
      hooks: more :class:`Hook` s, run after the built-in ones (validation, logging, checkpointing).
      logdir: where TensorBoard + ``metrics.jsonl`` go (the pipeline: ``<version>/tensorboard/hgnn``);
        tags: the vocabulary of :mod:`twotower_hgnn.tracking`.
      name: the console prefix of progress and of the final line (best validation MRR, stop reason).
    """
    t_start = time.perf_counter()
    traces0 = dict(_TRACES)
    workdir = Path(workdir).expanduser().resolve() if workdir is not None else None
    ctx, opt, in_dim, baseline = _setup(graph, features, val_edges, cfg, sampler_factory, t_start)
    s = _initial_state(ctx, opt, in_dim, init_params, init_params_path)
    ckpt = CheckpointHook(
        workdir / "checkpoints" if workdir is not None else None,
        cfg.ckpt_every_steps,
        cfg.max_to_keep,
        {"spec": ctx.spec.to_dict(), "config": cfg.to_dict(), "seed": cfg.seed},
    )
    resumed_from = ckpt.restore(s)
    s.train = jax.device_put(s.train, replicated_sharding(ctx.mesh))
    s.step = int(jax.device_get(s.train["step"]))  # host mirror: no device sync per step
    log_to = Path(logdir) if logdir is not None else (workdir / "logs" if workdir is not None else None)
    extra = [*hooks, *([FailAfterStep(fail_after_step)] if fail_after_step is not None else [])]
    run_loop(ctx, s, [ValidationHook(), LoggingHook(log_to, cfg, ctx.p_idx, name), ckpt, *extra])
    return HGNNTrainResult(
        params=s.best_params,
        last_params=host_copy(s.train["params"]),
        cfg=cfg,
        spec=ctx.spec,
        best_metric=float(s.stopper.best),
        best_epoch=s.best_epoch,
        history=s.history,
        baseline=baseline,
        epochs_run=s.epoch - 1,
        steps=s.step,
        wall_s=ctx.elapsed(s),
        stopped_early=s.stop_reason == "early_stopping",
        stop_reason=s.stop_reason,
        resumed_from=resumed_from,
        traces={k: _TRACES[k] - traces0[k] for k in _TRACES},
    )


# ---------------------------------------------------------------------------- moved names, re-exported
_FROM_CHECKPOINT = ("save_params", "load_params", "json_roundtrip")  # twotower_hgnn.checkpoint (orbax: loaded on use)


def __getattr__(name: str) -> Any:
    if name in _FROM_CHECKPOINT:
        from twotower_hgnn import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HGNNTrainConfig",
    "HGNNTrainResult",
    "InjectedFailure",
    "STOP_REASONS",
    "train_hgnn",
    "Hook",
    "FailAfterStep",
    "make_steps",
    "init_state",
    "build_spec",
    "padded_features",
    "save_params",  # noqa: F822  (loaded lazily by __getattr__)
    "load_params",  # noqa: F822
    "stack_batches",
    "StepSampler",
    "group_eval_batches",
    "resolve_sampler",
    "sampler_factory",
    "SAMPLER_BACKENDS",
]
