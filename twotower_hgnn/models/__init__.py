"""Models: the heterogeneous GraphSAGE item encoder (``hgnn``) and the two-tower model.

Their configurations (``hgnn_config``, ``two_tower_config``) import without jax; the names below are
imported on first use (PEP 562), so importing a configuration module does not load jax.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["HGNNConfig", "hgnn_forward", "init_hgnn"]
_LAZY = {"HGNNConfig": "hgnn_config", "hgnn_forward": "hgnn", "init_hgnn": "hgnn"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"twotower_hgnn.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'twotower_hgnn.models' has no attribute {name!r}")
