"""Structure rules that ruff does not check, run by ``make lint``:

- no function or method in ``src/`` longer than ``MAX_LINES`` lines (decorators and docstring included);
- no import cycle among prunelab's modules, counting every import (also those inside functions, which hide
  cycles at import time but still couple the modules);
- the layer contracts (issue 28): the package root holds only ``ROOT_MODULES``; each package in ``ISOLATED``
  imports nothing of prunelab outside itself except the packages listed for it (every import counts, also those
  inside functions).

Exit status 1 with one line per violation; 0 and a one-line summary otherwise.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 60
ROOT_MODULES = {"__init__.py", "__main__.py", "errors.py"}
ISOLATED = {  # package: the other prunelab modules it may import
    "prunelab.pruning": {"prunelab.errors"},
    "prunelab.models": {"prunelab.errors"},
    "prunelab.data": {"prunelab.errors"},
}
ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "prunelab"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def long_functions(tree: ast.AST, path: Path) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > MAX_LINES:
                out.append(f"{path.relative_to(ROOT.parent)}:{start}: {node.name} is {length} lines (> {MAX_LINES})")
    return out


def imports(tree: ast.AST, name: str, modules: set[str]) -> set[str]:
    """The prunelab modules ``name`` imports (a package import counts as its ``__init__``)."""
    out = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = name.split(".")[: len(name.split(".")) - node.level + (1 if name in packages else 0)]
                base = ".".join([*pkg, base] if base else pkg)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith(PACKAGE):
                out.add(t)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


packages: set[str] = set()


def contracts(graph: dict[str, set[str]], files: list[Path]) -> list[str]:
    """Violations of the layer contracts, one line each."""
    out = [
        f"src/{p.relative_to(ROOT).as_posix()}: a module at the package root (only {', '.join(sorted(ROOT_MODULES))})"
        for p in files
        if p.parent == ROOT / PACKAGE and p.name not in ROOT_MODULES
    ]
    for package, allowed in ISOLATED.items():
        for name, deps in sorted(graph.items()):
            if name == package or name.startswith(package + "."):
                out += [
                    f"{name} imports {dep}: {package} may import only itself and {', '.join(sorted(allowed))}"
                    for dep in sorted(deps)
                    if not (dep == package or dep.startswith(package + ".") or dep in allowed)
                ]
    return out


def main() -> int:
    files = sorted(ROOT.rglob("*.py"))
    packages.update(module_name(p) for p in files if p.name == "__init__.py")
    modules = {module_name(p) for p in files}
    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        problems += long_functions(tree, path)
        name = module_name(path)
        # a package's __init__ importing its own submodules is how packages re-export; not a coupling cycle
        graph[name] = {m for m in imports(tree, name, modules) if not (name in packages and m.startswith(name + "."))}
    problems += [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    problems += contracts(graph, files)
    for line in problems:
        print(line)
    if problems:
        return 1
    print(
        f"structure: {len(files)} files, functions <= {MAX_LINES} lines, no import cycle among {len(modules)} modules, "
        f"{len(ROOT_MODULES)} root modules at most, {', '.join(ISOLATED)} isolated"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
