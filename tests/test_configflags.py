"""The shared dataclass -> command line generator (``configflags``)."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pytest

from configflags import (
    build_config,
    build_parser,
    coerce_value,
    config_fields,
    option,
    parse_config,
    parse_given,
    run_main,
)


@dataclasses.dataclass(frozen=True)
class Inner:
    """Settings of the inner part."""

    gain: float = option(1.0, help="a gain")
    window_size: int = option(3, help="a window")


@dataclasses.dataclass(frozen=True)
class Outer:
    source: Path | None = option(None, help="where from", positional=True)
    max_steps: int = option(10, help="a limit", group="limits")
    names: list[str] = option(["a"], help="names")
    span: tuple[float, float] = option((0.0, 1.0), help="a range")
    verbose: bool = option(False, help="talk")
    inner: Inner = option(default_factory=Inner, help="inner settings")

    def __post_init__(self):
        if self.max_steps < 0:
            raise ValueError(f"--max-steps must be >= 0, got {self.max_steps}")


def test_an_empty_command_line_is_the_default_config():
    assert parse_config(Outer, [], "prog") == Outer()
    assert parse_given(Outer, [], "prog") == {}


def test_nested_fields_flatten_and_every_type_converts():
    argv = ["src", "--max-steps", "5", "--names", "x", "y", "--names", "z", "--span", "2", "3"]
    argv += ["--verbose", "--gain", "0.5", "--window-size", "7"]
    config = parse_config(Outer, argv, "prog")
    assert config == Outer(Path("src"), 5, ["x", "y", "z"], (2.0, 3.0), True, Inner(0.5, 7))
    assert parse_given(Outer, ["--gain", "2"], "prog") == {"gain": 2.0}  # only what was given


def test_list_defaults_are_not_shared_between_instances():
    first, second = Outer(), Outer()
    first.names.append("b")
    assert second.names == ["a"]


def test_underscore_aliases_only_when_asked(capsys):
    assert parse_given(Outer, ["--max_steps", "4"], "prog", aliases=True) == {"max_steps": 4}
    with pytest.raises(SystemExit) as exit_info:
        parse_given(Outer, ["--max_steps", "4"], "prog")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unrecognized arguments: --max_steps") and err.count("\n") == 1


def test_a_prefix_of_a_long_flag_is_not_that_flag(capsys):
    assert parse_given(Outer, ["--max-steps", "4"], "prog") == {"max_steps": 4}
    with pytest.raises(SystemExit) as exit_info:
        parse_given(Outer, ["--max", "4"], "prog")  # argparse's default would take it
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unrecognized arguments: --max") and err.count("\n") == 1


def test_help_shows_sections_groups_and_defaults():
    text = build_parser(Outer, "prog", "what it does").format_help()
    assert "inner settings:" in text and "Settings of the inner part." in text
    assert "limits:" in text
    assert "a limit (default: 10)" in text and "talk (default: off)" in text
    assert "a range (default: 0.0 1.0)" in text and "where from (default: unset)" in text


def test_config_errors_are_one_line_with_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(Outer, ["--max-steps", "-1"], "prog")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --max-steps must be >= 0, got -1\n"


def test_sigterm_ends_a_command_as_ctrl_c_does(capsys):
    def terminated(config: Outer) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # as a cluster's scheduler stops a job
        raise AssertionError("SIGTERM did not stop the command")

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_main(terminated, Outer, "prog", None, [], interrupted="interrupted: rerun")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "error: interrupted: rerun\n"


def test_fields_need_a_help_line_and_unique_names():
    @dataclasses.dataclass
    class NoHelp:
        value: int = 1

    @dataclasses.dataclass
    class Clash:
        gain: float = option(1.0, help="outer gain")
        inner: Inner = option(default_factory=Inner, help="inner")

    with pytest.raises(TypeError, match="help line"):
        build_parser(NoHelp, "prog")
    with pytest.raises(TypeError, match="gain"):
        build_parser(Clash, "prog")


def test_build_config_turns_lists_into_tuples_for_tuple_fields_only():
    config = build_config(Outer, {"span": [1, 2], "names": ["q"]})
    assert config.span == (1, 2) and config.names == ["q"]


def test_the_schema_lists_the_flags_with_their_types_and_coerces_values():
    fields = config_fields(Outer)
    assert list(fields) == ["source", "max_steps", "names", "span", "verbose", "gain",
                            "window_size"]  # fmt: skip
    assert fields["gain"].path == "inner.gain" and fields["max_steps"].path == "max_steps"
    assert fields["window_size"].flag == "--window-size"
    assert fields["source"].type is Path and fields["source"].annotation == Path | None
    assert coerce_value(fields["gain"], 2, "inner.gain") == 2.0
    assert coerce_value(fields["span"], [1, 2], "span") == [1.0, 2.0]
    assert coerce_value(fields["names"], "x", "names") == ["x"]
    with pytest.raises(ValueError, match=r"^span takes a list of 2 values, got \[1\]$"):
        coerce_value(fields["span"], [1], "span")
    with pytest.raises(KeyError, match="max_steps takes an integer"):
        coerce_value(fields["max_steps"], True, "max_steps", KeyError)
    # what coerce_value returns builds the config (a path from a string, a tuple from a list)
    values = {"source": "src", "span": [2.0, 3.0], "gain": 0.5}
    assert build_config(Outer, values) == Outer(Path("src"), span=(2.0, 3.0), inner=Inner(0.5))
