"""Orbax checkpoints with metadata, best-metric tracking, resume and clear errors.

Layout under ``directory`` (absolute; orbax requires it): one folder per step holding three items
  ``state`` — the training pytree (params, optax state, step counter...) via StandardSave/Restore;
  ``meta``  — a JSON dict the trainer owns (epoch, sampler position, rng seeds, config...);
  ``info``  — a JSON dict this module owns (the validation metric, if any, and the mode).
Retention: the ``max_to_keep`` latest steps plus the best step by metric (orbax preservation
policies), so a resume point and the best model both survive.

Orbax traps handled here: relative paths fail; restoring without an abstract target
returns plain dicts; saving an existing step is silently skipped (here: an error, or ``overwrite``).
A save that fails for lack of disk space (or quota, or a read-only file system) raises one
:class:`~twotower_hgnn.errors.DiskError` from :meth:`Checkpointer.save` / ``wait`` / ``close``
(asynchronous saves fail in orbax's background threads and surface at the next of these), and
orbax's own ERROR records of that failure (a traceback per background thread) are dropped.

Parameter files (no orbax): :func:`save_params` writes a params pytree as one ``.npz`` keyed by
pytree path, :func:`load_params` reads it back shaped like a reference tree (:func:`conform_params`).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from twotower_hgnn.errors import DiskError

from twotower_hgnn import errors


class CheckpointError(errors.PathError, RuntimeError):
    """A checkpoint directory, step or restore target is unusable; the message says why."""


_STEP_RE = re.compile(r"^\d+$")
# Names orbax itself leaves in a checkpoint root (temporaries of in-flight or crashed saves).
_ORBAX_AUX_RE = re.compile(r"(\.orbax-checkpoint-tmp|_ROOT_METADATA|\.tmp|^\.)")


_DISK_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}
# tensorstore (orbax's writer) reports the OS error as text: "... [os_error_code='28']"
_DISK_TEXT = re.compile(r"No space left on device|Disk quota exceeded|Read-only file system|os_error_code='(\d+)'")


def disk_reason(exc: BaseException | None) -> str | None:
    """Why ``exc`` (or an exception it was raised from) is a full or read-only disk, else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            return _DISK_ERRNOS[exc.errno]
        for m in _DISK_TEXT.finditer(str(exc)):
            if m.group(1) is None:
                return m.group(0).lower()
            if int(m.group(1)) in _DISK_ERRNOS:
                return _DISK_ERRNOS[int(m.group(1))]
        exc = exc.__cause__ or exc.__context__
    return None


def _cause(e: Exception) -> Exception | None:
    """What a translated orbax error is raised from: nothing for a disk error (its one line says it
    all; orbax's chain repeats it per thread), the original otherwise."""
    return None if disk_reason(e) is not None else e


_ORBAX_DIR = f"{os.sep}orbax{os.sep}"


def _from_orbax(record: logging.LogRecord) -> bool:
    """Whether a log record was written by orbax or is about one of its tasks or threads."""
    if _ORBAX_DIR in record.pathname or "orbax" in record.getMessage():
        return True
    exc = record.exc_info[1] if record.exc_info else None
    tb = getattr(exc, "__traceback__", None)
    while tb is not None:
        if _ORBAX_DIR in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


