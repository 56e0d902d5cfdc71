"""The device (jitted JAX) sampling backend against the NumPy backend, on XLA:CPU.

Both backends run on the same small power-law graph and must satisfy the same invariants
(``tests/sampler_invariants.py``), draw from the same distributions (chi-square against the uniform
expectation for each, and a two-sample test between them), be deterministic for a fixed key/seed,
and never recompile across batches and epochs.
"""

from __future__ import annotations

import functools
import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from sampler import device as dev
from sampler.batch import PaddedBatch
from sampler.csr import HeteroCSR
from sampler.neighbors import build_dir_adj, make_holes, sample_rows as np_sample_rows
from sampler.numpy_backend import NumpySampler
from sampler.spec import SpecError, make_spec
from sampler.synthetic import powerlaw_edges
from tests.multidevice import run_with_devices
from tests.sampler_invariants import batch_supervision_edges, check_batch_invariants

AB, PC = "audiobook", "podcast"
N_AB, N_PC, N_ISO = 70, 240, 5  # the last N_ISO nodes of each type are isolated
P_ALPHA = 1e-3  # significance for the distribution tests (fixed seeds: deterministic outcomes)


def small_graph(seed: int = 1) -> HeteroCSR:
    rng = np.random.default_rng(seed)
    na, npc = N_AB - N_ISO, N_PC - N_ISO
    pa, pp = rng.permutation(na), rng.permutation(npc)
    e_aa = powerlaw_edges(rng, na, na, 160, same_type=True, alpha=2.0, perm_a=pa, perm_b=pa)
    e_ap = powerlaw_edges(rng, na, npc, 600, same_type=False, alpha=2.0, perm_a=pa, perm_b=pp)
    e_pp = powerlaw_edges(rng, npc, npc, 1800, same_type=True, alpha=2.0, perm_a=pp, perm_b=pp)
    e_ap[:, 1] += N_AB
    e_pp += N_AB
    return HeteroCSR.from_edges((AB, PC), {AB: N_AB, PC: N_PC}, {(AB, AB): e_aa, (AB, PC): e_ap, (PC, PC): e_pp})


def _holdout(g: HeteroCSR) -> dict:
    return {r: np.asarray(e)[::37][:4] for r, e in g.edges.items()}


