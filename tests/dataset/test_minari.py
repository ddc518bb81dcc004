"""Minari export and import: lossless both ways, trainable after the round trip."""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

from bc.train import main as train
from dataset import FINAL_FIELDS, STEP_FIELDS, DatasetError, load_run, read_manifest, run_file
from dataset.export import ExportConfig, default_name
from dataset.export import main as export_command
from dataset.minari_io import STATE_INFOS, STEP_INFOS, export_minari, import_minari
from dataset.verify import check_dataset
from tests.bc.helpers import tiny_config
from tests.dataset.helpers import FORMAT1, format1_copy, record
from tests.extras import require_extra

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def minari(tmp_path, monkeypatch):
    """The minari module, its datasets root in tmp_path (never ~/.minari)."""
    module = require_extra("minari", "minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return module


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A discrete and a continuous (stochastic: noisy, off-bin) tiny dataset."""
    require_extra("minari", "minari")
    root = tmp_path_factory.mktemp("recorded")
    return {
        "discrete": record(root / "discrete", runs=3),
        "continuous": record(root / "continuous", kind="stochastic", runs=3),
    }


def _assert_same_runs(source, copy, *, same_version=True):
    manifest = read_manifest(source)
    assert [e["name"] for e in read_manifest(copy)["runs"]] == [e["name"] for e in manifest["runs"]]
    for entry in manifest["runs"]:
        old, new = load_run(run_file(source, entry)), load_run(run_file(copy, entry))
        old_attrs, new_attrs = old.pop("attrs"), new.pop("attrs")
        assert set(new) == set(STEP_FIELDS) | set(FINAL_FIELDS)
        for name in old:  # frames bit for bit, labels, actions, ends, state
            assert new[name].dtype == old[name].dtype, name
            np.testing.assert_array_equal(new[name], old[name], err_msg=f"{entry['name']} {name}")
        if same_version:
            assert new_attrs == old_attrs
        else:
            assert new_attrs == {**old_attrs, "format_version": 2}


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_export_load_iterate_import_train_is_lossless(minari, recorded, kind, tmp_path):
    data = recorded[kind]
    manifest = read_manifest(data)
    result = export_minari(data, f"corridor/{kind}-v0")
    assert (result.episodes, result.replayed) == (3, 0)

    dataset = minari.load_dataset(f"corridor/{kind}-v0")
    assert dataset.total_episodes == 3 and dataset.total_steps == result.steps
    assert dataset.storage.jpeg_encoding is False
    spec = dataset.spec.env_spec
    assert spec.id == manifest["env_id"]
    assert spec.kwargs == json.loads(json.dumps(manifest["env_kwargs"]))
    assert (
        dataset.recover_environment().unwrapped.action_type == manifest["env_kwargs"]["action_type"]
    )
    metadata = dataset.storage.get_episode_metadata(dataset.episode_indices)
    episodes = zip(manifest["runs"], dataset.iterate_episodes(), metadata, strict=True)
    for entry, episode, meta in episodes:
        run = load_run(run_file(data, entry))
        steps = len(run["reward"])
        assert meta["seed"] == entry["seed"] and meta["corridor_bc"]["name"] == entry["name"]
        assert episode.observations.dtype == np.uint8
        np.testing.assert_array_equal(episode.observations[:steps], run["frames"])
        np.testing.assert_array_equal(episode.observations[steps], run["final_frame"])
        if kind == "continuous":
            np.testing.assert_array_equal(episode.actions[:, 0], run["action_continuous"])
            assert np.abs(run["action_continuous"] - run["expert_continuous"]).mean() > 0.05
        else:
            np.testing.assert_array_equal(episode.actions, run["action"])
        np.testing.assert_array_equal(episode.rewards, run["reward"])
        np.testing.assert_array_equal(episode.terminations, run["terminated"])
        np.testing.assert_array_equal(episode.truncations, run["truncated"])
        for info in STEP_INFOS:
            np.testing.assert_array_equal(episode.infos[info][:steps], run[info])
        for info, (step_name, final_name) in STATE_INFOS.items():
            np.testing.assert_array_equal(episode.infos[info][:steps], run[step_name])
            np.testing.assert_array_equal(episode.infos[info][steps], run[final_name])
        assert episode.infos["expert_action"][steps] == -1
        assert np.isnan(episode.infos["expert_continuous"][steps])

    back = import_minari(f"corridor/{kind}-v0", tmp_path / "back")
    assert (back.episodes, back.steps) == (3, result.steps)
    _assert_same_runs(data, tmp_path / "back")
    assert check_dataset(tmp_path / "back").ok, check_dataset(tmp_path / "back").problems
    assert read_manifest(tmp_path / "back")["minari"]["dataset_id"] == f"corridor/{kind}-v0"
    results = train(tiny_config(tmp_path / "back", tmp_path / "runs"))
    assert results["val"]["samples"] == manifest["runs"][0]["frames"]


def test_a_format_1_dataset_exports_with_its_ends_replayed(minari, recorded, tmp_path):
    result = export_minari(FORMAT1, "corridor/format1-v0")
    assert result.replayed == 2
    episodes = list(minari.load_dataset("corridor/format1-v0").iterate_episodes())
    assert [e.terminations[-1] for e in episodes] == [True, False]  # a goal, a budget cut
    assert [e.truncations[-1] for e in episodes] == [False, True]
    import_minari("corridor/format1-v0", tmp_path / "back")
    _assert_same_runs(FORMAT1, tmp_path / "back", same_version=False)
    assert check_dataset(tmp_path / "back").ok


def test_refusals_leave_nothing_behind(minari, recorded, tmp_path):
    data = recorded["discrete"]
    export_minari(data, "corridor/once-v0")
    with pytest.raises(DatasetError, match="exists at .*pass --overwrite"):
        export_minari(data, "corridor/once-v0")
    assert export_minari(data, "corridor/once-v0", overwrite=True).episodes == 3
    with pytest.raises(DatasetError, match="not a Minari dataset id"):
        export_minari(data, "corridor/no version")
    # a format-1 run that does not replay exactly: refused, no half-written Minari dataset
    broken = format1_copy(tmp_path / "broken")
    with h5py.File(broken / "runs" / "run_000001.h5", "r+") as f:
        f["frames"][2, 5, 5, 1] ^= 1
    with pytest.raises(DatasetError, match="run_000001.h5: replaying it .* at step 2"):
        export_minari(broken, "corridor/broken-v0")
    assert not (tmp_path / "minari" / "corridor" / "broken-v0").exists()
    with pytest.raises(DatasetError, match="no Minari dataset corridor/missing-v0 under"):
        import_minari("corridor/missing-v0", tmp_path / "missing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty and holds no dataset"):
        import_minari("corridor/once-v0", tmp_path / "full")
    import_minari("corridor/once-v0", tmp_path / "twice")
    with pytest.raises(DatasetError, match="holds a dataset: pass --overwrite"):
        import_minari("corridor/once-v0", tmp_path / "twice")
    assert import_minari("corridor/once-v0", tmp_path / "twice", overwrite=True).episodes == 3


def test_an_import_that_fails_writes_nothing(minari, recorded, tmp_path):
    export_minari(recorded["discrete"], "corridor/edited-v0")
    main_data = tmp_path / "minari" / "corridor" / "edited-v0" / "data" / "main_data.hdf5"
    with h5py.File(main_data, "r+") as f:
        f["episode_2"]["actions"][4] = (f["episode_2"]["actions"][4] + 1) % 3
    with pytest.raises(DatasetError, match="run_000002.h5: the episode's actions disagree"):
        import_minari("corridor/edited-v0", tmp_path / "out")
    assert not any((tmp_path / "out" / "runs").iterdir())
    assert not (tmp_path / "out" / "manifest.json").exists()
    with h5py.File(main_data, "r+") as f:
        f["episode_2"]["actions"][4] = (f["episode_2"]["actions"][4] - 1) % 3
    _assert_same_runs(
        recorded["discrete"], import_minari("corridor/edited-v0", tmp_path / "out").dataset
    )


@pytest.mark.filterwarnings("ignore:.*(eval_env|env_spec):UserWarning")
def test_a_minari_dataset_from_elsewhere_is_refused(minari, tmp_path):
    from minari.data_collector import EpisodeBuffer

    buffer = EpisodeBuffer(
        observations=np.zeros((3, 2), np.float32),
        actions=np.zeros(2, np.int64),
        rewards=np.zeros(2),
        terminations=np.array([False, True]),
        truncations=np.zeros(2, bool),
        infos={},
    )
    minari.create_dataset_from_buffers(
        "other/plain-v0",
        [buffer],
        observation_space=gym.spaces.Box(-1, 1, (2,), np.float32),
        action_space=gym.spaces.Discrete(2),
        author="someone",
        author_email="someone@example.org",
        code_permalink="https://example.org",
        algorithm_name="none",
        description="not from corridor-bc",
    )
    with pytest.raises(DatasetError, match="was not exported by corridor-bc"):
        import_minari("other/plain-v0", tmp_path / "out")


def test_export_and_import_commands(minari, recorded, tmp_path):
    data = recorded["discrete"]
    assert default_name(tmp_path / "my data!") == "corridor/my-data-v0"
    config = ExportConfig(data, data_path=tmp_path / "elsewhere", quiet=True)
    assert config.name == "corridor/discrete-v0"
    export_command(config)
    assert (tmp_path / "elsewhere" / "corridor" / "discrete-v0" / "data").is_dir()

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    back = tmp_path / "back"
    imported = cli(
        "dataset.import_minari", "corridor/discrete-v0", "--out", str(back),
        "--data-path", str(tmp_path / "elsewhere"),
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert f"python -m bc.train --data {back}" in imported.stdout
    _assert_same_runs(data, back)
    bad = cli("dataset.export", str(data), "--name", "no/version", "--data-path", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("error: 'no/version' is not a Minari dataset id")


def test_without_minari_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "minari", None)  # import minari raises ImportError
    with pytest.raises(
        DatasetError, match=r'Minari is not installed: pip install -e "\.\[minari\]"'
    ):
        export_minari(FORMAT1, "corridor/x-v0")
    with pytest.raises(DatasetError, match="Minari is not installed"):
        import_minari("corridor/x-v0", tmp_path / "out")