class _DropOrbaxDiskErrors(logging.Filter):
    """Drops orbax's ERROR records of a disk-full save (one per background thread and one per pending
    asyncio write task, each with a traceback): :class:`Checkpointer` raises the failure itself as one
    :class:`DiskError`. Installed on the ``absl`` (orbax's) and ``asyncio`` loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not _from_orbax(record):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return disk_reason(exc) is None and disk_reason(RuntimeError(record.getMessage())) is None


def _quiet_closed_loop_callbacks() -> None:
    """Once a save has failed, orbax closes its event loop while tensorstore still completes the other
    pending writes; each completion then raises "Event loop is closed" from asyncio's
    ``call_soon_threadsafe`` into ``sys.unraisablehook`` (a traceback each, after the failure that
    :class:`Checkpointer` raises). Those, and only those, are dropped; installed with the first
    :class:`Checkpointer`."""
    previous = sys.unraisablehook
    if getattr(previous, "quiet_closed_loop", False):
        return

    def hook(u: Any) -> None:
        tb = u.exc_traceback
        while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_name != "call_soon_threadsafe":
            tb = tb.tb_next
        if (
            isinstance(u.exc_value, RuntimeError)
            and str(u.exc_value) == "Event loop is closed"
            and tb is not None
            and tb.tb_frame.f_code.co_name == "call_soon_threadsafe"
        ):
            return
        previous(u)

    hook.quiet_closed_loop = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


for _name in ("absl", "asyncio"):
    if not any(isinstance(f, _DropOrbaxDiskErrors) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_DropOrbaxDiskErrors())


def _key_name(k: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _path_str(path: tuple) -> str:
    # Dataclass fields, dict keys and sequence indices all become "a/b/0" so a target made of
    # flax structs compares equal to orbax's metadata tree (dicts and lists).
    return "/".join(_key_name(k) for k in path) or "<root>"


def _leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    out = {}
    for path, leaf in flat:
        shape = tuple(int(s) for s in getattr(leaf, "shape", np.shape(leaf)))
        dtype = getattr(leaf, "dtype", None)
        out[_path_str(path)] = (shape, str(np.dtype(dtype)) if dtype is not None else "?")
    return out


def _abstract(tree: Any) -> Any:
    """Target pytree -> ShapeDtypeStruct tree, keeping any sharding (default: first local device)."""
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def one(x: Any) -> jax.ShapeDtypeStruct:
        if isinstance(x, jax.ShapeDtypeStruct):
            return x if x.sharding is not None else jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=default)
        sharding = getattr(x, "sharding", None)
        if not isinstance(x, jax.Array) or sharding is None:
            sharding = default
        x_shape, x_dtype = np.shape(x), getattr(x, "dtype", np.asarray(x).dtype)
        return jax.ShapeDtypeStruct(x_shape, x_dtype, sharding=sharding)

    return jax.tree_util.tree_map(one, tree)


class Checkpointer:
    """Save / resume / best-model checkpoints of a training pytree plus JSON metadata."""

    def __init__(
        self,
        directory: str | os.PathLike,
        max_to_keep: int | None = 3,
        best_metric_mode: Literal["max", "min"] | None = None,
        async_save: bool = True,
    ) -> None:
        if best_metric_mode not in (None, "max", "min"):
            raise ValueError(f"best_metric_mode must be None, 'max' or 'min', got {best_metric_mode!r}")
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
        _quiet_closed_loop_callbacks()
        self.directory = Path(directory).expanduser().resolve()
        self._pending: int | None = None  # the last step handed to orbax
        self.best_metric_mode = best_metric_mode
        self._check_directory()
        sign = -1.0 if best_metric_mode == "min" else 1.0

        def score(metrics: Any) -> float:
            v = float(metrics["metric"])
            return -math.inf if math.isnan(v) else sign * v  # NaN is never "best"

        policies: list[Any] = [ocm.LatestN(max_to_keep)]
        if best_metric_mode is not None:
            policies.append(ocm.BestN(get_metric_fn=score, n=1, keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocm.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,  # a killed save's half-written step folder
        )
        try:
            # Explicit handlers: with item names only, a fresh manager cannot read item metadata.
            handlers = {
                "state": ocp.StandardCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
                "info": ocp.JsonCheckpointHandler(),
            }
            self._mngr = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)
        except Exception as e:  # orbax raises assorted types for unreadable roots
            raise CheckpointError(f"cannot open checkpoint directory {self.directory}: {e}") from e

    # ------------------------------------------------------------------ inspection
    def _check_directory(self) -> None:
        d = self.directory
        if d.exists() and not d.is_dir():
            raise CheckpointError(f"checkpoint path {d} exists and is not a directory")
        if not d.exists():
            return
        entries = [p.name for p in d.iterdir()]
        steps = [n for n in entries if _STEP_RE.match(n) and (d / n).is_dir()]
        foreign = [n for n in entries if n not in steps and not _ORBAX_AUX_RE.search(n)]
        if foreign and not steps:
            raise CheckpointError(
                f"{d} is not a checkpoint directory: it holds {sorted(foreign)[:5]} and no step folders; "
                "pass an empty or new directory, or one written by Checkpointer"
            )

    def all_steps(self) -> list[int]:
        return sorted(int(s) for s in self._mngr.all_steps())

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def _info(self, step: int) -> dict:
        try:
            out = self._mngr.restore(step, args=ocp.args.Composite(info=ocp.args.JsonRestore()))
        except Exception as e:
            raise CheckpointError(f"checkpoint step {step} in {self.directory} is corrupt or incomplete: {e}") from e
        return dict(out["info"] or {})

    def best_step(self) -> int | None:
        """Step with the best recorded metric (ties: the earliest), None when no step has one."""
        if self.best_metric_mode is None:
            raise ValueError("best_step() needs Checkpointer(best_metric_mode='max' or 'min')")
        self.wait()
        best, best_v = None, None
        for step in self.all_steps():
            v = self._info(step).get("metric")
            if v is None or math.isnan(v):
                continue
            better = best_v is None or (v > best_v if self.best_metric_mode == "max" else v < best_v)
            if better:
                best, best_v = step, v
        return best

    # ------------------------------------------------------------------ save / restore
    def save(
        self, step: int, state: Any, meta: dict | None = None, metric: float | None = None, overwrite: bool = False
    ) -> None:
        """Saves ``state`` (any pytree of arrays) and JSON ``meta`` as ``step``.

        Raises CheckpointError when ``step`` already exists unless ``overwrite=True`` (orbax would
        silently skip it, so a resumed run could otherwise "save" nothing).
        """
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if step in self._mngr.all_steps():
            if not overwrite:
                raise CheckpointError(
                    f"checkpoint step {step} already exists in {self.directory}; pass overwrite=True to replace it"
                )
            self.wait()
            self._mngr.delete(step)
        info: dict[str, Any] = {"mode": self.best_metric_mode}
        metrics = None
        if metric is not None:
            info["metric"] = float(metric)
            metrics = {"metric": float(metric)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta or {})), info=ocp.args.JsonSave(info)
        )
        try:
            saved = self._mngr.save(step, args=args, metrics=metrics, force=True)
        except Exception as e:  # this save's, or an earlier asynchronous save's, failure
            raise self._save_error(e, f"step {step} (or the asynchronous save before it)") from _cause(e)
        self._pending = step
        if not saved:
            raise CheckpointError(f"orbax declined to save step {step} in {self.directory}")

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores (state, meta) at ``step`` (default: latest) with the structure of ``target``.

        ``target`` may hold concrete arrays or ``jax.ShapeDtypeStruct`` leaves (give them a
        sharding to restore straight onto a mesh). Raises CheckpointError when there is no
        checkpoint, the step is missing or corrupt, or the saved tree does not match ``target``
        (the message names the first mismatching leaf).
        """
        self.wait()
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise CheckpointError(f"no checkpoint to restore in {self.directory}")
            step = steps[-1]
        if step not in steps:
            raise CheckpointError(f"checkpoint step {step} not found in {self.directory}; available: {steps}")
        self._check_target(step, target)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(target)), meta=ocp.args.JsonRestore())
        try:
            out = self._mngr.restore(step, args=args)
        except Exception as e:
            raise CheckpointError(f"checkpoint step {step} in {self.directory} is corrupt or unreadable: {e}") from e
        return out["state"], dict(out["meta"] or {})

    def _check_target(self, step: int, target: Any) -> None:
        try:
            saved_meta = self._mngr.item_metadata(step)["state"]
        except Exception as e:
            raise CheckpointError(f"checkpoint step {step} in {self.directory} is corrupt or incomplete: {e}") from e
        if saved_meta is None:
            raise CheckpointError(f"checkpoint step {step} in {self.directory} has no readable 'state' metadata")
        saved_tree = getattr(saved_meta, "tree", saved_meta)
        saved, want = _leaf_specs(saved_tree), _leaf_specs(target)
        where = f"checkpoint step {step} in {self.directory}"
        for name in want:
            if name not in saved:
                raise CheckpointError(
                    f"{where}: target leaf '{name}' is not in the checkpoint (saved leaves: {sorted(saved)[:8]}...)"
                )
            if saved[name][0] != want[name][0]:
                raise CheckpointError(
                    f"{where}: leaf '{name}' has shape {saved[name][0]} in the checkpoint but {want[name][0]} in the target"
                )
            if saved[name][1] != want[name][1]:
                raise CheckpointError(
                    f"{where}: leaf '{name}' has dtype {saved[name][1]} in the checkpoint but {want[name][1]} in the target"
                )
        extra = [n for n in saved if n not in want]
        if extra:
            raise CheckpointError(f"{where}: checkpoint leaf '{extra[0]}' has no counterpart in the target")

    def _save_error(self, e: Exception, what: str) -> Exception:
        reason = disk_reason(e)
        if reason is not None:
            err = DiskError(
                f"cannot save checkpoint {what} to {self.directory}: {reason}; free space and rerun "
                "(the run resumes from its last complete checkpoint)"
            )
            err.orbax_error = e  # type: ignore[attr-defined]  # kept for debugging, not chained
            return err
        return CheckpointError(f"saving checkpoint {what} to {self.directory} failed: {e}")

    def wait(self) -> None:
        """Blocks until in-flight asynchronous saves are on disk (DiskError / CheckpointError if one failed)."""
        try:
            self._mngr.wait_until_finished()
        except Exception as e:
            raise self._save_error(e, f"step {self._pending}") from _cause(e)

    def close(self) -> None:
        try:
            self.wait()
        except BaseException:
            try:
                self._mngr.close()
            except Exception:
                pass  # the same failure again: the one raised below says it
            raise
        self._mngr.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------ parameter files
