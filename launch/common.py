"""absl flags shared by the entry points, their validation, and the launch boundary (:func:`run_main`).

Every hyper-parameter and budget is a field of :class:`twotower_hgnn.configs.RunConfig`:
``--config=demo`` picks a preset (``paper``, ``demo``, ``demo_faithful``, ``test``) or a ``.py`` file
with ``get_config()``, and ``--config.<path>=value`` overrides any field, e.g.
``--config.hgnn.fanouts=10,5 --config.two_tower.max_steps=100 --config.eval.k=20``. ``--print_config``
prints the resolved configuration and exits. The previous round's flags (``--preset``, ``--k``,
``--workdir``, ``--out`` ...) still work and print one deprecation line each.

The boundary: every flag and the configuration are validated while the command line is parsed, before
``main`` runs. A user error — a bad flag or ``--config`` value, a :class:`twotower_hgnn.errors.UserError`
(data, config, path, disk) or one of the library's user-facing errors that cannot derive from it
(:data:`EXPLICIT_USER_ERRORS`), a missing/unreadable user-given path, a full or read-only disk — prints
one line ``error: <message>`` on stderr and exits 2. Ctrl-C and SIGTERM print one line and exit 130 /
143 (child processes are ended by the unwinding). Anything else is a bug: it keeps its traceback and
exits 1.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from absl import app, flags

from twotower_hgnn import errors

FLAGS = flags.FLAGS
_OVERRIDES: list[tuple[str, str]] = []  # (dotted path, value) from --config.<path>=value, in order

# old flag -> config path (None: the flag chose the preset)
DEPRECATED: dict[str, str | None] = {
    "preset": None,
    "k": "eval.k",
    "targets": "eval.targets",
    "hgnn_users": "eval.with_hgnn_users",
    "cut_quantile": "split.cut_quantile",
    "history_days": "split.history_days",
    "test_days": "split.test_days",
    "min_segment_users": "split.min_segment_users",
    "valid_frac": "split.valid_frac",
    "sampler": "sampler",
}
# flags of the shared vocabulary that set a configuration field (no deprecation line)
SHORTCUTS: dict[str, str] = {"text_model": "text.model", "exclude_seen": "eval.exclude_seen"}
DATASETS = ("movielens1m", "synthetic", "files")
SCALES = ("tiny", "small", "medium", "large", "xlarge", "paper")
STAGES = ("data", "split", "valid", "graph", "content", "hgnn", "hgnn_users", "two_tower", "evaluate", "export", "topk")
# library errors a user causes that cannot derive from errors.UserError (sampler/ never imports
# twotower_hgnn; serving's type belongs to its module): mapped here by (module, class name)
EXPLICIT_USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("sampler.spec", "SpecError"),
    ("sampler.device.graph", "DeviceGraphError"),
    ("twotower_hgnn.serving", "ServingError"),
)

_ALIASES: dict[str, str | None] = {}  # the deprecated configuration aliases this program defined
_SHORTCUTS: dict[str, str] = {}  # the shortcut flags this program defined
_RENAMED: dict[str, str] = {}  # deprecated flag name -> its new name (rewritten on the command line)
_INPUTS: set[str] = set()  # flags naming input files / folders
_OUTPUTS: set[str] = set()  # flags naming output folders / files
_WARNINGS: list[str] = []  # deprecation lines, printed once the command line parsed (an error prints one line)
_RESOLVED: list = []
_HELP = (
    "--help",
    "-help",
    "-h",
    "-?",
    "--helpshort",
    "--helpfull",
    "--helpxml",
)  # the RunConfig resolved while parsing (one element)


# ------------------------------------------------------------------------------------ validators
def _fail(flag: str, value: Any, why: str) -> None:
    """absl prefixes the message with ``flag --<flag>=<value>: ``."""
    del flag, value
    raise flags.ValidationError(why)


def check_input_file(flag: str, path: str | None) -> bool:
    """A readable file (not a folder); raises ``flags.ValidationError`` naming the flag."""
    if path is None:
        return True
    if not os.path.exists(path):
        _fail(flag, path, "no such file")
    if os.path.isdir(path):
        _fail(flag, path, "is a directory, not a file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        _fail(flag, path, f"cannot be read ({e.strerror or e})")
    return True


def check_input_table(flag: str, path: str | None) -> bool:
    """A readable file, or a folder holding ``.parquet`` files (a Parquet dataset)."""
    if path is not None and os.path.isdir(path):
        from twotower_hgnn.data.formats import parquet_files

        try:
            if parquet_files(path):
                return check_input_dir(flag, path)
        except OSError as e:
            _fail(flag, path, f"cannot be read ({e.strerror or e})")
        _fail(flag, path, "is a directory, not a file (a folder is read only when it holds .parquet files)")
    return check_input_file(flag, path)


def check_input_dir(flag: str, path: str | None) -> bool:
    """A readable folder."""
    if path is None:
        return True
    if not os.path.isdir(path):
        _fail(flag, path, "no such directory" if not os.path.exists(path) else "is a file, not a directory")
    try:
        os.listdir(path)
    except OSError as e:
        _fail(flag, path, f"cannot be read ({e.strerror or e})")
    return True


def check_output(flag: str, path: str | None, is_dir: bool = True) -> bool:
    """A folder (``is_dir``) or file that can be created or written: not an existing entry of the other
    kind, and its nearest existing ancestor a writable folder."""
    if path is None:
        return True
    if path == "":
        _fail(flag, "''", "empty path")
    if os.path.exists(path):
        if is_dir and not os.path.isdir(path):
            _fail(flag, path, "is a file, not a directory")
        if not is_dir and os.path.isdir(path):
            _fail(flag, path, "is a directory, not a file")
        if not os.access(path, os.W_OK):
            _fail(flag, path, "is not writable")
        return True
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        _fail(flag, path, f"{parent} is a file, not a directory")
    if not os.access(parent, os.W_OK):
        _fail(flag, path, f"{parent} is not writable")
    return True


def check_iso_date(flag: str, value: str | None) -> bool:
    if value is not None:
        try:
            _dt.date.fromisoformat(value)
            ok = len(value) == 10
        except ValueError:
            ok = False
        if not ok:
            _fail(flag, value, "not an ISO date (YYYY-MM-DD)")
    return True


def define_input(name: str, default: str | None, help: str, kind: str = "file", required: bool = False) -> None:
    """A string flag naming an input file (``kind="file"``), folder (``"dir"``) or table (``"table"``: a file
    or a Parquet dataset folder), validated at parse time."""
    flags.DEFINE_string(name, default, help, required=required)
    check = {"file": check_input_file, "dir": check_input_dir, "table": check_input_table}[kind]
    flags.register_validator(name, lambda v, n=name: check(n, v))
    _INPUTS.add(name)


def define_output(name: str, default: str | None, help: str, is_dir: bool = True, required: bool = False) -> None:
    """A string flag naming an output folder (or file), validated at parse time."""
    flags.DEFINE_string(name, default, help, required=required)
    flags.register_validator(name, lambda v, n=name: check_output(n, v, is_dir))
    _OUTPUTS.add(name)


def define_range(name: str, lo: float | None, hi: float | None, open_hi: bool = False, open_lo: bool = False) -> None:
    """A validator keeping a numeric flag within ``[lo, hi]`` (ends open where asked; None = unbounded)."""

    def check(v: Any) -> bool:
        if v is None:
            return True
        if v != v:  # NaN compares false with every bound
            _fail(name, v, "not a number")
        if lo is not None and (v < lo or (open_lo and v == lo)):
            _fail(name, v, f"must be {'>' if open_lo else '>='} {lo}")
        if hi is not None and (v > hi or (open_hi and v == hi)):
            _fail(name, v, f"must be {'<' if open_hi else '<='} {hi}")
        return True

    flags.register_validator(name, check)


def define_renamed(old: str, new: str) -> None:
    """``--old`` keeps working as ``--new`` with one deprecation line (rewritten before parsing)."""
    flags.DEFINE_string(old, None, f"Deprecated: use --{new}.")
    _RENAMED[old] = new


def require_dataset_files(dataset_flag: str = "dataset") -> None:
    """``--dataset=files`` needs ``--interactions`` (or ``--data_dir``); ``--users`` is optional, ``--items``
    too with a default item type (``--default_item_type`` or ``--map=items.item_type=TYPE``, checked when the
    data is read)."""
    from twotower_hgnn.data.mapping import FILES_NEED

    def check(v: dict) -> bool:
        if v[dataset_flag] == "files" and not v["interactions"] and not v.get("data_dir"):
            raise flags.ValidationError(FILES_NEED)
        return True

    names = [dataset_flag, "interactions"] + (["data_dir"] if "data_dir" in FLAGS else [])
    flags.register_multi_flags_validator(names, check)


def recbole_files(folder: str) -> dict[str, str | None]:
    """The atomic files of a RecBole dataset folder ``<name>/``: ``{"interactions": "<name>.inter", "items":
    "<name>.item" or None, "users": "<name>.user" or None}`` (paths). ``<name>`` is the folder's name, or the
    stem of its only ``.inter`` file; anything else is a ``flags.ValidationError`` naming what is there."""
    d = Path(folder)
    inter = d / f"{d.name}.inter"
    if not inter.is_file():
        found = sorted(p for p in d.glob("*.inter") if p.is_file())
        if len(found) != 1:
            what = (
                f"{len(found)} .inter files ({', '.join(p.name for p in found[:5])}): name one with --interactions"
                if found
                else "no .inter file (a RecBole dataset folder <name>/ holds <name>.inter, optionally .item, .user)"
            )
            raise flags.ValidationError(f"--data_dir={folder}: no {d.name}.inter and {what}")
        inter = found[0]
    other = {k: inter.with_suffix(suffix) for k, suffix in (("items", ".item"), ("users", ".user"))}
    return {"interactions": str(inter), **{k: str(p) if p.is_file() else None for k, p in other.items()}}


def define_data_dir_flag() -> None:
    """``--data_dir``: a RecBole dataset folder in one flag (``--dataset=files`` on its atomic files,
    :func:`recbole_files`); exclusive with ``--interactions/--items/--users`` and other ``--dataset`` values."""
    define_input(
        "data_dir",
        None,
        "A RecBole dataset folder <name>/: --dataset=files on <name>.inter and, where present, <name>.item and "
        "<name>.user (instead of --interactions/--items/--users; the read flags apply).",
        kind="dir",
    )

    def check(v: dict) -> bool:
        if not v["data_dir"]:
            return True
        given = [f"--{n}" for n in ("interactions", "items", "users") if v[n]]
        if given:
            raise flags.ValidationError(f"--data_dir names the files itself: leave out {', '.join(given)}")
        if v["dataset"] not in (None, "files"):
            raise flags.ValidationError(f"--data_dir reads files: it cannot be combined with --dataset={v['dataset']}")
        recbole_files(v["data_dir"])
        return True

    flags.register_multi_flags_validator(["data_dir", "dataset", "interactions", "items", "users"], check)


def dataset_paths() -> tuple[str | None, dict[str, str | None]]:
    """``(dataset, {"interactions", "items", "users": path or None})`` of the parsed flags, ``--data_dir``
    resolved (:func:`recbole_files`)."""
    if "data_dir" in FLAGS and FLAGS.data_dir:
        return "files", recbole_files(FLAGS.data_dir)
    return FLAGS.dataset, {n: FLAGS[n].value for n in ("interactions", "items", "users")}


def define_dataset_flags(default: str | None = "movielens1m", seed_name: str = "data_seed") -> None:
    """``--dataset``, ``--scale``, the synthetic seed, the three ``--dataset=files`` tables and how they
    are read (:func:`define_read_flags`)."""
    flags.DEFINE_enum("dataset", default, list(DATASETS), "Data source.")
    flags.DEFINE_enum("scale", "tiny", list(SCALES), "Synthetic scale.")
    flags.DEFINE_integer(seed_name, 0, "Synthetic generator seed.", lower_bound=0)
    define_input(
        "interactions",
        None,
        "--dataset=files: interactions (CSV/TSV/Parquet file or folder, .inter, ratings.dat).",
        kind="table",
    )
    define_input(
        "items",
        None,
        "--dataset=files: items (optional with --default_item_type; movies.csv/.dat, .item).",
        kind="table",
    )
    define_input(
        "users", None, "--dataset=files: users (optional: built from the interactions; .user, users.dat).", kind="table"
    )
    define_data_dir_flag()
    require_dataset_files()
    define_read_flags()


READ_FLAGS = ("timestamp_unit", "duplicates", "encoding", "map", "events", "mapping", "default_item_type")
_READ_FIELDS = {"map": "column_map", "mapping": "mapping_file"}  # flag -> PipelineConfig field where they differ


def define_mapping_flags() -> None:
    """The column and event mapping (``twotower_hgnn.data.mapping``), validated while parsing."""
    from twotower_hgnn.data import mapping as m

    flags.DEFINE_multi_string(
        "map",
        None,
        "Column mapping TABLE.SOURCE=TARGET (rename) or TABLE.COLUMN=VALUE (constant), comma-separated "
        "or repeated, e.g. --map=interactions.userId=user_id,interactions.movieId=item_id.",
    )
    flags.DEFINE_multi_string(
        "events",
        None,
        "Event rules COLUMN OP VALUE:EVENT, first match wins, rows matching none dropped and counted, "
        "e.g. --events=rating>=4:stream,rating==3:preview.",
    )
    define_input("mapping", None, "A JSON mapping file: {map: [...], events: [...], default_item_type: TYPE}.")
    flags.DEFINE_string("default_item_type", None, "Item type of items without one (= --map=items.item_type=TYPE).")

    def check(parse):
        def run(v):
            try:
                parse(v)
            except m.ConfigError as e:
                raise flags.ValidationError(re.sub(r"^--\w+( \w+)?: ", "", str(e))) from None
            return True

        return run

    flags.register_validator("map", check(m.parse_map))
    flags.register_validator("events", check(m.parse_events))
    flags.register_validator("mapping", check(lambda v: v and m.build_mapping(mapping_file=v)))


def define_read_flags() -> None:
    """How input tables are read: ``--timestamp_unit``, ``--duplicates``, ``--encoding`` and the mapping
    (``--map``, ``--events``, ``--mapping``, ``--default_item_type``)."""
    flags.DEFINE_enum(
        "timestamp_unit", "s", ["s", "ms", "iso"], "Input timestamps: Unix seconds, milliseconds or ISO 8601 strings."
    )
    flags.DEFINE_enum(
        "duplicates", "drop", ["drop", "keep"], "Exact duplicate interaction rows: dropped (counted, reported) or kept."
    )
    flags.DEFINE_string("encoding", "utf-8", "Text encoding of CSV inputs.")

    def check(v: str) -> bool:
        import codecs

        try:
            codecs.lookup(v)
        except (LookupError, TypeError):
            raise flags.ValidationError("not a known text encoding") from None
        return True

    flags.register_validator("encoding", check)
    define_mapping_flags()


def read_kwargs() -> dict[str, Any]:
    """The read options of the parsed flags (:func:`define_read_flags`) as PipelineConfig fields."""
    out = {_READ_FIELDS.get(n, n): FLAGS[n].value for n in READ_FLAGS}
    for n in ("column_map", "events"):  # repeated flags: one comma-separated list
        out[n] = ",".join(out[n]) if out[n] else None
    return out


def load_dataset_from_flags(seed: int | None = None):
    """The dataset named by the parsed ``--dataset`` flags (synthetic seed: ``seed`` or ``--data_seed``)."""
    from twotower_hgnn.data import load_dataset

    dataset, paths = dataset_paths()
    if dataset == "synthetic":
        return load_dataset("synthetic", scale=FLAGS.scale, seed=FLAGS.data_seed if seed is None else seed)
    if dataset == "files":
        from twotower_hgnn.data.mapping import build_mapping

        kw = read_kwargs()
        mapping = build_mapping(*(kw.pop(n) for n in ("column_map", "events", "mapping_file", "default_item_type")))
        return load_dataset("files", **paths, **kw, mapping=mapping)
    return load_dataset(dataset)


# ------------------------------------------------------------------------------- configuration
def define_config_flags(
    default: str = "demo",
    deprecated: tuple[str, ...] = tuple(DEPRECATED),
    aliases: dict[str, str | None] | None = None,
    shortcuts: tuple[str, ...] = tuple(SHORTCUTS),
) -> None:
    """``--config``, ``--print_config``, the shortcut flags of the shared vocabulary (``--text_model``,
    ``--exclude_seen``; of :data:`SHORTCUTS`) and deprecated aliases: the names in ``deprecated`` (of
    :data:`DEPRECATED`) and ``aliases`` (``{old flag: config path, or None for the preset}``)."""
    _ALIASES.update({n: DEPRECATED[n] for n in deprecated})
    _ALIASES.update(aliases or {})
    _SHORTCUTS.update({n: SHORTCUTS[n] for n in shortcuts})
    flags.DEFINE_string(
        "config",
        default,
        "Run configuration: a preset (paper, demo, demo_faithful, test) or a .py "
        "file with get_config(). Override any field with --config.<path>=value, e.g. "
        "--config.hgnn.fanouts=10,5 --config.two_tower.max_steps=100 (fields: --print_config).",
    )
    flags.DEFINE_boolean("print_config", False, "Print the resolved configuration (JSON) and exit.")
    if "text_model" in _SHORTCUTS:
        flags.DEFINE_string(
            "text_model", None, "sentence-transformers model name or folder (sets --config.text.model)."
        )
    if "exclude_seen" in _SHORTCUTS:
        flags.DEFINE_boolean(
            "exclude_seen",
            None,
            "Drop items consumed before the split from rankings (sets --config.eval.exclude_seen).",
        )
    for name, path in _ALIASES.items():
        flags.DEFINE_string(
            name,
            None,
            f"Deprecated: use --config{'=' if path is None else '.'}{'<preset>' if path is None else path + '=VALUE'}",
        )


def define_pipeline_flags() -> None:
    """Inputs, outputs and run identity of a pipeline run (plus the configuration flags)."""
    define_config_flags()
    define_dataset_flags("movielens1m")
    define_output("out_dir", "runs", "Root of all pipeline versions.")
    flags.DEFINE_string("as_of", None, "Run as of this ISO date YYYY-MM-DD (the split cut; names the version).")
    flags.register_validator("as_of", lambda v: check_iso_date("as_of", v))
    flags.DEFINE_boolean("warm_start", False, "Initialise from the latest earlier version.")
    flags.DEFINE_enum("from_stage", None, list(STAGES), "Recompute this stage and every later one.")
    flags.DEFINE_integer("seed", 0, "Training seed.", lower_bound=0)


def _rename(argv: list[str]) -> list[str]:
    """``argv`` with deprecated flag names replaced by their new ones (one warning line each)."""
    out = []
    for a in argv:
        if a.startswith("--") and a != "--":
            name, eq, value = a[2:].partition("=")
            neg = name.startswith("no") and name[2:] in _RENAMED
            old = name[2:] if neg else name
            if old in _RENAMED:
                new = _RENAMED[old]
                a = f"--{'no' if neg else ''}{new}{eq}{value}"
                _WARNINGS.append(f"warning: --{old} is deprecated; use --{new}")
        out.append(a)
    return out


def _imply_files(argv: list[str]) -> list[str]:
    """``--data_dir`` without ``--dataset`` means ``--dataset=files`` (programs with the flag only)."""
    if "data_dir" not in FLAGS:
        return argv
    args = argv[1 : argv.index("--")] if "--" in argv else argv[1:]
    given = lambda n: any(a == f"--{n}" or a.startswith(f"--{n}=") for a in args)  # noqa: E731
    return [argv[0], "--dataset=files", *argv[1:]] if given("data_dir") and not given("dataset") else argv


def parse_flags_with_config(argv: list[str]) -> list[str]:
    """absl flags parser (``app.run(main, flags_parser=...)``): takes every ``--config.<path>=value`` (or
    ``--config.<path> value``) out of ``argv``, rewrites deprecated names, parses and validates every flag
    and the configuration. A bad value prints one line and exits 2."""
    rest = [argv[0]]
    args = iter(argv[1:])
    for a in args:
        if a == "--":
            rest.append(a)
            rest.extend(args)
            break
        if a.startswith("--config."):
            key, eq, value = a[len("--config.") :].partition("=")
            if not eq:
                value = next(args, None)
                if value is None:
                    _exit_user(f"--config.{key} needs a value (--config.{key}=VALUE)")
            _OVERRIDES.append((key, value))
        else:
            rest.append(a)
    try:
        remaining = FLAGS(_imply_files(_rename(rest)))
    except flags.Error as e:  # a multi-flag validator's message starts "flags a=1, b=None: "; keep the reason
        _exit_user(re.sub(r"^flags [^:]*: ", "", str(e)))
    except SystemExit as e:  # absl's --help/--helpfull exit 1 after printing the help: that is a success
        if e.code == 1 and any(a.split("=")[0] in _HELP for a in rest[1:]):
            raise SystemExit(0) from None
        raise
    for name, flag in [(n, FLAGS[n]) for n in FLAGS]:  # absl's float bounds compare false with NaN: never a valid value
        if isinstance(flag.value, float) and flag.value != flag.value and name == flag.name:
            _exit_user(f"flag --{name}={flag.value}: not a number")
    if len(remaining) > 1:
        _exit_user(f"unexpected argument(s): {' '.join(remaining[1:])} (flags are --name=value)")
    if "config" in FLAGS:
        _RESOLVED[:] = [_resolve_config()]
    _flush_warnings()
    return remaining


def _flush_warnings() -> None:
    for line in _WARNINGS:
        print(line, file=sys.stderr)
    _WARNINGS.clear()


def _resolve_config():
    from twotower_hgnn import configs

    spec = FLAGS.config
    over: dict[str, Any] = {}
    for name, path in _ALIASES.items():
        if FLAGS[name].present:
            value = FLAGS[name].value
            _WARNINGS.append(
                f"warning: --{name} is deprecated; use --config{'=' + value if path is None else '.' + path + '=' + value}"
            )
            if path is None:
                spec = value
            else:
                over[path] = value
    over.update({path: FLAGS[name].value for name, path in _SHORTCUTS.items() if FLAGS[name].present})
    over.update(dict(_OVERRIDES))
    try:
        cfg = configs.load(spec, over)
    except configs.ConfigError as e:
        _exit_user(str(e))
    _flush_warnings()
    if FLAGS.print_config:
        import json

        print(json.dumps(cfg.to_dict(), indent=1))
        raise SystemExit(0)
    return cfg


def run_config():
    """The resolved :class:`RunConfig` of the parsed flags (validated while parsing)."""
    if not _RESOLVED:
        _RESOLVED.append(_resolve_config())
    return _RESOLVED[0]


def pipeline_kwargs() -> dict:
    """PipelineConfig keyword arguments from the parsed flags."""
    dataset, paths = dataset_paths()
    return dict(
        dataset=dataset,
        scale=FLAGS.scale,
        data_seed=FLAGS.data_seed,
        **paths,
        out_dir=FLAGS.out_dir,
        as_of=FLAGS.as_of,
        warm_start=FLAGS.warm_start,
        from_stage=FLAGS.from_stage,
        seed=FLAGS.seed,
        config=run_config(),
        **read_kwargs(),
    )


# ------------------------------------------------------------------------------------ boundary
def _one_line(message: str) -> str:
    lines = [s.strip() for s in str(message).splitlines() if s.strip()]
    return " | ".join(lines) or "(no message)"


def _exit_user(message: str) -> None:
    print(f"error: {_one_line(message)}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def user_error_types() -> tuple[type, ...]:
    """:class:`errors.UserError` and the :data:`EXPLICIT_USER_ERRORS` whose modules are loaded (an error
    of a module never imported cannot have been raised)."""
    types: list[type] = [errors.UserError]
    for module, name in EXPLICIT_USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            types.append(cls)
    return tuple(types)


def _is_user_path(filename: Any, inputs_only: bool) -> bool:
    """Whether ``filename`` is a user-given input path (or, unless ``inputs_only``, inside an output)."""
    if not isinstance(filename, (str, bytes, os.PathLike)):
        return False
    target = os.path.abspath(os.fsdecode(filename))
    for name in _INPUTS | (set() if inputs_only else _OUTPUTS):
        value = FLAGS[name].value if name in FLAGS else None
        if not value:
            continue
        given = os.path.abspath(value)
        if target == given or (not inputs_only and target.startswith(given.rstrip(os.sep) + os.sep)):
            return True
    return False


def _os_error_line(e: OSError) -> str | None:
    """The one line for a user's OSError (disk full / read-only, a user path that vanished or cannot be
    read), or None: an internal error that keeps its traceback."""
    where = e.filename if e.filename is not None else "an output"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device writing {where} (free some space and rerun: finished stages are kept)"
    if e.errno == errno.EROFS:
        return f"read-only file system writing {where}"
    if isinstance(e, FileNotFoundError) and _is_user_path(e.filename, inputs_only=True):
        return f"{e.filename}: no such file"
    if isinstance(e, (PermissionError, IsADirectoryError, NotADirectoryError)) and _is_user_path(
        e.filename, inputs_only=False
    ):
        return f"{e.filename}: {e.strerror}"
    return None


def _on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _guarded(main: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
    def run(argv: list[str]) -> Any:
        try:
            return main(argv)
        except KeyboardInterrupt as e:
            name = str(e) or "SIGINT"
            print(f"interrupted ({name}): rerun the same command to resume", file=sys.stderr, flush=True)
            raise SystemExit(143 if name == "SIGTERM" else 130) from None
        except app.UsageError as e:
            _exit_user(str(e))
        except user_error_types() as e:
            _exit_user(str(e))
        except OSError as e:
            line = _os_error_line(e)
            if line is None:
                raise
            _exit_user(line)

    return run


def run_main(main: Callable[[list[str]], Any]) -> None:
    """``app.run`` with the ``--config.<path>`` parser and the user-error boundary (module docstring)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    app.run(_guarded(main), flags_parser=parse_flags_with_config)


def quiet_library_logs() -> None:
    """orbax/jax log every checkpoint step at INFO through absl: keep the console to our progress lines."""
    from absl import logging

    logging.set_verbosity(logging.WARNING)
