"""HeteroCSR: id conventions, canonical-edge checks, both directions, save/load round trip."""

import numpy as np
import pytest

from sampler.csr import HeteroCSR

AB, PC = "audiobook", "podcast"


def _graph() -> HeteroCSR:
    # audiobooks 0..2, podcasts 3..6
    return HeteroCSR.from_edges(
        (AB, PC),
        {AB: 3, PC: 4},
        {
            (AB, AB): np.array([[1, 2], [0, 1]]),
            (AB, PC): np.array([[0, 3], [0, 4], [2, 6]]),
            (PC, PC): np.array([[3, 4], [5, 6]]),
        },
    )


def test_ids_and_directions():
    g = _graph()
    assert g.num_nodes == 7 and g.pad_id == 7
    assert g.type_range(PC) == (3, 7)
    np.testing.assert_array_equal(g.node_type_of(np.arange(7)), [0, 0, 0, 1, 1, 1, 1])
    # canonical edges are sorted
    np.testing.assert_array_equal(g.edges[(AB, AB)], [[0, 1], [1, 2]])
    # same-type relation is symmetric; cross-type has both directions
    assert sorted(g.neighbors((AB, AB), 1).tolist()) == [0, 2]
    assert g.neighbors((AB, PC), 0).tolist() == [3, 4]
    assert g.neighbors((PC, AB), 6).tolist() == [2]
    assert g.neighbors((PC, AB), 5).tolist() == []
    assert g.adj[(AB, PC)].indptr.dtype == np.int64 and g.adj[(AB, PC)].indices.dtype == np.int32
    s = g.stats()
    assert s["relations"]["audiobook-podcast"]["edges"] == 3
    assert s["relations"]["audiobook-podcast"]["podcast<-audiobook"]["isolated"] == 1


@pytest.mark.parametrize(
    "edges,msg",
    [
        ({(AB, AB): np.array([[1, 0]])}, "col0 < col1"),
        ({(AB, AB): np.array([[0, 1], [0, 1]])}, "duplicate"),
        ({(AB, PC): np.array([[0, 1]])}, "outside its type range"),
        ({(PC, AB): np.array([[3, 0]])}, "node_types order"),
    ],
)
def test_rejects_non_canonical(edges, msg):
    with pytest.raises(ValueError, match=msg):
        HeteroCSR.from_edges((AB, PC), {AB: 3, PC: 4}, edges)


def test_save_load_mmap(tmp_path):
    g = _graph()
    g.save(tmp_path / "g")
    h = HeteroCSR.load(tmp_path / "g")
    assert h.node_types == g.node_types
    for rel in g.edges:
        np.testing.assert_array_equal(h.edges[rel], g.edges[rel])
    for d in g.adj:
        np.testing.assert_array_equal(h.adj[d].indptr, g.adj[d].indptr)
        np.testing.assert_array_equal(h.adj[d].indices, g.adj[d].indices)
    assert isinstance(h.adj[(AB, PC)].indices, np.memmap)
    assert not (tmp_path / "g.tmp").exists()
    with pytest.raises(FileNotFoundError, match="not a saved HeteroCSR"):
        HeteroCSR.load(tmp_path)


def test_without_relations_keeps_ids():
    g = _graph().without_relations(((PC, PC),))
    assert set(g.edges) == {(AB, AB), (AB, PC)}
    assert set(g.adj) == {(AB, AB), (AB, PC), (PC, AB)}
    assert g.num_nodes == 7
