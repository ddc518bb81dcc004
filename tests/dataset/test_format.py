"""Format 2 (the runs' ends) as recorded, checked, cut and replayed; format 1 still read."""

import shutil

import gymnasium as gym
import h5py
import numpy as np
import pytest

from bc.train import main as train
from dataset import (
    FINAL_FIELDS,
    FORMAT_VERSION,
    STEP_FIELDS,
    DatasetError,
    cut_run,
    load_run,
    read_manifest,
    run_file,
)
from dataset.replay import replay_ends, run_with_ends
from dataset.synthetic import make_synthetic_dataset
from dataset.verify import VerifyConfig, check_dataset
from dataset.verify import main as verify
from expert.collect import main as collect
from expert.collect_config import CollectError
from tests.bc.helpers import tiny_config
from tests.dataset.helpers import FORMAT1, format1_config, format1_copy, record

ENDS = ("terminated", "truncated", *FINAL_FIELDS)


@pytest.fixture(scope="module")
def discrete(tmp_path_factory):
    return record(tmp_path_factory.mktemp("discrete") / "data")


@pytest.fixture(scope="module")
def continuous(tmp_path_factory):
    return record(tmp_path_factory.mktemp("continuous") / "data", kind="continuous")


def _runs(directory):
    manifest = read_manifest(directory)
    return manifest, [run_file(directory, entry) for entry in manifest["runs"]]


def test_recorded_runs_hold_their_ends(discrete):
    manifest, paths = _runs(discrete)
    assert manifest["format_version"] == FORMAT_VERSION == 2
    env = gym.make(manifest["env_id"], **manifest["env_kwargs"])
    for path in paths:
        run = load_run(path)
        assert run["attrs"]["format_version"] == 2 and run["attrs"]["outcome"] == "goal"
        assert run["terminated"].dtype == np.bool_
        assert run["terminated"].tolist() == [False] * (len(run["reward"]) - 1) + [True]
        assert not run["truncated"].any()
        observation, _ = env.reset(seed=run["attrs"]["seed"])
        for action in run["action"]:
            observation, _, terminated, _, info = env.step(int(action))
        assert terminated and info["outcome"] == "goal"
        np.testing.assert_array_equal(run["final_frame"], observation)
        np.testing.assert_array_equal(run["final_pose"], env.unwrapped.pose.astype(np.float32))
        assert run["final_progress"] == np.float32(info["progress_m"])
        assert run["final_lateral_offset"] == np.float32(info["lateral_offset"])
        assert run["final_heading_error"] == np.float32(info["heading_error"])
    env.close()


def test_stored_continuous_actions_replay_the_recorded_run(continuous):
    manifest, paths = _runs(continuous)
    assert manifest["env_id"] == "CorridorContinuous-v0"
    env = gym.make(manifest["env_id"], **manifest["env_kwargs"])
    for path in paths:
        with h5py.File(path, "r") as f:
            observation, _ = env.reset(seed=int(f.attrs["seed"]))
            for t in range(int(f.attrs["n_steps"])):
                np.testing.assert_array_equal(observation, f["frames"][t])
                pose = env.unwrapped.pose.astype(np.float32)
                np.testing.assert_array_equal(pose, f["pose"][t])
                step = env.step(f["action_continuous"][t])  # a float32 scalar, as stored
                observation, terminated, truncated, info = step[0], step[2], step[3], step[4]
                assert (terminated, truncated) == (f["terminated"][t], f["truncated"][t])
            np.testing.assert_array_equal(observation, f["final_frame"][()])
            assert info["outcome"] == f.attrs["outcome"] == "goal"
        # the continuous branch of the replay that recovers format-1 ends
        run = load_run(path)
        replayed = replay_ends(path, run, env)
        for name in ENDS:
            np.testing.assert_array_equal(replayed[name], run[name], err_msg=name)
    env.close()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f["terminated"].__setitem__(0, True), "a step before the last"),
        (lambda f: f["terminated"].__setitem__(-1, False), "neither terminated nor truncated"),
        (lambda f: f.attrs.__setitem__("outcome", "timeout"), "is terminated but the outcome"),
        (lambda f: f.__delitem__("final_frame"), "dataset 'final_frame' is missing"),
        (lambda f: f.__delitem__("truncated"), "dataset 'truncated' is missing"),
        (lambda f: f.attrs.__setitem__("format_version", 3), "format_version 3 is not one"),
    ],
)
def test_format_2_checks_name_the_file(discrete, tmp_path, change, message):
    path = tmp_path / "runs" / "run_000001.h5"
    path.parent.mkdir()
    shutil.copy(run_file(discrete, read_manifest(discrete)["runs"][1]), path)
    with h5py.File(path, "r+") as f:
        change(f)
    with pytest.raises(DatasetError, match=message) as error:
        load_run(path)
    assert str(error.value).startswith("runs/run_000001.h5: ")


