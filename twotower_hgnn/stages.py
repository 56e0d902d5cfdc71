"""Skip-if-valid, resumable pipeline stages.

A stage writes its outputs into a temporary directory that is renamed onto ``<root>/<name>`` only
when the stage function returns (``io.atomic_dir``), together with a ``_STAGE.json`` marker holding
the stage's *fingerprint* — a hash of its configuration and of the fingerprints of the stages it
reads. A later run skips a stage whose directory holds a marker with the same fingerprint; a
changed upstream stage changes every downstream fingerprint, so stale outputs are never reused.

A killed run leaves at most a ``.<stage>.<random>.tmp`` directory. Each holds an :data:`OWNER` file
naming the process that writes it (host, pid, the process's start time); the next :class:`StageRunner`
on the same version directory removes the ones whose owner is gone (:func:`remove_stale_tmp`), never
one a live run is writing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from twotower_hgnn.io import atomic_dir

MARKER = "_STAGE.json"
OWNER = "_OWNER.json"  # inside a stage's temporary directory while it is written
# A temporary entry without a readable owner (a kill between creating the folder and writing OWNER, or
# another atomic writer's) is removed only once it has not changed for this long.
STALE_UNOWNED_S = 6 * 3600.0


def fingerprint(obj: Any) -> str:
    """Stable 16-hex hash of a JSON-able object (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=_default).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _default(o: Any) -> Any:
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux ``/proc``), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie has ended: no start time


def owner_record() -> dict:
    """This process as the owner of a temporary stage folder."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid), "created": time.time()}


def owner_alive(rec: dict) -> bool:
    """Whether the process named by ``rec`` (:func:`owner_record`) may still be running. A record from
    another host cannot be checked and counts as alive."""
    if rec.get("host") != socket.gethostname():
        return True
    pid = int(rec["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    start = _proc_start(pid)
    if rec.get("start") is not None and Path("/proc/self/stat").exists():
        return start == rec["start"]  # a pid reused by another process has another start time
    return True


def _is_stale(tmp: Path, now: float) -> bool:
    try:
        rec = json.loads((tmp / OWNER).read_text()) if tmp.is_dir() else None
    except (OSError, ValueError):
        rec = None
    if isinstance(rec, dict) and "pid" in rec:
        return not owner_alive(rec)
    try:
        return now - tmp.stat().st_mtime > STALE_UNOWNED_S
    except OSError:
        return False


def remove_stale_tmp(root: str | Path) -> list[Path]:
    """Removes the temporaries (``.*.tmp`` folders and files) under ``root`` and its ``ablation-*``
    folders that no live run owns (:func:`_is_stale`); returns what was removed."""
    root, now, gone = Path(root), time.time(), []
    for d in (root, *sorted(p for p in root.glob("ablation-*") if p.is_dir())):
        for tmp in sorted(d.glob(".*.tmp")):
            if _is_stale(tmp, now):
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink(missing_ok=True)
                gone.append(tmp)
    return gone


@dataclasses.dataclass
class StageResult:
    """Where a stage's outputs live and whether this run computed them."""

    name: str
    path: Path
    fingerprint: str
    ran: bool
    seconds: float
    summary: dict


class StageRunner:
    """Runs named stages under ``root`` with skip-if-valid semantics.

    Args:
      root: the version directory.
      force: stage names to recompute even when valid outputs exist (``--from_stage`` and later).
      log: where progress lines go.
    """

    def __init__(self, root: str | Path, force: set[str] | None = None, log=sys.stdout) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        for tmp in remove_stale_tmp(self.root):
            print(f"[stage] removed {tmp.relative_to(self.root)} (left by an interrupted run)", file=log, flush=True)
        self.force = set(force or ())
        self.log = log
        self.results: dict[str, StageResult] = {}
        self.current_fingerprint: str | None = None

    def work_dir(self, name: str) -> Path:
        """Scratch space of the running stage (checkpoints, TensorBoard logs), keyed by its
        fingerprint: a killed stage resumes from it; a changed configuration starts afresh."""
        if self.current_fingerprint is None:
            raise RuntimeError("work_dir() is only available while a stage runs")
        return self.root / "_work" / name / self.current_fingerprint

    def path(self, name: str) -> Path:
        return self.root / name

    def valid(self, name: str, fp: str) -> dict | None:
        marker = self.path(name) / MARKER
        if not marker.exists():
            return None
        try:
            meta = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return meta if meta.get("fingerprint") == fp else None

    def run(
        self, name: str, config: Mapping[str, Any], fn: Callable[[Path], dict | None], depends: tuple[str, ...] = ()
    ) -> StageResult:
        """Runs ``fn(tmp_dir) -> summary`` unless valid outputs exist; returns where they live.

        ``depends`` names stages (already run in this runner) whose fingerprints enter this one's.
        """
        missing = [d for d in depends if d not in self.results]
        if missing:
            raise RuntimeError(f"stage {name!r} depends on {missing}, which have not run yet")
        fp = fingerprint(
            {"stage": name, "config": config, "upstream": {d: self.results[d].fingerprint for d in depends}}
        )
        # An upstream stage recomputed in this run may have produced different outputs: recompute too.
        forced = name in self.force or any(self.results[d].ran for d in depends)
        meta = None if forced else self.valid(name, fp)
        if meta is not None:
            res = StageResult(name, self.path(name), fp, False, 0.0, meta.get("summary", {}))
            print(f"[stage] {name:<14} skipped (valid outputs, fingerprint {fp})", file=self.log, flush=True)
            self.results[name] = res
            return res
        print(f"[stage] {name:<14} running ...", file=self.log, flush=True)
        self.current_fingerprint = fp  # lets a stage key resumable work (checkpoints) by its inputs
        t0 = time.time()
        with atomic_dir(self.path(name)) as tmp:
            (Path(tmp) / OWNER).write_text(json.dumps(owner_record()))
            summary = fn(Path(tmp)) or {}
            (Path(tmp) / OWNER).unlink(missing_ok=True)
            secs = time.time() - t0
            (Path(tmp) / MARKER).write_text(
                json.dumps(
                    {
                        "stage": name,
                        "fingerprint": fp,
                        "seconds": secs,
                        "summary": summary,
                        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                    sort_keys=True,
                    indent=1,
                    default=_default,
                )
            )
        print(f"[stage] {name:<14} done in {secs:.1f}s", file=self.log, flush=True)
        res = StageResult(name, self.path(name), fp, True, secs, summary)
        self.results[name] = res
        return res