@pytest.fixture(scope="module")
def setup():
    g = small_graph()
    hold = _holdout(g)
    spec = make_spec(g, positives_per_batch=24, fanouts=(4, 3), seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the holdout edges are still in g: both backends warn and drop them
        ns = NumpySampler(g, spec, holdout=hold)
        ds = dev.DeviceSampler(g, spec, holdout=hold)
    return g, hold, spec, ns, ds


def _np(batch: PaddedBatch) -> PaddedBatch:
    return PaddedBatch.from_dict(jax.tree_util.tree_map(np.asarray, batch.as_dict()))


# ------------------------------------------------------------------------------------------------ invariants
def test_both_backends_satisfy_the_invariants(setup):
    g, hold, spec, ns, ds = setup
    assert ds.num_batches(0) == ns.num_batches(0) and ds.graph.num_edges((AB, AB)) == ns.graph.num_edges((AB, AB))
    excluded = {}
    for name, s in (("numpy", ns), ("device", ds)):
        excluded[name] = 0
        for epoch, i in ((0, 0), (0, 1), (1, ds.num_batches(1) - 1)):
            b = s.batch(epoch, i)
            if name == "device":
                leaves = jax.tree_util.tree_leaves(b.as_dict())
                assert all(isinstance(x, jax.Array) for x in leaves)
                b = _np(b)
            out = check_batch_invariants(s.graph, spec, b, forbidden_edges=hold)
            excluded[name] += out["excluded_pairs"]
            # the epoch plan is the NumPy backend's: same supervision edges, same batches
            sup = batch_supervision_edges(spec, b)
            for r, e in ns.batch_edges(epoch, i).items():
                np.testing.assert_array_equal(np.sort(sup[r], axis=1), np.sort(e, axis=1), err_msg=f"{name} {r}")
    # the exclusion path was exercised (supervision edges are graph edges of the batch's rows)
    assert excluded["device"] > 0 and excluded["numpy"] > 0


def test_large_fanout_takes_all_remaining_neighbours_and_avoids_known_positives():
    # Fan-out 48 is above most degrees: those rows keep all their neighbours minus the batch's
    # supervision edges (exact removal; the checker counts valid slots per row). Negatives avoid the
    # anchor's known neighbours (the checker asserts it).
    g = small_graph(seed=4)
    spec = make_spec(g, positives_per_batch=12, fanouts=(48,), seed=2, avoid_known_positives=True)
    ds = dev.DeviceSampler(g, spec)
    deg = np.diff(g.adj[(PC, PC)].indptr)
    assert (deg > 48).any() and ((deg > 0) & (deg < 48)).any()  # both regimes present
    for i in range(3):
        out = check_batch_invariants(g, spec, _np(ds.batch(0, i)))
        assert out["excluded_pairs"] >= spec.num_positives  # every supervision edge was in its rows


def test_evaluation_edge_batches_match_numpy_layout(setup):
    g, hold, spec, ns, ds = setup
    n_dev = list(ds.edge_batches(hold, seed=3))
    n_np = list(ns.edge_batches(hold, seed=3))
    assert len(n_dev) == len(n_np) == 1
    bd, bn = _np(n_dev[0]), n_np[0]
    np.testing.assert_array_equal(bd.positive_mask, bn.positive_mask)  # same filler rows
    assert 0 < bd.positive_mask.sum() < spec.num_positives
    np.testing.assert_array_equal(
        np.concatenate([bd.seeds[t] for t in spec.node_types])[spec.layout().anchor],
        np.concatenate([bn.seeds[t] for t in spec.node_types])[spec.layout().anchor],
    )
    check_batch_invariants(ds.graph, spec, bd, forbidden_edges=hold, supervision_in_graph=False)


def test_determinism_and_no_recompilation(setup):
    g, hold, spec, ns, ds = setup
    a = _np(ds.batch(1, 2))
    for _ in range(2):
        for epoch in (0, 1, 2):
            for i in range(min(3, ds.num_batches(epoch))):
                ds.batch(epoch, i)
    b = _np(ds.batch(1, 2))
    jax.tree_util.tree_map(np.testing.assert_array_equal, a.as_dict(), b.as_dict())
    c = _np(ds.batch(1, 3))
    assert any(
        not np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a.nbrs), jax.tree_util.tree_leaves(c.nbrs))
    )
    assert ds.traces["batch"] == 1, f"the batch function was traced {ds.traces} times"
    list(ds.edge_batches(hold, seed=0))
    list(ds.edge_batches(hold, seed=1))
    assert ds.traces["eval"] == 1
    # a fresh sampler with the same seed gives the same batch: a pure function of (seed, epoch, index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds2 = dev.DeviceSampler(g, spec, holdout=hold)
    d = _np(ds2.batch(1, 2))
    jax.tree_util.tree_map(np.testing.assert_array_equal, a.as_dict(), d.as_dict())


# ------------------------------------------------------------------------------------------------ distributions
def _star_graph(deg: int) -> HeteroCSR:
    """Audiobook 0 has ``deg`` podcast neighbours; audiobook 1 has 2; audiobook 2 is isolated."""
    n_pc = deg + 2
    e = [[0, 3 + j] for j in range(deg)] + [[1, 3], [1, 4]]
    return HeteroCSR.from_edges((AB, PC), {AB: 3, PC: n_pc}, {(AB, PC): np.array(e)})


def _subset_counts(ids: np.ndarray, mask: np.ndarray, universe: list[int], size: int) -> np.ndarray:
    """Histogram of the sampled *sets* over all ``size``-subsets of ``universe``."""
    subsets = list(itertools.combinations(sorted(universe), size))
    index = {s: i for i, s in enumerate(subsets)}
    out = np.zeros(len(subsets), np.int64)
    for row, m in zip(ids, mask):
        out[index[tuple(sorted(row[m].tolist()))]] += 1
    return out


