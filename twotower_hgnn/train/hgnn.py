"""HGNN training: jitted data-parallel step, validation, early stopping, checkpoints, exact resume.

**Step.** A step consumes ``G = sub_batches`` consecutive sampler batches (each a full
``PaddedBatch`` of ``batch_positives / G`` positives), stacked on a new leading axis that is split
over the mesh's ``data`` axis (``jax.jit`` + ``NamedSharding``; params, Adam state and the feature
table replicated — no ``pmap``, ENV.md). The model is ``vmap``-ed over that axis, so each device
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

**Resume.** Everything random after initialisation is a pure function of ``(seed, epoch, batch
index)`` (the sampler contract), so a checkpoint that stores params, Adam state, the step, the best
params, the early-stopping state and the sampler position ``(epoch, next step)`` resumes to exactly
the same trajectory: a run killed and resumed ends with the same params as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
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
from sampler.spec import Layout, SamplingSpec, make_spec
from twotower_hgnn import losses
from twotower_hgnn.models.hgnn import HGNNConfig, hgnn_forward, init_hgnn, padded_features
from twotower_hgnn.parallel import batch_sharding, block_on_cpu, make_mesh, replicated_sharding, shard_batch
from twotower_hgnn.rng import jax_key, np_rng

STOP_REASONS = ("max_epochs", "early_stopping", "max_steps", "max_time")


class InjectedFailure(RuntimeError):
    """Raised by ``train_hgnn(..., fail_after_step=n)`` (a test hook simulating a crash)."""


@dataclasses.dataclass
class HGNNTrainConfig:
    """Training hyper-parameters. Defaults follow the paper where it gives a value (Adam, lr 1e-3,
    batch 256, <= 50 epochs, patience 10); the rest are our documented choices (BUILD_NOTES.md, appendix D).

    Attributes:
      model: the HGNN config (dims, layers, activation, compute dtype).
      lr: Adam learning rate (paper: 1e-3).
      batch_positives: positive edges per optimisation step (paper: 256), split evenly over
        ``sub_batches``; per relation by the balance policy (sampler ``make_spec``).
      sub_batches: sampler batches per step (the leading axis sharded over devices); None = the
        number of mesh devices. Must be a multiple of the device count and divide batch_positives.
      fanouts: neighbours per hop (hop 0 first); one per layer at least. Our choice: (10, 5).
      negatives_per_type: node type -> negatives per positive; None = 4 spread over the types in use.
      margin: Delta of Eq. 4 (not in the paper; 0.2 is our choice for unit vectors).
      relations: relation names in use ("audiobook-podcast"...); None = all of the graph's.
      balance / ratios: the sampler's balance policy ("equal" = paper, "off" = ablation A).
      replace / exclude_supervision_edges / avoid_known_positives: passed to the sampling spec.
      max_epochs / patience: early stopping on ``val_mrr`` (paper: 50 / 10): stop after ``patience``
        validations without improvement (validations = epochs unless ``val_every_steps`` is set).
      val_every_steps: also validate (and checkpoint) every n global steps inside an epoch, so early
        stopping and the best model work within a step budget shorter than an epoch (0 = at epoch
        ends only).
      max_steps: optional step budget (total over resumes); the run validates and saves, then stops.
        Steps, epochs and early stopping are the reproducible budgets (same seed, same params).
      max_time_s: wall-clock safety net (total over resumes; None = none): where it ends a run the
        result depends on machine speed, so ``stop_reason`` is ``"max_time"`` and the trainer says so.
      val_max_edges: cap on held-out edges per relation used for validation (random, seeded); None = all.
      workers / prefetch / loader_mode: host sampler workers, prefetched steps, "thread" or
        "process" (sampler ``Loader``).
      fused_sampling: with the device sampler (``sampler_factory("device")``), sample each step's
        batches *inside* the jitted train step (``sampler.device.FusedSampler``): only the step index
        crosses from the host; one epoch order is uploaded per epoch. Single-process only.
      seed: initialisation, sampling and validation seed.
      ckpt_every_steps: also checkpoint every n steps mid-epoch (0 = only at epoch ends).
      max_to_keep: latest checkpoints kept (plus the best).
      num_devices: devices in the data mesh (None = all global devices).
      log_every_steps: training-loss scalars cadence; progress: console progress lines.
      features_in_compute_dtype: store the feature table in bf16 when computing in bf16 (halves
        gather bytes; master weights stay float32).
    """

    model: HGNNConfig = dataclasses.field(default_factory=HGNNConfig)
    lr: float = 1e-3
    batch_positives: int = 256
    sub_batches: int | None = None
    fanouts: tuple[int, ...] = (10, 5)
    negatives_per_type: Mapping[str, int] | None = None
    margin: float = 0.2
    relations: tuple[str, ...] | None = None
    balance: str = "equal"
    ratios: Mapping[str, float] | None = None
    replace: bool = False
    exclude_supervision_edges: bool = True
    avoid_known_positives: bool = False
    max_epochs: int = 50
    patience: int = 10
    max_steps: int | None = None
    max_time_s: float | None = None
    val_every_steps: int = 0
    val_max_edges: int | None = 20_000
    workers: int = 1
    prefetch: int = 4
    loader_mode: str = "thread"
    fused_sampling: bool = False
    seed: int = 0
    ckpt_every_steps: int = 0
    max_to_keep: int = 2
    num_devices: int | None = None
    log_every_steps: int = 20
    progress: bool = True
    features_in_compute_dtype: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):
            self.model = HGNNConfig.from_dict(self.model)
        self.fanouts = tuple(int(f) for f in self.fanouts)
        if self.relations is not None:
            self.relations = tuple(self.relations)
        checks = {
            "lr": self.lr > 0, "batch_positives": self.batch_positives >= 1, "margin": self.margin >= 0,
            "max_epochs": self.max_epochs >= 1, "patience": self.patience >= 0, "workers": self.workers >= 1,
            "prefetch": self.prefetch >= 1, "loader_mode": self.loader_mode in ("thread", "process"), "ckpt_every_steps": self.ckpt_every_steps >= 0,
            "fanouts": len(self.fanouts) >= self.model.num_layers and all(f > 0 for f in self.fanouts),
            "sub_batches": self.sub_batches is None or self.sub_batches >= 1,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
            "max_time_s": self.max_time_s is None or self.max_time_s > 0,
            "val_every_steps": self.val_every_steps >= 0,
            "val_max_edges": self.val_max_edges is None or self.val_max_edges >= 1,
            "log_every_steps": self.log_every_steps >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"HGNNTrainConfig: invalid {bad[0]}={getattr(self, bad[0])!r}"
                             + (f" (need >= {self.model.num_layers} positive fan-outs)" if bad[0] == "fanouts" else ""))

    @classmethod
    def cpu_small(cls, **overrides: Any) -> "HGNNTrainConfig":
        """The named small configuration for CPU runs (tests, the demo on tiny/small data): a
        64/32-wide 2-layer model, 64 positives per step, fan-out (5, 3), K = 4, 8 epochs,
        patience 3, 256 validation edges per relation. Not the paper's sizes (those are the
        defaults); chosen so a tiny run trains in seconds on 2 cores."""
        base = dict(
            model=HGNNConfig(hidden_dim=64, out_dim=32), batch_positives=64, fanouts=(5, 3), max_epochs=8,
            patience=3, val_max_edges=256, lr=5e-3, progress=False, log_every_steps=5,
        )
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["fanouts"] = list(self.fanouts)
        d["relations"] = None if self.relations is None else list(self.relations)
        d["negatives_per_type"] = None if self.negatives_per_type is None else dict(self.negatives_per_type)
        d["ratios"] = None if self.ratios is None else dict(self.ratios)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HGNNTrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"HGNNTrainConfig: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


@dataclasses.dataclass
class HGNNTrainResult:
    """Outcome of :func:`train_hgnn`.

    Attributes:
      params: the best params by ``val_mrr`` (float32 NumPy pytree).
      last_params: the params after the last step (what a resumed run must reproduce).
      cfg: the training config used.
      spec: the sampling spec (per sub-batch).
      best_metric: best ``val_mrr``; best_epoch: the epoch it was reached (0 = before training).
      history: one dict per validation (epoch 0 = initial params): epoch, step, train_loss,
        val_loss, val_mrr, val_hits1, val_loss/<relation>, wall_s, steps_per_s.
      baseline: the same validation metrics for random unit embeddings.
      epochs_run: completed epochs; steps: optimisation steps; wall_s: training wall time over resumes.
      stopped_early: True when early stopping ended the run; stop_reason: one of STOP_REASONS.
      resumed_from: checkpoint step restored at start (None = fresh run).
      traces: {"train": n, "eval": n} jit traces (= compilations) of the step functions during this call.
    """

    params: Any
    last_params: Any
    cfg: HGNNTrainConfig
    spec: SamplingSpec
    best_metric: float
    best_epoch: int
    history: list[dict]
    baseline: dict
    epochs_run: int
    steps: int
    wall_s: float
    stopped_early: bool
    stop_reason: str
    resumed_from: int | None
    traces: dict[str, int]


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
        graph, positives_per_batch=cfg.batch_positives // sub_batches, fanouts=cfg.fanouts,
        negatives_per_type=cfg.negatives_per_type, relations=rels, balance=cfg.balance, ratios=cfg.ratios,
        replace=cfg.replace, exclude_supervision_edges=cfg.exclude_supervision_edges,
        avoid_known_positives=cfg.avoid_known_positives, seed=cfg.seed,
    )


# ---------------------------------------------------------------------------- jitted steps
_TRACES: dict[str, int] = {"train": 0, "eval": 0}
_STEP_CACHE: dict[tuple, tuple[Callable, Callable]] = {}


def _sub_batch_terms(params, mcfg: HGNNConfig, layout: Layout, margin: float, features, b, n_rel: int):
    z = hgnn_forward(params, mcfg, features, b, layout)
    s_pos, s_neg = losses.triple_scores(z, layout.anchor, layout.positive, layout.negative)
    w = b["positive_mask"].astype(jnp.float32)
    h = losses.hinge(s_pos, s_neg, margin)
    per_pos = jnp.sum(h, axis=1) * w
    rank = losses.rank_of_positive(s_pos, s_neg)
    k = s_neg.shape[1]
    rel = jnp.asarray(layout.positive_relation)
    return {
        "hinge": jnp.sum(per_pos), "count": jnp.sum(w) * k, "pos": jnp.sum(w),
        "rr": jnp.sum(w / rank), "hits1": jnp.sum(w * (rank == 1)),
        "rel_hinge": jax.ops.segment_sum(per_pos, rel, n_rel), "rel_count": jax.ops.segment_sum(w * k, rel, n_rel),
    }


def make_steps(mcfg: HGNNConfig, spec: SamplingSpec, lr: float, margin: float, mesh) -> tuple[Callable, Callable, optax.GradientTransformation]:
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
        new = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state, "step": state["step"] + 1}
        return new, loss

    def eval_step(params, features, batch):
        _TRACES["eval"] += 1
        return jax.tree_util.tree_map(lambda x: jnp.sum(x, axis=0), terms(params, features, batch))

    donate = (0,) if jax.default_backend() != "cpu" else ()  # CPU cannot donate; avoids a warning per call
    train_j = jax.jit(train_step, in_shardings=(repl, repl, bsh), out_shardings=(repl, repl), donate_argnums=donate)
    eval_j = jax.jit(eval_step, in_shardings=(repl, repl, bsh), out_shardings=repl)
    _STEP_CACHE[key] = (train_j, eval_j)
    return train_j, eval_j, opt


def init_state(key: jax.Array, mcfg: HGNNConfig, spec: SamplingSpec, in_dim: int, opt: optax.GradientTransformation) -> dict:
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

    def __init__(self, sampler: Any, sub_batches: int, local: slice | None = None) -> None:
        self.sampler, self.g = sampler, int(sub_batches)
        self.local = local or slice(0, self.g)

    def num_batches(self, epoch: int) -> int:
        return math.ceil(self.sampler.num_batches(epoch) / self.g)

    def batch(self, epoch: int, index: int) -> dict[str, Any]:
        nb = self.sampler.num_batches(epoch)
        idx = list(range(index * self.g, (index + 1) * self.g))[self.local]
        return stack_batches([self.sampler.batch(epoch, i % nb) for i in idx], [i < nb for i in idx])


def group_eval_batches(batches: Sequence[PaddedBatch], sub_batches: int, local: slice | None = None) -> list[dict[str, Any]]:
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


def cap_edges(val_edges: Mapping[Relation, np.ndarray], relations: Sequence[Relation], cap: int | None, seed: int) -> dict[Relation, np.ndarray]:
    """Held-out edges of the relations in use, at most ``cap`` per relation (seeded uniform subset)."""
    out = {}
    for r in relations:
        e = np.asarray(val_edges.get(r, np.zeros((0, 2), np.int64)))
        if cap is not None and e.shape[0] > cap:
            sel = np_rng(seed, "val-cap", relation_name(r)).choice(e.shape[0], cap, replace=False)
            e = e[np.sort(sel)]
        out[r] = e
    return out


def summarize(sums: Mapping[str, np.ndarray], relations: Sequence[Relation]) -> dict[str, float]:
    """Eval sums -> metrics: val_loss, val_mrr, val_hits1, val_loss/<relation>."""
    pos = max(float(sums["pos"]), 1.0)
    out = {
        "val_loss": float(sums["hinge"]) / max(float(sums["count"]), 1.0),
        "val_mrr": float(sums["rr"]) / pos,
        "val_hits1": float(sums["hits1"]) / pos,
    }
    for i, r in enumerate(relations):
        out[f"val_loss/{relation_name(r)}"] = float(sums["rel_hinge"][i]) / max(float(sums["rel_count"][i]), 1.0)
    return out


def random_baseline(batches: Sequence[dict], layout: Layout, num_nodes: int, dim: int, margin: float, seed: int,
                    relations: Sequence[Relation]) -> dict[str, float]:
    """Validation metrics of random unit embeddings (one fixed random vector per node)."""
    emb = np_rng(seed, "random-baseline").normal(size=(num_nodes + 1, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    tot: dict[str, Any] = {}
    for grp in batches:
        for g in range(grp["positive_mask"].shape[0]):
            ids = np.concatenate([grp["seeds"][t][g] for t in layout.seeds_per_type])
            z = emb[ids]
            s_pos, s_neg = (np.asarray(x) for x in losses.triple_scores(z, layout.anchor, layout.positive, layout.negative))
            w = grp["positive_mask"][g].astype(np.float64)
            h = np.maximum(0.0, s_neg - s_pos[:, None] + margin)
            rank = 1 + np.sum(s_neg >= s_pos[:, None], axis=1)
            k = s_neg.shape[1]
            part = {
                "hinge": np.sum(h.sum(1) * w), "count": w.sum() * k, "pos": w.sum(), "rr": np.sum(w / rank),
                "hits1": np.sum(w * (rank == 1)),
                "rel_hinge": np.bincount(layout.positive_relation, h.sum(1) * w, len(relations)),
                "rel_count": np.bincount(layout.positive_relation, w * k, len(relations)),
            }
            tot = part if not tot else {k2: tot[k2] + part[k2] for k2 in tot}
    return summarize(tot, relations)


def evaluate(eval_step: Callable, params, features, groups: Sequence[dict], mesh, relations) -> dict[str, float]:
    tot = None
    for grp in groups:
        sums = eval_step(params, features, shard_batch(grp, mesh))
        block_on_cpu(sums)
        tot = sums if tot is None else jax.tree_util.tree_map(jnp.add, tot, sums)
    return summarize(jax.device_get(tot), relations)


# ---------------------------------------------------------------------------- the loop
def _checkpointer(workdir: Path | None, cfg: HGNNTrainConfig):
    if workdir is None:
        return None
    from twotower_hgnn.checkpoint import Checkpointer

    return Checkpointer(workdir / "checkpoints", max_to_keep=cfg.max_to_keep, best_metric_mode="max")


def _make_sampler(graph: HeteroCSR, spec: SamplingSpec, holdout: Mapping[Relation, np.ndarray]):
    from sampler.numpy_backend import NumpySampler

    return NumpySampler(graph, spec, holdout={r: e for r, e in holdout.items() if r in graph.edges})


def _make_device_sampler(graph: HeteroCSR, spec: SamplingSpec, holdout: Mapping[Relation, np.ndarray]):
    from sampler.device import DeviceSampler

    return DeviceSampler(graph, spec, holdout={r: e for r, e in holdout.items() if r in graph.edges})


SAMPLER_BACKENDS = ("auto", "numpy", "device")


def resolve_sampler(choice: str) -> str:
    """``"auto"`` -> ``"device"`` when jax's default backend is an accelerator, else ``"numpy"``."""
    if choice not in SAMPLER_BACKENDS:
        raise ValueError(f"sampler backend {choice!r} is not one of {SAMPLER_BACKENDS}")
    if choice != "auto":
        return choice
    return "device" if jax.default_backend() in ("gpu", "tpu") else "numpy"


