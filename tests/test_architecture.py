"""The layout shows the architecture: the core imports no plugin, has no import circle (type-only
imports included), and every built-in module either registers something or lives in a ``lib/``
folder as a library."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "gaia_bench"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_core_and_its_cli_import_no_plugin():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.startswith(("gaia_bench.plugins",
                                                                                           "gaia_bench.tasks")))
                 for p in CORE.rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_core_has_no_import_circle():
    graph = {f"gaia_bench.{p.stem}": {m for m in _imports(p) if m.startswith("gaia_bench.")
                                      and not m.startswith(("gaia_bench.cli", "gaia_bench.plugins", "gaia_bench.tasks"))}
             for p in CORE.glob("*.py") if p.stem != "__init__"}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, ()):
            assert state.get(dep) != 1, "import circle: " + " -> ".join([*path[path.index(dep):], dep])
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_a_module_that_registers_nothing_lives_in_a_lib_folder():
    for folder in (ROOT / "plugins", ROOT / "tasks"):
        for path in folder.rglob("*.py"):
            if path.name == "__init__.py":
                continue
            registers = "hookimpl" in path.read_text()
            in_lib = "lib" in path.relative_to(folder).parts
            assert registers != in_lib, f"{path.relative_to(ROOT)}: " + (
                "a library registers hooks" if in_lib else "registers nothing: move it to a lib/ folder")
