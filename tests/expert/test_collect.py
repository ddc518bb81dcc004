import dataclasses
import fcntl
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

import envs
from configflags import parse_config
from dataset import STEP_FIELDS, DatasetError, load_run, read_manifest, temp_files
from dataset.verify import VerifyConfig, check_dataset
from dataset.verify import main as verify_main
from envs.corridor_env import CorridorEnv
from envs.options import LATE_ARGUMENTS, EnvOptions
from envs.seeds import collect_seed
from expert import ExpertConfig
from expert.collect import main
from expert.collect_config import DEFAULT_RUNS, CollectConfig, CollectError
from expert.plan import RunResult, make_plan
from tests.commands import assert_exit_2_one_line, run_here, run_module

ROOT = Path(__file__).resolve().parents[2]
TINY_ENV = EnvOptions(image_size=32, n_segments=1, segment_length=(4.0, 5.0))
TINY_FLAGS = ["--image-size", "32", "--n-segments", "1", "--segment-length", "4", "5"]


def _config(out, **kwargs):
    return CollectConfig(out=out, quiet=True, **{"runs": 3, "env": TINY_ENV, **kwargs})


def _content(directory):
    """Everything a dataset holds, as comparable values."""
    manifest = read_manifest(directory)
    runs = {}
    for entry in manifest["runs"]:
        data = load_run(directory / entry["file"])
        attrs = data.pop("attrs")
        runs[entry["name"]] = ({k: v.tobytes() for k, v in data.items()}, attrs)
    return manifest, runs


def _run_files(directory):
    return sorted(p.name for p in (directory / "runs").glob("run_*.h5"))


