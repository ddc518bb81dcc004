"""The project's commands run as users run them, and the one-line error that bad input must give.

Every command ends bad input with exit 2 and one ``error: ...`` line on stderr
(``configflags.run_main``). The tests check that in a child Python (``run_module``), as the
command's ``__main__`` block runs in this process (``run_here``: no interpreter start-up, which
costs seconds per case), on the flags alone (``refused_flags``), and kill a command with SIGKILL
at a given line of its output to test a resume (``kill_9_after``).
"""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from configflags import run_main

ROOT = Path(__file__).resolve().parents[1]


def module_command(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def module_env(**variables: str) -> dict[str, str]:
    """This environment with the checkout on PYTHONPATH, and ``variables`` set."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **variables}


def run_module(
    module: str,
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` run to its end in ``cwd``, its stdout and stderr as text."""
    return subprocess.run(
        module_command(module, *args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_here(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` as ``run_module`` gives it, run in this process.

    The module's ``__main__`` block runs with ``sys.argv`` set (and in ``cwd``); its exit code,
    stdout and stderr come back as a child's would. An exception it does not handle fails the
    test with its traceback, as a traceback on a child's stderr would. What the command sets
    for the whole process (torch's settings, a worker process it starts) is this process's:
    the tests that must see a command start and end on its own run it with ``run_module``.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    argv, directory, sigterm = sys.argv, Path.cwd(), signal.getsignal(signal.SIGTERM)
    code: int | str | None = 0
    try:
        sys.argv = [module, *args]
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            with warnings.catch_warnings():
                # runpy's note that the module was imported before: it runs again as __main__
                warnings.simplefilter("ignore", RuntimeWarning)
                runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_info:
        code = exit_info.code
    finally:
        sys.argv = argv
        os.chdir(directory)
        signal.signal(signal.SIGTERM, sigterm)  # run_main turns SIGTERM into Ctrl-C
    if isinstance(code, str):  # sys.exit("message"): the message on stderr, exit 1
        stderr.write(code + "\n")
        code = 1
    return subprocess.CompletedProcess(
        module_command(module, *args), code or 0, stdout.getvalue(), stderr.getvalue()
    )


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    """``stderr`` is one ``error: ...`` line (no traceback) holding every one of ``fragments``."""
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


def assert_exit_2_one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """The command ended as bad input must: exit 2, one ``error: ...`` line with ``fragments``."""
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr, *fragments)


def refused_flags(config_type: type, prog: str, argv: list[str], capsys: Any) -> str:
    """What ``run_main`` prints on stderr as it exits 2 on ``argv``, before any work runs."""

    def must_not_run(config: Any) -> None:
        raise AssertionError(f"ran with {config}")

    with pytest.raises(SystemExit) as exit_info:
        run_main(must_not_run, config_type, prog, None, argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def _nice() -> None:
    # the test's reader must see the marker before the lower-priority command is far past it
    os.nice(10)


def kill_9_after(
    command: list[str], marker: str, cwd: Path, env: dict[str, str] | None = None
) -> str:
    """Run ``command``, SIGKILL its process group once a line starts with ``marker``; its output.

    The command runs in a session of its own, so the kill ends every process it started, as
    a crash would; stderr is merged into the output returned.
    """
    child = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_nice,
    )
    timer = threading.Timer(300, child.kill)
    timer.start()
    lines = []
    try:
        for line in child.stdout:
            lines.append(line)
            if line.strip().startswith(marker):
                os.killpg(child.pid, signal.SIGKILL)
                break
        child.wait()
    finally:
        timer.cancel()
        child.stdout.close()
    output = "".join(lines)
    assert child.returncode == -signal.SIGKILL, f"it ended before {marker!r}:\n{output}"
    return output
