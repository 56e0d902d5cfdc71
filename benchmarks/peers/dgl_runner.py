"""DGL 2.1 peer: ``dgl.dataloading.NeighborSampler(...).sample_blocks`` on a heterograph.

Timed scope per batch: 2-hop neighbourhood sampling without replacement for the given seeds, fan-out
per edge type, including DGL's ``to_block`` compaction (what ``NeighborSampler`` users get).
"""
from __future__ import annotations

import sys
import time
import types

from _common import emit, limit_threads, load_graph, load_seeds, parse_args

args = parse_args()
limit_threads(args.threads)
sys.modules.setdefault("dgl.graphbolt", types.ModuleType("dgl.graphbolt"))  # no build for torch 2.13
import numpy as np  # noqa: E402
import torch  # noqa: E402
import dgl  # noqa: E402

torch.set_num_threads(args.threads)
node_types, offsets, edges = load_graph(args.graph)
data = {}
for (a, b), e in edges.items():
    la = e[:, 0] - offsets[node_types.index(a)]
    lb = e[:, 1] - offsets[node_types.index(b)]
    if a == b:
        data[(a, f"{a}-{b}", b)] = (torch.from_numpy(np.concatenate([la, lb])), torch.from_numpy(np.concatenate([lb, la])))
    else:  # messages src -> dst; sampling picks in-edges of the dst seeds
        data[(a, f"{a}-{b}", b)] = (torch.from_numpy(la), torch.from_numpy(lb))
        data[(b, f"{b}-{a}", a)] = (torch.from_numpy(lb), torch.from_numpy(la))
num_nodes = {t: int(offsets[i + 1] - offsets[i]) for i, t in enumerate(node_types)}
g = dgl.heterograph(data, num_nodes_dict=num_nodes)
g.create_formats_()  # build CSC once, outside the timed loop
fan = [int(x) for x in args.fanouts.split(",")]
# DGL applies fanouts[-1] to the seeds: reverse our seeds-first list
sampler = dgl.dataloading.NeighborSampler([{et: f for et in g.canonical_etypes} for f in reversed(fan)], replace=False)
batches = load_seeds(args.seeds, node_types, offsets)
times, counts, cpu = [], [], []
for i, s in enumerate(batches):
    seeds = {t: torch.from_numpy(v) for t, v in s.items() if v.size}
    c0, t0 = time.process_time(), time.perf_counter()
    _, _, blocks = sampler.sample_blocks(g, seeds)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    if i >= args.warmup:
        times.append(dt)
        cpu.append(dc)
        counts.append(int(sum(b.num_edges() for b in blocks)))
emit(f"dgl {dgl.__version__} NeighborSampler", times, counts, int(sum(v.size for v in batches[0].values())), args.threads, cpu=cpu)
