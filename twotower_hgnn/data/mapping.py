"""A column and event mapping: tables with other column names and event vocabularies read as they are.

Three parts, given as flags (``--map``, ``--events``, ``--default_item_type``) or a small JSON file
(``--mapping=mapping.json``; flags given too are added after the file's entries):

* **renames** ``TABLE.SOURCE=TARGET`` (``TABLE`` is ``interactions``, ``items`` or ``users``; ``TARGET``
  a column of that table's schema): ``interactions.userId=user_id`` reads column ``userId`` as
  ``user_id``. A renamed column missing from the file is an error naming the file and column.
* **constants** ``TABLE.COLUMN=VALUE`` where ``COLUMN`` is a schema column and ``VALUE`` is not:
  ``items.item_type=audiobook`` fills a column the file does not have (a file that has the column keeps
  its values). ``--default_item_type=T`` is ``items.item_type=T``; it also types the items built from
  the interactions when there is no items table.
* **event rules** ``COLUMN OP VALUE:EVENT`` (``OP`` one of ``>= <= > < == !=``; ``*:EVENT`` matches every
  row), e.g. ``rating>=4:stream,rating==3:preview``. The first rule a row matches gives its ``event``;
  rows matching no rule are dropped, counted in one log line and in ``Dataset.dropped
  ["unmatched_event_rows"]``. A rule on a column the file lacks is an error naming the file and column; a
  numeric rule on a cell that is not a number names the row.

With a mapping (or a recognised format, :mod:`twotower_hgnn.data.formats`) the optional columns may be
absent: free text (title, description, language, genre, country) is then empty and ``age`` unknown (-1);
an items table with a genre and no description gets its genres as the description (MovieLens).

The JSON file: ``{"map": ["interactions.userId=user_id", ...] or {"interactions.userId": "user_id"},
"events": ["rating>=4:stream"] or "rating>=4:stream,...", "default_item_type": "audiobook"}``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import numpy as np
import pandas as pd

from twotower_hgnn.data.readers_checks import DataError, _fail, _first
from twotower_hgnn.data.schema import EVENTS, INTERACTION_COLUMNS, ITEM_COLUMNS, USER_COLUMNS
from twotower_hgnn.errors import ConfigError

TABLES: dict[str, tuple[str, ...]] = {
    "interactions": tuple(INTERACTION_COLUMNS),
    "items": tuple(ITEM_COLUMNS),
    "users": tuple(USER_COLUMNS),
}
_OPTIONAL: dict[str, dict[str, str]] = {
    "interactions": {},
    "items": {"title": "", "description": "", "language": "", "genre": ""},
    "users": {"age": "-1", "country": ""},
}
FILES_NEED = (
    "--dataset=files needs --interactions, --items, --users (--users may be left out: users are built from the "
    "interactions; --items too with --default_item_type)"
)
_OPS = (">=", "<=", "==", "!=", ">", "<")
_RULE = re.compile(r"^\s*(\*|[^<>=!]+?)\s*(?:(>=|<=|==|!=|>|<)\s*(.*?))?\s*:\s*([A-Za-z_]+)\s*$")


@dataclasses.dataclass(frozen=True)
class EventRule:
    """``column op value -> event`` (``column == "*"``: every row)."""

    column: str
    op: str
    value: str
    event: str

    @property
    def text(self) -> str:
        return (
            f"{self.column}:{self.event}" if self.column == "*" else f"{self.column}{self.op}{self.value}:{self.event}"
        )

    def matches(self, df: pd.DataFrame, source: str, csv: bool) -> np.ndarray:
        """bool ``[len(df)]``; a numeric rule on a cell that is not a number is a DataError naming the row."""
        if self.column == "*":
            return np.ones(len(df), bool)
        col = df[self.column]
        num = _number(self.value)
        if num is None:  # a string rule (== / !=)
            cells = col.astype(str).str.strip().to_numpy(dtype=object)
            eq = cells == self.value
            return eq if self.op == "==" else ~eq
        vals = pd.to_numeric(col if pd.api.types.is_numeric_dtype(col.dtype) else col.astype(str).str.strip(), "coerce")
        vals = vals.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(vals)
        if bad.any():
            r = _first(bad)
            msg = f"{col.iloc[r]!r} is not a number (--events rule {self.text!r})"
            raise _fail(source, self.column, r, msg, csv)
        ops = {">=": np.greater_equal, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal}
        ops.update({">": np.greater, "<": np.less})
        return ops[self.op](vals, num)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class ColumnMapping:
    """Renames ``(table, source, target)``, constants ``(table, column, value)`` and event rules."""

    renames: tuple[tuple[str, str, str], ...] = ()
    constants: tuple[tuple[str, str, str], ...] = ()
    events: tuple[EventRule, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.renames or self.constants or self.events)

    def constant(self, table: str, column: str) -> str | None:
        hits = [v for t, c, v in self.constants if (t, c) == (table, column)]
        return hits[-1] if hits else None

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON form (what a run records; :func:`as_mapping` reads it back)."""
        return {
            "map": [f"{t}.{s}={d}" for t, s, d in self.renames] + [f"{t}.{c}={v}" for t, c, v in self.constants],
            "events": [r.text for r in self.events],
        }

    def prepare(self, df: pd.DataFrame, table: str, source: str, lenient: bool = False) -> pd.DataFrame:
        """``df`` with the table's renames and constants applied; with a mapping or ``lenient`` (a
        recognised format) the absent optional columns are filled (empty text, age -1)."""
        ren = {s: d for t, s, d in self.renames if t == table}
        for s, d in ren.items():
            if s not in df.columns:
                found = [str(c) for c in df.columns]
                raise DataError(f"{source}: column {s!r}: missing (--map {table}.{s}={d}; found {found})")
            if d in df.columns and d not in ren:
                raise DataError(f"{source}: column {d!r}: present, and --map {table}.{s}={d} maps another onto it")
        df = df.rename(columns=ren) if ren else df
        fill = {c: v for t, c, v in self.constants if t == table}
        if self.active or lenient:
            fill = {**_OPTIONAL[table], **fill}
            if table == "items" and "description" not in df.columns and "genre" in df.columns:
                fill["description"] = df["genre"].astype(str).str.replace("|", ", ", regex=False)
        new = {c: v for c, v in fill.items() if c not in df.columns}
        return df.assign(**new) if new else df

    def event_column(self, df: pd.DataFrame, source: str, csv: bool) -> np.ndarray:
        """object ``[len(df)]``: the event of the first rule each row matches, None where none does."""
        out = np.full(len(df), None, dtype=object)
        for rule in self.events:
            if rule.column != "*" and rule.column not in df.columns:
                found = [str(c) for c in df.columns]
                raise DataError(
                    f"{source}: column {rule.column!r}: missing (--events rule {rule.text!r}; found {found})"
                )
            hit = rule.matches(df, source, csv) & pd.isna(out)
            out[hit] = rule.event
        return out


