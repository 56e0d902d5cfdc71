"""The layout is enforced: short functions and modules, and imports that point down the floors.

Floors, lowest first (BUILD_NOTES.md, "Architecture"): data -> graph -> sampler -> models -> training ->
evaluation -> serving -> job. A module may import its own floor and the floors below, never one above;
``sampler`` (its own top-level package) never imports ``twotower_hgnn``. ``sampler.csr`` (the graph
container) sits on the graph floor, ``retrieval`` (nearest-neighbour indexes) on the models floor.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("twotower_hgnn", "sampler")
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 80, 500
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    (
        "data",
        (
            "twotower_hgnn.data",
            "twotower_hgnn.logs",
            "twotower_hgnn.errors",
            "twotower_hgnn.io",
            "twotower_hgnn.rng",
            "twotower_hgnn.topk",
            "twotower_hgnn.arrays",
            "twotower_hgnn.parallel",
            "twotower_hgnn.checkpoint",
            "twotower_hgnn.tracking",
            "twotower_hgnn.provenance",
            "twotower_hgnn.stages",
        ),
    ),
    ("graph", ("twotower_hgnn.graph", "twotower_hgnn.user_graph", "sampler.csr")),
    ("sampler", ("sampler",)),
    (
        "models",
        (
            "twotower_hgnn.models",
            "twotower_hgnn.losses",
            "twotower_hgnn.features",
            "twotower_hgnn.history",
            "twotower_hgnn.text",
            "twotower_hgnn.inference",
            "twotower_hgnn.retrieval",
        ),
    ),
    ("training", ("twotower_hgnn.train",)),
    ("evaluation", ("twotower_hgnn.eval",)),
    ("serving", ("twotower_hgnn.serving",)),
    ("job", ("twotower_hgnn.pipeline", "twotower_hgnn.configs", "twotower_hgnn")),
]


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield (name[: -len(".__init__")] if name.endswith(".__init__") else name), path


def floor(module: str) -> int | None:
    """Index in FLOORS of the longest prefix matching ``module`` (``graph_x`` counts as ``graph``)."""
    best = None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if module == p or module.startswith(p + ".") or module.startswith(p + "_"):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    return None if best is None else best[0]


def _imports(tree: ast.AST):
    """(line, imported module) of every absolute import, function-level ones included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in PACKAGES:  # from twotower_hgnn import features
                yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names)
            else:
                yield node.lineno, node.module


def test_functions_and_modules_are_short():
    long = []
    for name, path in _modules():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(ROOT)}: module of {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}() is {n} lines")
    assert not long, f"over {MAX_FUNCTION_LINES} lines per function / {MAX_MODULE_LINES} per module:\n" + "\n".join(
        long
    )


def test_imports_point_down_the_floors():
    bad = []
    for name, path in _modules():
        mine = floor(name)
        assert mine is not None, f"{name} is on no floor: add it to FLOORS"
        for line, target in _imports(ast.parse(path.read_text())):
            if name.startswith("sampler") and target.startswith("twotower_hgnn"):
                bad.append(f"{path.relative_to(ROOT)}:{line} sampler imports {target}")
            theirs = floor(target) if target.split(".")[0] in PACKAGES else None
            if theirs is not None and theirs > mine:
                bad.append(f"{path.relative_to(ROOT)}:{line} {FLOORS[mine][0]} imports {target} ({FLOORS[theirs][0]})")
    assert not bad, "imports pointing up the floors:\n" + "\n".join(bad)


def test_the_contract_sees_a_violation(tmp_path):
    """The checker itself: an upward import is found (so the test above cannot pass vacuously)."""
    tree = ast.parse("def f():\n    from twotower_hgnn.pipeline import run_pipeline\n")
    found = [(line, t) for line, t in _imports(tree)]
    assert found == [(2, "twotower_hgnn.pipeline")] and floor(found[0][1]) > floor("twotower_hgnn.models.hgnn")
    assert floor("twotower_hgnn.graph_config") == floor("twotower_hgnn.graph") == floor("sampler.csr")