def conform_params(tree: Any, like: Any, what: str) -> Any:
    """``tree`` as float32 arrays with the structure of ``like``; ValueError naming the first mismatch."""
    flat_like, treedef = jax.tree_util.tree_flatten_with_path(like)
    got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    leaves = []
    for k, v in flat_like:
        key = jax.tree_util.keystr(k)
        if key not in got:
            raise ValueError(f"{what}: missing leaf {key} (has {sorted(got)[:6]}...)")
        if np.shape(got[key]) != np.shape(v):
            raise ValueError(f"{what}: leaf {key} has shape {np.shape(got[key])}, the config needs {np.shape(v)}")
        leaves.append(jnp.asarray(got[key], jnp.float32))
    if len(got) != len(flat_like):
        extra = sorted(set(got) - {jax.tree_util.keystr(k) for k, _ in flat_like})
        raise ValueError(f"{what}: unexpected leaf {extra[0]} (trained with another config?)")
    return jax.tree_util.tree_unflatten(treedef, leaves)


def save_params(path: str | os.PathLike, params: Any) -> None:
    """Params as one ``.npz`` keyed by pytree path (``['layer_0']['self']['audiobook']``), atomically."""
    import io

    from twotower_hgnn.io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(
        buf,
        **{
            jax.tree_util.keystr(k): np.asarray(v, np.float32)
            for k, v in jax.tree_util.tree_flatten_with_path(params)[0]
        },
    )
    atomic_write_bytes(path, buf.getvalue())


def load_params(path: str | os.PathLike, like: Any) -> Any:
    """Params saved by :func:`save_params` (or any npz keyed by ``keystr`` paths), shaped like ``like``."""
    with np.load(path, allow_pickle=False) as z:
        flat = {k: z[k] for k in z.files}
    flat_like, treedef = jax.tree_util.tree_flatten_with_path(like)
    tree = jax.tree_util.tree_unflatten(
        treedef, [flat.get(jax.tree_util.keystr(k), np.zeros((0,))) for k, _ in flat_like]
    )
    missing = [jax.tree_util.keystr(k) for k, _ in flat_like if jax.tree_util.keystr(k) not in flat]
    if missing:
        raise ValueError(f"{path}: no array for leaf {missing[0]} (file has {sorted(flat)[:6]}...)")
    if len(flat) != len(flat_like):
        raise ValueError(f"{path}: {len(flat)} arrays but the config has {len(flat_like)} leaves")
    return conform_params(tree, like, str(path))


def json_roundtrip(obj: Any) -> Any:
    """What ``obj`` looks like after a JSON save/load (tuples become lists)."""
    import json

    return json.loads(json.dumps(obj))
