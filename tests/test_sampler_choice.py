"""--sampler=auto|numpy|device: auto follows jax's backend (NumPy on this CPU-only machine)."""

import numpy as np
import pytest

from sampler.csr import HeteroCSR
from sampler.spec import make_spec
from twotower_hgnn.train.hgnn import resolve_sampler, sampler_factory


def test_resolve_and_factories():
    assert resolve_sampler("auto") == "numpy"  # CPU backend in tests
    assert resolve_sampler("device") == "device"
    with pytest.raises(ValueError, match="not one of"):
        resolve_sampler("gpu")
    g = HeteroCSR.from_edges(
        ("audiobook", "podcast"),
        {"audiobook": 3, "podcast": 3},
        {
            ("audiobook", "audiobook"): np.array([[0, 1], [1, 2]]),
            ("audiobook", "podcast"): np.array([[0, 3], [1, 4], [2, 5]]),
            ("podcast", "podcast"): np.array([[3, 4], [4, 5]]),
        },
    )
    spec = make_spec(g, positives_per_batch=3, fanouts=(2,))
    from sampler.device import DeviceSampler
    from sampler.numpy_backend import NumpySampler

    assert isinstance(sampler_factory("numpy")(g, spec, {}), NumpySampler)
    assert isinstance(sampler_factory("device")(g, spec, {}), DeviceSampler)


def test_factory_home_and_fused_needs_device_backend():
    """One factory, in the sampler package (re-exported by the trainer); only the device backend fuses."""
    import sampler
    from sampler import factory
    from twotower_hgnn.train import hgnn

    assert hgnn.sampler_factory is factory.sampler_factory is sampler.sampler_factory
    assert hgnn.resolve_sampler is factory.resolve_sampler is sampler.resolve_sampler
    g = HeteroCSR.from_edges(("audiobook",), {"audiobook": 3}, {("audiobook", "audiobook"): np.array([[0, 1], [1, 2]])})
    spec = make_spec(g, positives_per_batch=2, fanouts=(2,))
    with pytest.raises(ValueError, match="needs the device sampler"):
        factory.fused_parts(factory.numpy_sampler(g, spec, {}))
