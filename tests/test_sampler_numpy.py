"""Invariants of the NumPy sampling backend (sampler/numpy_backend.py) on tiny graphs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from sampler.csr import HeteroCSR
from sampler.neighbors import Holes, build_dir_adj, make_holes, sample_rows
from sampler.numpy_backend import NumpySampler
from sampler.spec import make_spec
from sampler.synthetic import powerlaw_edges
from tests.sampler_invariants import batch_supervision_edges, check_batch_invariants

AB, PC = "audiobook", "podcast"
N_AB, N_PC, N_ISO = 80, 300, 6  # the last N_ISO nodes of each type are isolated


def tiny_graph(seed: int = 0, sizes=(200, 900, 3000)) -> HeteroCSR:
    rng = np.random.default_rng(seed)
    na, npc = N_AB - N_ISO, N_PC - N_ISO
    pa, pp = rng.permutation(na), rng.permutation(npc)
    e_aa = powerlaw_edges(rng, na, na, sizes[0], same_type=True, alpha=2.0, perm_a=pa, perm_b=pa)
    e_ap = powerlaw_edges(rng, na, npc, sizes[1], same_type=False, alpha=2.0, perm_a=pa, perm_b=pp)
    e_pp = powerlaw_edges(rng, npc, npc, sizes[2], same_type=True, alpha=2.0, perm_a=pp, perm_b=pp)
    e_ap[:, 1] += N_AB
    e_pp += N_AB
    return HeteroCSR.from_edges((AB, PC), {AB: N_AB, PC: N_PC}, {(AB, AB): e_aa, (AB, PC): e_ap, (PC, PC): e_pp})


@pytest.fixture(scope="module")
def graph() -> HeteroCSR:
    return tiny_graph()


@pytest.fixture(scope="module")
def sampler(graph) -> NumpySampler:
    spec = make_spec(graph, positives_per_batch=24, fanouts=(4, 3), seed=7, avoid_known_positives=True)
    return NumpySampler(graph, spec)


def test_graph_has_the_cases_we_need(graph):
    st = graph.stats()["relations"]
    assert st["podcast-podcast"]["edges"] > st["audiobook-podcast"]["edges"] > st["audiobook-audiobook"]["edges"]
    assert st["podcast-podcast"]["podcast<-podcast"]["isolated"] >= N_ISO
    assert st["podcast-podcast"]["podcast<-podcast"]["max"] > 20  # hubs: degree >> fan-out


def test_batches_satisfy_invariants_and_static_shapes(graph, sampler):
    shapes = None
    total = 0
    for epoch in (0, 1):
        for i in (0, 1, sampler.num_batches(epoch) - 1):
            b = sampler.batch(epoch, i)
            out = check_batch_invariants(sampler.graph, sampler.spec, b)
            assert out["excluded_pairs"] > 0  # supervision edges really were in message passing rows
            total += out["valid_slots"]
            sh = ({t: v.shape for t, v in b.seeds.items()}, [{k: v.shape for k, v in h.items()} for h in b.nbrs])
            assert shapes is None or sh == shapes
            shapes = sh
            for h in b.nbrs:
                assert all(v.dtype == np.int32 for v in h.values())
    assert total > 0


def test_supervision_edges_removed_even_when_they_would_be_sampled(graph):
    # Fan-out larger than any degree: every neighbour is taken, so a kept supervision edge would show.
    spec = make_spec(graph, positives_per_batch=24, fanouts=(64, 2), seed=3)
    s = NumpySampler(graph, spec)
    b = s.batch(0, 0)
    sup = batch_supervision_edges(spec, b)
    # each anchor's hop-0 row in its relation direction lacks exactly its positive(s)
    for i, (a, c) in enumerate(spec.relations):
        e = sup[(a, c)]
        name = f"{a}<-{c}"
        row_of = {int(x): j for j, x in enumerate(b.seeds[a])}
        for u, v in e[:3]:
            j = row_of[int(u)]
            got = set(b.nbrs[0][name][j][b.masks[0][name][j]].tolist())
            assert int(v) not in got
            full = set(graph.neighbors((a, c), int(u)).tolist())
            assert int(v) in full and got <= full
    check_batch_invariants(s.graph, spec, b)
    # and the switch works: with exclusion off the positive is in the anchor's full row
    spec2 = make_spec(graph, positives_per_batch=24, fanouts=(64, 2), seed=3, exclude_supervision_edges=False)
    b2 = NumpySampler(graph, spec2).batch(0, 0)
    check_batch_invariants(graph, spec2, b2)
    a, c = spec2.relations[0]
    u, v = batch_supervision_edges(spec2, b2)[(a, c)][0]
    j = int(np.flatnonzero(b2.seeds[a] == u)[0])
    assert int(v) in b2.nbrs[0][f"{a}<-{c}"][j].tolist()


def test_isolated_and_low_degree_rows(graph, sampler):
    iso_ab = np.arange(N_AB - N_ISO, N_AB)
    seeds = {AB: np.concatenate([iso_ab, [graph.pad_id]]).astype(np.int32), PC: np.array([N_AB + N_PC - 1], np.int32)}
    rng = np.random.default_rng(0)
    from sampler.neighbors import sample_hops

    lay = sampler.layout
    fan = [{d: 4 for d in lay.directions}, {d: 3 for d in lay.directions}]
    nbrs, masks = sample_hops(sampler.adjs, seeds, lay.directions, fan, rng, pad_id=graph.pad_id)
    for k in range(2):
        for name, m in masks[k].items():
            assert not m.any(), (k, name)
            assert (nbrs[k][name] == graph.pad_id).all()
    # low degree: a node with 0 < degree < f gets all its neighbours
    adj = build_dir_adj(graph, (AB, AB))
    deg = adj.start[1 : N_AB + 1] - adj.start[:N_AB]
    u = int(np.flatnonzero((deg > 0) & (deg < 4))[0])
    ids, m = sample_rows(adj, np.array([u]), 4, rng, pad_id=graph.pad_id)
    assert sorted(ids[m].tolist()) == sorted(graph.neighbors((AB, AB), u).tolist())


def _hub(graph, direction, min_deg):
    adj = build_dir_adj(graph, direction)
    lo, hi = graph.type_range(direction[0])
    deg = adj.start[lo + 1 : hi + 1] - adj.start[lo:hi]
    return adj, lo + int(np.argmax(deg >= min_deg)), int(deg[np.argmax(deg >= min_deg)])


@pytest.mark.parametrize("replace", [False, True])
def test_choice_is_uniform_chi_square(graph, replace):
    adj, u, deg = _hub(graph, (PC, PC), 12)
    f, R = 4, 6000
    ids, m = sample_rows(adj, np.full(R, u), f, np.random.default_rng(123), pad_id=graph.pad_id, replace=replace)
    assert m.all()
    nb = graph.neighbors((PC, PC), u)
    counts = np.array([(ids == x).sum() for x in nb])
    assert counts.sum() == R * f
    p = stats.chisquare(counts).pvalue
    assert p > 1e-3, (p, counts)
    if not replace:  # whole subsets too: every f-subset of a row equally likely (Floyd's property)
        adj2 = build_dir_adj(graph, (PC, PC))
        deg2 = adj2.start[1:-1] - adj2.start[:-2]
        v = int(np.flatnonzero((deg2 >= 6) & (deg2 <= 8))[0])
        ids2, _ = sample_rows(adj2, np.full(R, v), 3, np.random.default_rng(9), pad_id=graph.pad_id)
        _, pc = np.unique(np.sort(ids2, axis=1), axis=0, return_counts=True)
        d2 = int(deg2[v])
        assert pc.shape[0] == d2 * (d2 - 1) * (d2 - 2) // 6  # every subset occurs
        assert stats.chisquare(pc).pvalue > 1e-3


def test_holes_are_skipped_and_rest_stays_uniform(graph):
    adj, u, deg = _hub(graph, (PC, PC), 10)
    nb = graph.neighbors((PC, PC), u)
    drop = nb[[0, 3, len(nb) - 1]]
    holes = make_holes(adj, np.full(3, u), drop)
    assert isinstance(holes, Holes) and holes.counts.tolist() == [3]
    R, f = 5000, 3
    ids, m = sample_rows(adj, np.full(R, u), f, np.random.default_rng(5), pad_id=graph.pad_id, holes=holes)
    assert m.all() and not np.isin(ids, drop).any()
    rest = np.setdiff1d(nb, drop)
    counts = np.array([(ids == x).sum() for x in rest])
    assert counts.sum() == R * f and stats.chisquare(counts).pvalue > 1e-3
    # a row left with fewer neighbours than f after the holes: exactly the remaining ones
    small = int(np.flatnonzero((adj.start[1:-1] - adj.start[:-2]) == 3)[0])
    nbs = graph.neighbors((PC, PC), small)
    h2 = make_holes(adj, np.array([small]), nbs[:1])
    ids2, m2 = sample_rows(adj, np.array([small]), 5, np.random.default_rng(0), pad_id=graph.pad_id, holes=h2)
    assert sorted(ids2[m2].tolist()) == sorted(nbs[1:].tolist())


def test_epoch_balance_redraw_and_coverage(graph, sampler):
    counts = {r: graph.num_edges(r) for r in graph.relations}
    smallest = min(counts.values())
    seen = {r: set() for r in graph.relations}
    prev = None
    for epoch in range(4):
        ee = sampler.epoch_edges(epoch)
        assert {r: e.shape[0] for r, e in ee.items()} == {r: smallest for r in graph.relations}
        for r, e in ee.items():
            assert np.unique(e, axis=0).shape[0] == e.shape[0]  # without replacement
            seen[r] |= set(map(tuple, e.tolist()))
        if prev is not None:
            big = (PC, PC)
            assert not np.array_equal(ee[big], prev[big])
        prev = ee
        # the epoch's batches use exactly the epoch's edges (each at least once)
        nb = sampler.num_batches(epoch)
        used = {r: set() for r in graph.relations}
        for i in range(nb):
            for r, e in sampler.batch_edges(epoch, i).items():
                used[r] |= set(map(tuple, e.tolist()))
        assert all(used[r] == set(map(tuple, ee[r].tolist())) for r in graph.relations)
    # coverage of the majority relation grows beyond one epoch's worth
    assert len(seen[(PC, PC)]) > 2.5 * smallest
    assert len(seen[(AB, AB)]) == smallest  # the minority relation is all used every epoch


def test_balance_off_and_ratios(graph):
    off = make_spec(graph, positives_per_batch=60, balance="off")
    s = NumpySampler(graph, off)
    ee = s.epoch_edges(0)
    assert all(ee[r].shape[0] == graph.num_edges(r) for r in graph.relations)
    q = off.positives_per_relation
    assert q["podcast-podcast"] > q["audiobook-podcast"] > q["audiobook-audiobook"]
    rat = make_spec(
        graph,
        positives_per_batch=30,
        balance="ratios",
        ratios={"audiobook-audiobook": 1.0, "audiobook-podcast": 2.0, "podcast-podcast": 3.0},
    )
    sizes = NumpySampler(graph, rat).epoch_sizes
    m = graph.num_edges((AB, AB))
    assert sizes == {(AB, AB): m, (AB, PC): 2 * m, (PC, PC): 3 * m}


def test_determinism_and_batch_independence(graph, sampler):
    b1 = sampler.batch(2, 5)
    fresh = NumpySampler(graph, sampler.spec)
    _ = fresh.batch(2, 9)  # other batches first: order must not matter
    b2 = fresh.batch(2, 5)
    for k in range(sampler.spec.num_hops):
        for name in b1.nbrs[k]:
            np.testing.assert_array_equal(b1.nbrs[k][name], b2.nbrs[k][name])
            np.testing.assert_array_equal(b1.masks[k][name], b2.masks[k][name])
    for t in b1.seeds:
        np.testing.assert_array_equal(b1.seeds[t], b2.seeds[t])
    b3 = sampler.batch(2, 6)
    assert any(not np.array_equal(b1.seeds[t], b3.seeds[t]) for t in b1.seeds)
    with pytest.raises(IndexError, match="batch index"):
        sampler.batch(0, sampler.num_batches(0))


def test_holdout_never_used(graph):
    rng = np.random.default_rng(1)
    hold = {r: np.asarray(graph.edges[r])[rng.choice(graph.num_edges(r), 15, replace=False)] for r in graph.relations}
    spec = make_spec(graph, positives_per_batch=24, fanouts=(50, 50), seed=2)
    with pytest.warns(UserWarning, match="removed holdout edges"):
        s = NumpySampler(graph, spec, holdout=hold)
    for r, h in hold.items():
        assert s.graph.num_edges(r) == graph.num_edges(r) - 15
        keys = set(map(tuple, h.tolist()))
        for e in range(3):
            assert not keys & set(map(tuple, s.epoch_edges(e)[r].tolist()))
    for i in range(3):
        check_batch_invariants(s.graph, spec, s.batch(0, i), forbidden_edges=hold)
    # a graph already without them: no warning, same graph object kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s2 = NumpySampler(s.graph, spec, holdout=hold)
    assert s2.graph is s.graph


def test_edge_batches_cover_eval_edges_once_with_static_shapes(graph, sampler):
    rng = np.random.default_rng(4)
    ev = {
        (AB, AB): np.asarray(graph.edges[(AB, AB)])[:5],
        (AB, PC): np.asarray(graph.edges[(AB, PC)])[rng.choice(graph.num_edges((AB, PC)), 30, replace=False)][:, ::-1],
        (PC, PC): np.asarray(graph.edges[(PC, PC)])[:17],
    }
    batches = list(sampler.edge_batches(ev, seed=0))
    assert len(batches) == sampler.num_edge_batches(ev) == 4  # ceil(30 / 8)
    want_shapes = {t: v.shape for t, v in sampler.batch(0, 0).seeds.items()}
    got = {r: [] for r in ev}
    for b in batches:
        assert {t: v.shape for t, v in b.seeds.items()} == want_shapes
        check_batch_invariants(sampler.graph, sampler.spec, b)
        for r, e in batch_supervision_edges(sampler.spec, b).items():
            got[r] += [tuple(sorted(x)) for x in e.tolist()]
    for r, e in ev.items():
        assert sorted(got[r]) == sorted(tuple(sorted(x)) for x in e.tolist())
    assert not batches[-1].positive_mask.all()
    b_again = list(sampler.edge_batches(ev, seed=0))[2]
    np.testing.assert_array_equal(b_again.seeds[PC], batches[2].seeds[PC])
    with pytest.raises(ValueError, match=r"edge_batches\[audiobook-podcast\]: row 0"):
        list(sampler.edge_batches({(AB, PC): np.array([[0, 1]])}))
