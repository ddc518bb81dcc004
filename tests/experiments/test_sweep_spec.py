"""Sweep specs: parsing, expansion into trials, and the one-line errors of a bad spec."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from configflags import UserError
from envs.options import EnvOptions
from experiments.sweep.config import SweepConfig
from experiments.sweep.runner import main
from experiments.sweep.spec import SpecError, coerce, spec_from_dict
from experiments.sweep.spec_sources import parse_values, resolve_spec
from expert.collect_config import CollectConfig, config_hash
from tests.extras import require_extra

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "collect": {"runs": 3, "image_size": 32, "n_segments": 1, "segment_length": [4, 5]},
    "train": {"epochs": 1, "batch_size": 4},
    "eval": {"episodes": 2},
}


def _spec(**extra):
    return spec_from_dict({**TINY, **extra}, "test.toml")


def _write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_a_grid_crosses_every_value_with_every_seed_in_spec_order():
    spec = _spec(grid={"train": {"frames": [1, 3]}, "train.lr": [1e-3, 1e-4]}, seeds=[0, 1, 2])
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 3
    assert [(t.values["train.frames"], t.values["train.lr"], t.seed) for t in trials[:4]] == [
        (1, 1e-3, 0), (1, 1e-3, 1), (1, 1e-3, 2), (1, 1e-4, 0),
    ]  # fmt: skip
    assert all(t.flags["train"]["seed"] == t.seed for t in trials)
    assert all(t.flags["train"]["epochs"] == 1 for t in trials)
    # one collect config: every trial shares one dataset, fingerprinted as expert.collect does
    env = EnvOptions(image_size=32, n_segments=1, segment_length=(4.0, 5.0))
    collect = CollectConfig(out=Path("elsewhere"), runs=3, env=env)
    assert {t.dataset for t in trials} == {config_hash(collect.identity())}
    assert len({t.id for t in trials}) == len(trials)


def test_cases_are_configurations_each_crossed_with_the_grid_and_seeds():
    cases = [{"train": {"net": "tiny_lstm", "frames": 1}}, {"train.head": "regressor"}]
    spec = _spec(cases=cases, grid={"train.lr": [1e-3, 1e-2]}, seeds=[0, 1])
    trials = spec.trials()
    assert [(t.values, t.seed) for t in trials[:4]] == [
        ({"train.net": "tiny_lstm", "train.frames": 1, "train.lr": lr}, seed)
        for lr in (1e-3, 1e-2)
        for seed in (0, 1)
    ]
    assert [t.values for t in trials[4:]] == [
        {"train.head": "regressor", "train.lr": lr} for lr in (1e-3, 1e-2) for _ in (0, 1)
    ]
    # a case sets only its own flags: the regressor trials keep the default net
    assert "net" not in trials[4].flags["train"]
    assert trials[0].flags["train"] == {**TINY["train"], "net": "tiny_lstm", "frames": 1,
                                        "lr": 1e-3, "seed": 0}  # fmt: skip
    assert len({t.id for t in trials}) == 8
    # without a grid, each case is one configuration
    assert len(_spec(cases=cases).trials()) == 2


def test_a_case_may_run_seeds_of_its_own_keeping_the_trials_of_the_spec_seeds():
    cases = [{"train.frames": 1}, {"train.frames": 3, "seeds": [0, 1, 2, 3]}]
    spec = _spec(cases=cases, seeds=[0, 1])
    trials = spec.trials()
    assert [(t.values["train.frames"], t.seed) for t in trials] == [
        (1, 0), (1, 1), (3, 0), (3, 1), (3, 2), (3, 3)
    ]  # fmt: skip
    # "seeds" is not a flag: the case's values and its first seeds' trial ids are unchanged
    before = _spec(cases=[{"train.frames": 1}, {"train.frames": 3}], seeds=[0, 1]).trials()
    assert [t.id for t in before] == [t.id for t in trials[:4]]
    assert spec.points() == [{"train.frames": 1}, {"train.frames": 3}]
    with pytest.raises(SpecError, match="case 1: seeds must be a non-empty list"):
        _spec(cases=[{"train.frames": 1, "seeds": []}])
    with pytest.raises(SpecError, match="case 1: seeds must be a non-empty list"):
        _spec(cases=[{"train.frames": 1, "seeds": [-1]}])


def test_seed_flags_can_give_each_seed_its_own_dataset():
    spec = _spec(seeds=[0, 1], seed_flags=["train.seed", "collect.seed"])
    trials = spec.trials()
    assert [t.flags["collect"]["seed"] for t in trials] == [0, 1]
    assert trials[0].dataset != trials[1].dataset


def test_trial_ids_follow_the_flags_but_not_session_flags():
    base = _spec(grid={"train.frames": [1, 3]}).trials()
    assert base[0].id.startswith("frames-1_seed-0-")
    assert [t.id for t in base] == [t.id for t in _spec(grid={"train.frames": [1, 3]}).trials()]
    changed = _spec(grid={"train.frames": [1, 3]}, train={**TINY["train"], "epochs": 2})
    assert not {t.id for t in base} & {t.id for t in changed.trials()}
    session = _spec(grid={"train.frames": [1, 3]}, eval={"episodes": 2, "workers": 2})
    assert [t.id for t in session.trials()] == [t.id for t in base]


def test_trial_ids_follow_the_recipe_values_the_trial_leaves_to_its_recipe(monkeypatch):
    from bc import recipes

    def ids(train):
        raw = {**TINY, "train": train, "grid": {"train.frames": [1, 3]}}
        return [t.id for t in spec_from_dict(raw, "t").trials()]

    unset, given = ids({"batch_size": 4}), ids({"batch_size": 4, "epochs": 2})
    monkeypatch.setitem(recipes.BASE_DEFAULTS, "epochs", 9)
    assert ids({"batch_size": 4}) != unset, "a recipe change must not reuse a stale result"
    assert ids({"batch_size": 4, "epochs": 2}) == given, "a flag given keeps its trial's id"


def test_random_samples_are_drawn_in_range_and_repeat_with_their_seed():
    fixed = {key: value for key, value in TINY.items() if key != "eval"}
    table = {"samples": 5, "seed": 7, "train": {"lr": {"loguniform": [1e-4, 1e-2]}},
             "eval.episodes": {"randint": [2, 6]}, "train.head": {"choice": ["classifier",
             "regressor"]}}  # fmt: skip
    spec = spec_from_dict({**fixed, "random": table, "grid": {"train.frames": [1, 3]}}, "t")
    points = spec.points()
    assert len(points) == 2 * 5
    assert points[:5] == spec.points()[:5] and [p["train.lr"] for p in points[:5]] == [
        p["train.lr"] for p in points[5:]
    ], "each grid point gets the same samples"
    for point in points:
        assert 1e-4 <= point["train.lr"] <= 1e-2
        assert point["eval.episodes"] in range(2, 7)
        assert point["train.head"] in ("classifier", "regressor")
    logs = [math.log10(p["train.lr"]) for p in points[:5]]
    assert max(logs) - min(logs) > 0.3, "log-uniform draws should spread over the decades"
    other = spec_from_dict({**fixed, "random": {**table, "seed": 8}}, "t").points()
    assert other != points


def test_values_are_checked_against_the_config_types():
    assert coerce("train.lr", 1) == 1.0 and isinstance(coerce("train.lr", 1), float)
    assert coerce("collect.segment_length", [4, 5]) == [4.0, 5.0]
    assert coerce("train.freeze", "backbone") == ["backbone"]
    assert coerce("train.batch-size", 8) == 8
    with pytest.raises(SpecError, match="train.frames takes an integer"):
        coerce("train.frames", 1.5)
    with pytest.raises(SpecError, match="must be one of"):
        coerce("train.optimizer", "rmsprop")
    with pytest.raises(SpecError, match="a list of 2 values"):
        coerce("collect.segment_length", [4])


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            {"grid": {"train.lrr": [1]}},
            "unknown flag 'train.lrr': bc.train has no --lrr (did you mean train.lr?)",
        ),  # fmt: skip
        ({"grid": {"lr": [1]}}, "write SECTION.FLAG"),
        ({"grid": {}}, "[grid] is empty"),
        ({"grid": {"train.frames": []}}, "grid axis train.frames is empty"),
        ({"seeds": [0]}, "nothing to sweep"),
        ({"gird": {"train.frames": [1]}}, "unknown key 'gird'"),
        ({"grid": {"train.data": ["x", "y"]}}, "train.data is set by the sweep"),
        ({"grid": {"train.frames": [1, 3]}, "train": {"frames": 3}}, "set twice"),
        ({"grid": {"train.frames": [0, 3]}}, "bc.train refuses it: --frames must be >= 1"),
        ({"grid": {"eval.seed": [-1, 0]}}, "eval.rollout refuses it: --seed must be >= 0"),
        ({"random": {"train.lr": {"uniform": [1, 2]}}}, "needs samples = N"),
        ({"random": {"samples": 2, "train.lr": {"normal": [0, 1]}}}, "needs one of"),
        ({"seeds": [0, 1], "resources": {"gpu": 1}}, "unknown resource 'gpu'"),
        ({"seeds": [0, 1], "resources": {"cpus": 0}}, "cpus > 0"),
        ({"cases": {"train.frames": 1}}, "[[cases]] must be a list of tables"),
        ({"cases": []}, "[[cases]] must be a list of tables"),
        ({"cases": [{"train.frames": 1}, {}]}, "case 2 is empty"),
        ({"cases": [{"train.frames": 1}], "grid": {"train.frames": [3]}}, "set twice"),
        ({"cases": [{"train.frames": 1}], "train": {"frames": 3}}, "set twice"),
        ({"cases": [{"train.frames": 1}, {"train.frames": 1}]}, "have the same flags"),
        ({"cases": [{"train.framez": 1}]}, "case 1: unknown flag 'train.framez'"),
        ({"seeds": [0, 1], "rows": "rows.csv"}, "rows must be the path of a .jsonl file"),
        ({"seeds": [0, 1], "budget": {"minutes": 0}}, "[budget] minutes must be a number > 0"),
        ({"seeds": [0, 1], "budget": {"minutes": "1h"}}, "[budget] minutes must be a number"),
        ({"seeds": [0, 1], "budget": {"hours": 1}}, "unknown [budget] key 'hours'"),
        ({"seeds": [0, 1], "budget": {"rule": 3}}, "[budget] rule must be text"),
    ],
)
def test_a_bad_spec_is_refused_with_one_line(extra, message):
    with pytest.raises(SpecError) as error:
        _spec(**extra).trials()
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_files_and_command_line_make_the_same_trials(tmp_path):
    path = _write(tmp_path, """
        name = "quick"
        seeds = [0, 1]
        [collect]
        runs = 3
        [grid]
        train.frames = [1, 3]
        train.net = ["tiny_nfc", "tiny_3d"]
    """.replace("\n        ", "\n"))  # fmt: skip
    from_file = resolve_spec(SweepConfig(spec=path))
    from_flags = resolve_spec(SweepConfig(
        grid=["train.frames=1,3", "train.net=tiny_nfc,tiny_3d"], fixed=["collect.runs=3"],
        seeds="0,1", name="quick",
    ))  # fmt: skip
    assert from_file.name == from_flags.name == "quick"
    assert [t.id for t in from_file.trials()] == [t.id for t in from_flags.trials()]
    # the command line adds to a file and replaces its keys
    more = resolve_spec(SweepConfig(spec=path, seeds="5", grid=["train.frames=[5]"]))
    assert more.seeds == (5,) and more.grid["train.frames"] == [5]


def test_command_line_values_are_toml():
    assert parse_values("1,3") == [1, 3]
    assert parse_values("[1e-3, 3e-4]") == [1e-3, 3e-4]
    assert parse_values("tiny_nfc,tiny_3d") == ["tiny_nfc", "tiny_3d"]
    assert parse_values("[[4, 5], [6, 7]]") == [[4, 5], [6, 7]]
    assert parse_values("true,false") == [True, False]


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        resolve_spec(SweepConfig(spec=tmp_path / "missing.toml"))
    with pytest.raises(SpecError, match="bad TOML"):
        resolve_spec(SweepConfig(spec=_write(tmp_path, "[grid\n")))
    with pytest.raises(UserError, match="unknown --backend 'slurm'"):
        SweepConfig(backend="slurm")


def test_the_example_spec_is_valid():
    spec = resolve_spec(SweepConfig(spec=ROOT / "experiments" / "specs" / "example.toml"))
    assert len(spec.trials()) == 12 and len(spec.seeds) == 3


def test_a_dry_run_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = main(SweepConfig(grid=["train.frames=1,3"], out=out, dry_run=True, quiet=True))
    assert len(result.trials) == 2 and not out.exists()


def _sweep(*args, cwd):
    return subprocess.run([sys.executable, "-m", "experiments.sweep", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_the_command_exits_2_with_one_line_before_any_trial(tmp_path):
    result = _sweep("--grid", "train.lrr=1,2", "--out", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "did you mean train.lr?" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unreachable_ray_address_is_refused_before_any_trial(tmp_path):
    require_extra("ray", "ray")
    # port 1 on the loopback refuses at once; nothing leaves the machine
    config = SweepConfig(grid=["train.frames=1,3"], out=tmp_path / "out", backend="ray",
                         address="127.0.0.1:1", quiet=True)  # fmt: skip
    with pytest.raises(UserError, match="cannot reach Ray at 127.0.0.1:1"):
        main(config)
    assert not (tmp_path / "out").exists()


def test_without_the_ray_extra_the_ray_backend_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if not installed
    config = SweepConfig(grid=["train.frames=1,3"], out=tmp_path / "out", backend="ray",
                         quiet=True)  # fmt: skip
    with pytest.raises(UserError, match=r"needs the 'ray' extra: pip install -e '\.\[ray\]'"):
        main(config)
    assert not (tmp_path / "out").exists()
