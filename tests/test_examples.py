"""Every ``examples/*.py`` runs end to end as ``python examples/NAME.py``, in a subprocess.

Each example declares at module level ``REQUIRES = {"importable_module": "how to get it"}``:
the value is the name of an extra in pyproject.toml (``"sb3"``), or, for a package that no
extra can hold, the ``pip install ...`` command that installs it. The dict is read with
``ast``, never by importing the example, and an example whose modules are missing is skipped
with a reason that says how to install them (failed in CI, which installs every extra, unless
no extra can hold them: ``tests/extras.py``). An example must leave nothing behind: not in its
working directory, not in the temp directory (but shared caches), not beside
itself.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.extras import install_line, missing_extra

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# what stays in the temp directory on purpose, shared by processes: the env's texture bank
# and torch's compiler cache (made by torch.optim's import of torch._dynamo, not by an example)
SHARED_TEMP_PREFIXES = ("corridor-bc-textures-", "torchinductor_")
TIMEOUT_S = 120


def declared_requires(path: Path) -> dict[str, str] | None:
    """The literal ``REQUIRES`` dict at an example's top level, or None if there is none."""
    for node in ast.parse(path.read_text(), str(path)).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "REQUIRES" for t in targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise TypeError(f"{path.name}: REQUIRES must be a literal dict") from None
            if not isinstance(value, dict):
                raise TypeError(f"{path.name}: REQUIRES must be a dict, got {value!r}")
            return value
    return None


def project_extras() -> set[str]:
    """The names under ``[project.optional-dependencies]`` in pyproject.toml."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the project's tomli dependency
        import tomli as tomllib
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return set(tomllib.load(handle)["project"]["optional-dependencies"])


def install_hint(module: str, how: str) -> str:
    """The skip reason for a missing module, from its REQUIRES value."""
    if how.startswith("pip install"):
        return f"needs {module}, which no extra can hold (docs/ecosystem.md): {how}"
    return install_line(how)


def test_examples_exist():
    names = {path.name for path in EXAMPLES}
    assert {"sb3_ppo.py", "imitation_bc.py", "gym_wrappers.py"} <= names, names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_declares_requires(path):
    requires = declared_requires(path)
    assert requires is not None, f"{path.name} has no module-level REQUIRES dict"
    extras = project_extras()
    for module, how in requires.items():
        assert isinstance(module, str) and module.isidentifier(), (path.name, module)
        assert isinstance(how, str), (path.name, module, how)
        assert how.startswith("pip install") or how in extras, (
            f"{path.name}: REQUIRES[{module!r}] = {how!r} is neither an extra of pyproject.toml "
            f"({sorted(extras)}) nor a pip install command"
        )


def test_requires_is_read_without_importing(tmp_path):
    example = tmp_path / "example.py"
    example.write_text('import no_such_module\nREQUIRES: dict = {"no_such_module": "sb3"}\n')
    assert declared_requires(example) == {"no_such_module": "sb3"}
    example.write_text('def main():\n    REQUIRES = {"x": "sb3"}\n')
    assert declared_requires(example) is None  # only a module-level REQUIRES counts


def test_skip_reasons_name_the_extra():
    assert install_hint("stable_baselines3", "sb3") == (
        "needs the 'sb3' extra: pip install -e '.[sb3]'"
    )
    assert install_hint("x", "pip install x").endswith(": pip install x")


def _leftovers(directory: Path) -> list[str]:
    return sorted(
        path.name for path in directory.iterdir() if not path.name.startswith(SHARED_TEMP_PREFIXES)
    )


def _beside(path: Path) -> set[str]:
    return {p.name for p in path.parent.iterdir() if p.suffix != ".py" and p.name != "__pycache__"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(path, tmp_path):
    requires = declared_requires(path) or {}
    for module, how in requires.items():
        if importlib.util.find_spec(module) is not None:
            continue
        if how.startswith("pip install"):  # CI cannot install it either: a skip, even there
            pytest.skip(f"{path.name} {install_hint(module, how)}")
        missing_extra(how, f"{path.name} imports {module}")
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    beside_before = _beside(path)
    # the examples import the project's packages as an installed user would, from any folder
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip(), f"{path.name} printed nothing"
    assert _leftovers(work) == [], f"{path.name} wrote into its working directory"
    assert _leftovers(temp) == [], f"{path.name} left files in the temp directory"
    assert _beside(path) == beside_before, f"{path.name} wrote beside itself"
