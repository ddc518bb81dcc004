"""``--augment color|randconv`` and ``--mirror``: what they draw, where they apply, and that
evaluation never sees them."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from bc.augment import (
    Augmenter,
    ColorJitter,
    RandomConvolution,
    make_augment,
    mirror_batch,
    mirror_draw,
    random_convolution,
    unit_generator,
)
from bc.config import TrainConfig, config_from_dict, config_to_dict
from bc.data import InputNorm, load_dataset
from bc.heads import make_head
from bc.nets import NETS
from bc.step_engine import Trainer, build_model
from bc.train import main
from tests.bc.helpers import read_metrics, tiny_config


def test_draws_stay_in_their_ranges_and_leave_depth_alone() -> None:
    jitter = ColorJitter()
    gain, offset = jitter.draw(500, 4, unit_generator(0, 0, 0))  # RGB-D
    low = jitter.brightness[0] * jitter.channel_gain[0]
    high = jitter.brightness[1] * jitter.channel_gain[1]
    assert gain.shape == offset.shape == (500, 4)
    assert bool(((gain[:, :3] >= low) & (gain[:, :3] <= high)).all())
    assert bool(((offset[:, :3] >= -25) & (offset[:, :3] <= 25)).all())
    assert gain[:, :3].std() > 0.1  # it does vary
    assert bool((gain[:, 3] == 1).all() and (offset[:, 3] == 0).all())  # depth untouched
    gain, offset = jitter.draw(8, 1, unit_generator(0, 0, 0))  # depth only
    assert bool((gain == 1).all() and (offset == 0).all())


def test_draws_depend_on_seed_epoch_and_unit_only() -> None:
    jitter = ColorJitter()
    first = jitter.draw(4, 3, unit_generator(5, 2, 7))[0]
    assert torch.equal(first, jitter.draw(4, 3, unit_generator(5, 2, 7))[0])
    assert not torch.equal(first, jitter.draw(4, 3, unit_generator(5, 2, 8))[0])
    assert not torch.equal(first, jitter.draw(4, 3, unit_generator(5, 3, 7))[0])


def test_the_map_is_one_affine_per_sample_and_channel_folded_into_the_norm() -> None:
    frames = torch.randint(0, 256, (2, 3, 3, 4, 4), dtype=torch.uint8)  # (B, T, C, H, W)
    gain = torch.tensor([[1.2, 0.8, 1.0], [0.5, 1.5, 1.1]])
    offset = torch.tensor([[10.0, 10.0, 10.0], [-20.0, -20.0, -20.0]])
    for norm in (InputNorm("none", [0.0] * 3, [1.0] * 3), InputNorm("shift", [0.5] * 3, [1.0] * 3)):
        mean = torch.tensor(norm.mean)[:, None, None]
        out = torch.empty(frames.shape)
        values = norm(frames, out=out, gain=gain, offset=offset)
        assert values is out
        for b in range(2):
            for t in range(3):  # every frame of a sample gets the same map
                jittered = frames[b, t].float() * gain[b][:, None, None] + offset[b][:, None, None]
                assert torch.allclose(values[b, t], jittered / 255.0 - mean, atol=1e-5)
    plain = InputNorm("none", [0.0] * 3, [1.0] * 3)(frames)  # no map: the plain norm
    assert torch.allclose(plain, frames.float() / 255.0)


def test_make_augment_names() -> None:
    assert make_augment("none") is None
    color, randconv, both = (make_augment(n) for n in ("color", "randconv", "color+randconv"))
    assert isinstance(color, Augmenter) and isinstance(color.jitter, ColorJitter)
    assert color.randconv is None and randconv.jitter is None
    assert isinstance(randconv.randconv, RandomConvolution)
    assert both.jitter is not None and both.randconv is not None
    with pytest.raises(ValueError, match="color"):
        make_augment("mirror")


def test_colour_draws_are_the_same_with_or_without_random_convolution() -> None:
    """Adding randconv keeps a run's colour jitter: the kernels come from a stream of their own."""
    alone = make_augment("color", seed=3).draw(6, 3, 1, 2)
    both = make_augment("color+randconv", seed=3).draw(6, 3, 1, 2)
    assert torch.equal(alone.gain, both.gain) and torch.equal(alone.offset, both.offset)
    assert alone.kernels is None and both.kernels.shape == (6, 3, 3, 3, 3)
    expected = ColorJitter().draw(6, 3, unit_generator(3, 1, 2))  # as before randconv existed
    assert torch.equal(alone.gain, expected[0]) and torch.equal(alone.offset, expected[1])


