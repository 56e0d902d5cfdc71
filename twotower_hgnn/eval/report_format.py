"""Plain-text and Markdown rendering of an evaluation report (``report.md``, the console tables).

:mod:`twotower_hgnn.eval.report` re-exports every public name defined here.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from twotower_hgnn.eval.protocol import SEGMENTS

# (title, target_type, segment) of the paper's tables, in print order.
PAPER_TABLES: tuple[tuple[str, str, str], ...] = (
    ("Table 2 - audiobook recommendations, warm-start users", "audiobook", "warm"),
    ("Table 3 - audiobook recommendations, cold-start users", "audiobook", "cold"),
    ("Table 4 - podcast recommendations, all users", "podcast", "all"),
)
TABLE1_TITLE = "Table 1 - ablations (warm-start users, audiobooks)"
_CONTENT_DEFAULT = "the items' text (or the source's vectors)"  # a report without meta.dataset.content
_SEGMENT_WORDS = {"warm": "warm-start users", "cold": "cold-start users", "all": "all users"}


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------
def _columns(k: int, depth: int) -> list[tuple[str, str, str]]:
    """(header, metric key, format) of a paper-shaped table, then the extra metrics."""
    return [
        (f"HR@{k}", f"hr@{k}", "num"),
        (f"MRR@{depth}", f"mrr@{depth}", "num"),
        (f"Coverage@{depth}", f"coverage@{depth}", "pct"),
        (f"Recall@{k}", f"recall@{k}", "num"),
        (f"NDCG@{k}", f"ndcg@{k}", "num"),
        ("users", "n_users", "int"),
    ]


def _fmt(v: Any, kind: str) -> str:
    if kind == "pct":
        return f"{100.0 * float(v):.1f}%"
    if kind == "int":
        return str(int(v))
    return f"{float(v):.3f}"


def _table_rows(
    rows: Sequence[Mapping[str, Any]], k: int, depth: int, report: Mapping[str, Any] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and body of one table. With ``report`` (rows of one target / segment): a paired-bootstrap
    column after HR@K when the report has intervals there, and a long-tail HR@K column when it has
    long-tail rows there."""
    cols = _columns(k, depth)
    header = ["Model"] + [c[0] for c in cols]
    body = [[r["model"]] + [_fmt(r["metrics"][key], kind) for _, key, kind in cols] for r in rows]
    if report is None or not rows:
        return header, body
    target, seg = rows[0]["target_type"], rows[0]["segment"]
    ivs = report.get("intervals", {}).get(target, {}).get(seg, {})
    if ivs:
        best = next(iter(ivs.values()))["vs"]
        header.insert(2, f"dHR@{k} vs {best} [95% CI]")
        for r, line in zip(rows, body):
            line.insert(2, _interval_cell(ivs.get(r["model"]), r["model"] == best))
    lt = {r["model"]: r["metrics"] for r in _select(report.get("long_tail", []), target, seg)}
    if lt:
        header.append(f"LT HR@{k}")
        for r, line in zip(rows, body):
            line.append(_fmt(lt[r["model"]][f"hr@{k}"], "num") if r["model"] in lt else "-")
    flagged = {f["model"] for f in report.get("flags", []) if (f["target_type"], f["segment"]) == (target, seg)}
    for line in body:
        line[0] += " (!)" if line[0] in flagged else ""
    return header, body


def _interval_cell(iv: Mapping[str, Any] | None, is_best: bool) -> str:
    if is_best:
        return "(best baseline)"
    if iv is None:
        return "-"
    return f"{iv['diff']:+.3f} [{iv['lo']:+.3f}, {iv['hi']:+.3f}]" + (" *" if iv["significant"] else "")


def format_flags(report: Mapping[str, Any]) -> list[str]:
    """One line per reference flag (empty without flags)."""
    return [
        f"(!) {f['model']} / {f['target_type']} / {f['segment']}: {f['metric']} {f['value']:.3f} is "
        f"{-100.0 * f['rel_change']:.0f}% below the reference ({f['reference']:.3f})"
        for f in report.get("flags", [])
    ]


def _select(rows: Sequence[Mapping[str, Any]], target: str, segment: str) -> list[Mapping[str, Any]]:
    return [r for r in rows if r["target_type"] == target and r["segment"] == segment]


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _text_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *body)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in body])


