import json
import shutil

import pytest

from configflags import parse_config, run_main
from envs.seeds import eval_seed, is_eval_seed
from eval.episodes import TIMING_FIELDS
from eval.errors import EvalError
from eval.rollout import RolloutConfig, main
from eval.rollout_summary import failure_line, summary_table
from eval.run_files import pick_results, results_stem
from tests.commands import assert_exit_2_one_line, assert_one_error_line, module_env, run_module
from tests.eval.helpers import fake_run, policies_claim_bins, shared_tiny_run


@pytest.fixture
def runs(tmp_path, tmp_path_factory):
    """A runs/ folder holding a copy of a real tiny run (one epoch, 32x32, one segment)."""
    source = shared_tiny_run(tmp_path_factory)
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    shutil.copytree(source, runs_dir / source.name)
    return runs_dir


def _parse(argv):
    return parse_config(RolloutConfig, argv, "python -m eval.rollout")


def _cli(argv):
    return run_main(main, RolloutConfig, "python -m eval.rollout", None, argv)


def _argv(runs_dir, *argv):
    return ["--runs-dir", str(runs_dir), "--quiet", *argv]


def _config(runs_dir, *argv):
    return _parse(_argv(runs_dir, *argv))


def _strip(records):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def test_defaults_evaluate_the_newest_runs_best_checkpoint(runs):
    [run] = list(runs.iterdir())
    older = runs / "20000101-000000_tiny_nfc_f3"
    shutil.copytree(run, older)
    (older / "checkpoints" / "best_val_loss.pt").write_bytes(b"never read: not the newest")
    result = main(_config(runs, "--episodes", "2"))
    assert result.path == run / "eval" / "last_seed0_n2.json"
    data = json.loads(result.path.read_text())
    assert data["checkpoint"] == str(run / "checkpoints" / "last.pt")
    assert data["kind"] == "policy" and data["which"] == "last"  # the default checkpoint
    assert data["policy"]["net"] == "tiny_nfc" and data["policy"]["frames"] == 3
    assert data["seeds"] == [eval_seed(0, 0), eval_seed(0, 1)]
    assert all(is_eval_seed(seed) for seed in data["seeds"])
    assert data["env_kwargs"]["image_size"] == 32 and data["env_kwargs"]["n_segments"] == 1
    assert data["labeller"]["kind"] == "discrete"
    assert [r["seed"] for r in data["records"]] == data["seeds"]
    for key in ("seed", "outcome", "progress_m", "steps", "agreement"):
        assert all(key in r for r in data["records"])
    summary = data["summary"]
    assert summary["episodes"] == 2
    assert 0.0 <= summary["success_ci_low"] <= summary["success_rate"] <= summary["success_ci_high"]
    assert 0.0 <= summary["agreement"] <= 1.0 and summary["latency_ms"] > 0
    assert result.summary == summary


def test_workers_do_not_change_the_results(runs):
    one = main(_config(runs, "--episodes", "3", "--out", str(runs / "one.json")))
    two = main(_config(runs, "--episodes", "3", "--workers", "2", "--out", str(runs / "two.json")))
    assert _strip(one.data["records"]) == _strip(two.data["records"])
    without_latency = {k: v for k, v in one.summary.items() if k != "latency_ms"}
    assert without_latency == {k: v for k, v in two.summary.items() if k != "latency_ms"}


def test_which_and_checkpoint_pick_the_file(runs, tmp_path):
    [run] = list(runs.iterdir())
    result = main(_config(runs, "--episodes", "1", "--which", "last", "--run", str(run)))
    assert result.path.name == "last_seed0_n1.json"
    loose = tmp_path / "elsewhere" / "model.pt"
    loose.parent.mkdir()
    shutil.copy(run / "checkpoints" / "last.pt", loose)
    result = main(_config(runs, "--episodes", "1", "--checkpoint", str(loose)))
    assert result.path == loose.parent / "eval" / "model_seed0_n1.json"