def test_random_kernels_are_xavier_normal_or_the_identity_and_skip_depth() -> None:
    randconv = RandomConvolution()
    kernels = randconv.draw(2000, 4, unit_generator(0, 0, 0))  # RGB-D: 3 colour channels
    identity = torch.zeros(3, 3, 3, 3)
    identity[range(3), range(3), 1, 1] = 1.0
    clean = torch.tensor([torch.equal(k, identity) for k in kernels])
    assert 0.45 < clean.float().mean() < 0.55, "half the samples keep their look"
    random = kernels[~clean]
    assert abs(random.mean()) < 0.01
    assert abs(random.std() - (2 / (27 + 27)) ** 0.5) < 0.01  # Xavier normal, fan 27 each way
    assert randconv.draw(4, 1, unit_generator(0, 0, 0)) is None  # depth only: nothing to do


def test_random_convolution_is_each_samples_kernel_on_each_of_its_frames() -> None:
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 4, 6, 5)  # (B, T, C, H, W): RGB-D
    kernels = RandomConvolution().draw(2, 4, unit_generator(1, 0, 0))
    kernels[1] = torch.randn(3, 3, 3, 3)  # both samples convolved, with kernels of their own
    out = random_convolution(inputs, kernels)
    assert out.shape == inputs.shape
    for b in range(2):  # independent truth: one plain convolution per sample and frame
        for t in range(3):
            frame = inputs[b, t, :3][None]
            want = functional.conv2d(frame, kernels[b], padding=1)[0]
            torch.testing.assert_close(out[b, t, :3], want)
    assert torch.equal(out[:, :, 3], inputs[:, :, 3]), "depth is left as it is"
    identity = torch.zeros(2, 3, 3, 3, 3)
    identity[:, range(3), range(3), 1, 1] = 1.0
    torch.testing.assert_close(random_convolution(inputs, identity), inputs)


def test_older_configs_without_the_key_mean_no_augmentation(data, tmp_path) -> None:
    values = config_to_dict(tiny_config(data, tmp_path))
    assert values["augment"] == "color"  # the default for new runs
    del values["augment"]
    assert config_from_dict(TrainConfig, values).augment == "none"
    assert values["mirror"] is True  # the default for new runs
    del values["mirror"]
    assert config_from_dict(TrainConfig, values).mirror is False  # runs from before the flag


def _trainer(config: TrainConfig, dataset) -> Trainer:
    head = make_head(config.head, dataset.n_bins, config.target)
    norm = InputNorm.fit(config.input_norm, dataset.splits["train"], dataset.channels)
    torch.manual_seed(0)
    model, _ = build_model(config, dataset, head)
    return Trainer(config, model, head, norm, torch.device("cpu"), NETS[config.net].recurrent)


def test_training_batches_are_jittered_and_evaluation_is_not(data, tmp_path) -> None:
    dataset = load_dataset(data, in_ram="yes")
    plain = _trainer(tiny_config(data, tmp_path, augment="none", mirror=False), dataset)
    jittered = _trainer(tiny_config(data, tmp_path, augment="color", mirror=False), dataset)
    split = dataset.splits["train"]
    targets = torch.arange(4)
    same = plain.frame_batch(split, targets, augment=True).inputs.clone()
    assert torch.equal(same, plain.frame_batch(split, targets).inputs)
    changed = jittered.frame_batch(split, targets, augment=True).inputs
    assert not torch.allclose(changed, same)
    assert jittered.evaluate(dataset.splits["val"]) == plain.evaluate(dataset.splits["val"])