NO_MAPPING = ColumnMapping()


# ------------------------------------------------------------------------------------------ parsing
def parse_map(entries: str | list[str] | tuple[str, ...] | None, flag: str = "--map") -> tuple[list, list]:
    """(renames, constants) of ``TABLE.A=B`` entries (a comma-separated string or a list)."""
    renames: list[tuple[str, str, str]] = []
    constants: list[tuple[str, str, str]] = []
    for entry in _entries(entries):
        key, eq, value = entry.partition("=")
        table, dot, col = key.strip().partition(".")
        col, value = col.strip(), value.strip()
        if not (eq and dot and col and value):
            raise ConfigError(f"{flag}: {entry!r} is not TABLE.COLUMN=VALUE (e.g. interactions.userId=user_id)")
        if table not in TABLES:
            raise ConfigError(f"{flag}: {entry!r}: table {table!r} is not one of {list(TABLES)}")
        if value in TABLES[table]:
            renames.append((table, col, value))
        elif col in TABLES[table]:
            constants.append((table, col, value))
        else:
            raise ConfigError(
                f"{flag}: {entry!r}: neither {value!r} (a rename) nor {col!r} (a constant) is a column of "
                f"{table} ({', '.join(TABLES[table])})"
            )
    return renames, constants


def parse_events(rules: str | list[str] | tuple[str, ...] | None, flag: str = "--events") -> list[EventRule]:
    """Event rules of ``COLUMN OP VALUE:EVENT`` entries (a comma-separated string or a list)."""
    out = []
    for text in _entries(rules):
        m = _RULE.match(text)
        if not m or (m.group(1) != "*" and not m.group(2)) or (m.group(1) == "*" and m.group(2)):
            raise ConfigError(f"{flag}: {text!r} is not COLUMN OP VALUE:EVENT (OP one of {' '.join(_OPS)}; or *:EVENT)")
        column, op, value, event = m.group(1), m.group(2) or "", (m.group(3) or "").strip(), m.group(4)
        if event not in EVENTS:
            raise ConfigError(f"{flag}: {text!r}: event {event!r} is not one of {list(EVENTS)}")
        if op and not value:
            raise ConfigError(f"{flag}: {text!r}: no value after {op}")
        if op in (">=", "<=", ">", "<") and _number(value) is None:
            raise ConfigError(f"{flag}: {text!r}: {op} needs a number, not {value!r}")
        out.append(EventRule(column, op, value, event))
    return out


