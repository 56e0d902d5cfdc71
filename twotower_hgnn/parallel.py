"""Device mesh, shardings and batch placement for data parallelism.

Choice: ``jax.jit`` over arrays laid out with ``NamedSharding`` on a 1-D ``Mesh`` (the global view:
XLA inserts the gradient all-reduce), not ``jax.pmap`` — pmap is in maintenance mode since jax 0.8
and was measured slowest (7.4 ms vs 0.1 ms per small step on an H100). The same code runs on
one CPU, 8 fake CPU devices, one GPU or several processes (``init_distributed``).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

_distributed_initialised = False


def init_distributed(coordinator_address: str | None, num_processes: int = 1, process_id: int = 0) -> None:
    """Joins a multi-process jax job; a no-op for ``num_processes == 1``.

    Must be called before any other jax call creates a backend. On CPU the cross-process collectives
    use gloo (checked with two local processes on the dev box).
    """
    global _distributed_initialised
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(
            f"need 0 <= process_id < num_processes, got process_id={process_id}, num_processes={num_processes}"
        )
    if num_processes == 1 or _distributed_initialised:
        return
    if not coordinator_address:
        raise ValueError("coordinator_address (host:port) is required when num_processes > 1")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
    _distributed_initialised = True


def make_mesh(num_devices: int | None = None, axis_name: str = "data") -> Mesh:
    """A 1-D mesh over the first ``num_devices`` global devices (all by default), Auto axis type.

    ``jax.make_mesh`` defaults to Explicit axes (a known trap), which changes how jit propagates
    shardings; Auto keeps the classic "annotate inputs, let XLA decide" behaviour.
    """
    devices = jax.devices()
    n = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices={num_devices} but {len(devices)} devices are visible ({devices[0].platform})")
    return Mesh(np.asarray(devices[:n]), (axis_name,), axis_types=(jax.sharding.AxisType.Auto,))


def _axis(mesh: Mesh) -> str:
    if len(mesh.axis_names) != 1:
        raise ValueError(f"expected a 1-D data mesh, got axes {mesh.axis_names}")
    return mesh.axis_names[0]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the mesh's (single) axis, other axes whole."""
    return NamedSharding(mesh, P(_axis(mesh)))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (parameters, optimiser state)."""
    return NamedSharding(mesh, P())


def _leaf_name(path: tuple) -> str:
    return jax.tree_util.keystr(path) or "<root>"


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Host pytree with a leading batch axis -> global jax arrays split over the mesh's devices.

    Single process: ``tree`` holds the global batch. Multi-process: each process passes its own
    local rows (``jax.make_array_from_process_local_data``) and the global batch is their
    concatenation in process order. Raises ValueError naming the leaf whose leading axis is not a
    multiple of the number of devices it is split over (static shapes: pad the batch instead).
    """
    sharding = batch_sharding(mesh)
    n_local = len(mesh.local_devices)
    multi = jax.process_count() > 1

    def put(path: tuple, x: Any) -> jax.Array:
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError(f"shard_batch: leaf {_leaf_name(path)} is a scalar; every leaf needs a leading batch axis")
        if x.shape[0] % n_local:
            raise ValueError(
                f"shard_batch: leaf {_leaf_name(path)} has leading axis {x.shape[0]}, not divisible by the "
                f"{n_local} local devices of the mesh; pad the batch to a multiple of {n_local}"
            )
        if multi:
            return jax.make_array_from_process_local_data(sharding, x)
        return jax.device_put(x, sharding)

    return jax.tree_util.tree_map_with_path(put, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of ``tree`` fully on every device of ``mesh``."""
    return jax.device_put(tree, replicated_sharding(mesh))


def block_on_cpu(x: Any) -> Any:
    """``block_until_ready`` when running on CPU; returns ``x`` unchanged.

    Known trap: XLA:CPU all-reduce over fake devices can hang when steps are dispatched
    back-to-back; blocking after each step fixed it. On accelerators we keep async dispatch.
    """
    if jax.default_backend() == "cpu":
        jax.block_until_ready(x)
    return x