def sampler_factory(choice: str) -> Callable[..., Any]:
    """``train_hgnn``'s ``sampler_factory`` for ``--sampler=auto|numpy|device``: the host NumPy
    backend or the jitted device backend (CSR resident on the accelerator), same spec and batches."""
    return _make_device_sampler if resolve_sampler(choice) == "device" else _make_sampler


def _loader(step_sampler: StepSampler, epoch: int, start: int, cfg: HGNNTrainConfig, put: Callable):
    from sampler.loader import Loader

    return Loader(step_sampler, epoch, start=start, workers=cfg.workers, prefetch=cfg.prefetch, mode=cfg.loader_mode,
                  device_put=put)


class _Indices:
    """Step indices ``start .. stop-1`` with the loader's ``close()`` (the fused path's "loader")."""

    def __init__(self, start: int, stop: int) -> None:
        self._it = iter(range(start, stop))

    def __iter__(self):
        return self._it

    def close(self) -> None:
        pass


class _FusedStep:
    """The train step with its batches sampled on the device inside the same jit."""

    def __init__(self, sampler: Any, spec: SamplingSpec, mesh, sub_batches: int, train_step: Callable) -> None:
        from sampler.device import DeviceGraph, FusedSampler

        self.fused = FusedSampler(spec, sampler.host.edge_counts, mesh=mesh, sub_batches=sub_batches)
        # every device samples its own sub-batches against its replica of the CSR
        self.dgraph = DeviceGraph.from_host(sampler.graph, relations=spec.relations, sharding=replicated_sharding(mesh))
        self.seed = spec.seed
        fused = self.fused
        self.step = jax.jit(lambda st, f, g, o, j, k: train_step(st, f, fused.step(g, o, j, k)))

    def epoch_runner(self, epoch: int, feats: Any) -> Callable:
        from sampler.device import epoch_key

        order = self.fused.place_order(self.fused.host_order(epoch))  # the NumPy backend's draw, once per epoch
        key = epoch_key(self.seed, epoch)
        return lambda st, j: self.step(st, feats, self.dgraph, order, np.int32(j), key)


