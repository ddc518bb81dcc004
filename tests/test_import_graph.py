"""The packages' layering, read from the source: no package imports one above it.

configflags, envs and dataset sit at the bottom, then expert, bc, eval and experiments on top.
The one way up is a command's ``if __name__ == "__main__":`` block, the composition root
(bc/train.py hands eval's closed-loop callback to the trainer there).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the project packages each package may import besides itself
ALLOWED_IMPORTS: dict[str, set[str]] = {
    "configflags": set(),
    "envs": {"configflags"},
    "dataset": {"envs", "configflags"},
    "expert": {"envs", "dataset", "configflags"},
    "bc": {"envs", "dataset", "expert", "configflags"},
    "eval": {"envs", "dataset", "expert", "bc", "configflags"},
    "experiments": {"envs", "dataset", "expert", "bc", "eval", "configflags"},
}


def _is_main_guard(node: ast.AST) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = {ast.unparse(test.left), ast.unparse(test.comparators[0])}
    return sides == {"__name__", "'__main__'"}


def _imports_outside_main_guard(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    children = node.orelse if _is_main_guard(node) else ast.iter_child_nodes(node)
    for child in children:
        yield from _imports_outside_main_guard(child)


def _imported_packages(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name.partition(".")[0] for alias in node.names]
    if node.level > 0 or node.module is None:
        return []  # a relative import stays inside its own package
    return [node.module.partition(".")[0]]


def upward_imports(package: str, source: str, filename: str) -> list[str]:
    """``file:line: imports X`` for each import of a project package ``package`` may not use."""
    allowed = ALLOWED_IMPORTS[package] | {package}
    found = []
    for node in _imports_outside_main_guard(ast.parse(source, filename)):
        for imported in _imported_packages(node):
            if imported in ALLOWED_IMPORTS and imported not in allowed:
                statement = ast.unparse(node)
                found.append(f"{filename}:{node.lineno}: imports {imported} ({statement})")
    return found


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
