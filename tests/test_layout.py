"""The package's layout rules, read from the source with ``ast`` (docs/ARCHITECTURE.md):

- every import of a ragchat module sits at the top of its module: none inside a function (lazy
  imports are for heavy third-party libraries only);
- a stage imports only itself and the stages below it (store never imports ingest, ingest never
  imports answer, nothing but the wiring and the front ends import the wiring);
- no import cycles between modules.

Imports under ``if TYPE_CHECKING:`` are annotations only and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# The stages, lowest first. A module may import its own stage and any lower one.
STAGES = {
    "core": 0,
    "store": 1, "embed": 1, "llm": 1,
    "auth": 2, "ingest": 2, "retrieve": 2,
    "answer": 3,
    "engine": 4,
    "eval": 5,
    "api": 6,
    "ui": 7,
    "cli": 8,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The ragchat modules an import statement names (``from ragchat.x import y`` counts ``ragchat.x.y``
    when that is a module, else ``ragchat.x``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "ragchat"]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    if base.split(".")[0] != "ragchat":
        return []
    out = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        out.append(candidate if candidate in MODULES else base)
    return out


def _walk(tree: ast.Module, module: str, is_package: bool):
    """(import target, at module level?) for every ragchat import, skipping TYPE_CHECKING blocks."""
    def visit(nodes, top):
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(node, module, is_package):
                    yield target, top, node.lineno
            inner = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from visit(ast.iter_child_nodes(node), top and not inner)
    yield from visit(tree.body, True)


# The command line imports each sub-command's stack when that sub-command runs: `ragchat docs` must not
# pay for Gradio, the models or the API (start-up time). It is the one module allowed to import late.
LAZY_ALLOWED = {"ragchat.cli"}

FILES = {_module_name(p): p for p in sorted((SRC / "ragchat").rglob("*.py"))}
MODULES = set(FILES)
IMPORTS = {m: list(_walk(ast.parse(p.read_text(encoding="utf-8")), m, p.name == "__init__.py")) for m, p in FILES.items()}


def test_every_module_has_a_stage():
    unknown = sorted({_stage(m) for m in MODULES} - set(STAGES) - {None})
    assert not unknown, f"packages with no stage in STAGES (add them, and to docs/ARCHITECTURE.md): {unknown}"


def test_no_ragchat_import_inside_a_function():
    inside = [f"{FILES[m].relative_to(SRC)}:{line} imports {t}"
              for m, found in IMPORTS.items() if m not in LAZY_ALLOWED for t, top, line in found if not top]
    assert not inside, "imports of ragchat modules inside functions (move them to the top):\n" + "\n".join(inside)


def test_no_stage_imports_a_later_one():
    bad = []
    for m, found in IMPORTS.items():
        own = _stage(m)
        for t, _top, line in found:
            other = _stage(t)
            if own is None or other is None or other == own:
                continue
            if STAGES[other] >= STAGES[own]:
                bad.append(f"{FILES[m].relative_to(SRC)}:{line} ({own}, stage {STAGES[own]}) imports {t} "
                           f"({other}, stage {STAGES[other]})")
    assert not bad, "imports against the stage order:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    graph = {m: {t for t, _top, _line in found if t in MODULES and t != m} for m, found in IMPORTS.items()}
    # a package's __init__ importing its own modules is not a cycle with them
    for m in graph:
        graph[m] = {t for t in graph[m] if not (FILES[t].name == "__init__.py" and m.startswith(t + "."))}
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


@pytest.mark.parametrize("limit", [450])
def test_module_and_function_sizes(limit):
    long_modules = [f"{p.relative_to(SRC)}: {n} lines" for p in FILES.values()
                    if (n := p.read_text(encoding="utf-8").count("\n")) > limit]
    long_functions = []
    for p in FILES.values():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "build_blocks":
                if (n := node.end_lineno - node.lineno + 1) > 80:
                    long_functions.append(f"{p.relative_to(SRC)}:{node.lineno} {node.name}: {n} lines")
    assert not long_modules and not long_functions, "\n".join(long_modules + long_functions)
