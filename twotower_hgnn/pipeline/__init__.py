"""The daily job: data -> split -> validation split -> graph -> content features -> HGNN -> two-tower ->
evaluation -> export, as a table of stages (:data:`~twotower_hgnn.pipeline.driver.STAGE_TABLE`).

Every stage writes atomically into the *version directory* ``<out_dir>/<dataset tag>/<version>/``
(``version`` = the ``--as_of`` date, or ``default``) and is skipped when its valid outputs exist
(:mod:`twotower_hgnn.stages`), so a killed run resumes where it stopped; ``from_stage`` forces a stage
and everything after it to recompute. One version's HGNN, two-tower models and index always belong
together: the export stage's ``MANIFEST.json`` names the fingerprints of the stages it was built from,
and nothing is ever reused across versions except as a warm start.

Ablations (the paper's Table 1) run as *variants* inside the same version: data, split and content
features are shared; graph/HGNN/two-tower/evaluation live under ``ablation-<X>/``.

Modules: ``config`` (a run's inputs, outputs, identity and derived training configs), ``context`` (what
the stages share, lazy loaders of their outputs), ``data_stages`` / ``model_stages`` / ``eval_stages``
(one function per stage), ``driver`` (the stage table, :func:`run_stage`, :func:`run_pipeline`).
"""

from twotower_hgnn.pipeline.config import (
    ABLATIONS,
    STAGES,
    PipelineConfig,
    PipelineError,
    ablation_relations,
    hgnn_config,
    load_data,
    run_config_dict,
    stage_names,
    strip_weak,
    two_tower_config,
    with_targets,
)
from twotower_hgnn.pipeline.context import RunContext, open_run
from twotower_hgnn.pipeline.driver import BY_NAME, STAGE_TABLE, Stage, run_pipeline, run_stage, run_table1
from twotower_hgnn.pipeline.model_stages import fit_two_tower

__all__ = [
    "ABLATIONS",
    "BY_NAME",
    "PipelineConfig",
    "PipelineError",
    "RunContext",
    "STAGES",
    "STAGE_TABLE",
    "Stage",
    "ablation_relations",
    "fit_two_tower",
    "hgnn_config",
    "load_data",
    "open_run",
    "run_config_dict",
    "run_pipeline",
    "run_stage",
    "run_table1",
    "stage_names",
    "strip_weak",
    "two_tower_config",
    "with_targets",
]
