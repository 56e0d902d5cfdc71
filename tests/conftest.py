"""Test configuration: CPU backend, offline text models, one shared tiny dataset per session.

Tests that need several devices run their body in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before jax is imported (see
``tests/multidevice.py``), so the rest of the suite keeps a single CPU device.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