def _fused_step(sampler: Any, spec: SamplingSpec, mesh, sub_batches: int, train_step: Callable) -> _FusedStep:
    if not hasattr(sampler, "dgraph"):
        raise ValueError("fused_sampling needs the device sampler backend (sampler_factory('device') / --sampler=device)")
    return _FusedStep(sampler, spec, mesh, sub_batches, train_step)


def _host(tree: Any) -> Any:
    """A host (NumPy) copy: survives buffer donation of the device state."""
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def train_hgnn(
    graph: HeteroCSR,
    features: np.ndarray,
    val_edges: Mapping[Relation, np.ndarray],
    cfg: HGNNTrainConfig,
    workdir: str | os.PathLike | None,
    *,
    init_params: Any | None = None,
    init_params_path: str | os.PathLike | None = None,
    sampler_factory: Callable[..., Any] | None = None,
    fail_after_step: int | None = None,
) -> HGNNTrainResult:
    """Trains the HGNN on ``graph`` (the training graph: held-out edges removed) and returns the
    best params by ``val_mrr``.

    Args:
      graph: training co-listening graph.
      features: float ``[N, d]`` node features (row i = global node i) or ``[N + 1, d]`` with a zero last row.
      val_edges: relation -> int ``[E, 2]`` held-out edges (``graph.holdout_edges``); they are also
        kept out of message passing (sampler ``holdout``).
      cfg: training config.
      workdir: checkpoints in ``workdir/checkpoints``, TensorBoard + ``metrics.jsonl`` in ``workdir/logs``.
        An existing checkpoint is resumed. None: no checkpoints, no logs.
      init_params / init_params_path: warm start (a params pytree, or an ``.npz`` from
        :func:`save_params`) instead of the random initialisation; ignored when a checkpoint is
        resumed. Shapes must match the config (error names the first mismatching leaf).
      sampler_factory: ``f(graph, spec, holdout) -> sampler`` with the ``NumpySampler`` interface
        (``num_batches``, ``batch(epoch, i)`` pure in (seed, epoch, i), ``edge_batches``); default
        ``NumpySampler``. The seam for another sampling backend.
      fail_after_step: test hook; raise :class:`InjectedFailure` once this global step is done
        (after its checkpoint, if one is due).
    """
    from twotower_hgnn.tracking import EarlyStopping, MetricWriter, Progress

    t_start = time.perf_counter()
    traces0 = dict(_TRACES)
    workdir = Path(workdir).expanduser().resolve() if workdir is not None else None
    mesh = make_mesh(cfg.num_devices)
    n_dev = mesh.devices.size
    G = cfg.sub_batches or n_dev
    if G % n_dev:
        raise ValueError(f"sub_batches={G} must be a multiple of the {n_dev} mesh devices")
    n_proc, p_idx = jax.process_count(), jax.process_index()
    g_local = G // n_proc
    local = slice(p_idx * g_local, (p_idx + 1) * g_local)
    spec = build_spec(graph, cfg, G)
    layout = spec.layout()
    feats_np = padded_features(features, graph.num_nodes)
    mcfg = cfg.model
    fdtype = jnp.bfloat16 if (mcfg.compute_dtype == "bfloat16" and cfg.features_in_compute_dtype) else jnp.float32
    repl = replicated_sharding(mesh)
    feats = jax.device_put(jnp.asarray(feats_np, fdtype), repl)
    train_step, eval_step, opt = make_steps(mcfg, spec, cfg.lr, cfg.margin, mesh)

    sampler = (sampler_factory or _make_sampler)(graph, spec, val_edges)
    steps_src = StepSampler(sampler, G, local)
    if cfg.fused_sampling and n_proc > 1:
        raise ValueError("fused_sampling is single-process: each process would need its own slice of the step")
    fused = _fused_step(sampler, spec, mesh, G, train_step) if cfg.fused_sampling else None
    val = cap_edges(val_edges, spec.relations, cfg.val_max_edges, cfg.seed)
    if sum(e.shape[0] for e in val.values()) == 0:
        raise ValueError(f"val_edges: no held-out edges for the relations in use {[relation_name(r) for r in spec.relations]}")
    val_batches = list(sampler.edge_batches(val, cfg.seed))
    val_groups = group_eval_batches(val_batches, G, local)
    # the baseline over *all* sub-batches, so every process reports the same global figure
    baseline = random_baseline(val_groups if n_proc == 1 else group_eval_batches(val_batches, G), layout,
                               graph.num_nodes, mcfg.out_dim, cfg.margin, cfg.seed, spec.relations)

    state = init_state(jax_key(cfg.seed, "hgnn-init"), mcfg, spec, feats_np.shape[1], opt)
    if init_params_path is not None:
        init_params = load_params(init_params_path, like=state["params"])
    if init_params is not None:
        state = {**state, "params": _conform(init_params, state["params"], "init_params")}
        state["opt_state"] = opt.init(state["params"])
    best_params = _host(state["params"])
    stopper = EarlyStopping(cfg.patience, mode="max")
    history: list[dict] = []
    epoch, start, epoch_loss, epoch_steps, wall_prev = 1, 0, 0.0, 0, 0.0
    best_epoch, resumed_from = 0, None
    ckpt = _checkpointer(workdir, cfg)
    if ckpt is not None and ckpt.latest_step() is not None:
        restored, meta = ckpt.restore({"state": _host(state), "best_params": best_params})
        if meta.get("spec") != json_roundtrip(spec.to_dict()):
            raise ValueError(f"checkpoint in {ckpt.directory} was written for a different sampling spec; "
                             "use a new workdir or the same config")
        state, best_params = _host(restored["state"]), _host(restored["best_params"])
        stopper.load_state_dict(meta["early_stopping"])
        history, epoch, start = list(meta["history"]), int(meta["epoch"]), int(meta["next_step"])
        epoch_loss, epoch_steps, wall_prev = float(meta["epoch_loss"]), int(meta["epoch_steps"]), float(meta["wall_s"])
        best_epoch, resumed_from = int(meta["best_epoch"]), int(ckpt.latest_step())
    state = jax.device_put(state, repl)
    step = int(jax.device_get(state["step"]))  # host mirror: no device sync per step
    writer = MetricWriter(workdir / "logs", enabled=p_idx == 0) if workdir is not None else None

    def elapsed() -> float:
        return wall_prev + time.perf_counter() - t_start

    def save(metric: float | None) -> None:
        if ckpt is None:
            return
        meta = {"epoch": epoch, "next_step": start, "epoch_loss": epoch_loss, "epoch_steps": epoch_steps,
                "early_stopping": stopper.state_dict(), "history": history, "wall_s": elapsed(),
                "best_epoch": best_epoch, "spec": spec.to_dict(), "config": cfg.to_dict(), "seed": cfg.seed}
        # Host copies: the replicated state is a global array spanning every process, which orbax
        # cannot save as such (multi-process CPU run: "input arrays must have one shard each").
        ckpt.save(step, {"state": _host(state), "best_params": best_params}, meta, metric=metric, overwrite=True)

    def validate(ep: int, train_loss: float | None, steps_per_s: float | None) -> dict:
        nonlocal best_params, best_epoch
        m = evaluate(eval_step, state["params"], feats, val_groups, mesh, spec.relations)
        rec = {"epoch": ep, "step": step, "train_loss": train_loss, **m, "wall_s": elapsed(), "steps_per_s": steps_per_s}
        history.append(rec)
        if stopper.update(m["val_mrr"]):
            best_params, best_epoch = _host(state["params"]), ep
        if writer is not None:
            writer.scalars({k: v for k, v in rec.items() if k not in ("epoch", "step") and v is not None}, step)
        return rec

    if not history:  # epoch 0: the untrained model, the reference for "validation loss went down"
        validate(0, None, None)
        save(history[-1]["val_mrr"])

    reason = None
    prog = Progress(None, desc="hgnn", enabled=cfg.progress and p_idx == 0)
    put = lambda b: shard_batch(b, mesh)  # noqa: E731 (runs in the loader threads)
    try:
        while reason is None:
            if epoch > cfg.max_epochs:
                reason = "max_epochs"
                break
            if stopper.should_stop:
                reason = "early_stopping"
                break
            if cfg.max_steps is not None and step >= cfg.max_steps:  # e.g. resumed with a spent budget
                reason = "max_steps"
                break
            if cfg.max_time_s is not None and elapsed() >= cfg.max_time_s:
                reason = "max_time"
                break
            n_steps = steps_src.num_batches(epoch)
            t_ep, n_here, done_here, loss_acc, budget_hit = time.perf_counter(), 0, 0, None, None
            if fused is None:
                loader = _loader(steps_src, epoch, start, cfg, put)
                run_step = lambda st, b: train_step(st, feats, b)  # noqa: E731
            else:  # the step's batches are sampled inside its jit; only the step index crosses
                loader = _Indices(start, n_steps)
                run_step = fused.epoch_runner(epoch, feats)
            try:
                for batch in loader:
                    state, loss = run_step(state, batch)
                    block_on_cpu(loss)
                    loss_acc = loss if loss_acc is None else loss_acc + loss
                    step, start, done_here, n_here = step + 1, start + 1, done_here + 1, n_here + 1
                    if step % cfg.log_every_steps == 0:
                        lv = float(loss)
                        prog.update(cfg.log_every_steps, epoch=epoch, loss=lv)
                        if writer is not None:
                            writer.scalars({"train/loss": lv}, step)
                    if cfg.max_steps is not None and step >= cfg.max_steps:
                        budget_hit = "max_steps"
                    elif cfg.max_time_s is not None and elapsed() >= cfg.max_time_s:
                        budget_hit = "max_time"
                    if budget_hit or start >= n_steps:
                        break
                    if cfg.val_every_steps and step % cfg.val_every_steps == 0:  # mid-epoch validation
                        epoch_loss, epoch_steps = epoch_loss + float(loss_acc), epoch_steps + done_here
                        loss_acc, done_here = None, 0
                        rec = validate(epoch, epoch_loss / max(epoch_steps, 1), n_here / max(time.perf_counter() - t_ep, 1e-9))
                        save(rec["val_mrr"])
                        if stopper.should_stop:
                            budget_hit = "early_stopping"
                            break
                    elif cfg.ckpt_every_steps and step % cfg.ckpt_every_steps == 0:
                        epoch_loss, epoch_steps = epoch_loss + float(loss_acc), epoch_steps + done_here
                        loss_acc, done_here = None, 0
                        save(None)
                    if fail_after_step is not None and step >= fail_after_step:
                        raise InjectedFailure(f"injected failure after step {step}")
            finally:
                loader.close()
            sps = n_here / max(time.perf_counter() - t_ep, 1e-9) if n_here else None
            if loss_acc is not None:
                epoch_loss, epoch_steps = epoch_loss + float(loss_acc), epoch_steps + done_here
            # validate unless this step was just validated (early stopping inside the epoch)
            rec = history[-1] if history and history[-1]["step"] == step else validate(epoch, epoch_loss / max(epoch_steps, 1), sps)
            if start >= n_steps:  # epoch complete: the next position is the start of the next epoch
                epoch, start, epoch_loss, epoch_steps = epoch + 1, 0, 0.0, 0
            save(rec["val_mrr"])
            reason = budget_hit
            if reason == "max_time" and p_idx == 0:
                print(f"[hgnn] stopped by the wall-clock safety net max_time_s={cfg.max_time_s} at step {step} "
                      "(not reproducible: set step/epoch budgets)", flush=True)
            if fail_after_step is not None and step >= fail_after_step:
                raise InjectedFailure(f"injected failure after step {step}")
    finally:
        prog.close()
        if writer is not None:
            writer.close()
        if ckpt is not None:
            ckpt.close()
    return HGNNTrainResult(
        params=best_params, last_params=_host(state["params"]), cfg=cfg, spec=spec, best_metric=float(stopper.best), best_epoch=best_epoch,
        history=history, baseline=baseline, epochs_run=epoch - 1, steps=step, wall_s=elapsed(),
        stopped_early=reason == "early_stopping", stop_reason=reason, resumed_from=resumed_from,
        traces={k: _TRACES[k] - traces0[k] for k in _TRACES},
    )


