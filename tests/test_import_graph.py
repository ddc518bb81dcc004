"""The import graph, read from the source: layered packages, and no cycle between modules.

configflags, envs and dataset sit at the bottom, then expert, bc, eval and experiments on top:
no package imports one above it, and no module imports one that (through others) imports it
back. Every import counts, those under ``if TYPE_CHECKING:`` and inside functions included: a
type-only cycle still ties the modules together for a reader and for the next refactor. The one
exception is a command's ``if __name__ == "__main__":`` block, the composition root
(bc/train.py hands eval's closed-loop callback to the trainer there).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]

# the project packages each package may import besides itself
ALLOWED_IMPORTS: dict[str, set[str]] = {
    "artifacts": set(),
    "configflags": {"artifacts"},
    "envs": {"configflags", "artifacts"},
    "dataset": {"envs", "configflags", "artifacts"},
    "expert": {"envs", "dataset", "configflags", "artifacts"},
    "bc": {"envs", "dataset", "expert", "configflags", "artifacts"},
    "eval": {"envs", "dataset", "expert", "bc", "configflags", "artifacts"},
    "experiments": {"envs", "dataset", "expert", "bc", "eval", "configflags", "artifacts"},
}


@dataclass(frozen=True)
class Import:
    """One import in a project file: where it is, and the dotted names it loads, resolved."""

    filename: str
    line: int
    statement: str
    context: str  # "" at module level, else "if TYPE_CHECKING" or "in NAME()"
    names: tuple[str, ...]

    def __str__(self) -> str:
        where = f"  ({self.context})" if self.context else ""
        return f"{self.filename}:{self.line}: {self.statement}{where}"


# module -> the project modules it imports -> the imports that do it
Graph = dict[str, dict[str, list[Import]]]


def _is_main_guard(node: ast.AST) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = {ast.unparse(test.left), ast.unparse(test.comparators[0])}
    return sides == {"__name__", "'__main__'"}


def _is_type_checking_guard(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in (
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    )


def _is_dynamic_import(node: ast.AST) -> bool:
    """``importlib.import_module("a.b")`` with an absolute literal name: an import too."""
    return (
        isinstance(node, ast.Call)
        and ast.unparse(node.func) in ("importlib.import_module", "import_module")
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and not node.args[0].value.startswith(".")
    )


def _import_nodes(node: ast.AST, context: str = "") -> Iterator[tuple[ast.AST, str]]:
    """Every import below ``node`` but those in a main block, with where it sits."""
    if isinstance(node, ast.Import | ast.ImportFrom) or _is_dynamic_import(node):
        yield node, context
    if _is_main_guard(node):
        parts = [(node.orelse, context)]  # the composition root may import anything
    elif _is_type_checking_guard(node):
        parts = [(node.body, context or "if TYPE_CHECKING"), (node.orelse, context)]
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        parts = [(ast.iter_child_nodes(node), context or f"in {node.name}()")]
    else:
        parts = [(ast.iter_child_nodes(node), context)]
    for children, inner in parts:
        for child in children:
            yield from _import_nodes(child, inner)


def module_name(filename: str) -> str:
    """``bc/nets/__init__.py`` -> ``bc.nets``, ``bc/train.py`` -> ``bc.train``."""
    parts = PurePosixPath(filename).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(node: ast.AST, filename: str, is_module: Callable[[str], bool]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.Call):
        return [node.args[0].value]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level > 0:
        # the importer's package, then one level up per extra dot
        package = module_name(filename).split(".")
        if not filename.endswith("__init__.py"):
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, *([node.module] if node.module else [])])
    submodules = [f"{base}.{alias.name}" for alias in node.names]
    submodules = [name for name in submodules if is_module(name)]
    # a name that is no submodule comes from the package's __init__
    return submodules + [base] * (len(submodules) < len(node.names))


def file_imports(
    source: str, filename: str, is_module: Callable[[str], bool] = lambda name: False
) -> list[Import]:
    """The imports of the file ``filename`` (relative to the root), main blocks left out.

    ``is_module`` tells ``from pkg import name`` apart: a submodule ``pkg.name``, or a name of
    ``pkg`` itself.
    """
    found = []
    for node, context in _import_nodes(ast.parse(source, filename)):
        names = tuple(_imported_names(node, filename, is_module))
        found.append(Import(filename, node.lineno, ast.unparse(node), context, names))
    return found


def upward_imports(package: str, source: str, filename: str) -> list[str]:
    """``file:line: imports X`` for each import of a project package ``package`` may not use."""
    allowed = ALLOWED_IMPORTS[package] | {package}
    found = []
    for imported in file_imports(source, filename):
        for top in dict.fromkeys(name.partition(".")[0] for name in imported.names):
            if top in ALLOWED_IMPORTS and top not in allowed:
                found.append(
                    f"{imported.filename}:{imported.line}: imports {top} ({imported.statement})"
                )
    return found


def import_graph(root: Path, packages: Iterable[str]) -> Graph:
    """The import graph of the modules of ``packages`` under ``root``."""
    files = {
        module_name(path.relative_to(root).as_posix()): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    graph: Graph = {}
    for name, path in files.items():
        edges = graph[name] = {}
        for imported in file_imports(
            path.read_text(), path.relative_to(root).as_posix(), files.__contains__
        ):
            for target in imported.names:
                # `import a.b.c` loads module a.b.c; `import a.b.Name` would be an error anyway
                parts = target.split(".")
                owners = (".".join(parts[:n]) for n in range(len(parts), 0, -1))
                module = next((owner for owner in owners if owner in files), None)
                if module is not None and module != name:
                    edges.setdefault(module, []).append(imported)
    return graph


def _strongly_connected(graph: Graph) -> list[set[str]]:
    """Tarjan's components, each a set of modules that all reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = {stack.pop()}
            while node not in component:
                component.add(stack.pop())
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _shortest_path(graph: Graph, start: str, end: str, within: set[str]) -> list[str]:
    previous = {start: start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == end:
            break
        for target in sorted(graph[node]):
            if target in within and target not in previous:
                previous[target] = node
                queue.append(target)
    path = [end]
    while path[-1] != start:
        path.append(previous[path[-1]])
    return path[::-1]


def import_cycles(graph: Graph) -> list[list[str]]:
    """The shortest cycle through each import that lies on one, shortest cycles first.

    Each cycle starts at its smallest module name and does not repeat it at the end.
    """
    cycles: set[tuple[str, ...]] = set()
    for component in _strongly_connected(graph):
        for source in sorted(component):
            for target in sorted(set(graph[source]) & component):
                cycle = [source, *_shortest_path(graph, target, source, component)[:-1]]
                first = cycle.index(min(cycle))
                cycles.add(tuple(cycle[first:] + cycle[:first]))
    return [list(cycle) for cycle in sorted(cycles, key=lambda cycle: (len(cycle), cycle))]


def describe_cycle(cycle: list[str], graph: Graph) -> str:
    """The cycle as a module chain, then each import on it as ``file:line: statement``."""
    steps = list(zip(cycle, cycle[1:] + cycle[:1], strict=True))
    lines = [" -> ".join([*cycle, cycle[0]])]
    lines += [f"    {imported}" for source, target in steps for imported in graph[source][target]]
    return "\n".join(lines)


def test_every_project_package_has_a_layer():
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(ALLOWED_IMPORTS)


def test_packages_import_only_packages_below_them():
    found = []
    for package in ALLOWED_IMPORTS:
        for path in sorted((ROOT / package).rglob("*.py")):
            filename = str(path.relative_to(ROOT))
            found += upward_imports(package, path.read_text(), filename)
    assert not found, "imports against the layering:\n" + "\n".join(found)


def test_an_upward_import_inside_a_function_is_reported():
    source = "import torch\n\n\ndef f():\n    from eval.rollout import main\n    return main\n"
    assert upward_imports("bc", source, "bc/x.py") == [
        "bc/x.py:5: imports eval (from eval.rollout import main)"
    ]


def test_an_upward_type_only_or_dynamic_import_is_reported():
    source = (
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from experiments.sweep.runner import SweepConfig\n"
        "importlib.import_module('eval.rollout')\n"
        "from . import sibling\n"
    )
    assert upward_imports("bc", source, "bc/x.py") == [
        "bc/x.py:4: imports experiments (from experiments.sweep.runner import SweepConfig)",
        "bc/x.py:5: imports eval (importlib.import_module('eval.rollout'))",
    ]


def test_an_import_in_the_main_block_is_allowed_and_its_else_is_not():
    source = (
        'if __name__ == "__main__":\n'
        "    from eval.during_training import closed_loop_callback\n"
        "else:\n"
        "    import experiments\n"
    )
    assert upward_imports("bc", source, "bc/x.py") == [
        "bc/x.py:4: imports experiments (import experiments)"
    ]


def test_no_import_cycles_between_modules():
    graph = import_graph(ROOT, ALLOWED_IMPORTS)
    cycles = import_cycles(graph)
    assert not cycles, (
        f"{len(cycles)} import cycle(s) between modules; every import counts, type-only ones"
        " and those inside functions too, but a command's main block:\n"
        + "\n".join(describe_cycle(cycle, graph) for cycle in cycles)
    )


def test_relative_and_submodule_imports_are_resolved():
    is_module = {"pkg.sub.a", "pkg.b"}.__contains__
    source = "from .. import b, helper\nfrom . import a\nfrom .a import name\nimport pkg.b\n"
    found = file_imports(source, "pkg/sub/c.py", is_module)
    assert [i.names for i in found] == [("pkg.b", "pkg"), ("pkg.sub.a",), ("pkg.sub.a",),
                                        ("pkg.b",)]  # fmt: skip
    assert file_imports("from . import a\n", "pkg/sub/__init__.py", is_module)[0].names == (
        "pkg.sub.a",
    )


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(source)


def test_type_only_and_function_level_cycles_are_found_and_main_blocks_are_not(tmp_path):
    _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.b import B\n",
        "pkg/b.py": "from . import a\n",
        "pkg/c.py": "def f():\n    from pkg.d import x\n    return x\n",
        "pkg/d.py": "import pkg.c\nimport pkg.d\n",  # a module's import of itself is no cycle
        "pkg/e.py": 'if __name__ == "__main__":\n    from pkg.f import main\n',
        "pkg/f.py": "from pkg import e\nfrom pkg import VERSION\n",
        "other/__init__.py": "from other import g\n",
        "other/g.py": "from other.h import x\n",  # runs other/__init__.py: no import of it
        "other/h.py": "x = 1\n",
    })  # fmt: skip
    graph = import_graph(tmp_path, ["pkg", "other"])
    assert set(graph["pkg.e"]) == set() and set(graph["pkg.f"]) == {"pkg.e", "pkg"}
    assert set(graph["other"]) == {"other.g"} and set(graph["other.g"]) == {"other.h"}
    cycles = import_cycles(graph)
    assert cycles == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
    assert describe_cycle(cycles[0], graph) == (
        "pkg.a -> pkg.b -> pkg.a\n"
        "    pkg/a.py:3: from pkg.b import B  (if TYPE_CHECKING)\n"
        "    pkg/b.py:1: from . import a"
    )
    assert describe_cycle(cycles[1], graph).splitlines()[1] == (
        "    pkg/c.py:2: from pkg.d import x  (in f())"
    )


def test_every_import_on_a_cycle_shows_in_some_listed_cycle(tmp_path):
    # a -> b -> c -> a and b -> a: two cycles in one component, both listed
    _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "import pkg.c\nimport pkg.a\n",
        "pkg/c.py": "from pkg import a\n",
        "pkg/d.py": "import pkg.a\n",
    })  # fmt: skip
    assert import_cycles(import_graph(tmp_path, ["pkg"])) == [
        ["pkg.a", "pkg.b"],
        ["pkg.a", "pkg.b", "pkg.c"],
    ]