def test_neighbour_sets_uniform_for_both_backends_and_indistinguishable():
    deg, f, R = 7, 3, 7000
    g = _star_graph(deg)
    d = (AB, PC)
    dg = dev.DeviceGraph.from_host(g)
    rows = np.zeros(R, np.int32)  # the same row R times: R independent draws in one call
    excl_pair = np.array([[0, 3 + 2]], np.int32)  # remove neighbour 5: 6 remain, C(6, 3) = 20 sets
    universe = [3 + j for j in range(deg) if j != 2]

    @functools.partial(jax.jit, static_argnums=4)
    def draw(dg, rows, key, pairs, per_row):
        table = dev.exclusion_table(
            dg, dg.rows_of(d, pairs[:, 0]), pairs[:, 1], jnp.ones(pairs.shape[0], bool), per_row
        )
        return dev.sample_rows(dg, d, rows, f, key, table)

    ids_d, m_d = map(np.asarray, draw(dg, rows, jax.random.key(0), excl_pair, True))
    # the two ways a row finds its removed entries (per-row tables / binary search) agree exactly
    ids_s, m_s = map(np.asarray, draw(dg, rows[:500], jax.random.key(0), excl_pair, False))
    ids_t, m_t = map(np.asarray, draw(dg, rows[:500], jax.random.key(0), excl_pair, True))
    np.testing.assert_array_equal(ids_s, ids_t)
    adj = build_dir_adj(g, d)
    holes = make_holes(adj, excl_pair[:, 0], excl_pair[:, 1])
    ids_n, m_n = np_sample_rows(adj, rows, f, np.random.default_rng(0), pad_id=g.pad_id, holes=holes)
    counts = {}
    for name, ids, m in (("device", ids_d, m_d), ("numpy", ids_n, m_n)):
        assert (m.sum(1) == f).all() and not (ids == 5).any()
        counts[name] = _subset_counts(ids, m, universe, f)
        chi = stats.chisquare(counts[name])
        assert chi.pvalue > P_ALPHA, (name, chi, counts[name])
    two = stats.chi2_contingency(np.stack([counts["device"], counts["numpy"]]))
    assert two.pvalue > P_ALPHA, (two, counts)
    # a control: the test has power — a biased sampler (always the first f remaining neighbours) fails
    biased = np.tile(np.array(universe[:f]), (R, 1))
    assert stats.chisquare(_subset_counts(biased, np.ones_like(biased, bool), universe, f)).pvalue < 1e-12


def test_degree_below_fanout_padding_slots_follow_the_numpy_convention():
    # Row 1 has 2 neighbours, fan-out 4: both taken, 2 padding slots; where the padding lands follows
    # the same (Floyd) distribution in both backends; row 2 (isolated) and pad_id rows are all padding.
    g = _star_graph(5)
    d = (AB, PC)
    dg = dev.DeviceGraph.from_host(g)
    R = 3000
    rows = np.concatenate([np.full(R, 1), [2, g.pad_id]]).astype(np.int32)
    ids_d, m_d = map(np.asarray, jax.jit(lambda dg, r, k: dev.sample_rows(dg, d, r, 4, k))(dg, rows, jax.random.key(5)))
    ids_n, m_n = np_sample_rows(build_dir_adj(g, d), rows, 4, np.random.default_rng(5), pad_id=g.pad_id)
    for ids, m in ((ids_d, m_d), (ids_n, m_n)):
        assert not m[-2:].any() and (ids[-2:] == g.pad_id).all()
        assert (m[:R].sum(1) == 2).all() and (np.sort(ids[:R], axis=1)[:, :2] == [3, 4]).all()
        assert (ids[~m] == g.pad_id).all()
    pattern = lambda m: np.bincount(m[:R] @ np.array([1, 2, 4, 8]), minlength=16)  # noqa: E731
    two = stats.chi2_contingency(np.stack([pattern(m_d), pattern(m_n)])[:, pattern(m_d) + pattern(m_n) > 0])
    assert two.pvalue > P_ALPHA, two


def test_negatives_uniform_within_type_both_backends(setup):
    g, hold, spec, ns, ds = setup
    lay = spec.layout()
    hist = {}
    for name, s in (("numpy", ns), ("device", ds)):
        negs = []
        for i in range(s.num_batches(0)):
            b = _np(s.batch(0, i)) if name == "device" else s.batch(0, i)
            negs.append(np.concatenate([b.seeds[t] for t in spec.node_types])[lay.negative].reshape(-1))
        negs = np.concatenate(negs)
        pc = negs[negs >= N_AB] - N_AB
        hist[name] = np.bincount(pc, minlength=N_PC)
        assert stats.chisquare(hist[name]).pvalue > P_ALPHA, name
    assert stats.chi2_contingency(np.stack([hist["numpy"], hist["device"]])).pvalue > P_ALPHA


