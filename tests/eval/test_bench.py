import shutil

import pytest

from configflags import parse_config
from eval.bench import BenchConfig, main
from eval.errors import EvalError
from tests.eval.helpers import shared_tiny_run


def _parse(argv):
    return parse_config(BenchConfig, argv, "python -m eval.bench")


def test_expert_throughput_with_one_and_two_workers(capsys):
    rows = main(_parse(["--episodes", "2", "--image-size", "32", "--n-segments", "1"]))
    assert [row.workers for row in rows] == [1, 2]
    assert all(row.episodes == 2 and row.episodes_per_minute > 0 for row in rows)
    assert rows[0].steps == rows[1].steps  # the same episodes, whatever the worker count
    out = capsys.readouterr().out
    assert "episodes/min" in out and "expert" in out


def test_policy_throughput(tmp_path, tmp_path_factory):
    run = shutil.copytree(shared_tiny_run(tmp_path_factory), tmp_path / "run")
    [row] = main(_parse(["--run", str(run), "--workers", "1", "--episodes", "1"]))
    assert row.steps > 0 and row.steps_per_second > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": (0,)}, "--workers"),
        ({"workers": ()}, "--workers"),
        ({"episodes": 0}, "--episodes"),
        ({"n_segments": 0}, "--n-segments"),
        ({"image_size": 16}, "--image-size"),
        ({"image_size": 64, "run": "x"}, "expert"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(EvalError, match=message):
        BenchConfig(**kwargs)