def test_random_convolution_reaches_training_batches_only(data, tmp_path) -> None:
    dataset = load_dataset(data, in_ram="yes")
    plain = _trainer(tiny_config(data, tmp_path, augment="none", mirror=False), dataset)
    randconv = _trainer(tiny_config(data, tmp_path, augment="randconv", mirror=False), dataset)
    split = dataset.splits["train"]
    targets = torch.arange(len(split.bins))
    clean = plain.frame_batch(split, targets, augment=True).inputs.clone()
    look = make_augment("randconv").draw(len(targets), clean.shape[2], 0, 0)
    changed = randconv.frame_batch(split, targets, augment=True).inputs
    torch.testing.assert_close(changed, random_convolution(clean, look.kernels))
    assert not torch.allclose(changed, clean)
    assert torch.equal(randconv.frame_batch(split, targets).inputs, clean)
    assert randconv.evaluate(dataset.splits["val"]) == plain.evaluate(dataset.splits["val"])


def test_augmentation_changes_training_and_none_reproduces_itself(data, tmp_path) -> None:
    def metrics(augment: str, where: str):
        return read_metrics(main(tiny_config(data, tmp_path / where, augment=augment))["run_dir"])

    assert metrics("none", "a") == metrics("none", "b")
    assert metrics("color", "c")[0]["train"] != metrics("none", "d")[0]["train"]


def test_mirror_flips_marked_samples_and_swaps_their_labels_by_hand() -> None:
    frames = torch.arange(2 * 1 * 1 * 2 * 3, dtype=torch.uint8).view(2, 1, 1, 2, 3)
    bins = torch.tensor([0, 1])
    yaw = torch.tensor([1.0, 0.0])
    flip = torch.tensor([True, False])
    out_frames, out_bins, out_yaw = mirror_batch(frames, bins, yaw, flip, n_bins=3)
    assert out_frames[0, 0, 0].tolist() == [[2, 1, 0], [5, 4, 3]]  # rows reversed by hand
    assert torch.equal(out_frames[1], frames[1])
    assert out_bins.tolist() == [2, 1] and out_yaw.tolist() == [-1.0, 0.0]
    assert frames[0, 0, 0, 0].tolist() == [0, 1, 2]  # the input is left alone


def test_mirror_maps_every_bin_to_its_opposite_and_sequences_per_run() -> None:
    bins = torch.tensor([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    frames = torch.zeros(2, 5, 1, 4, 4, dtype=torch.uint8)
    yaw = torch.linspace(-1, 1, 5).repeat(2, 1)
    _, out_bins, out_yaw = mirror_batch(frames, bins, yaw, torch.tensor([True, False]), 5)
    assert out_bins.tolist() == [[4, 3, 2, 1, 0], [4, 3, 2, 1, 0]]
    assert torch.equal(out_yaw[0], -yaw[0]) and torch.equal(out_yaw[1], yaw[1])


def test_mirror_draws_are_fair_and_keyed_like_the_colour_draws() -> None:
    flips = mirror_draw(4000, 0, 0, 0)
    assert 0.45 < flips.float().mean() < 0.55
    assert torch.equal(flips, mirror_draw(4000, 0, 0, 0))
    assert not torch.equal(flips, mirror_draw(4000, 0, 0, 1))


def test_mirror_applies_to_training_batches_only(data, tmp_path) -> None:
    dataset = load_dataset(data, in_ram="yes")
    plain = _trainer(tiny_config(data, tmp_path, augment="none", mirror=False), dataset)
    mirrored = _trainer(tiny_config(data, tmp_path, augment="none", mirror=True), dataset)
    split = dataset.splits["train"]
    targets = torch.arange(len(split.bins))  # every training frame
    before = plain.frame_batch(split, targets, augment=True)
    after = mirrored.frame_batch(split, targets, augment=True)
    flip = mirror_draw(len(targets), 0, 0, 0)
    assert torch.equal(after.inputs[flip], before.inputs[flip].flip(-1))
    assert torch.equal(after.inputs[~flip], before.inputs[~flip])
    assert torch.equal(after.labels.bins[flip], 2 - before.labels.bins[flip])
    assert torch.equal(mirrored.frame_batch(split, targets).inputs, before.inputs)
    assert mirrored.evaluate(dataset.splits["val"]) == plain.evaluate(dataset.splits["val"])