def _entries(spec: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if spec is None:
        return []
    parts = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in str(s).split(",")]
    return [p.strip() for p in parts if p.strip()]


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ConfigError(f"--mapping: {path}: cannot be read ({e.strerror or e})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"--mapping: {path}: not a JSON file ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict) or set(data) - {"map", "events", "default_item_type"}:
        extra = sorted(set(data) - {"map", "events", "default_item_type"}) if isinstance(data, dict) else data
        raise ConfigError(
            f"--mapping: {path}: expected an object with keys map, events, default_item_type; got {extra}"
        )
    if isinstance(data.get("map"), dict):
        data["map"] = [f"{k}={v}" for k, v in data["map"].items()]
    return data


def build_mapping(
    column_map: str | list[str] | None = None,
    events: str | list[str] | None = None,
    mapping_file: str | None = None,
    default_item_type: str | None = None,
) -> ColumnMapping:
    """The mapping of the flags (the file's entries first, then ``--map``/``--events``/``--default_item_type``)."""
    data = _read_file(mapping_file) if mapping_file else {}
    renames, constants = parse_map(data.get("map"), "--mapping map")
    more_r, more_c = parse_map(column_map)
    rules = parse_events(data.get("events"), "--mapping events") + parse_events(events)
    default = default_item_type or data.get("default_item_type")
    if default is not None:
        if not isinstance(default, str) or not default.strip():
            raise ConfigError(f"--default_item_type: {default!r} is not an item type name")
        more_c.append(("items", "item_type", default.strip()))
    return ColumnMapping(tuple(renames + more_r), tuple(constants + more_c), tuple(rules))


def as_mapping(value: ColumnMapping | dict | None) -> ColumnMapping:
    """A :class:`ColumnMapping` from itself, its :meth:`~ColumnMapping.to_dict` form, or None (no mapping)."""
    if value is None:
        return NO_MAPPING
    if isinstance(value, ColumnMapping):
        return value
    return build_mapping(column_map=value.get("map"), events=value.get("events"))


# ------------------------------------------------------------------------------- missing tables
def items_from_interactions(inter: pd.DataFrame, mapping: ColumnMapping, source: str) -> pd.DataFrame:
    """An items table of the items the interactions name, typed by the mapping's ``items.item_type``."""
    item_type = mapping.constant("items", "item_type")
    if item_type is None:
        raise DataError(
            f"{source}: no items table: give --items, or --default_item_type=TYPE to build the items from the "
            "interactions"
        )
    ids = pd.unique(inter["item_id"].to_numpy(dtype=object))
    return pd.DataFrame({"item_id": ids, "item_type": item_type, **{c: "" for c in _OPTIONAL["items"]}})


def users_from_interactions(inter: pd.DataFrame) -> pd.DataFrame:
    """A users table of the users the interactions name, age and country unknown (-1, "")."""
    ids = pd.unique(inter["user_id"].to_numpy(dtype=object))
    return pd.DataFrame({"user_id": ids, "age": np.full(len(ids), -1, np.int64), "country": ""})