# ------------------------------------------------------------------------------------------------ fused step
def test_fused_train_step_matches_the_host_path(setup):
    # The HGNN trainer's step on (a) host-stacked sub-batches of the device backend and (b) the same
    # sub-batches sampled inside the train step's own jit (only the step index crosses): same loss.
    from twotower_hgnn.models.hgnn import HGNNConfig
    from twotower_hgnn.parallel import make_mesh
    from twotower_hgnn.train.hgnn import StepSampler, init_state, make_steps

    g, hold, spec, ns, ds = setup
    G = 2
    mesh = make_mesh(1)
    mcfg = HGNNConfig(hidden_dim=8, out_dim=8)
    train_step, _, opt = make_steps(mcfg, spec, 1e-3, 0.2, mesh)
    feats = jax.random.normal(jax.random.key(1), (g.num_nodes + 1, 6)).at[-1].set(0.0)
    state0 = init_state(jax.random.key(2), mcfg, spec, 6, opt)
    fused = dev.FusedSampler(spec, ds.host.edge_counts, sub_batches=G)
    last = fused.num_steps() - 1  # the last step has a filler sub-batch when num_batches is odd
    host = StepSampler(ds, G).batch(1, last)

    @jax.jit
    def fused_step(state, feats, dgraph, order, step, key):
        batch = fused.step(dgraph, order, step, key)
        return train_step(state, feats, batch), batch

    order, ek = ds.epoch_order(1), dev.epoch_key(spec.seed, 1)
    (_, loss_fused), stacked = fused_step(state0, feats, ds.dgraph, order, np.int32(last), ek)
    jax.tree_util.tree_map(np.testing.assert_array_equal, jax.tree_util.tree_map(np.asarray, stacked), host)
    assert not host["positive_mask"][-1].any() if fused.num_batches % G else host["positive_mask"].all()
    _, loss_host = train_step(state0, feats, host)
    np.testing.assert_allclose(float(loss_fused), float(loss_host), rtol=1e-6)
    assert np.isfinite(float(loss_host)) and float(loss_host) > 0


def test_device_epoch_draw_is_balanced_and_redrawn(setup):
    g, hold, spec, ns, ds = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dd = dev.DeviceSampler(g, spec, holdout=hold, epoch_draw="device")
    e0, e1 = dd.epoch_edges(0), dd.epoch_edges(1)
    smallest = min(dd.graph.num_edges(r) for r in spec.relations)
    for r in spec.relations:
        assert e0[r].shape == (smallest, 2)  # balance="equal": undersampled to the smallest relation
        keys = e0[r][:, 0] * 10**6 + e0[r][:, 1]
        assert np.unique(keys).size == smallest  # without replacement
        assert np.isin(keys, np.asarray(dd.graph.edges[r])[:, 0] * 10**6 + np.asarray(dd.graph.edges[r])[:, 1]).all()
    big = max(spec.relations, key=dd.graph.num_edges)
    assert not np.array_equal(e0[big], e1[big])  # redrawn per epoch
    check_batch_invariants(dd.graph, spec, _np(dd.batch(0, 1)), forbidden_edges=hold)
    assert dd.traces["draw"] == 1 and dd.traces["batch"] == 1  # the batch function is shared with ds


