"""The import graph, read from the source: the runtime never imports the builder, and runtime/ has no cycles.

Imports under `if TYPE_CHECKING:` are for the type checker only and are not followed. A package may import its own
submodules lazily (the engine and task registries do): that edge points down, and is not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support import ROOT

RUNTIME_FILES = [ROOT / "handler.py", *sorted((ROOT / "runtime").rglob("*.py"))]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path) -> dict[str, bool]:
    """Module names this file imports -> whether at module level (True) or inside a function (False)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, bool] = {}

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found[alias.name] = found.get(alias.name, False) or top
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found[child.module] = found.get(child.module, False) or top
                for alias in child.names:  # `from runtime.tasks import params` imports the submodule
                    found[f"{child.module}.{alias.name}"] = found.get(f"{child.module}.{alias.name}", False) or top
            visit(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, True)
    return found


def runtime_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in RUNTIME_FILES}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {m for m in imports(path) if m in modules and m != name}
        # a package importing its own submodule (a lazy registry) points down, not around
        graph[name] = {t for t in targets if not t.startswith(name + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_runtime_never_imports_the_builder(path: Path) -> None:
    builder = [m for m in imports(path) if m == "bundle_builder" or m.startswith("bundle_builder.")]
    assert builder == [], f"{path.relative_to(ROOT)} imports {builder}: the image ships without the builder"


def test_runtime_has_no_import_cycles() -> None:
    graph = runtime_graph()
    assert len(graph) >= 20 and "runtime.function" in graph["handler"]  # the walk really found the package
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    # the old loader <-> onnx_engine pair, as it was before the engine registry
    assert find_cycle({"runtime.loader": {"runtime.engines.onnx_engine"}, "runtime.engines.onnx_engine": {"runtime.loader"}})
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_only_settings_reads_the_environment() -> None:
    readers = []
    for path in RUNTIME_FILES:
        source = path.read_text(encoding="utf-8")
        if ("os.environ" in source or "os.getenv" in source) and path.name != "settings.py":
            readers.append(str(path.relative_to(ROOT)))
    assert readers == [], f"{readers} read the environment; runtime/settings.py owns every variable"


def test_nothing_after_the_manifest_parser_reads_a_manifest_key_by_string() -> None:
    offenders = []
    for path in [*RUNTIME_FILES, *sorted((ROOT / "bundle_builder").glob("*.py"))]:
        if path.name in ("manifest.py", "build.py", "engine_choice.py", "genai_export.py"):  # the parser, the builders
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "manifest[" in line or "manifest.get(" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == []
