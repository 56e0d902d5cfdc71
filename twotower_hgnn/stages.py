"""Skip-if-valid, resumable pipeline stages.

A stage writes its outputs into a temporary directory that is renamed onto ``<root>/<name>`` only
when the stage function returns (``io.atomic_dir``), together with a ``_STAGE.json`` marker holding
the stage's *fingerprint* — a hash of its configuration and of the fingerprints of the stages it
reads. A later run skips a stage whose directory holds a marker with the same fingerprint; a
changed upstream stage changes every downstream fingerprint, so stale outputs are never reused.

A killed run leaves at most a ``.<stage>.<random>.tmp`` directory. Before creating it a run writes a
*claim* ``.<stage>.<token>.owner`` beside it naming the process (host, pid, the process's start time),
removed when the stage ends; the next :class:`StageRunner` on the same version directory removes every
stage temporary that no live process claims (:func:`remove_stale_tmp`) and the dead claims, never one
a live run is writing. The claim exists before the folder, so no kill leaves an unclaimed live folder.
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

from twotower_hgnn.io import atomic_dir, atomic_write_json

MARKER = "_STAGE.json"
CLAIM = ".owner"  # suffix of a stage's claim file: ``.<stage>.<token>.owner`` next to its folder
# Temporary *files* of atomic writes beside the stages (config.json, _inputs.json) carry no claim: they are
# removed once this old (such a write takes milliseconds).
STALE_FILE_S = 3600.0


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


def _stage_of(entry: Path, suffix: str) -> str:
    """``.<stage>.<random><suffix>`` -> ``<stage>`` (stage names hold no dot; mkdtemp's random part neither)."""
    return entry.name[1 : -len(suffix)].rsplit(".", 1)[0]


def _read_claim(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and "pid" in rec else None


def remove_stale_tmp(root: str | Path) -> list[Path]:
    """Removes, under ``root`` and its ``ablation-*`` folders, the stage temporaries (``.<stage>.*.tmp``
    folders) that no live process claims, the claims of dead processes, and temporary files older than
    :data:`STALE_FILE_S`; returns what was removed."""
    root, now, gone = Path(root), time.time(), []
    for d in (root, *sorted(p for p in root.glob("ablation-*") if p.is_dir())):
        live = set()
        for claim in sorted(d.glob(f".*{CLAIM}")):
            rec = _read_claim(claim)  # written atomically: unreadable = not a claim of ours
            if rec is not None and owner_alive(rec):
                live.add(_stage_of(claim, CLAIM))
            elif rec is not None:
                claim.unlink(missing_ok=True)
                gone.append(claim)
        for tmp in sorted(d.glob(".*.tmp")):
            try:
                stale = _stage_of(tmp, ".tmp") not in live if tmp.is_dir() else now - tmp.stat().st_mtime > STALE_FILE_S
            except OSError:
                continue
            if stale and tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            elif stale:
                tmp.unlink(missing_ok=True)
            if stale:
                gone.append(tmp)
    return gone


def _write_marker(tmp: Path, name: str, fp: str, secs: float, summary: dict) -> None:
    meta = {
        "stage": name,
        "fingerprint": fp,
        "seconds": secs,
        "summary": summary,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / MARKER).write_text(json.dumps(meta, sort_keys=True, indent=1, default=_default))


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
        out = self.path(name)
        claim = out.parent / f".{out.name}.{os.getpid()}-{time.time_ns()}{CLAIM}"
        atomic_write_json(claim, owner_record())  # before the temporary folder exists: no unclaimed window
        try:
            with atomic_dir(out) as tmp:
                summary = fn(Path(tmp)) or {}
                secs = time.time() - t0
                _write_marker(Path(tmp), name, fp, secs, summary)
        finally:
            claim.unlink(missing_ok=True)
        print(f"[stage] {name:<14} done in {secs:.1f}s", file=self.log, flush=True)
        res = StageResult(name, self.path(name), fp, True, secs, summary)
        self.results[name] = res
        return res
