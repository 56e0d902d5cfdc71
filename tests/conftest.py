"""Test configuration: CPU backend, offline text models, one shared tiny dataset per session.

Tests that need several devices run their body in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before jax is imported (see
``tests/multidevice.py``), so the rest of the suite keeps a single CPU device. Every test process runs
with the suite's XLA flags (``tests.multidevice.TEST_XLA_FLAGS``: XLA:CPU's LLVM optimisation off).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
# JAX's persistent compilation cache, shared by the test workers and the subprocesses they start (they
# inherit the environment): the many tiny runs compile the same programs again and again; a cached
# executable is the one a fresh compile would produce (keyed by the program, jax version and device).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".cache" / "jax-tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# the suite's XLA flags (tests/multidevice.py says which and why), before anything imports jax
from tests.multidevice import TEST_XLA_FLAGS  # noqa: E402

if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id):
    """One finished pipeline run of the ``test`` configuration on the tiny synthetic data:
    ``(PipelineConfig, report dict)``, shared by the golden-report and stage tests.

    Built once per suite run, not once per xdist worker: the first worker to need it runs the pipeline
    under a file lock in the folder the workers share (pytest-xdist's documented pattern), and the
    others wait for it and read its report. Modules that rerun stages take :func:`run_copy`."""
    import json

    from filelock import FileLock

    from twotower_hgnn import configs
    from twotower_hgnn.eval.report import load_report
    from twotower_hgnn.pipeline import PipelineConfig, run_pipeline

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    cfg = PipelineConfig(
        dataset="synthetic",
        scale="tiny",
        out_dir=str(shared / "tiny_run_shared"),
        config=configs.load("test", {"sampler": "numpy"}),
    )
    done = shared / "tiny_run_shared.done"
    with FileLock(str(shared / "tiny_run_shared.lock")):
        if not done.exists():
            report = run_pipeline(cfg)
            done.write_text(json.dumps({"version_dir": str(cfg.version_dir())}))
            return cfg, report
    return cfg, load_report(cfg.version_dir() / "evaluate" / "report.json")


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory):
    """A copy of :func:`tiny_run` for a module that reruns stages (the shared run stays as it is):
    the same ``PipelineConfig`` with ``out_dir`` moved to the copy."""
    import dataclasses
    import shutil
    from pathlib import Path

    cfg, _ = tiny_run
    dst = tmp_path_factory.mktemp("tiny_run_copy")
    shutil.copytree(Path(cfg.out_dir), dst, dirs_exist_ok=True)
    return dataclasses.replace(cfg, out_dir=str(dst))


# The slowest files (half a minute or more each on the 2-core box, slowest first) are handed out first:
# with ``--dist loadfile --no-loadscope-reorder`` (scripts/test.sh) a worker takes whole files in
# collection order, so a heavy file collected last would run alone while the other worker idles
# (pytest-xdist's default instead orders files by their number of tests, which puts these few-test
# files last). The rest keep their order (a stable sort).
HEAVY_FIRST = (
    "test_pipeline.py",
    "test_external_split.py",
    "test_logs_engines.py",
    "test_accelerator_suite.py",
    "test_readme_commands.py",
    "test_hgnn_parallel.py",
    "test_synthetic_parquet.py",
    "test_data_in.py",
    "test_item_types.py",
    "test_hgnn_reproducible.py",
    "test_reproducible_report.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))
