"""PyTorch Geometric peer: the sampler behind ``NeighborLoader`` (torch-sparse backend) on ``HeteroData``.

Timed scope per batch: 2-hop neighbourhood sampling without replacement for the given seeds, one
``sample_from_nodes`` call per seed node type (a hetero ``NeighborLoader`` takes one input type), with
PyG's relabelling to local ids; feature collation (``filter_fn``) is not timed (no features here).
"""
from __future__ import annotations

import time
import warnings

from _common import emit, limit_threads, load_graph, load_seeds, parse_args

args = parse_args()
limit_threads(args.threads)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch_geometric  # noqa: E402
from torch_geometric.data import HeteroData  # noqa: E402
from torch_geometric.sampler import NeighborSampler, NodeSamplerInput  # noqa: E402

warnings.filterwarnings("ignore")
torch.set_num_threads(args.threads)
node_types, offsets, edges = load_graph(args.graph)
data = HeteroData()
for i, t in enumerate(node_types):
    data[t].num_nodes = int(offsets[i + 1] - offsets[i])
for (a, b), e in edges.items():
    la = e[:, 0] - offsets[node_types.index(a)]
    lb = e[:, 1] - offsets[node_types.index(b)]
    if a == b:
        data[(a, f"{a}-{b}", b)].edge_index = torch.from_numpy(np.stack([np.concatenate([la, lb]), np.concatenate([lb, la])]))
    else:
        data[(a, f"{a}-{b}", b)].edge_index = torch.from_numpy(np.stack([la, lb]))
        data[(b, f"{b}-{a}", a)].edge_index = torch.from_numpy(np.stack([lb, la]))
fan = [int(x) for x in args.fanouts.split(",")]
sampler = NeighborSampler(data, num_neighbors={et: fan for et in data.edge_types}, replace=False)  # CSC built here
batches = load_seeds(args.seeds, node_types, offsets)
times, counts, cpu = [], [], []
for i, s in enumerate(batches):
    c0, t0 = time.process_time(), time.perf_counter()
    n_e = 0
    for t, v in s.items():
        if v.size:
            out = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=torch.from_numpy(v), input_type=t))
            n_e += int(sum(r.numel() for r in out.row.values()))
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    if i >= args.warmup:
        times.append(dt)
        cpu.append(dc)
        counts.append(n_e)
emit(f"pyg {torch_geometric.__version__} NeighborSampler (torch-sparse)", times, counts, int(sum(v.size for v in batches[0].values())), args.threads, cpu=cpu)
