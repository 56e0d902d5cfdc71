"""A large dataset is released while a stage that does not read the log runs (the HGNN), and loaded again,
equal, by the next stage that does (``RunContext.release_data``, ``driver.Stage.reads_data``)."""

from __future__ import annotations

import dataclasses

import numpy as np

from twotower_hgnn import configs
from twotower_hgnn.pipeline import PipelineConfig, open_run
from twotower_hgnn.pipeline import context as C
from twotower_hgnn.pipeline import driver as D


def _ctx(tmp_path):
    cfg = PipelineConfig(dataset="synthetic", scale="tiny", out_dir=str(tmp_path), config=configs.load("test"))
    return open_run(cfg)


def test_a_small_dataset_is_kept(tmp_path):
    ctx = _ctx(tmp_path)
    assert not ctx.release_data() and ctx._ds is not None and ctx.reloads == 0


def test_released_for_the_hgnn_stage_and_loaded_again_equal(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path)
    D.run_stage(ctx, "split")
    before = ctx.split
    n_rows, col = len(ctx.ds.interactions), ctx.ds.interactions["item_idx"].to_numpy().copy()
    seen = {}

    def spy(c, out):  # stands in for the HGNN training: what the stage sees of the context
        seen.update(ds=c._ds, split_cached="split" in c.__dict__, relations=c.relations)
        return {}

    monkeypatch.setattr(C, "RELEASE_BYTES", 0)
    monkeypatch.setitem(D.BY_NAME, "hgnn", dataclasses.replace(D.BY_NAME["hgnn"], fn=spy))
    D.run_stage(ctx, "hgnn")  # its upstream stages (graph, content) read the data first
    assert seen["ds"] is None and not seen["split_cached"]  # the log and the views of its rows went
    assert seen["relations"] is None and ctx.reloads == 0  # the relations came from the kept type counts
    # the next stage that reads the data loads it again: the same rows, the split rebuilt as views of them
    D.run_stage(ctx, "valid")
    assert ctx.reloads == 1 and ctx._ds is not None and len(ctx.ds.interactions) == n_rows
    np.testing.assert_array_equal(ctx.ds.interactions["item_idx"].to_numpy(), col)
    assert ctx.split.rows == before.rows and ctx.split is not before
    assert np.shares_memory(ctx.split.train["item_idx"].to_numpy(), ctx.ds.interactions["item_idx"].to_numpy())


def test_the_stages_that_let_the_data_go():
    """The HGNN (graph + content features) and the batch top-K (the export's own store) do not read the
    dataset; every other stage does."""
    assert {s.name for s in D.STAGE_TABLE if not s.reads_data} == {"hgnn", "topk"}
