"""No import cycles in ``nlmeans`` and ``nlmeans_cli``.

The import graph is built from the source with :mod:`ast`, imports inside
functions (and under ``if TYPE_CHECKING``) included: an import moved into a
function only hides a cycle, it does not remove it. A node is a module or a
package (its ``__init__``); ``import a.b`` and ``from a.b import c`` are edges
to ``a.b`` (to ``a.b.c`` when that is a module). The parent packages Python
runs first on the way (``a``) are not edges: otherwise every submodule would
depend on its package's ``__init__`` and on everything that imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Package name -> its source folder (cli/ installs as nlmeans_cli, see pyproject.toml).
PACKAGES = {"nlmeans": ROOT / "nlmeans", "nlmeans_cli": ROOT / "cli"}

#: Cycles tolerated for now, each as the set of modules of its strongly
#: connected component: none. A listed cycle that no longer exists fails the
#: test, so the list cannot go stale.
KNOWN_CYCLES: list[frozenset[str]] = []


def module_files(packages: dict[str, Path]) -> dict[str, Path]:
    """Module name -> source file, for every ``.py`` file of the packages."""
    modules = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _resolve(name: str, level: int, module: str, is_package: bool) -> str:
    """The absolute module name of a (possibly relative) import written in ``module``."""
    if level == 0:
        return name
    base = module.split(".")
    if not is_package:
        base = base[:-1]  # a module's relative imports start from its package
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph(packages: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports, anywhere in its source."""
    modules = module_files(packages)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, module, is_package)
                for alias in node.names:
                    # `from pkg import sub` imports the submodule when there is one.
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                # `import pkg.sub.name` where name is no module: the deepest module named.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[frozenset[str], list[str]]]:
    """Each strongly connected component with a cycle, and one cycle through it as a path.

    Tarjan's algorithm, written iteratively (no recursion limit on a deep graph).
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return [(frozenset(c), _a_cycle(graph, c)) for c in components]


def _a_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first), for the message."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle in the component {sorted(component)}")  # pragma: no cover


def _describe(found) -> str:
    return "\n".join(" -> ".join(path) for _members, path in found)


# --------------------------------------------------------------------------- the checker itself


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"pkg": tmp_path / "pkg"}


def test_graph_sees_relative_absolute_and_function_level_imports(tmp_path):
    packages = _package(
        tmp_path,
        {
            "__init__.py": "from .a import f\n",
            "a.py": "import os\n\ndef f():\n    from . import b\n    return b\n",
            "b.py": "from pkg.sub import c\n",
            "sub/__init__.py": "",
            "sub/c.py": "from .. import a\nimport pkg.sub.d as d\nfrom ..a import f\n",
            "sub/d.py": "import pkg\n",
        },
    )
    assert import_graph(packages) == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},  # imported inside a function; os is not ours
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.a", "pkg.sub.d"},
        "pkg.sub.d": {"pkg"},
    }


def test_cycles_are_found_and_shown_as_paths(tmp_path):
    graph = {
        "a": {"b"},
        "b": {"c", "d"},
        "c": {"a"},
        "d": {"e"},
        "e": {"d"},
        "f": {"a"},
    }
    found = sorted(cycles(graph), key=lambda item: sorted(item[0]))
    assert [members for members, _ in found] == [frozenset("abc"), frozenset("de")]
    assert [path for _, path in found] == [["a", "b", "c", "a"], ["d", "e", "d"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# --------------------------------------------------------------------------- the project


def test_no_import_cycles_outside_the_known_ones():
    found = cycles(import_graph(PACKAGES))
    new = [item for item in found if item[0] not in KNOWN_CYCLES]
    assert not new, "import cycles:\n" + _describe(new)
    gone = [sorted(members) for members in KNOWN_CYCLES if members not in {m for m, _ in found}]
    assert not gone, f"these known cycles are gone: remove them from KNOWN_CYCLES: {gone}"
    if found:
        pytest.skip("known import cycles remain (KNOWN_CYCLES):\n" + _describe(found))


def test_no_import_cycles_without_the_neural_package():
    graph = import_graph(PACKAGES)
    neural = {name for name in graph if name.startswith("nlmeans.neural")}
    rest = {name: targets - neural for name, targets in graph.items() if name not in neural}
    found = cycles(rest)
    assert not found, "import cycles:\n" + _describe(found)