def test_world_overrides_change_the_env_and_name_the_file(runs):
    result = main(
        _config(
            runs,
            "--episodes",
            "1",
            "--obstacle-density",
            "0.5",
            "--clutter-density",
            "0",
            "--no-randomize",
            "--n-segments",
            "2",
            "--segment-length",
            "4",
            "6",
            "--seed",
            "3",
        )
    )
    kwargs = result.data["env_kwargs"]
    assert kwargs["obstacle_density"] == 0.5 and kwargs["clutter_density"] == 0
    assert kwargs["randomize"] is False and kwargs["n_segments"] == 2
    assert kwargs["segment_length"] == [4.0, 6.0]
    assert result.path.name == (
        "last_seed3_n1__clutter_density-0.0__n_segments-2__obstacle_density-0.5"
        "__randomize-false__segment_length-4.0-6.0.json"
    )
    assert result.data["seeds"] == [eval_seed(3, 0)]
    # an override equal to the checkpoint's own value changes nothing, not even the name
    same = main(_config(runs, "--episodes", "1", "--n-segments", "1"))
    assert same.path.name == "last_seed0_n1.json" and same.data["overrides"] == {}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--image-size", "64"], "image_size 32 (checkpoint) != 64"),
        (["--n-bins", "5"], "n_bins 3 (checkpoint) != 5"),
        (["--obs-mode", "depth"], "obs_mode rgb (checkpoint) != depth"),
    ],
)
def test_a_checkpoint_for_another_env_is_refused(runs, flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli(_argv(runs, *flags))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert_one_error_line(err, message)
    assert err.startswith("error: checkpoint "), err


def test_policy_whose_net_differs_from_its_env_kwargs_is_refused(runs, monkeypatch):
    policies_claim_bins(monkeypatch, 5)
    with pytest.raises(EvalError, match="the net predicts 5 action bins but the env has n_bins 3"):
        main(_config(runs, "--episodes", "1"))


def test_expert_reference_row_needs_no_run(tmp_path):
    result = main(
        _parse(
            [
                "--expert",
                "--runs-dir",
                str(tmp_path / "runs"),
                "--episodes",
                "2",
                "--image-size",
                "32",
                "--n-segments",
                "1",
                "--quiet",
            ]
        )
    )
    assert result.path == tmp_path / "runs" / "expert" / "eval" / (
        "expert_seed0_n2__image_size-32__n_segments-1.json"
    )
    assert result.data["kind"] == "expert" and result.data["policy"] is None
    assert result.data["expert"]["kind"] == "discrete"
    assert result.summary["success_rate"] == 1.0 and result.summary["agreement"] == 1.0


def test_videos_of_the_first_episodes(runs):
    result = main(
        _config(
            runs,
            "--episodes",
            "2",
            "--video-episodes",
            "1",
            "--video-size",
            "96",
            "--video-format",
            "gif",
        )
    )
    video_dir = result.path.with_suffix("")
    assert [p.name for p in video_dir.iterdir()] == ["episode_000.gif"]
    assert result.data["records"][0]["video"] == str(video_dir / "episode_000.gif")
    assert result.data["records"][1]["video"] is None
    all_videos = main(
        _config(
            runs, "--episodes", "2", "--video", "--video-size", "96", "--out", str(runs / "v.json")
        )
    )
    assert sorted(p.name for p in (runs / "v").iterdir()) == ["episode_000.mp4", "episode_001.mp4"]
    assert all_videos.path == runs / "v.json"


def test_only_episodes_fly_the_same_worlds_as_the_whole_evaluation(runs):
    [run] = list(runs.iterdir())
    whole = main(_config(runs, "--episodes", "3"))
    chosen = main(
        _config(runs, "--only-episodes", "2", "1", "--video-episodes", "1",
                "--video-size", "96", "--video-format", "gif")
    )  # fmt: skip
    assert chosen.path == run / "eval" / "last_seed0_only1-2.json"  # in ascending order
    data = chosen.data
    assert data["episode_indices"] == [1, 2] and whole.data["episode_indices"] is None
    assert data["seeds"] == [eval_seed(0, 1), eval_seed(0, 2)]
    by_index = {r["index"]: r for r in _strip(whole.data["records"])}
    expected = [{**by_index[1], "video": None}, {**by_index[2], "video": None}]
    assert [{**r, "video": None} for r in _strip(data["records"])] == expected
    video_dir = chosen.path.with_suffix("")
    assert [p.name for p in video_dir.iterdir()] == ["episode_001.gif"]  # named by index
    assert data["summary"]["episodes"] == 2
    # a chosen subset is never reported as the run's figure, even when it is the newest file
    assert pick_results(run, "last", 0)["summary"]["episodes"] == 3
    whole.path.unlink()
    assert pick_results(run, "last", 0) is None


def test_failed_episodes_are_listed_by_index():
    def record(index, outcome, progress_m, steps):
        return {"index": index, "outcome": outcome, "progress_m": progress_m, "steps": steps}

    records = [record(3, "timeout", 12.34, 600), record(0, "goal", 30.0, 300),
               record(1, "collision", 2.44, 19)]  # fmt: skip
    assert failure_line(records) == (
        "failed episodes (2): 1 collision at 2.4 m (step 19), 3 timeout at 12.3 m (step 600)"
    )
    assert failure_line(records, shown=1) == (
        "failed episodes (2): 1 collision at 2.4 m (step 19), and 1 more"
    )
    assert failure_line([record(0, "goal", 30.0, 300)]) == ""
    hits = [{**record(1, "collision", 2.44, 19), "hit": "obstacle"},
            {**record(2, "collision", 5.0, 40), "hit": "wall"}]  # fmt: skip
    assert failure_line(hits) == (
        "failed episodes (2): 1 collision with an obstacle at 2.4 m (step 19),"
        " 2 collision with a wall at 5.0 m (step 40)"
    )


def test_the_collisions_row_says_what_they_hit():
    from eval.stats import summarize

    records = [{"outcome": outcome, "steps": 20, "progress_m": 2.0, "progress_frac": 0.2,
                "corridor_length_m": 10.0, "latency_ms": 1.0, "hit": hit}
               for outcome, hit in (("collision", "obstacle"), ("collision", "obstacle"),
                                    ("collision", "wall"), ("goal", None))]  # fmt: skip
    data = {"summary": summarize(records), "env_kwargs": {}, "kind": "expert", "seed": 0,
            "overrides": {}}  # fmt: skip
    table = summary_table(data)
    cells = dict(zip(table.columns[0]._cells, table.columns[1]._cells, strict=True))
    assert cells["collisions"] == "3/4 (75.0%): 2 with obstacles, 1 with wall"


def test_the_printed_results_name_the_chosen_and_the_failed_episodes(runs, capsys):
    result = main(_parse(["--runs-dir", str(runs), "--only-episodes", "4", "1"]))
    out = capsys.readouterr().out
    assert "held-out episodes 1, 4 of seed 0" in out
    failures = [r["index"] for r in result.data["records"] if r["outcome"] != "goal"]
    assert ("failed episodes (" in out) == bool(failures)
    assert summary_table(result.data).caption == "held-out episodes 1, 4 of seed 0"


def test_many_chosen_episodes_name_the_file_by_count_and_digest():
    indices = list(range(12))
    stem = results_stem("last", 0, 100, {}, indices)
    assert stem.startswith("last_seed0_only12x") and len(stem) == len("last_seed0_only12x") + 8
    assert stem != results_stem("last", 0, 100, {}, list(range(1, 13)))
    assert results_stem("last", 0, 100, {}, [5]) == "last_seed0_only5"


def test_an_existing_folder_as_out_gets_the_default_file_name(runs, tmp_path):
    result = main(_config(runs, "--episodes", "1", "--out", str(tmp_path)))
    assert result.path == tmp_path / "last_seed0_n1.json"
    assert result.path.is_file()


def test_table_goes_to_stdout_unless_quiet(runs, capsys):
    main(_parse(["--runs-dir", str(runs), "--episodes", "1"]))
    out = capsys.readouterr().out
    for row in (
        "success",
        "progress",
        "collisions",
        "episode length",
        "expert agreement",
        "policy latency",
        "results: ",
    ):
        assert row in out
    main(_config(runs, "--episodes", "1"))
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no training runs found"),
        (["--checkpoint", "missing.pt"], "checkpoint missing.pt does not exist"),
        (["--run", "missing"], "run directory missing does not exist"),
        (["--which", "best_success", "--run", "RUN"], "no checkpoints/best_success.pt"),
        (["--checkpoint", "RUN/checkpoints/best_val_loss.pt"], "not a readable corridor-bc"),
        (["--which", "best"], "invalid choice: 'best'"),
        (["--episodes", "0"], "--episodes must be in [1, 1000000]"),
        (["--obstacle-density", "2"], "--obstacle-density must be in [0, 1]"),
        (["--video-size", "50"], "--video-size must be >= 96"),
        (["--segment-length", "5", "4"], "--segment-length needs 0 < MIN <= MAX"),
        (["--only-episodes", "3", "3"], "--only-episodes lists an index twice"),
        (["--only-episodes", "-1"], "--only-episodes indices must be in [0, 1000000), got -1"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, argv, message, capsys):
    runs_dir = tmp_path / "runs"
    run = fake_run(runs_dir, "20260101-000000_double_f1") if "RUN" in " ".join(argv) else None
    argv = [a.replace("RUN", str(run)) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        _cli(["--runs-dir", str(runs_dir), *argv])
    assert exit_info.value.code == 2
    assert_one_error_line(capsys.readouterr().err, message)


def test_command_line_error_has_no_traceback_and_no_banner(tmp_path):
    result = run_module("eval.rollout", "--runs-dir", str(tmp_path), cwd=tmp_path, env=module_env())
    assert_exit_2_one_line(result)
    assert result.stderr.startswith("error: no training runs found in "), result.stderr


def test_config_is_validated_when_built_in_code():
    with pytest.raises(EvalError, match="--workers"):
        RolloutConfig(workers=-1)  # 0 means one worker per usable core
    with pytest.raises(EvalError, match="--which picks a policy checkpoint"):
        RolloutConfig(expert=True, which="best_val_loss")
    assert RolloutConfig(video_episodes=3, episodes=2).videos == 2
    assert RolloutConfig(video=True, episodes=4).videos == 4
    assert RolloutConfig().videos == 0
    assert RolloutConfig(video=True, only_episodes=(7, 2)).videos == 2


@pytest.mark.slow
def test_expert_reference_on_the_default_held_out_worlds(tmp_path):
    # the default env (64x64, 4 segments): the expert must fly nearly every world to the goal
    result = main(
        _parse(
            [
                "--expert",
                "--runs-dir",
                str(tmp_path),
                "--episodes",
                "20",
                "--workers",
                "2",
                "--quiet",
            ]
        )
    )
    assert result.summary["success_rate"] >= 0.95
    assert result.data["overrides"] == {}