def _doc_keys(section):
    """Keys listed in the first column of the table under ``section`` in docs/dataset.md."""
    text = (ROOT / "docs" / "dataset.md").read_text()
    body = text.split(section, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return re.findall(r"^\| `(\w+)`", body, flags=re.MULTILINE)


def test_dataset_follows_the_documented_format(tmp_path):
    result = main(_config(tmp_path / "data"))
    out = tmp_path / "data"
    manifest = read_manifest(out)
    assert result.kept == 3 and result.frames == manifest["frames"]["total"] > 0
    for key in _doc_keys("## `manifest.json`"):
        assert key in manifest, key
    assert manifest["complete"] is True
    assert manifest["env_id"] == "Corridor-v0"
    signature = set(inspect.signature(CorridorEnv.__init__).parameters) - {"self", "render_mode"}
    # arguments added after datasets were fingerprinted are recorded only off their defaults
    assert set(manifest["env_kwargs"]) == signature - set(LATE_ARGUMENTS)
    assert manifest["env_kwargs"]["segment_length"] == [4.0, 5.0]
    assert manifest["splits"] == {
        "val": ["run_000000"],
        "test": ["run_000001"],
        "train": ["run_000002"],
    }
    assert {"python", "numpy", "pybullet", "gymnasium", "torch", "corridor-bc"} <= set(
        manifest["versions"]
    )
    run_keys = _doc_keys("## One run")
    assert set(run_keys) <= set(STEP_FIELDS)
    for i, entry in enumerate(manifest["runs"]):
        assert entry["seed"] == collect_seed(0, i)
        assert entry["file"] == f"runs/run_{i:06d}.h5"
        assert entry["outcome"] == "goal"
        # readable with h5py alone
        with h5py.File(out / entry["file"], "r") as handle:
            assert handle["frames"].compression == "gzip"
            assert handle["frames"].dtype == np.uint8
            assert handle["frames"].shape == (entry["frames"], 32, 32, 3)
            assert handle["action"].dtype == np.int64
            assert handle["expert_continuous"].dtype == np.float32
            assert handle["pose"].shape == (entry["frames"], 3)
            for key in ("format_version", "seed", "run_index", "outcome", "n_steps"):
                assert key in handle.attrs
            assert handle.attrs["n_steps"] == entry["frames"]


def test_recorded_actions_replay_to_the_recorded_frames(tmp_path):
    main(_config(tmp_path, runs=3))
    manifest = read_manifest(tmp_path)
    entry = manifest["runs"][2]
    run = load_run(tmp_path / entry["file"])
    env = gym.make(manifest["env_id"], **manifest["env_kwargs"])
    observation, _ = env.reset(seed=entry["seed"])
    for t in range(entry["frames"]):
        np.testing.assert_array_equal(observation, run["frames"][t])
        observation, reward, terminated, _, info = env.step(int(run["action"][t]))
        assert reward == pytest.approx(run["reward"][t], abs=1e-5)
    assert terminated and info["outcome"] == entry["outcome"]
    # labels and executed actions of the discrete expert agree; progress grows
    np.testing.assert_array_equal(run["action"], run["expert_action"])
    assert run["progress"][-1] > run["progress"][0]
    env.close()


def test_same_seed_gives_the_same_dataset_whatever_the_workers(tmp_path):
    # a length window drops runs too, so the run indices used are not 0..n-1
    options = {"runs": 4, "min_steps": 42, "max_steps": 60}
    one = main(_config(tmp_path / "one", workers=1, **options))
    two = main(_config(tmp_path / "two", workers=2, video=True, **options))
    assert one.dropped > 0
    for entry in two.manifest["runs"]:  # previews made by the workers
        assert (tmp_path / "two" / "videos" / f"{entry['name']}.mp4").stat().st_size > 1000
    assert _content(tmp_path / "one") == _content(tmp_path / "two")
    assert _run_files(tmp_path / "one") == _run_files(tmp_path / "two")
    assert one.manifest == two.manifest
    for entry in one.manifest["runs"]:
        assert 42 <= entry["frames"] <= 60
    assert all(d["reason"] == "shorter than --min-steps" for d in one.manifest["dropped"])


def test_other_seed_gives_other_worlds(tmp_path):
    main(_config(tmp_path / "a"))
    main(_config(tmp_path / "b", seed=1))
    seeds_a = [e["seed"] for e in read_manifest(tmp_path / "a")["runs"]]
    seeds_b = [e["seed"] for e in read_manifest(tmp_path / "b")["runs"]]
    assert not set(seeds_a) & set(seeds_b)


def test_rerun_resumes_missing_runs_and_cleans_temp_files(tmp_path):
    out = tmp_path / "data"
    main(_config(out, runs=4))
    reference = _content(out)
    # lose one run and its manifest entry; leave a half-written file behind
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["runs"] = [e for e in manifest["runs"] if e["name"] != "run_000002"]
    manifest["complete"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "runs" / "run_000002.h5").unlink()
    (out / "runs" / ".run_000002.99999.tmp.h5").write_bytes(b"half a file")
    again = main(_config(out, runs=4))
    assert again.recorded_frames == reference[0]["runs"][2]["frames"]
    assert _content(out) == reference
    assert temp_files(out) == []
    # a finished dataset is left alone
    assert main(_config(out, runs=4)).recorded_frames == 0


def test_a_run_published_before_the_manifest_is_adopted(tmp_path):
    out = tmp_path / "data"
    main(_config(out))
    reference = _content(out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["runs"] = manifest["runs"][:1]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(_config(out)).recorded_frames == 0
    assert _content(out) == reference


def test_sigkill_then_the_same_command_gives_the_uninterrupted_dataset(tmp_path):
    flags = [*TINY_FLAGS, "--n-segments", "2", "--runs", "8", "--quiet"]
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    command = [sys.executable, "-m", "expert.collect", *flags]
    process = subprocess.Popen([*command, "--out", str(killed_dir)], cwd=ROOT)
    deadline = time.monotonic() + 60
    runs_dir = killed_dir / "runs"
    # kill while a run is half written and at least one is finished
    while time.monotonic() < deadline and process.poll() is None:
        if runs_dir.is_dir() and _run_files(killed_dir) and temp_files(killed_dir):
            break
        time.sleep(0.002)
    assert process.poll() is None, "the collection finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = _run_files(killed_dir)
    assert 0 < len(finished) < 8
    for name in finished:  # every published run file is whole
        load_run(runs_dir / name)
    assert not read_manifest(killed_dir)["complete"]

    subprocess.run([*command, "--out", str(killed_dir)], cwd=ROOT, check=True)
    subprocess.run([*command, "--out", str(reference_dir)], cwd=ROOT, check=True)
    assert check_dataset(killed_dir).ok, check_dataset(killed_dir).problems
    assert temp_files(killed_dir) == []
    assert _content(killed_dir) == _content(reference_dir)


def test_another_config_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "data"
    main(_config(out))
    with pytest.raises(CollectError, match=r"another config \(expert.noise_sigma: 0.0 -> 0.2\)"):
        main(_config(out, expert=ExpertConfig(noise_sigma=0.2)))
    with pytest.raises(CollectError, match="collect.runs: 3 -> 4"):
        main(_config(out, runs=4))
    result = main(_config(out, runs=4, overwrite=True, expert=ExpertConfig(noise_sigma=0.2)))
    assert result.kept == 4 and result.manifest["expert"]["noise_sigma"] == 0.2
    assert check_dataset(out).ok


def test_out_must_be_a_dataset_or_empty_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CollectError, match="is a file"):
        main(_config(tmp_path / "file"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(CollectError, match="holds no manifest.json"):
        main(_config(tmp_path / "other", overwrite=True))
    (tmp_path / "empty").mkdir()
    assert main(_config(tmp_path / "empty")).kept == 3


def test_a_second_collection_into_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "data"
    main(_config(out))
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(CollectError, match="another collection"):
            main(_config(out))


def test_frame_budget_cuts_the_last_training_run_and_nests(tmp_path):
    small = main(_config(tmp_path / "small", runs=None, max_frames=100))
    large = main(_config(tmp_path / "large", runs=None, max_frames=200))
    for result in (small, large):
        assert result.manifest["frames"]["train"] == result.manifest["collect"]["max_frames"]
        assert check_dataset(result.out).ok
    small_m, large_m = small.manifest, large.manifest
    assert small_m["splits"]["val"] == large_m["splits"]["val"]
    assert small_m["splits"]["test"] == large_m["splits"]["test"]
    small_train = small_m["splits"]["train"]
    assert large_m["splits"]["train"][: len(small_train) - 1] == small_train[:-1]
    cut = small_m["runs"][-1]
    assert cut["frames"] < cut["episode_steps"] and cut["outcome"] == "timeout"
    run = load_run(tmp_path / "small" / cut["file"])
    assert run["attrs"]["cut_by_budget"] and len(run["frames"]) == cut["frames"]
    # the cut run is a prefix of the uncut one
    whole = load_run(tmp_path / "large" / cut["file"])
    np.testing.assert_array_equal(whole["frames"][: cut["frames"]], run["frames"])


def test_keep_all_keeps_collisions_and_keep_goal_gives_up_when_most_fail(tmp_path):
    # a learner that never turns hits the wall at the first bend; labels stay the expert's
    straight = ExpertConfig(alpha=0.0, mix_policy="straight")
    bends = dataclasses.replace(TINY_ENV, n_segments=2)
    result = main(_config(tmp_path / "all", keep="all", expert=straight, env=bends))
    assert {e["outcome"] for e in result.manifest["runs"]} == {"collision"}
    run = load_run(tmp_path / "all" / result.manifest["runs"][0]["file"])
    assert set(run["action"]) == {1} and set(run["expert_action"]) != {1}
    assert set(run["source"]) == {2}
    assert check_dataset(tmp_path / "all").ok
    with pytest.raises(CollectError, match="were dropped"):
        main(_config(tmp_path / "goal", expert=straight, env=bends))


def test_max_steps_drops_long_runs(tmp_path):
    result = main(_config(tmp_path, keep="all", max_steps=41, runs=3))
    assert result.dropped > 0
    assert {d["reason"] for d in result.manifest["dropped"]} == {"longer than --max-steps"}
    assert all(e["frames"] <= 41 for e in result.manifest["runs"])


def test_stochastic_dataset_records_clean_labels_and_continuous_env(tmp_path):
    result = main(_config(tmp_path, expert=ExpertConfig(kind="stochastic")))
    assert result.manifest["env_id"] == "CorridorContinuous-v0"
    assert result.manifest["env_kwargs"]["action_type"] == "continuous"
    run = load_run(tmp_path / result.manifest["runs"][0]["file"])
    executed, label = run["action_continuous"], run["expert_continuous"]
    assert np.abs(executed - label).mean() > 0.1
    assert set(np.unique(run["source"])) <= {0, 1}


def test_lzf_depth_and_previews(tmp_path):
    result = main(
        _config(
            tmp_path,
            compression="lzf",
            env=dataclasses.replace(TINY_ENV, obs_mode="depth"),
            video=True,
            video_format="gif",
        )
    )
    entry = result.manifest["runs"][0]
    assert load_run(tmp_path / entry["file"])["frames"].shape[1:] == (32, 32, 1)
    previews = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert previews == [f"{e['name']}.gif" for e in result.manifest["runs"]]


def test_verify_and_loader_name_truncated_and_corrupt_files(tmp_path, capsys):
    main(_config(tmp_path, runs=4))
    assert verify_main(VerifyConfig(tmp_path)).ok
    runs = tmp_path / "runs"
    truncated, corrupt = runs / "run_000001.h5", runs / "run_000002.h5"
    os.truncate(truncated, truncated.stat().st_size // 2)
    with open(corrupt, "r+b") as handle:  # zero the middle: frame chunks no longer inflate
        handle.seek(corrupt.stat().st_size // 2)
        handle.write(bytes(4000))
    for path in (truncated, corrupt):
        with pytest.raises(DatasetError) as error:
            load_run(path)
        message = str(error.value)
        assert message.startswith(f"runs/{path.name}: ") and "\n" not in message
    capsys.readouterr()
    report = verify_main(VerifyConfig(tmp_path))
    assert not report.ok
    assert {where for where, _ in report.problems} == {"runs/run_000001.h5", "runs/run_000002.h5"}
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"bad {tmp_path}/runs/run_000001.h5: ")
    assert len(lines) == 3


def test_verify_catches_disagreements_with_the_manifest(tmp_path):
    main(_config(tmp_path))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["runs"][0]["frames"] += 1
    manifest["runs"][1]["split"] = "train"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "runs" / "run_000099.h5").write_bytes(b"")
    problems = check_dataset(tmp_path).problems
    text = " | ".join(f"{where}: {message}" for where, message in problems)
    assert "runs/run_000000.h5: n_steps is" in text
    assert "splits['test'] disagrees" in text
    assert "runs/run_000099.h5: run file not listed" in text


def test_verify_and_loader_on_a_missing_manifest(tmp_path):
    with pytest.raises(DatasetError, match="no manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_manifest(tmp_path)
    assert check_dataset(tmp_path).problems[0][0] == "manifest.json"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--expert", "greedy"], "invalid choice: 'greedy'"),
        (["--runs", "0"], "--runs must be >= 1"),
        (["--out", "pyproject.toml"], "is a file"),
        (["--out", "/proc/corridor-bc"], "cannot write to --out"),
        (["--n-bins", "4"], "--n-bins must be an odd integer"),
        (["--min-steps", "10", "--max-steps", "5"], "--min-steps"),
        (["--obstacle-density", "2"], "--obstacle-density must be in [0, 1]"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_collect_bad_input_is_one_error_line_and_exit_2(args, message):
    assert_exit_2_one_line(run_here("expert.collect", *args, cwd=ROOT), message)


def test_verify_cli_exit_codes(tmp_path):
    main(_config(tmp_path / "data"))
    assert run_module("dataset.verify", str(tmp_path / "data")).returncode == 0
    os.truncate(tmp_path / "data" / "runs" / "run_000000.h5", 100)
    bad = run_here("dataset.verify", str(tmp_path / "data"))
    assert bad.returncode == 1 and "bad " in bad.stdout and "run_000000.h5" in bad.stdout
    missing = run_here("dataset.verify", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")


def test_every_flag_reaches_the_config():
    argv = [
        "--out", "x", "--runs", "7", "--seed", "3", "--workers", "2", "--val-runs", "2",
        "--test-runs", "2", "--min-steps", "5", "--max-steps", "900", "--max-frames", "500",
        "--keep", "all", "--compression", "lzf", "--video", "--video-format", "gif",
        "--overwrite", "--quiet", "--backend", "ray", "--address", "auto",
        "--image-size", "48", "--obs-mode", "rgbd", "--n-bins", "5", "--fov", "80",
        "--depth-range", "8", "--speed", "0.7", "--turn-speed", "0.5", "--max-yaw-rate", "1.0",
        "--control-hz", "12", "--physics-substeps", "3", "--camera-height", "0.9",
        "--agent-radius", "0.25", "--n-segments", "3", "--segment-length", "6", "7",
        "--bend-angles", "45", "90", "--corridor-width", "3.0", "--wall-height", "2.4",
        "--wall-thickness", "0.3", "--obstacle-density", "0.5", "--obstacle-min-gap", "1.3",
        "--clutter-density", "0.2", "--no-randomize", "--randomize-textures",
        "--light", "outside", "--mixture", "generalist", "--start-offset", "0.5",
        "--start-lateral-jitter", "0.2", "--start-yaw-jitter", "5", "--collision-penalty", "5",
        "--expert", "stochastic", "--noise-sigma", "0.3", "--epsilon", "0.1", "--alpha", "0.9",
        "--mix-policy", "straight", "--deadband", "0.3", "--release", "0.1",
        "--lookahead", "1.5",
        "--pursuit-gain", "1.2", "--waypoint-weight", "0.8", "--avoidance-weight", "0.2",
        "--avoidance-gain", "20", "--avoidance-decay", "0.3", "--avoidance-width", "25",
        "--n-rays", "11", "--ray-fov", "160", "--ray-range", "2.5", "--no-gap-planning",
        "--gap-hold", "0.5", "--gap-ramp", "1.5", "--gap-min-width", "1.0", "--no-gap-replan",
        "--speed-bins", "5", "--speed-range", "0.3", "1.0", "--acceleration", "2",
        "--bend-slowdown", "0.8", "--after-bend", "1.0", "--obstacle-speed", "0.5",
        "--obstacle-margin", "0.5", "--turn-slowdown", "0.3", "--brake", "0.7",
    ]  # fmt: skip
    config = parse_config(CollectConfig, argv, "test", None)
    defaults = CollectConfig()

    def leaves(value, prefix=""):
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                yield from leaves(getattr(value, f.name), f"{prefix}{f.name}.")
        else:
            yield prefix.rstrip("."), value

    changed = dict(leaves(config))
    unchanged = [k for k, v in leaves(defaults) if changed[k] == v]
    # held-out textures need random looks, which the argv above turns off to change them;
    # two controls leave no turn speed to set (tests/envs covers --controls)
    assert unchanged == ["env.controls", "env.held_out_textures"], (
        f"flags that did not reach the config: {unchanged}"
    )
    assert config.env.segment_length == (6.0, 7.0) and config.env.bend_angles == (45.0, 90.0)
    held_out = ["--out", "x", "--randomize-textures", "--held-out-textures"]
    assert parse_config(CollectConfig, held_out, "test", None).env.held_out_textures is True


def test_plan_depends_on_the_results_alone():
    def result(index, kept, frames=50):
        return RunResult(index, collect_seed(0, index), kept, "goal", frames)

    results = {i: result(i, i not in (1, 4)) for i in range(8)}
    plan = make_plan(results, 4, 1, 1, None)
    assert plan.done and [r.run_index for r, _, _ in plan.entries] == [0, 2, 3, 5]
    assert [split for _, split, _ in plan.entries] == ["val", "test", "train", "train"]
    partial = {i: results[i] for i in (0, 1, 3, 5)}  # run 2 still in flight
    plan = make_plan(partial, 4, 1, 1, None)
    assert not plan.done and plan.next_index == 2
    budget = make_plan(results, None, 1, 1, 70)
    assert budget.done and [f for _, _, f in budget.entries] == [50, 50, 50, 20]
    failing = {i: result(i, i % 3 == 0) for i in range(40)}
    with pytest.raises(CollectError, match="dropped"):
        make_plan(failing, 30, 1, 1, None)


def test_default_config_matches_the_trainer_defaults():
    config = CollectConfig()
    assert config.out == Path("data/default") and config.target_runs == DEFAULT_RUNS == 80
    kwargs = config.env_kwargs()
    assert (kwargs["image_size"], kwargs["obs_mode"], kwargs["n_bins"]) == (64, "rgb", 3)
    assert config.env_id == envs.ENV_IDS["discrete"]