def _type_tables(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(title, target, segment) of every table: the paper's Tables 2-4 for the paper's types, then for every
    other target type (the report's protocol order, else by name) one per segment with results."""
    paper = {t for _, t, _ in PAPER_TABLES}
    order = list(report.get("meta", {}).get("protocol", {}).get("target_types") or [])
    targets = list(dict.fromkeys([*order, *sorted({r["target_type"] for r in report["results"]})]))
    out = list(PAPER_TABLES)
    for t in (t for t in targets if t not in paper):
        for seg in ("warm", "cold", "all"):
            out.append((f"{t} recommendations, {_SEGMENT_WORDS[seg]}", t, seg))
    return out


def paper_tables(report: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, body) of Table 1 (if ablations are given), Tables 2-4 (those with rows) and, for item
    types other than the paper's, one table per (target type, segment) with rows, titled with the data's
    type names ("film recommendations, warm-start users")."""
    k, depth = int(report["meta"]["k"]), int(report["meta"]["depth"])
    out = []
    if report.get("ablations"):
        out.append((TABLE1_TITLE, *_table_rows(report["ablations"], k, depth)))
    for title, target, seg in _type_tables(report):
        rows = _select(report["results"], target, seg)
        if rows:
            out.append((title, *_table_rows(rows, k, depth, report)))
    return out


_LEGEND = (
    "dHR: HR@{k} minus the segment's best baseline, 95% paired-bootstrap interval over users; "
    "* = the interval excludes 0. LT HR@{k}: HR@{k} on long-tail relevant items. (!) = flagged "
    "against the reference report."
)


def format_console(report: Mapping[str, Any]) -> str:
    """The paper-shaped tables as plain text (what the pipeline prints last), then the reference flags. Data
    with other item types than the paper's, or content not from the items' text, first gets one line
    naming its item types and where the content features came from."""
    parts = [f"{title}\n{_text_table(h, b)}" for title, h, b in paper_tables(report)]
    ds = report.get("meta", {}).get("dataset", {})
    if "content" in ds or not set(ds.get("items_per_type") or {}) <= {t for _, t, _ in PAPER_TABLES}:
        parts.insert(0, f"item types: {_types_line(ds)}; content features: {ds.get('content', _CONTENT_DEFAULT)}")
    sample = sample_line(report)
    if sample:
        parts.insert(0, sample)
    if report.get("intervals") or report.get("flags"):
        parts.append(_LEGEND.format(k=report["meta"]["k"]))
    if report.get("flags"):
        parts.append("\n".join(format_flags(report)))
    return "\n\n".join(parts)


def sample_line(report: Mapping[str, Any]) -> str:
    """One line naming the seeded user sample the metrics are on (``eval.sample_users``), or ""."""
    us = report.get("meta", {}).get("protocol", {}).get("user_sample")
    if not us:
        return ""
    pop = "; ".join(f"{t}: of {p['warm']:,} warm / {p['cold']:,} cold" for t, p in (us.get("population") or {}).items())
    return f"evaluated users: a seeded sample (seed {us['seed']}) of at most {us['per_segment']:,} per segment ({pop})"


def _types_line(ds: Mapping[str, Any]) -> str:
    per = ds.get("items_per_type") or {}
    return ", ".join(f"{t} ({n})" for t, n in per.items()) if per else "?"


def format_markdown(report: Mapping[str, Any]) -> str:
    """``report.md``: the paper's tables, every segment, the long-tail view, skipped rows and the meta."""
    meta = report["meta"]
    k, depth = int(meta["k"]), int(meta["depth"])
    ds = meta.get("dataset", {})
    parts = [
        "# Offline evaluation report",
        "",
        f"- created: {meta['created_utc']}, git {meta['git_sha'][:12]}",
        f"- dataset: {ds.get('name', '?')} ({ds.get('users', '?')} users, {ds.get('items', '?')} items, "
        f"{ds.get('interactions', '?')} interactions)",
        f"- item types: {_types_line(ds)}; content features: {ds.get('content', _CONTENT_DEFAULT)}",
        f"- split: {json.dumps(meta.get('split', {}), sort_keys=True)}",
        f"- protocol: {json.dumps(meta.get('protocol', {}), sort_keys=True)}",
        *[f"- {line}" for line in (sample_line(report),) if line],
        f"- HR/Recall/NDCG at K={k}; MRR and Coverage over the top {depth}; Coverage in % of the "
        "target type's catalogue.",
        "",
    ]
    for title, h, b in paper_tables(report):
        parts += [f"## {title}", "", _markdown_table(h, b), ""]
    groups = sorted(
        {(r["target_type"], r["segment"]) for r in report["results"]},
        key=lambda g: (g[0], SEGMENTS.index(g[1]) if g[1] in SEGMENTS else 99, g[1]),
    )
    parts += ["## All results", ""]
    for target, seg in groups:
        parts += [
            f"### {target} / {seg}",
            "",
            _markdown_table(*_table_rows(_select(report["results"], target, seg), k, depth, report)),
            "",
        ]
    if report.get("intervals") or report.get("flags"):
        parts += [_LEGEND.format(k=k), ""]
    if report.get("flags"):
        parts += ["## Flags (vs the reference report)", ""] + [f"- {line}" for line in format_flags(report)] + [""]
    if report["long_tail"]:
        parts += [
            "## Long tail (relevant items in popularity tiers "
            f"{report['long_tail'][0].get('tiers')}; Coverage = share of tail items shown)",
            "",
        ]
        for target, seg in groups:
            rows = _select(report["long_tail"], target, seg)
            if rows:
                parts += [f"### {target} / {seg}", "", _markdown_table(*_table_rows(rows, k, depth)), ""]
    if report["skipped"]:
        parts += (
            ["## Not scored", ""]
            + [f"- {s['model']} / {s['target_type']} / {s['segment']}: {s['reason']}" for s in report["skipped"]]
            + [""]
        )
    if report["training"]:
        parts += ["## Training", ""]
        for stage, info in report["training"].items():
            scalars = {k2: v for k2, v in (info.items() if isinstance(info, Mapping) else []) if k2 != "history"}
            n_hist = len(info.get("history", [])) if isinstance(info, Mapping) else 0
            parts.append(f"- {stage}: {json.dumps(scalars, sort_keys=True)} ({n_hist} logged steps)")
        parts.append("")
    return "\n".join(parts)
