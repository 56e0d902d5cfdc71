"""Every spec error is one clear SpecError naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from sampler.csr import HeteroCSR
from sampler.numpy_backend import NumpySampler
from sampler.spec import SamplingSpec, SpecError, make_spec
from tests.test_sampler_numpy import tiny_graph

AB, PC = "audiobook", "podcast"


@pytest.fixture(scope="module")
def graph():
    return tiny_graph()


def _spec(**kw):
    base = dict(
        node_types=(AB, PC),
        relations=((AB, AB), (AB, PC)),
        fanouts=(3, 2),
        positives_per_relation={"audiobook-audiobook": 4, "audiobook-podcast": 4},
        negatives_per_type={AB: 1, PC: 1},
    )
    base.update(kw)
    return SamplingSpec(**base)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(relations=((AB, "episode"),)), "unknown node type 'episode'"),
        (dict(negatives_per_type={"episode": 1}), "negatives_per_type: unknown node type 'episode'"),
        (dict(fanouts=(3, 0)), "fan-out must be positive"),
        (dict(fanouts=(-1, 2)), "fan-out must be positive"),
        (dict(fanouts=()), "at least one hop"),
        (dict(relation_fanouts={"audiobook-podcast": (2, 0)}), r"relation_fanouts\['audiobook-podcast'\]"),
        (dict(positives_per_relation={"audiobook-audiobook": 4}), "missing quota for relation 'audiobook-podcast'"),
        (dict(positives_per_relation={"audiobook-audiobook": 0, "audiobook-podcast": 4}), "quota must be positive"),
        (dict(balance="sometimes"), "balance"),
        (dict(balance="ratios"), r"ratios\['audiobook-(audiobook|podcast)'\]: balance='ratios' needs a positive ratio"),
        (dict(relations=((PC, AB),)), "node_types order"),
        (dict(negatives_per_type={AB: 0, PC: 0}), "at least one negative"),
    ],
)
def test_spec_field_errors(kw, match):
    with pytest.raises(SpecError, match=match):
        _spec(**kw)


def test_graph_dependent_errors(graph):
    # relation empty in the graph
    e = {r: np.asarray(v) for r, v in graph.edges.items()}
    e[(AB, AB)] = np.zeros((0, 2), np.int64)
    g_empty = HeteroCSR.from_edges((AB, PC), {AB: graph.num_nodes_of(AB), PC: graph.num_nodes_of(PC)}, e)
    with pytest.raises(SpecError, match="audiobook-audiobook is empty in the graph"):
        make_spec(g_empty, positives_per_batch=9)
    with pytest.raises(SpecError, match="audiobook-audiobook is empty"):
        NumpySampler(g_empty, _spec())
    # relation not in the graph
    with pytest.raises(SpecError, match="not in the graph"):
        NumpySampler(graph.without_relations(((AB, PC),)), _spec())
    # batch larger than an epoch: equal policy caps every relation at the smallest one (AB-AB)
    m = graph.num_edges((AB, AB))
    big = _spec(
        relations=((AB, AB), (PC, PC)), positives_per_relation={"audiobook-audiobook": 5, "podcast-podcast": m + 1}
    )
    with pytest.raises(SpecError, match=r"positives_per_relation\['podcast-podcast'\].*larger than an epoch"):
        NumpySampler(graph, big)
    with pytest.raises(SpecError, match="larger than an epoch"):
        make_spec(graph, positives_per_batch=3 * (m + 1))
    # node types disagree with the graph
    with pytest.raises(SpecError, match="node_types"):
        NumpySampler(
            graph, _spec(node_types=(PC, AB), relations=((PC, PC),), positives_per_relation={"podcast-podcast": 2})
        )


def test_spec_round_trips_and_layout_is_static(graph):
    spec = make_spec(graph, positives_per_batch=30, fanouts=(5, 2), seed=4)
    assert SamplingSpec.from_json(spec.to_json()) == spec
    lay = spec.layout()
    assert lay.num_seeds == sum(lay.seeds_per_type.values()) == spec.num_positives * (2 + spec.negatives_per_positive)
    with pytest.raises(SpecError, match="unknown spec field"):
        SamplingSpec.from_dict({**spec.to_dict(), "fanout": [1]})


def test_single_type_dataset():
    rng = np.random.default_rng(0)
    e = np.unique(np.sort(rng.integers(0, 50, size=(300, 2)), axis=1), axis=0)
    e = e[e[:, 0] != e[:, 1]]
    g = HeteroCSR.from_edges(("item",), {"item": 50}, {("item", "item"): e})
    spec = make_spec(g, positives_per_batch=16, fanouts=(4, 2))
    s = NumpySampler(g, spec)
    from tests.sampler_invariants import check_batch_invariants

    check_batch_invariants(s.graph, spec, s.batch(0, 1))
