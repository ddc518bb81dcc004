"""Sliding TBPTT: the hidden state crosses windows detached; --accumulate takes one step."""

from __future__ import annotations

import copy

import pytest
import torch

from bc.config import TrainConfig
from bc.data import InputNorm, load_dataset
from bc.heads import make_head
from bc.sampling import SequenceUnit, WindowUnit, epoch_generator, sliding_plan
from bc.step_engine import Trainer, build_model
from tests.bc.helpers import small_dataset, tiny_config

LENGTH, STEP = 6, 2


@pytest.fixture(scope="module")
def split_and_config(tmp_path_factory):
    data = small_dataset(tmp_path_factory.mktemp("sliding") / "data")
    config = tiny_config(data, tmp_path_factory.mktemp("runs"), net="tiny_lstm", frames=1,
                         bptt="sliding", time_length=LENGTH, sliding_step=STEP, augment="none",
                         mirror=False)  # fmt: skip
    return load_dataset(data), config


def _trainer(dataset, config: TrainConfig) -> Trainer:
    torch.manual_seed(0)
    head = make_head("classifier", dataset.n_bins, "bin")
    model, _ = build_model(config, dataset, head)
    norm = InputNorm.fit(config.input_norm, dataset.splits["train"], 3)
    return Trainer(config, model, head, norm, torch.device("cpu"), recurrent=True)


def _states_seen(trainer: Trainer) -> list:
    """Spy on the model: the state argument of each forward call, in order."""
    seen, forward = [], trainer.model.forward

    def spy(inputs, state=None):
        seen.append(state)
        return forward(inputs, state)

    trainer.model.forward = spy
    return seen


def test_the_state_after_the_slide_starts_the_next_window_detached(split_and_config):
    dataset, config = split_and_config
    split = dataset.splits["train"]
    first, second = sliding_plan(split, epoch_generator(0, 0), 2, LENGTH, STEP, False)[:2]
    assert first.reset and not second.reset and first.carry == STEP
    trainer = _trainer(dataset, config)
    before = copy.deepcopy(trainer.model)  # the weights the first window runs with
    seen = _states_seen(trainer)
    trainer.train_unit(split, first)
    carried = trainer.carry
    assert carried is not None and not any(t.requires_grad for t in carried), "detached"
    # independent truth: the first STEP steps of the first window, from a zero state
    inputs = trainer.window_batch(split, first, 1).inputs
    with torch.no_grad():
        _, expected = before(inputs[:, :STEP])
    for got, want in zip(carried, expected, strict=True):
        torch.testing.assert_close(got, want)
    trainer.train_unit(split, second)
    assert seen[0] is None, "the first window starts from zero"
    assert seen[2] is carried, "the second window starts from the carried state"


def test_accumulate_sums_the_windows_gradients_into_one_step(split_and_config):
    dataset, config = split_and_config
    split = dataset.splits["train"]
    (unit,) = sliding_plan(split, epoch_generator(0, 0), 4, LENGTH, STEP, True)[:1]
    assert isinstance(unit, SequenceUnit) and len(unit.windows) > 1
    trainer = _trainer(dataset, config)
    reference = _trainer(dataset, config)  # same seed: the same weights
    steps, gradients = [], []
    original_step = trainer.step_optimizer

    def step():
        steps.append(1)
        gradients.append([p.grad.clone() for p in trainer.parameters])
        original_step()

    trainer.step_optimizer = step
    trainer.train_unit(split, unit)
    assert len(steps) == 1, "one optimiser step for the whole sequence"
    # independent truth: each window's gradient alone (carried, detached state), averaged
    expected = [torch.zeros_like(p) for p in reference.parameters]
    state = None
    for window in unit.windows:
        batch = reference.window_batch(split, window, 1)
        outputs, labels, state = reference.outputs(batch, state, window.carry)
        state = tuple(s.detach() for s in state)
        reference.optimizer.zero_grad(set_to_none=True)
        reference.loss(outputs, labels).backward()
        for total, parameter in zip(expected, reference.parameters, strict=True):
            total += parameter.grad / len(unit.windows)
    for got, want in zip(gradients[0], expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_without_accumulate_each_window_is_a_step(split_and_config):
    dataset, config = split_and_config
    split = dataset.splits["train"]
    units = sliding_plan(split, epoch_generator(0, 0), 4, LENGTH, STEP, False)
    trainer = _trainer(dataset, config)
    steps = []
    original_step = trainer.step_optimizer
    trainer.step_optimizer = lambda: (steps.append(1), original_step())
    windows = [unit for unit in units if isinstance(unit, WindowUnit)]
    for unit in windows:
        trainer.train_unit(split, unit)
    assert len(steps) == len(windows) > 1


def test_accumulate_encodes_each_frame_of_the_sequence_once(split_and_config):
    dataset, config = split_and_config
    split = dataset.splits["train"]
    (unit,) = sliding_plan(split, epoch_generator(0, 0), 4, LENGTH, STEP, True)[:1]
    assert STEP < LENGTH, "the windows overlap: encoding per window would see frames twice"
    trainer = _trainer(dataset, config)
    encoded, encode = [], trainer.model.encoder.forward
    trainer.model.encoder.forward = lambda x: (encoded.append(len(x)), encode(x))[1]
    trainer.train_unit(split, unit)
    span = int(unit.windows[-1].offsets[0]) + LENGTH
    assert encoded == [len(unit.windows[0].runs) * span], "one pass over the sequence's frames"