def test_cut_run_keeps_a_prefix_and_ends_it_truncated(discrete, tmp_path):
    source = run_file(discrete, read_manifest(discrete)["runs"][1])
    whole = load_run(source)
    path = shutil.copy(source, tmp_path / "run.h5")
    cut_run(path, 5, cut_by_budget=True)
    cut = load_run(path)
    for name in STEP_FIELDS:
        if name not in ("terminated", "truncated"):
            np.testing.assert_array_equal(cut[name], whole[name][:5], err_msg=name)
    for name, step_name in FINAL_FIELDS.items():
        np.testing.assert_array_equal(cut[name], whole[step_name][5], err_msg=name)
    assert cut["truncated"].tolist() == [False] * 4 + [True] and not cut["terminated"].any()
    assert cut["attrs"]["outcome"] == "timeout" and cut["attrs"]["cut_by_budget"]
    assert cut["attrs"]["n_steps"] == 5 and cut["attrs"]["episode_steps"] == len(whole["reward"])
    with pytest.raises(ValueError, match="cannot cut"):
        cut_run(path, 5)


def test_synthetic_datasets_hold_their_ends(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", runs=2, frames=[300, 7], size=32, pattern="index")
    for index, length in enumerate([300, 7]):
        run = load_run(root / "runs" / f"run_{index:06d}.h5")
        assert run["attrs"]["format_version"] == 2 and run["attrs"]["outcome"] == "timeout"
        assert run["truncated"].tolist() == [False] * (length - 1) + [True]
        assert not run["terminated"].any()
        assert run["final_frame"][0, 0].tolist() == [length % 256, length // 256, index]
        assert run["frames"][-1, 0, 0].tolist() == [(length - 1) % 256, (length - 1) // 256, index]
    assert check_dataset(root).ok


def test_format_1_fixture_reads_verifies_and_trains(tmp_path, capsys):
    manifest, paths = _runs(FORMAT1)
    assert manifest["format_version"] == 1
    for path in paths:
        run = load_run(path)
        assert run["attrs"]["format_version"] == 1
        assert not set(ENDS) & set(run)
    report = verify(VerifyConfig(FORMAT1))
    assert report.ok and report.format_versions == {1}
    assert "2 runs, 16 frames, format 1" in capsys.readouterr().out
    data = format1_copy(tmp_path / "data")
    results = train(tiny_config(data, tmp_path / "runs"))
    assert results["val"]["samples"] == 11 and np.isfinite(results["val"]["loss"])


def test_format_1_runs_replay_to_the_ends_format_2_records(tmp_path):
    # the same collection recorded today: the same runs, with their ends stored
    today = tmp_path / "today"
    collect(format1_config(today))
    manifest, paths = _runs(FORMAT1)
    env = gym.make(manifest["env_id"], **manifest["env_kwargs"])
    for entry, path in zip(manifest["runs"], paths, strict=True):
        old, new = run_with_ends(path, env), load_run(run_file(today, entry))
        assert old["attrs"].pop("replayed") is True
        for name in STEP_FIELDS.keys() | FINAL_FIELDS.keys():
            np.testing.assert_array_equal(old[name], new[name], err_msg=f"{entry['name']} {name}")
        changed = {k for k in new["attrs"] if old["attrs"].get(k) != new["attrs"][k]}
        assert changed == {"format_version", "config_hash"}
    assert [entry["outcome"] for entry in manifest["runs"]] == ["goal", "timeout"]
    env.close()


def test_a_run_that_does_not_replay_is_refused(tmp_path):
    data = format1_copy(tmp_path / "data")
    path = data / "runs" / "run_000000.h5"
    with h5py.File(path, "r+") as f:
        f["frames"][3, 0, 0, 0] ^= 1
    env = gym.make("Corridor-v0", **read_manifest(data)["env_kwargs"])
    with pytest.raises(DatasetError, match="another frame at step 3"):
        run_with_ends(path, env)
    env.close()


def test_resuming_a_format_1_dataset_is_refused_with_the_reason(tmp_path):
    data = format1_copy(tmp_path / "data")
    with pytest.raises(CollectError, match=r"format_version: 1 -> 2\); use --overwrite"):
        collect(format1_config(data))
    result = collect(format1_config(data, overwrite=True))
    assert result.manifest["format_version"] == 2 and check_dataset(data).ok
