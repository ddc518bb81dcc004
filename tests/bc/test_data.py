"""The sequence store: windows, padding, subsets, normalisation and loader errors."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from bc.data import InputNorm, load_dataset
from bc.heads import bin_to_yaw, yaw_to_bin
from bc.sampling import (
    epoch_generator,
    frame_plan,
    frame_targets,
    full_plan,
    sliding_plan,
    sliding_windows,
    window_plan,
)
from dataset import DatasetError
from dataset.synthetic import make_synthetic_dataset
from tests.bc.helpers import small_dataset


@pytest.fixture(scope="module")
def index_data(tmp_path_factory) -> Path:
    """Pixels hold (t % 256, t // 256, run); train runs of 5, 7 and 9 frames."""
    root = tmp_path_factory.mktemp("index") / "data"
    return make_synthetic_dataset(
        root, runs=5, frames=[5, 7, 9, 4, 6], size=32, pattern="index", splits=(3, 1, 1)
    )


def _decode(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., C, H, W) uint8 index frames -> (step, run) per frame."""
    pixel = frames[..., :, 0, 0].long()
    return pixel[..., 0] + 256 * pixel[..., 1], pixel[..., 2]


@pytest.mark.parametrize("in_ram", ["yes", "no"])
def test_frame_stacks_repeat_the_first_frame_and_stay_in_their_run(index_data, in_ram) -> None:
    split = load_dataset(index_data, in_ram=in_ram).splits["train"]
    assert split.in_ram == (in_ram == "yes")
    targets = torch.arange(split.n_frames)
    idx = split.stack_indices(targets, 3)  # (N, 3)
    steps, runs = _decode(split.gather(idx))
    for target in targets.tolist():
        run = int(split.run_of[target])
        step = target - int(split.begins[run])
        assert runs[target].tolist() == [run] * 3
        assert steps[target].tolist() == [max(step - 2, 0), max(step - 1, 0), step]


def test_in_ram_and_lazy_gather_the_same_frames(index_data) -> None:
    eager = load_dataset(index_data, in_ram="yes").splits["train"]
    lazy = load_dataset(index_data, in_ram="no").splits["train"]
    idx = torch.tensor([[20, 3, 3], [0, 1, 2], [7, 6, 5]]) % eager.n_frames
    assert torch.equal(eager.gather(idx), lazy.gather(idx))
    assert torch.equal(eager.bins, lazy.bins) and torch.equal(eager.yaw, lazy.yaw)


def test_windows_never_cross_a_run_and_mask_their_padding(index_data) -> None:
    split = load_dataset(index_data).splits["train"]
    runs = torch.tensor([0, 1, 2, 2])
    offsets = torch.tensor([3, 0, 6, 8])
    valid = torch.tensor([2, 7, 3, 1])
    idx, mask = split.window_indices(runs, offsets, valid, 4)
    steps, run_ids = _decode(split.gather(idx))
    assert run_ids.tolist() == [[0] * 4, [1] * 4, [2] * 4, [2] * 4]
    assert steps.tolist() == [[3, 4, 4, 4], [0, 1, 2, 3], [6, 7, 8, 8], [8, 8, 8, 8]]
    assert mask.tolist() == [
        [True, True, False, False],
        [True] * 4,
        [True, True, True, False],
        [True, False, False, False],
    ]


def test_window_plan_labels_every_frame_once_per_epoch(index_data) -> None:
    split = load_dataset(index_data).splits["train"]
    for epoch in range(4):
        units = window_plan(split, epoch_generator(0, epoch), batch_size=2, time_length=3)
        seen = []
        for unit in units:
            idx, mask = split.window_indices(unit.runs, unit.offsets, unit.valid, unit.length)
            assert idx.shape[1] == 3
            seen.extend(idx[mask].tolist())
        assert sorted(seen) == list(range(split.n_frames))


def test_window_phase_moves_between_epochs(index_data) -> None:
    split = load_dataset(index_data).splits["train"]
    starts = [
        sorted(
            int(o)
            for unit in window_plan(split, epoch_generator(0, e), 64, 3)
            for o in unit.offsets
        )
        for e in range(6)
    ]
    assert len({tuple(s) for s in starts}) > 1


def test_full_plan_batches_whole_runs(index_data) -> None:
    split = load_dataset(index_data).splits["train"]
    units = full_plan(split, epoch_generator(0, 0), batch_size=2)
    assert sorted(r for u in units for r in u.runs.tolist()) == [0, 1, 2]
    for unit in units:
        assert unit.length == int(unit.valid.max())
        assert unit.valid.tolist() == split.lengths[unit.runs].tolist()
        assert unit.offsets.tolist() == [0] * len(unit.runs)


@pytest.mark.parametrize("accumulate", [False, True])
def test_sliding_plan_slides_by_the_step_and_carries_state(index_data, accumulate) -> None:
    split = load_dataset(index_data).splits["train"]
    units = sliding_plan(
        split, epoch_generator(0, 0), 3, time_length=4, step=2, accumulate=accumulate
    )
    windows = units[0].windows if accumulate else units
    assert len(units) == (1 if accumulate else sliding_windows(9, 4, 2))
    assert [int(w.offsets[0]) for w in windows] == [0, 2, 4, 6]
    assert [w.reset for w in windows] == [True, False, False, False]
    assert [w.carry for w in windows] == [2, 2, 2, None]
    run_of_9 = split.lengths[windows[0].runs].tolist().index(9)
    assert [int(w.valid[run_of_9]) for w in windows] == [4, 4, 4, 3]


def test_subsample_labels_every_kth_frame_and_max_frames_caps_them(index_data) -> None:
    split = load_dataset(index_data).splits["train"]
    targets = frame_targets(split, 2)
    assert (split.positions(targets) % 2 == 0).all()
    assert len(targets) == 3 + 4 + 5  # runs of 5, 7, 9 frames
    capped = load_dataset(index_data, max_frames=7, subsample=2).splits["train"]
    assert len(frame_targets(capped, 2)) == 7
    assert [run.length for run in capped.runs] == [5, 7]  # 3 + 4 labelled, whole runs first
    cut = load_dataset(index_data, max_frames=4).splits["train"]
    assert [run.length for run in cut.runs] == [4]
    assert cut.n_frames == 4
    assert load_dataset(index_data, max_frames=4).splits["val"].n_frames == 4  # val untouched


def test_balanced_batches_draw_classes_evenly(tmp_path) -> None:
    data = make_synthetic_dataset(tmp_path / "d", runs=3, frames=200, size=32, splits=(2, 1, 0))
    split = load_dataset(data).splits["train"]
    counts = split.class_counts(3).float()
    assert counts.max() / counts.min() > 1.5  # the data is not balanced to begin with
    units = frame_plan(split, epoch_generator(0, 0), 32, balance_bins=3)
    drawn = torch.bincount(split.bins[torch.cat([u.targets for u in units])], minlength=3).float()
    assert drawn.sum() == split.n_frames
    assert (drawn / drawn.sum() - 1 / 3).abs().max() < 0.06


def test_plans_depend_on_seed_and_epoch_only(index_data) -> None:
    split = load_dataset(index_data).splits["train"]
    first = [u.targets.tolist() for u in frame_plan(split, epoch_generator(5, 2), 4)]
    again = [u.targets.tolist() for u in frame_plan(split, epoch_generator(5, 2), 4)]
    other = [u.targets.tolist() for u in frame_plan(split, epoch_generator(5, 3), 4)]
    assert first == again and first != other


def test_input_norm_modes(tmp_path) -> None:
    data = small_dataset(tmp_path / "d")
    split = load_dataset(data).splits["train"]
    frames = split.gather(torch.arange(split.n_frames))
    none = InputNorm.fit("none", split, 3)(frames)
    shift = InputNorm.fit("shift", split, 3)(frames)
    assert 0 <= none.min() and none.max() <= 1
    torch.testing.assert_close(shift, none - 0.5)
    scale = InputNorm.fit("scale", split, 3)
    scaled = scale(frames)
    torch.testing.assert_close(scaled.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(scaled.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)
    assert InputNorm.from_dict(scale.to_dict()).to_dict() == scale.to_dict()
    imagenet = InputNorm.fit("imagenet", split, 3)
    assert imagenet.mean == [0.485, 0.456, 0.406]


def test_imagenet_norm_needs_rgb(tmp_path) -> None:
    data = small_dataset(tmp_path / "d", obs_mode="depth")
    split = load_dataset(data).splits["train"]
    with pytest.raises(DatasetError, match="RGB"):
        InputNorm.fit("imagenet", split, 1)


@pytest.mark.parametrize(("obs_mode", "channels"), [("rgb", 3), ("depth", 1), ("rgbd", 4)])
def test_obs_modes_and_non_square_images(tmp_path, obs_mode, channels) -> None:
    data = small_dataset(tmp_path / "d", obs_mode=obs_mode, size=(32, 40))
    dataset = load_dataset(data)
    assert (dataset.channels, dataset.height, dataset.width) == (channels, 32, 40)
    assert dataset.splits["train"].gather(torch.tensor([0])).shape == (1, channels, 32, 40)


def test_continuous_datasets_bin_the_continuous_label(tmp_path) -> None:
    data = small_dataset(tmp_path / "d", action_type="continuous", n_bins=5)
    split = load_dataset(data).splits["train"]
    assert torch.equal(split.bins, yaw_to_bin(split.yaw, 5))


def test_bin_yaw_convention() -> None:
    assert bin_to_yaw(torch.arange(3), 3).tolist() == [1.0, 0.0, -1.0]
    assert yaw_to_bin(torch.tensor([1.0, 0.4, -0.6, -3.0]), 3).tolist() == [0, 1, 2, 2]


def _error(path, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_directory_and_manifest(tmp_path) -> None:
    assert "does not exist" in _error(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "manifest.json" in _error(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    assert "manifest.json" in _error(tmp_path / "bad")


def _edit_manifest(data: Path, edit) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    edit(manifest)
    (data / "manifest.json").write_text(json.dumps(manifest))


def test_no_runs_and_no_val_split(tmp_path) -> None:
    data = small_dataset(tmp_path / "d")
    _edit_manifest(data, lambda m: m.update(runs=[], splits={"train": [], "val": [], "test": []}))
    assert "no runs" in _error(data)
    data = small_dataset(tmp_path / "e")
    _edit_manifest(data, lambda m: m["splits"].update(val=[]))
    assert "val split holds no runs" in _error(data)


def test_env_kwargs_must_describe_the_frames(tmp_path) -> None:
    data = small_dataset(tmp_path / "d")
    _edit_manifest(data, lambda m: m["env_kwargs"].pop("n_bins"))
    assert "n_bins" in _error(data)
    data = small_dataset(tmp_path / "e")
    _edit_manifest(data, lambda m: m["env_kwargs"].update(image_size=64))
    assert "run_000000.h5" in _error(data)


def test_truncated_h5_names_the_file(tmp_path) -> None:
    data = small_dataset(tmp_path / "d")
    path = data / "runs" / "run_000001.h5"
    path.write_bytes(path.read_bytes()[:2000])
    message = _error(data)
    assert "run_000001.h5" in message and "truncated" in message


def test_corrupt_frame_data_names_the_file(tmp_path) -> None:
    data = small_dataset(tmp_path / "d")
    path = data / "runs" / "run_000000.h5"
    with h5py.File(path, "r") as file:
        offset = file["frames"].id.get_chunk_info(3).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 64] = b"\xff" * 64  # break one gzip chunk
    path.write_bytes(bytes(raw))
    assert "run_000000.h5" in _error(data, in_ram="yes")
    lazy = load_dataset(data, in_ram="no").splits["train"]
    with pytest.raises(DatasetError, match="run_000000.h5"):
        lazy.gather(torch.arange(lazy.n_frames))


def test_missing_dataset_key_names_the_file(tmp_path) -> None:
    data = small_dataset(tmp_path / "d")
    with h5py.File(data / "runs" / "run_000002.h5", "a") as file:
        del file["expert_action"]
    message = _error(data)
    assert "run_000002.h5" in message and "expert_action" in message


def test_missing_run_file_and_length_mismatch(tmp_path) -> None:
    data = small_dataset(tmp_path / "d")
    (data / "runs" / "run_000003.h5").unlink()
    assert "run_000003.h5" in _error(data)
    data = small_dataset(tmp_path / "e")
    _edit_manifest(data, lambda m: m["runs"][0].update(frames=999))
    assert "999" in _error(data)


def test_labels_outside_the_bins_are_refused(tmp_path) -> None:
    data = small_dataset(tmp_path / "d")
    with h5py.File(data / "runs" / "run_000000.h5", "a") as file:
        file["expert_action"][0] = 7
    assert "expert_action" in _error(data)


def test_label_distribution_is_learnable_not_constant(tmp_path) -> None:
    data = make_synthetic_dataset(tmp_path / "d", runs=3, frames=150, size=32, splits=(2, 1, 0))
    counts = load_dataset(data).splits["train"].class_counts(3)
    assert (counts > 0).all() and counts.max() < 0.75 * counts.sum()
    assert np.isclose(float(counts.sum()), 300)
