"""Skip-if-valid, resumable pipeline stages.

A stage writes its outputs into a temporary directory that is renamed onto ``<root>/<name>`` only
when the stage function returns (``io.atomic_dir``), together with a ``_STAGE.json`` marker holding
the stage's *fingerprint* — a hash of its configuration and of the fingerprints of the stages it
reads. A later run skips a stage whose directory holds a marker with the same fingerprint; a
changed upstream stage changes every downstream fingerprint, so stale outputs are never reused. A
killed run leaves at most a ``*.tmp`` directory, which the next run discards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from twotower_hgnn.io import atomic_dir

MARKER = "_STAGE.json"


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
            summary = fn(Path(tmp)) or {}
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
