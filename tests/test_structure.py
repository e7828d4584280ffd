"""The package's structure, read from its source: the runtime never imports the course, no import
cycle of any kind (imports inside functions included), and no module takes another's private
names."""

from __future__ import annotations

import ast

from .conftest import ROOT

PACKAGE = ROOT / "hitl_kit"


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def imports_of(name: str, tree: ast.Module) -> set[str]:
    """Every hitl_kit module this one imports, at its top or inside a function."""
    package = name if name.endswith("__init__") else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("hitl_kit")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if base.startswith("hitl_kit"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


def graph() -> dict[str, set[str]]:
    trees = modules()
    return {name: {i for i in imports_of(name, tree) if i in trees and i != name}
            for name, tree in trees.items()}


FRONT_DOOR = "hitl_kit.__main__"  # the command line serves both: check, hint, solution; run, serve


def test_no_runtime_module_imports_the_course():
    leaks = {name: sorted(i for i in imported if i.startswith("hitl_kit.course"))
             for name, imported in graph().items()
             if not name.startswith("hitl_kit.course") and name != FRONT_DOOR}
    assert not {k: v for k, v in leaks.items() if v}, "the runtime imports the course"


def test_there_is_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_takes_another_modules_private_names():
    taken = []
    for name, tree in modules().items():
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hitl_kit"):
                for alias in node.names:
                    if alias.name.startswith("_"):
                        taken.append(f"{name}: from {node.module} import {alias.name}")
                    imported.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                imported |= {(a.asname or a.name).split(".")[0] for a in node.names
                             if a.name.startswith("hitl_kit")}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                    and node.value.id in imported):
                taken.append(f"{name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not taken, "private names used across modules:\n" + "\n".join(taken)
