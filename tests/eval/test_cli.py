import dataclasses
from pathlib import Path

import pytest

from configflags import build_parser, option, parse_config, run_main
from eval import bench, compare, rollout
from eval.compare_table import TABLE_END, TABLE_START
from eval.errors import EvalError


@dataclasses.dataclass(frozen=True)
class Example:
    name: str = option("a", "a name")
    count: int = option(1, "how many")
    ratio: float | None = option(None, "a ratio")
    flag: bool = option(False, "a switch")
    maybe: bool | None = option(None, "tri-state")
    sizes: tuple[int, ...] = option((1, 2), "sizes")
    pair: tuple[float, float] | None = option(None, "a pair")
    path: Path = option(Path("x"), "a path")
    kind: str = option("red", "a colour", choices=("red", "blue"))

    def __post_init__(self):
        if self.count < 0:
            raise EvalError(f"--count must be >= 0, got {self.count}")


def test_every_field_becomes_a_flag_with_its_type():
    config = parse_config(
        Example,
        [
            "--name",
            "b",
            "--count",
            "3",
            "--ratio",
            "0.5",
            "--flag",
            "--no-maybe",
            "--sizes",
            "4",
            "5",
            "6",
            "--pair",
            "1",
            "2",
            "--path",
            "y",
            "--kind",
            "blue",
        ],
        "prog",
    )
    assert config == Example("b", 3, 0.5, True, False, (4, 5, 6), (1.0, 2.0), Path("y"), "blue")
    assert parse_config(Example, [], "prog") == Example()


@pytest.mark.parametrize(
    "argv",
    [["--count", "-1"], ["--kind", "green"], ["--count", "x"], ["--unknown"], ["--pair", "1"]],
)
def test_bad_values_are_one_error_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda config: config, Example, "prog", None, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    "config_class", [rollout.RolloutConfig, compare.CompareConfig, bench.BenchConfig]
)
def test_every_flag_of_every_command_has_a_help_line(config_class):
    parser = build_parser(config_class, "prog", None)
    actions = [a for a in parser._actions if a.dest != "help"]
    assert {a.dest for a in actions} == {f.name for f in dataclasses.fields(config_class)}
    assert all(a.help and len(a.help) > 8 for a in actions)


def test_run_main_turns_user_errors_into_one_line(capsys):
    def failing(config):
        raise EvalError("no runs found\nsecond line")

    with pytest.raises(SystemExit) as exit_info:
        run_main(failing, Example, "prog", None, [])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: no runs found second line\n"


def test_run_main_lets_bugs_keep_their_traceback():
    def buggy(config):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_main(buggy, Example, "prog", None, [])


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "config_class", [rollout.RolloutConfig, compare.CompareConfig, bench.BenchConfig]
)
def test_every_flag_is_documented(config_class):
    text = (ROOT / "docs" / "evaluation.md").read_text()
    parser = build_parser(config_class, "prog", None)
    for action in parser._actions:
        if action.dest == "help" or not action.option_strings:
            continue
        # a switch may be documented by either spelling (--plots / --no-plots)
        assert any(f"`{flag}" in text for flag in action.option_strings), action.option_strings


def test_results_page_has_the_table_markers():
    text = (ROOT / "docs" / "results.md").read_text()
    assert text.count(TABLE_START) == 1 and text.count(TABLE_END) == 1
    assert text.index(TABLE_START) < text.index(TABLE_END)
