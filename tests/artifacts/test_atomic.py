"""Crash-safe writes: an interrupted write leaves the old file, and nothing else renames files."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from artifacts import atomic
from artifacts.atomic import (
    TEMP_MARK,
    atomic_path,
    commit_directory,
    copy_file_atomic,
    temp_path,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

ROOT = Path(__file__).resolve().parents[2]


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_temporary_name_is_hidden_per_process_and_keeps_the_suffix(tmp_path):
    temporary = temp_path(tmp_path / "clip.mp4")
    assert temporary.parent == tmp_path
    assert temporary.name == f".clip.{os.getpid()}{TEMP_MARK}.mp4"


def test_writes_replace_the_file_and_leave_nothing_beside_it(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    write_json_atomic(path, {"b": 1.5, "a": [1]}, indent=2, sort_keys=True)
    assert path.read_text() == '{\n  "a": [\n    1\n  ],\n  "b": 1.5\n}\n'
    write_json_atomic(path, {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1} and path.read_text().endswith("}\n")
    write_text_atomic(tmp_path / "t.md", "± text\n")
    assert (tmp_path / "t.md").read_bytes() == "± text\n".encode()
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    copy_file_atomic(tmp_path / "b.bin", tmp_path / "c.bin")
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"
    assert _hidden(tmp_path) == []


def test_strict_json_refuses_nan_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old\n")
    with pytest.raises(ValueError):
        write_json_atomic(path, {"x": float("nan")}, allow_nan=False)
    assert path.read_text() == "old\n" and _hidden(tmp_path) == []


def test_an_error_inside_the_block_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "page.md"
    path.write_text("old content")
    with pytest.raises(RuntimeError, match="half way"), atomic_path(path) as temporary:
        temporary.write_text("new cont")
        raise RuntimeError("half way")
    assert path.read_text() == "old content"
    assert _hidden(tmp_path) == []


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text('{"old": true}\n')

    def no_rename(source, target):
        raise OSError("disk gone")

    monkeypatch.setattr(atomic.os, "replace", no_rename)
    with pytest.raises(OSError, match="disk gone"):
        write_json_atomic(path, {"new": True})
    assert path.read_text() == '{"old": true}\n'
    assert _hidden(tmp_path) == []


def test_a_kill_before_the_rename_leaves_the_old_file_and_a_marked_temporary(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("old")
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from artifacts.atomic import atomic_path\n"
        "with atomic_path(Path(sys.argv[1])) as temporary:\n"
        "    temporary.write_text('new')\n"
        "    os._exit(9)  # killed: no exception handler, no finally\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, check=False)
    assert done.returncode == 9
    assert path.read_text() == "old"
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert len(leftovers) == 1 and TEMP_MARK in leftovers[0].name
    assert leftovers[0].name.startswith(".manifest.") and leftovers[0].suffix == ".json"


def test_a_staged_folder_is_committed_whole(tmp_path):
    staging, target = tmp_path / "data.partial", tmp_path / "data"
    (staging / "runs").mkdir(parents=True)
    (staging / "runs" / "a.h5").write_bytes(b"x")
    commit_directory(staging, target)
    assert not staging.exists() and (target / "runs" / "a.h5").read_bytes() == b"x"


# -- nothing but artifacts/ renames files ------------------------------------------------------

# artifacts/ is the one place that renames; tests move run folders to test resuming them
SKIPPED = ("artifacts", "tests")
RENAMING_MODULES = {"os", "shutil"}
RENAMING_FUNCTIONS = {"rename", "renames", "replace", "move"}


def renames(source: str, filename: str) -> list[str]:
    """``file:line: call`` for each call that renames a file or folder.

    ``os.replace``/``os.rename``/``shutil.move``, ``x.rename(...)``, and ``x.replace(y)`` with one
    argument (``Path.replace``; ``str.replace`` takes two), also when imported by name.
    """
    tree = ast.parse(source, filename)
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in RENAMING_MODULES
        for alias in node.names
        if alias.name in RENAMING_FUNCTIONS
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            hit = func.id in imported
        elif isinstance(func, ast.Attribute):
            owner = ast.unparse(func.value)
            hit = (
                (owner in RENAMING_MODULES and func.attr in RENAMING_FUNCTIONS)
                or func.attr in ("rename", "renames")
                or (func.attr == "replace" and len(node.args) == 1 and not node.keywords)
            )
        else:
            hit = False
        if hit:
            found.append((node.lineno, f"{filename}:{node.lineno}: {ast.unparse(node)}"))
    return [text for _, text in sorted(found)]


def test_the_scan_finds_every_way_to_rename():
    source = (
        "import os, shutil\n"
        "from os import replace as swap\n"
        "os.replace(a, b)\n"
        "os.rename(a, b)\n"
        "shutil.move(a, b)\n"
        "path.rename(target)\n"
        "partial.replace(path)\n"
        "swap(a, b)\n"
        "text.replace('a', 'b')\n"
        "dataclasses.replace(job, out=x)\n"
    )
    assert [hit.split(": ")[0] for hit in renames(source, "x.py")] == [
        f"x.py:{line}" for line in range(3, 9)
    ]


def test_only_artifacts_renames_files():
    found = []
    for folder in sorted(ROOT.iterdir()):
        if not folder.is_dir() or folder.name.startswith(".") or folder.name in SKIPPED:
            continue
        for path in sorted(folder.rglob("*.py")):
            filename = str(path.relative_to(ROOT))
            found += renames(path.read_text(), filename)
    assert not found, "write through artifacts.atomic instead:\n" + "\n".join(found)