def test_fused_step_on_8_devices_each_device_samples_its_sub_batches():
    out = run_with_devices(
        """
        import json
        import jax, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from sampler import device as dev
        from sampler.batch import PaddedBatch
        from sampler.spec import make_spec
        from sampler.numpy_backend import NumpySampler
        from tests.test_device_sampler import small_graph
        from tests.sampler_invariants import batch_supervision_edges, check_batch_invariants

        g = small_graph()
        spec = make_spec(g, positives_per_batch=12, fanouts=(4, 3), seed=3)
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
        dg = dev.DeviceGraph.from_host(g, sharding=NamedSharding(mesh, P()))
        fused = dev.FusedSampler(spec, {r: g.num_edges(r) for r in spec.relations}, mesh=mesh, sub_batches=8)
        traces = []
        step = jax.jit(lambda *a: (traces.append(1), fused.step(*a))[1])
        order = fused.place_order(fused.host_order(0))
        ns = NumpySampler(g, spec)
        ek = dev.epoch_key(spec.seed, 0)
        single = jax.jit(fused.__call__)  # one device: the reference for every sub-batch
        res = {"n_dev": len(jax.devices()), "shards": [], "sup_ok": True, "same_as_single": True}
        for s in (0, 1):
            b = step(dg, order, np.int32(s), ek)
            jax.block_until_ready(b)
            leaf = b["nbrs"][1]["podcast<-podcast"]
            res["shards"].append([len(leaf.sharding.device_set), [sh.data.shape[0] for sh in leaf.addressable_shards][:2]])
            host = jax.tree_util.tree_map(np.asarray, b)
            for j in range(8):
                sub = jax.tree_util.tree_map(lambda x: x[j], host)
                lb = PaddedBatch.from_dict(sub)
                check_batch_invariants(g, spec, lb)
                i = s * 8 + j
                for r, e in batch_supervision_edges(spec, lb).items():
                    res["sup_ok"] &= bool(np.array_equal(np.sort(e, 1), np.sort(ns.batch_edges(0, i)[r], 1)))
                ref = jax.tree_util.tree_map(np.asarray, single(dg, order, np.int32(i), ek))
                res["same_as_single"] &= all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(sub), jax.tree_util.tree_leaves(ref)))
        res["traces"] = len(traces)
        print(json.dumps(res))
        """
    )
    assert out["n_dev"] == 8 and out["shards"] == [[8, [1, 1]], [8, [1, 1]]]  # one sub-batch per device
    assert out["sup_ok"], "sub-batch j of step s must hold the NumPy backend's batch s*8+j"
    assert out["same_as_single"], "a device's sub-batch must equal the same batch sampled alone"
    assert out["traces"] == 1


# ------------------------------------------------------------------------------------------------ errors, limits
class _FakeCSR:
    def __init__(self, nnz: int, rows: int = 10):
        self.nnz, self.num_rows = nnz, rows


class _FakeGraph:
    def __init__(self, nnz: int, num_nodes: int = 100):
        self.num_nodes = num_nodes
        self.relations = ((AB, PC),)
        self.edges = {(AB, PC): None}
        self.adj = {(AB, PC): _FakeCSR(nnz), (PC, AB): _FakeCSR(nnz)}

    def num_edges(self, rel):
        return self.adj[rel].nnz


def test_index_width_limits_are_clear_errors():
    # both directions of a relation share one int32 position space
    assert dev._position_dtype(_FakeGraph(2**30 - 100), ((AB, PC),)) == np.int32
    with pytest.raises(dev.DeviceGraphError, match="jax_enable_x64"):
        dev._position_dtype(_FakeGraph(2**30), ((AB, PC),))
    with pytest.raises(dev.DeviceGraphError, match="2\\*\\*31 - 1"):
        dev.DeviceGraph.from_host(_FakeGraph(10, num_nodes=2**31))


def test_memory_limit_is_a_clear_error():
    g = small_graph()
    need = dev.device_bytes(g)
    nnz = sum(c.nnz for c in g.adj.values())
    rows = sum(c.num_rows for c in g.adj.values())
    assert need == 4 * (nnz + 1) + 4 * (rows + 2) + 8 * sum(g.num_edges(r) for r in g.relations)

    class Dev:
        def memory_stats(self):
            return {"bytes_limit": need - 1, "bytes_in_use": 0}

        def __str__(self):
            return "FakeGPU"

    class Sh:
        device_set = {Dev()}

    with pytest.raises(dev.DeviceGraphError, match="NumPy backend"):
        dev._check_memory(g, tuple(g.relations), True, Sh())
    dg = dev.DeviceGraph.from_host(g)  # XLA:CPU reports no limit: no check
    assert dg.nbytes() == need


def test_sub_batches_must_split_over_devices():
    g = small_graph()
    spec = make_spec(g, positives_per_batch=12, fanouts=(2,))

    class Mesh8:
        devices = np.empty(8, object)
        axis_names = ("data",)

    with pytest.raises(SpecError, match="multiple of the 8 devices"):
        dev.FusedSampler(spec, {r: g.num_edges(r) for r in spec.relations}, mesh=Mesh8(), sub_batches=12)