def _conform(tree: Any, like: Any, what: str) -> Any:
    """``tree`` as float32 arrays with the structure of ``like``; ValueError naming the first mismatch."""
    flat_like, treedef = jax.tree_util.tree_flatten_with_path(like)
    got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    leaves = []
    for k, v in flat_like:
        key = jax.tree_util.keystr(k)
        if key not in got:
            raise ValueError(f"{what}: missing leaf {key} (has {sorted(got)[:6]}...)")
        if np.shape(got[key]) != np.shape(v):
            raise ValueError(f"{what}: leaf {key} has shape {np.shape(got[key])}, the config needs {np.shape(v)}")
        leaves.append(jnp.asarray(got[key], jnp.float32))
    if len(got) != len(flat_like):
        extra = sorted(set(got) - {jax.tree_util.keystr(k) for k, _ in flat_like})
        raise ValueError(f"{what}: unexpected leaf {extra[0]} (trained with another config?)")
    return jax.tree_util.tree_unflatten(treedef, leaves)


def save_params(path: str | os.PathLike, params: Any) -> None:
    """Params as one ``.npz`` keyed by pytree path (``['layer_0']['self']['audiobook']``), atomically."""
    import io

    from twotower_hgnn.io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **{jax.tree_util.keystr(k): np.asarray(v, np.float32) for k, v in jax.tree_util.tree_flatten_with_path(params)[0]})
    atomic_write_bytes(path, buf.getvalue())


