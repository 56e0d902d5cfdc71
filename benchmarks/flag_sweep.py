"""The automatic flag sweep of ``benchmarks/reliability.py``: every flag of every launch program, read from
absl itself (``python -m launch.<program> --helpxml``: every key flag with its type, default, bounds and enum
values, no import side effects in this process), gets bad values generated from its type, or from its
kind for string flags (:data:`STRING_KINDS`: input/output paths, ISO dates, mappings ...); deprecated
aliases get a bad value for the configuration field or flag they map to. String flags that legitimately
take any text are in :data:`FREE_TEXT` (with the reason) and get one accepted control case instead.

A flag neither generated for nor allow-listed is *uncovered*: ``tests/test_flag_coverage.py`` fails on it,
so a new flag needs validation and a kind here. Cases stay validation-only: programs with
``--print_config`` get it appended; the others get base flags that make an accepted run short (see
:data:`BASE`) and, where the base fails after parsing, the :data:`SENTINEL` naming that failure (a bad value
that reaches it was accepted while parsing).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = (
    "pipeline",
    "evaluate",
    "ablations",
    "encode_text",
    "prepare_data",
    "train_hgnn",
    "train_two_tower",
    "recommend",
    "serve",
)
_EV = ["--train_interactions={file}", "--test_interactions={file}", "--items={tmp}/it.csv", "--users={tmp}/u.csv"]
# flags every case of a program starts with (the case's own flags come after them and win)
BASE: dict[str, list[str]] = {
    "pipeline": [],
    "ablations": [],
    "evaluate": _EV,
    "train_hgnn": ["--dataset=synthetic", "--out_dir={tmp}/h"],
    "train_two_tower": ["--out_dir={tmp}/t", "--nouse_hgnn"],
    "encode_text": ["--texts={tmp}/notext.csv", "--out_dir={tmp}/o"],  # accepted: fails reading, no model loaded
    "prepare_data": ["--dataset=synthetic", "--scale=tiny"],  # accepted: a ~2 s run, exit 0
    "recommend": ["--export={model}"],  # accepted: one recommendation, exit 0
    "serve": ["--export={model}", "--check"],  # accepted: loads, answers in-process, exit 0 (never binds)
}
# the base's own failure after parsing: a case ending in it had its bad value accepted
SENTINEL = {"encode_text": "no 'text' column"}
# context a flag needs in a program (replaces the default context, :data:`DEFAULT_CONTEXT`)
DEFAULT_CONTEXT: dict[str, list[str]] = {"recommend": ["--user_id={user}"]}
CONTEXT: dict[tuple[str, str], list[str]] = {
    ("recommend", "age"): ["--country=SE"],
    ("recommend", "country"): ["--age=30"],
    ("recommend", "out"): ["--all_users"],
    ("recommend", "chunk_users"): ["--all_users", "--out={tmp}/all.parquet"],
    ("recommend", "all_users"): [],
    ("recommend", "user_id"): [],
    ("evaluate", "valid_interactions"): [],
}
# flags naming the program's input (the model) in place of the base's
SOURCE_FLAGS = {"recommend": ("run", "export", "model_dir"), "serve": ("run", "export")}

# String flags that legitimately take any text: no bad value exists, one accepted control case each.
FREE_TEXT: dict[str, str] = {
    # resolved by sentence-transformers when texts are encoded (a hub name or a local folder; offline
    # machines use the bundled model): checking it means loading torch, which training never does
    "text_model": "a sentence-transformers model name or folder, resolved when texts are encoded",
    "model": "deprecated name of encode_text's --text_model (any model name or folder)",
    # the user's own item type name (any text, e.g. 'audiobook', 'ebook'); belongs to the data-in flags
    "default_item_type": "the item type name given to items without one: any text names a type",
}
# The kind of every other string (and multi-string) flag; (program, flag) overrides the flag's name.
STRING_KINDS: dict[str, str] = {
    "interactions": "input_file",
    "items": "input_file",
    "users": "input_file",
    "train_interactions": "input_file",
    "test_interactions": "input_file",
    "valid_interactions": "input_file",
    "texts": "input_file",
    "features": "input_file",
    "hgnn_embeddings": "input_file",
    "mapping": "input_file",
    "graph_dir": "input_dir",
    "data_dir": "input_dir",
    "out_dir": "output_dir",
    "cache_dir": "output_dir",
    "out": "output_file",
    "export": "output_file",
    "as_of": "iso_date",
    "cut_date": "date_or_seconds",
    "config": "config",
    "encoding": "encoding",
    "coordinator": "host_port",
    "host": "host",
    "map": "map",
    "events": "events",
    "history_days": "days",
    "test_days": "days",
    "window": "count_or_none",
    "max_items_per_user": "count_or_none",
    "user_id": "user_id",
    "country": "country",
    "target_type": "served_type",
}
PROGRAM_KINDS: dict[tuple[str, str], str] = {
    ("train_two_tower", "export"): "output_dir",
    ("recommend", "export"): "input_dir",
    ("recommend", "run"): "input_dir",
    ("recommend", "model_dir"): "input_dir",
    ("serve", "export"): "input_dir",
    ("serve", "run"): "input_dir",
}
# bad values per string kind ({placeholders} of benchmarks/reliability.py's fixtures)
KIND_VALUES: dict[str, list[str]] = {
    "input_file": ["{missing}", "{dir}"],
    "input_dir": ["{missing}", "{file}"],
    "output_dir": ["{file}", "{file}/sub"],
    "output_file": ["{dir}", "{file}/sub.out"],
    "iso_date": ["2026-02-30", "2026/03/02"],
    "date_or_seconds": ["2026-02-30", "yesterday"],
    "config": ["__bogus__", "{tmp}/missing.py", "{tmp}/broken.py"],
    "encoding": ["klingon"],
    "host_port": ["localhost", "localhost:70000"],
    "host": ["not a host!", ""],
    "map": ["nodot", "interactions.userId"],
    "events": ["rating>>4:stream", "rating>=4"],
    "days": ["abc", "-3", "0"],
    "count_or_none": ["abc", "0"],
    "user_id": ["nobody_at_all", ""],
    "country": ["X" * 200],
    "served_type": ["__bogus__"],
}
WRITABLE_CHECK = os.geteuid() != 0 if hasattr(os, "geteuid") else True  # root writes anywhere
_DEPRECATED_CONFIG = re.compile(r"Deprecated: use --config(?:=<preset>|\.([\w.]+)=VALUE)")
_RENAMED = re.compile(r"Deprecated: use --(\w+)\.")


def helpxml(program: str) -> list[dict[str, Any]]:
    """The program's own and adopted key flags (absl's built-ins left out), from ``--helpxml``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    p = subprocess.run(
        [sys.executable, "-m", f"launch.{program}", "--helpxml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if p.returncode != 0:
        raise RuntimeError(f"launch.{program} --helpxml failed: {p.stderr[-1000:]}")
    out = []
    for f in ET.fromstring(p.stdout).findall("flag"):
        if (f.findtext("file") or "").startswith("absl."):
            continue
        num = {k: f.findtext(k) for k in ("lower_bound", "upper_bound")}
        out.append(
            {
                "name": f.findtext("name"),
                "type": f.findtext("type"),
                "default": f.findtext("default"),
                "meaning": f.findtext("meaning") or "",
                "enum": [e.text for e in f.findall("enum_value")],
                **{k: (float(v) if v not in (None, "None") else None) for k, v in num.items()},
            }
        )
    return out


def all_flags(workers: int = 2) -> dict[str, list[dict[str, Any]]]:
    with ThreadPoolExecutor(workers) as pool:
        config = pool.submit(_demo_config)  # the deprecated aliases' field types, beside the --helpxml runs
        out = dict(zip(PROGRAMS, pool.map(helpxml, PROGRAMS)))
        config.result()
        return out


@functools.lru_cache(maxsize=1)
def _demo_config() -> dict[str, Any]:
    """The resolved demo configuration, as ``--print_config`` prints it (no jax import in this process)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "launch.pipeline", "--config=demo", "--print_config"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(p.stdout)


def _config_value(path: str) -> Any:
    v: Any = _demo_config()
    for k in path.split("."):
        v = v[k]
    return v


def _num(x: float, is_int: bool) -> str:
    return str(int(x)) if is_int else repr(x)


def bad_values(program: str, flag: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> list[str] | None:
    """Bad values of one flag (None: uncovered, no generator for its type/kind)."""
    name, typ, meaning = flag["name"], flag["type"], flag["meaning"]
    m = _DEPRECATED_CONFIG.search(meaning)
    if m:  # a deprecated configuration alias: bad values of the field it maps to
        if m.group(1) is None:
            return ["__bogus__"]
        default = _config_value(m.group(1))
        vals = ["__bogus__"]
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            vals.append("-1")
        return vals
    m = _RENAMED.search(meaning)
    if m and m.group(1) in by_name:  # a renamed flag: the new flag's bad values
        if m.group(1) in FREE_TEXT:
            return None
        return bad_values(program, by_name[m.group(1)], by_name)
    if typ == "bool":
        return ["maybe"]
    if typ == "string enum":
        return ["__bogus__"]
    if typ in ("int", "float"):
        is_int = typ == "int"
        vals = ["abc"] if is_int else ["abc", "nan"]
        lo, hi = flag["lower_bound"], flag["upper_bound"]
        if lo is not None:
            vals.append(_num(lo - 1, is_int))
        if hi is not None:
            vals.append(_num(hi + 1, is_int))
        if lo is None and hi is None:
            vals.append("-1")
        return vals
    if typ == "comma separated list of strings":
        return ["__bogus__", ","]
    kind = PROGRAM_KINDS.get((program, name), STRING_KINDS.get(name))
    if kind is None or typ not in ("string", "multi string"):
        return None
    vals = list(KIND_VALUES[kind])
    if kind in ("output_dir", "output_file") and WRITABLE_CHECK:
        vals.append("{readonly}/sub")
    return vals


def flag_kind(program: str, flag: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> str:
    """'covered', 'free_text' (allow-listed) or 'uncovered'."""
    name = flag["name"]
    m = _RENAMED.search(flag["meaning"])
    if name in FREE_TEXT or (m and m.group(1) in FREE_TEXT and not _DEPRECATED_CONFIG.search(flag["meaning"])):
        return "free_text"
    return "covered" if bad_values(program, flag, by_name) else "uncovered"


def _args(program: str, name: str, value: str) -> list[str]:
    base = list(BASE[program])
    if name in SOURCE_FLAGS.get(program, ()):
        base = [a for a in base if not any(a.startswith(f"--{s}=") for s in SOURCE_FLAGS[program])]
    ctx = CONTEXT.get((program, name), DEFAULT_CONTEXT.get(program, []))
    tail = (
        ["--print_config"] if program in ("pipeline", "evaluate", "ablations", "train_hgnn", "train_two_tower") else []
    )
    if name == "print_config":
        tail = []
    return [*base, *ctx, f"--{name}={value}", *tail]


def sweep_cases(flags_by_program: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every case of the sweep: ``{program, flag, args, must_fail}``."""
    cases = []
    for program, fl in flags_by_program.items():
        by_name = {f["name"]: f for f in fl}
        for f in fl:
            kind = flag_kind(program, f, by_name)
            if kind == "free_text":
                cases.append({"program": program, "flag": f["name"], "args": _args(program, f["name"], "any-name_1")})
                cases[-1]["must_fail"] = False
                continue
            for v in bad_values(program, f, by_name) or []:
                cases.append(
                    {"program": program, "flag": f["name"], "args": _args(program, f["name"], v), "must_fail": True}
                )
    return cases


def coverage(flags_by_program: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out = {}
    for program, fl in flags_by_program.items():
        by_name = {f["name"]: f for f in fl}
        kinds = {f["name"]: flag_kind(program, f, by_name) for f in fl}
        out[program] = {
            "flags": sorted(kinds),
            "covered": sorted(n for n, k in kinds.items() if k == "covered"),
            "allow_listed": {
                n: FREE_TEXT.get(n, "renamed free-text flag") for n, k in kinds.items() if k == "free_text"
            },
            "uncovered": sorted(n for n, k in kinds.items() if k == "uncovered"),
        }
    return out
