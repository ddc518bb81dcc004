"""The training loop end to end: every net, head and BPTT mode, run directories, flags."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bc.checkpoint import read_checkpoint
from bc.config import TrainConfig
from bc.data import load_dataset
from bc.errors import ConfigError, TrainError
from bc.heads import HEADS
from bc.lr_schedule import scheduled_lr
from bc.nets import NETS
from bc.policy import load_policy
from bc.run_dir import new_run_dir
from bc.step_engine import Trainer, build_model
from bc.train import TrainingInterrupted, main
from bc.transfer import parameter_counts
from tests.bc.helpers import interrupt_at, read_metrics, tiny_config


def _policy_metrics(checkpoint: Path, data_dir: Path) -> dict[str, float]:
    """Accuracy, yaw MSE (and cross-entropy) of the saved policy on the val split, one
    ``act`` per frame as in the env."""
    policy = load_policy(checkpoint)
    split = load_dataset(data_dir).splits["val"]
    correct, squared, nll, count = 0, 0.0, 0.0, 0
    for run in range(split.n_runs):
        policy.reset()
        begin = int(split.begins[run])
        for index in range(begin, begin + int(split.lengths[run])):
            observation = split.gather(torch.tensor([index]))[0].permute(1, 2, 0).numpy()
            output = policy.act(observation)
            label = int(split.bins[index])
            correct += output.action == label
            squared += (output.yaw - float(split.yaw[index])) ** 2
            if output.probs is not None:
                nll -= math.log(float(output.probs[label]))
            count += 1
    return {"accuracy": correct / count, "yaw_mse": squared / count, "loss": nll / count}


def _check_saved_policy_matches_validation(run_dir: Path, data_dir: Path, head: str) -> None:
    record = read_metrics(run_dir)[-1]
    replay = _policy_metrics(run_dir / "checkpoints" / "last.pt", data_dir)
    assert replay["accuracy"] == pytest.approx(record["val"]["accuracy"])
    assert replay["yaw_mse"] == pytest.approx(record["val"]["yaw_mse"], rel=1e-4, abs=1e-6)
    if head == "classifier":
        assert replay["loss"] == pytest.approx(record["val"]["loss"], rel=1e-4)


def _matrix() -> list:
    cases = []
    for name, entry in NETS.items():
        tiny = entry.builder.__module__ == "bc.nets.tiny"
        for frames in entry.frames:
            for head in HEADS:
                slow = entry.slow or not tiny  # classic nets: tests/bc/test_classic_nets.py
                marks = [pytest.mark.slow] if slow else []
                cases.append(
                    pytest.param(name, frames, head, marks=marks, id=f"{name}-f{frames}-{head}")
                )
    return cases


@pytest.mark.parametrize(("net", "frames", "head"), _matrix())
def test_every_net_and_head_trains_and_reloads_exactly(data, tmp_path, net, frames, head) -> None:
    config = tiny_config(data, tmp_path / "runs", net=net, frames=frames, head=head, steps=2)
    results = main(config)
    run_dir = Path(results["run_dir"])
    assert results["steps"] == 2
    assert math.isfinite(results["train"]["loss"]) and math.isfinite(results["val"]["loss"])
    torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    _check_saved_policy_matches_validation(run_dir, data, head)
    # a classic net's checkpoints (weights + Adam state) reach 1.7 GB: the whole -m slow
    # matrix kept to the end of the session filled a 64 GB disk
    shutil.rmtree(run_dir)


@pytest.mark.parametrize(
    "options",
    [
        {"bptt": "full"},
        {"bptt": "window", "time_length": 5},
        {"bptt": "sliding", "time_length": 6, "sliding_step": 2},
        {"bptt": "sliding", "time_length": 6, "sliding_step": 3, "accumulate": True},
        {"bptt": "window", "time_length": 4, "subsample": 3},
    ],
    ids=["full", "window", "sliding", "sliding-accumulate", "window-subsample"],
)
def test_every_bptt_mode_trains_and_reloads(data, tmp_path, options) -> None:
    config = tiny_config(data, tmp_path / "runs", net="tiny_lstm", frames=1, epochs=2, **options)
    results = main(config)
    records = read_metrics(results["run_dir"])
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(math.isfinite(r["train"]["loss"]) for r in records)
    _check_saved_policy_matches_validation(Path(results["run_dir"]), data, "classifier")


def test_bptt_modes_take_the_expected_number_of_steps(data, tmp_path) -> None:
    # Train runs of 22 and 19 frames; batch 4.
    steps = {}
    for name, options in {
        "full": {"bptt": "full"},
        "window": {"bptt": "window", "time_length": 10},
        "sliding": {"bptt": "sliding", "time_length": 6, "sliding_step": 4},
        "accumulate": {"bptt": "sliding", "time_length": 6, "sliding_step": 4, "accumulate": True},
    }.items():
        config = tiny_config(data, tmp_path / name, net="tiny_lstm", frames=1, **options)
        steps[name] = main(config)["steps"]
    assert steps["full"] == 1  # both runs in one batch
    assert steps["window"] == 2  # 5-7 windows of <= 10 steps (random phase), 4 per batch
    assert steps["sliding"] == 5  # windows at 0, 4, 8, 12, 16 cover 22 steps
    assert steps["accumulate"] == 1


def test_run_directory_holds_everything(data, tmp_path) -> None:
    config = tiny_config(data, tmp_path / "runs", epochs=2, tensorboard=True)
    results = main(config)
    run_dir = Path(results["run_dir"])
    assert re.fullmatch(r"\d{8}-\d{6}_tiny_nfc_f3", run_dir.name)
    assert json.loads((run_dir / "config.json").read_text())["net"] == "tiny_nfc"
    for name in ("metrics.jsonl", "timing.jsonl", "summary.json"):
        assert (run_dir / name).is_file()
    for name in ("last.pt", "best_val_loss.pt"):
        assert (run_dir / "checkpoints" / name).is_file()
    records = read_metrics(run_dir)
    assert len(records) == 2
    for record in records:
        assert set(record) == {"epoch", "complete", "step", "lr", "train", "val"}
        assert not any("time" in key or "per_s" in key for key in json.dumps(record).split('"'))
        assert len(record["val"]["per_class_accuracy"]) == 3
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test"]["samples"] == 21 and 0 <= summary["val_majority_rate"] <= 1
    assert 0 <= summary["test_majority_rate"] <= 1

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/accuracy",
        "val/loss",
        "val/accuracy",
        "lr",
        "speed/samples_per_s",
    ):
        assert tag in tags
    assert any(tag.startswith("val/accuracy_class_") for tag in tags)

    payload = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert payload["spec"] == {
        "frames": 3,
        "channels": 3,
        "height": 32,
        "width": 32,
        "n_outputs": 3,
        "input_size": None,
    }
    assert payload["norm"]["mode"] == "shift" and payload["epoch"] == 2
    assert payload["env_kwargs"]["n_bins"] == 3
    assert payload["optimizer"]["state"]


def test_run_names_are_unique_and_sortable(tmp_path) -> None:
    config = TrainConfig(runs_dir=str(tmp_path), progress=False)
    first, second = new_run_dir(config), new_run_dir(config)
    assert first != second and first.name.split("_")[0] <= second.name.split("_")[0]
    taken = tmp_path / "mine"
    (taken / "x").mkdir(parents=True)
    with pytest.raises(TrainError, match="already exists"):
        new_run_dir(TrainConfig(run_dir=str(taken)))


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(data, tmp_path) -> None:
    def run(seed: int, where: str) -> bytes:
        config = tiny_config(data, tmp_path / where, epochs=2, seed=seed)
        return (Path(main(config)["run_dir"]) / "metrics.jsonl").read_bytes()

    assert run(1, "a") == run(1, "b")
    assert run(1, "c") != run(2, "d")


def test_lazy_loading_trains_exactly_like_in_memory(data, tmp_path) -> None:
    eager = main(tiny_config(data, tmp_path / "a", epochs=2, in_ram="yes"))
    lazy = main(tiny_config(data, tmp_path / "b", epochs=2, in_ram="no"))
    assert read_metrics(eager["run_dir"]) == read_metrics(lazy["run_dir"])


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"lr_schedule": "cosine"},
        {"net": "tiny_lstm", "frames": 1, "bptt": "sliding", "time_length": 6},
    ],
    ids=["tiny_nfc", "tiny_nfc-cosine", "tiny_lstm-sliding"],
)
def test_resume_after_an_interruption_is_exact(data, tmp_path, options) -> None:
    straight = main(tiny_config(data, tmp_path / "a", epochs=3, **options))
    config = tiny_config(data, tmp_path / "b", epochs=3, **options)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        main(config, epoch_callback=interrupt_at(2))
    run_dir = next((tmp_path / "b").iterdir())
    assert len(read_metrics(run_dir)) == 1  # epoch 2 was saved but its line not written
    resumed = main(tiny_config(data, tmp_path / "b", epochs=3, resume=str(run_dir), **options))
    assert (run_dir / "metrics.jsonl").read_bytes() == (
        Path(straight["run_dir"]) / "metrics.jsonl"
    ).read_bytes()
    assert resumed["val"] == straight["val"]


def test_stop_by_steps_then_resume_mid_epoch(data, tmp_path) -> None:
    # A constant rate, so that the 7 steps of the --steps run take the same steps as the
    # first 7 of the 2-epoch run: a schedule's length is the run's own --steps/--epochs.
    constant = {"lr_schedule": "constant"}
    straight = main(tiny_config(data, tmp_path / "a", epochs=2, **constant))
    partial = main(tiny_config(data, tmp_path / "b", steps=7, **constant))
    record = read_metrics(partial["run_dir"])[-1]
    assert record["complete"] is False and record["step"] == 7
    resumed = main(
        tiny_config(data, tmp_path / "b", epochs=2, resume=partial["run_dir"], **constant)
    )
    full = read_metrics(straight["run_dir"])
    assert read_metrics(resumed["run_dir"])[1:] == full
    assert resumed["steps"] == full[-1]["step"]


def test_a_cosine_run_resumed_with_more_epochs_follows_the_new_length(data, tmp_path) -> None:
    short = main(tiny_config(data, tmp_path / "a", epochs=1, lr_schedule="cosine"))
    resumed = main(
        tiny_config(data, tmp_path / "a", epochs=3, lr_schedule="cosine", resume=short["run_dir"])
    )
    records = read_metrics(resumed["run_dir"])
    assert [r["epoch"] for r in records] == [1, 2, 3]
    steps_per_epoch = records[0]["step"]
    # The rate logged with each epoch is the one its last step took: unit k of N trains at
    # progress k/N of the run, so the last step of epoch e (1-based) of 3 is at (e*n-1)/(3n).
    base = TrainConfig().lr
    expected_last = scheduled_lr("cosine", base, (3 * steps_per_epoch - 1) / (3 * steps_per_epoch))
    assert records[-1]["lr"] == pytest.approx(expected_last)
    # Epoch 1 ran to the end of a 1-epoch cosine, so it ended near 0; epoch 2 went back up.
    assert records[0]["lr"] < 0.1 * base < records[1]["lr"]


def test_resume_refuses_changed_experiment_settings(data, tmp_path) -> None:
    results = main(tiny_config(data, tmp_path / "a"))
    with pytest.raises(ConfigError, match="--lr"):
        main(tiny_config(data, tmp_path / "a", lr=0.5, resume=results["run_dir"]))


def test_nothing_left_to_train_is_an_error(data, tmp_path) -> None:
    results = main(tiny_config(data, tmp_path / "a"))
    with pytest.raises(TrainError, match="nothing to train"):
        main(tiny_config(data, tmp_path / "a", resume=results["run_dir"]))


def test_epoch_callback_metrics_are_logged_and_best_success_kept(data, tmp_path) -> None:
    rates = {1: 0.2, 2: 0.6, 3: 0.4}
    seen = []

    def callback(epoch: int, checkpoint: Path) -> dict[str, float]:
        seen.append((epoch, checkpoint.name, read_checkpoint(checkpoint)["epoch"]))
        return {"success_rate": rates[epoch], "mean_progress": 1.5 * epoch}

    results = main(tiny_config(data, tmp_path / "runs", epochs=3), epoch_callback=callback)
    assert seen == [(1, "last.pt", 1), (2, "last.pt", 2), (3, "last.pt", 3)]
    records = read_metrics(results["run_dir"])
    assert [r["eval"]["success_rate"] for r in records] == [0.2, 0.6, 0.4]
    best = read_checkpoint(Path(results["run_dir"]) / "checkpoints" / "best_success.pt")
    assert best["epoch"] == 2


def test_eval_every_without_an_epoch_callback_is_a_clear_error(data, tmp_path) -> None:
    with pytest.raises(TrainError, match="eval.during_training"):
        main(tiny_config(data, tmp_path / "runs", eval_every=1))


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "sgd", "lr": 0.01},
        {"optimizer": "adadelta", "lr": 1.0},
        {"input_norm": "scale"},
        {"input_norm": "none", "balance": True},
        {"input_norm": "imagenet", "weight_decay": 1e-4, "clip": 0.5},
        {"subsample": 2, "max_frames": 12},
        {"head": "regressor", "target": "bin"},
    ],
    ids=["sgd", "adadelta", "scale", "none-balance", "imagenet-wd-clip", "subsets", "target-bin"],
)
def test_options_train_and_are_recorded(data, tmp_path, options) -> None:
    results = main(tiny_config(data, tmp_path / "runs", **options))
    assert math.isfinite(results["train"]["loss"])
    saved = json.loads((Path(results["run_dir"]) / "config.json").read_text())
    assert {k: saved[k] for k in options} == options
    if "max_frames" in options:
        assert results["train"]["samples"] == 12


def test_optimizer_kinds_and_clip(data, tmp_path) -> None:
    dataset = load_dataset(data)
    split = dataset.splits["train"]
    from bc.data import InputNorm
    from bc.heads import make_head

    for name, kind in (
        ("sgd", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adadelta", torch.optim.Adadelta),
    ):
        config = tiny_config(data, tmp_path, optimizer=name, weight_decay=0.1)
        head = make_head("classifier", 3, "bin")
        model, _ = build_model(config, dataset, head)
        trainer = Trainer(
            config, model, head, InputNorm.fit("shift", split, 3), torch.device("cpu"), False
        )
        assert isinstance(trainer.optimizer, kind)
        assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.1

    config = tiny_config(data, tmp_path, optimizer="sgd", momentum=0.0, lr=1.0, clip=1e-3)
    head = make_head("classifier", 3, "bin")
    model, _ = build_model(config, dataset, head)
    trainer = Trainer(
        config, model, head, InputNorm.fit("shift", split, 3), torch.device("cpu"), False
    )
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    from bc.sampling import FrameUnit

    trainer.train_unit(split, FrameUnit(torch.arange(4)))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < (after - before).norm() <= 1e-3 * 1.0001  # lr * clip


def test_deterministic_cpu_batches_do_not_use_python_per_sample(data, tmp_path) -> None:
    # Trainer.frame_batch gathers a whole batch with one index_select on the uint8 store.
    dataset = load_dataset(data, in_ram="yes")
    split = dataset.splits["train"]
    calls = []
    original = split.source.gather

    def counting(idx):
        calls.append(tuple(idx.shape))
        return original(idx)

    split.source.gather = counting
    from bc.data import InputNorm
    from bc.heads import make_head

    config = tiny_config(data, tmp_path)
    head = make_head("classifier", 3, "bin")
    model, _ = build_model(config, dataset, head)
    trainer = Trainer(
        config, model, head, InputNorm.fit("shift", split, 3), torch.device("cpu"), False
    )
    batch = trainer.frame_batch(split, torch.arange(8))
    assert calls == [(8, 3)] and batch.inputs.shape == (8, 3, 3, 32, 32)
    assert batch.inputs.dtype == torch.float32 and -0.5 <= float(batch.inputs.min())


def test_freeze_backbone_keeps_the_encoder_fixed(data, tmp_path) -> None:
    first = main(tiny_config(data, tmp_path / "a", steps=1))
    results = main(
        tiny_config(
            data,
            tmp_path / "b",
            epochs=2,
            freeze=["backbone"],
            init_from=[first["checkpoints"]["last"]],
        )
    )
    start = read_checkpoint(first["checkpoints"]["last"])["model"]
    end = read_checkpoint(results["checkpoints"]["last"])["model"]
    assert all(torch.equal(start[k], end[k]) for k in start if k.startswith("encoder."))
    assert not torch.equal(start["head.0.weight"], end["head.0.weight"])


def test_parameter_table_counts_trainable_and_frozen(data) -> None:
    dataset = load_dataset(data)
    from bc.heads import make_head
    from bc.transfer import freeze

    config = TrainConfig(data=str(data), net="tiny_lstm", frames=1, progress=False)
    model, _ = build_model(config, dataset, make_head("classifier", 3, "bin"))
    freeze(model, ["encoder"])
    rows = {part: (trainable, frozen) for part, trainable, frozen in parameter_counts(model)}
    assert set(rows) == {"encoder", "lstm", "head"}
    assert rows["encoder"][0] == 0 and rows["encoder"][1] > 0
    assert rows["lstm"][1] == 0 and rows["head"] == (64 * 3 + 3, 0)


def test_training_reaches_above_majority_on_learnable_data(tmp_path) -> None:
    from dataset.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(
        tmp_path / "data", runs=6, frames=120, size=32, splits=(4, 2, 0), seed=11
    )
    results = main(tiny_config(data, tmp_path / "runs", epochs=6, batch_size=16, frames=3))
    assert results["best_val"]["accuracy"] > results["val_majority_rate"] + 0.1


def test_policy_output_contract(data, tmp_path) -> None:
    results = main(tiny_config(data, tmp_path / "runs", steps=1))
    policy = load_policy(results["checkpoints"]["best_val_loss"])
    assert policy.head == "classifier" and policy.n_bins == 3
    assert policy.env_kwargs["obs_mode"] == "rgb" and policy.config["net"] == "tiny_nfc"
    output = policy.act(np.zeros((32, 32, 3), np.uint8))
    assert 0 <= output.action < 3 and output.yaw == [1.0, 0.0, -1.0][output.action]
    assert output.probs.shape == (3,) and output.probs.sum() == pytest.approx(1.0)