def load_params(path: str | os.PathLike, like: Any) -> Any:
    """Params saved by :func:`save_params` (or any npz keyed by ``keystr`` paths), shaped like ``like``."""
    with np.load(path, allow_pickle=False) as z:
        flat = {k: z[k] for k in z.files}
    flat_like, treedef = jax.tree_util.tree_flatten_with_path(like)
    tree = jax.tree_util.tree_unflatten(treedef, [flat.get(jax.tree_util.keystr(k), np.zeros((0,))) for k, _ in flat_like])
    missing = [jax.tree_util.keystr(k) for k, _ in flat_like if jax.tree_util.keystr(k) not in flat]
    if missing:
        raise ValueError(f"{path}: no array for leaf {missing[0]} (file has {sorted(flat)[:6]}...)")
    if len(flat) != len(flat_like):
        raise ValueError(f"{path}: {len(flat)} arrays but the config has {len(flat_like)} leaves")
    return _conform(tree, like, str(path))


def json_roundtrip(obj: Any) -> Any:
    """What ``obj`` looks like after a JSON save/load (tuples become lists)."""
    import json

    return json.loads(json.dumps(obj))


__all__ = [
    "HGNNTrainConfig",
    "HGNNTrainResult",
    "InjectedFailure",
    "train_hgnn",
    "make_steps",
    "init_state",
    "build_spec",
    "padded_features",
    "save_params",
    "load_params",
    "stack_batches",
    "StepSampler",
    "group_eval_batches",
]
