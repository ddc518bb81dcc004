"""python -m bc.export: exported files decide as the PyTorch policy does, for every tiny net.

The reference is the training pipeline (``Trainer.frame_batch`` / ``window_batch``: the
dataset's stacks and normalisation, the net, ``Head.predict``), not the export code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bc.bench import BenchConfig
from bc.bench import main as bench
from bc.checkpoint import read_checkpoint
from bc.config import TrainConfig
from bc.data import InputNorm, load_dataset
from bc.errors import CheckpointError, ConfigError
from bc.export.exporter import ExportConfig, main
from bc.export.runtime import load_exported_policy
from bc.nets import NETS
from bc.policy import load_policy
from bc.sampling import WindowUnit
from bc.step_engine import Trainer
from bc.train import main as train
from configflags import run_main
from envs.spaces import bin_yaw_commands
from tests.bc.helpers import tiny_config
from tests.extras import extra_installed, require_extra

ROOT = Path(__file__).resolve().parents[2]
# torch 2.13 marks TorchScript deprecated (torch.export is its successor); it still works
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
TOLERANCE = 1e-5
TINY_NETS = sorted(name for name, net in NETS.items() if net.builder.__module__ == "bc.nets.tiny")
# one classic net, the cheapest: 32x32 frames, resized to its 224 px input inside the graph
CLASSIC = "squeeze11"


def _frames_for(net: str) -> int:
    allowed = NETS[net].frames
    return 3 if 3 in allowed else allowed[0]


RUNS = {name: {"net": name, "frames": _frames_for(name)} for name in TINY_NETS}
RUNS["regressor"] = {"net": "tiny_nfc", "frames": 3, "head": "regressor", "input_norm": "scale"}
RUNS["gaussian"] = {"net": "tiny_3d", "frames": 5, "head": "gaussian"}
RUNS[CLASSIC] = {"net": CLASSIC, "frames": 1}


def _needs_onnx(model_format: str) -> None:
    if model_format == "onnx":
        require_extra("onnx", "onnx")
        require_extra("onnxruntime", "onnx")


@pytest.fixture(scope="module")
def checkpoints(data, tmp_path_factory) -> dict[str, Path]:
    """One-step runs (32x32 synthetic data) of every tiny net, two more heads, one classic."""
    out = tmp_path_factory.mktemp("export_runs")
    return {
        name: Path(train(tiny_config(data, out / name, steps=1, **options))["checkpoints"]["last"])
        for name, options in RUNS.items()
    }


@pytest.fixture(scope="module")
def exported(checkpoints, tmp_path_factory):
    """``exported(name, format) -> path``, each file written once per module."""
    out = tmp_path_factory.mktemp("exported")
    cache: dict[tuple[str, str], Path] = {}

    def get(name: str, model_format: str) -> Path:
        _needs_onnx(model_format)
        if (name, model_format) not in cache:
            config = ExportConfig(
                checkpoint=checkpoints[name],
                format=model_format,
                out=out / f"{name}.{model_format}",
                quiet=True,
            )
            cache[name, model_format] = main(config).model
        return cache[name, model_format]

    return get


def _trainer(checkpoint: Path) -> Trainer:
    payload = read_checkpoint(checkpoint)
    policy = load_policy(checkpoint)
    norm = InputNorm.from_dict(payload["norm"])
    config = TrainConfig(**payload["config"])
    device = torch.device("cpu")
    return Trainer(config, policy.model, policy.head_module, norm, device, policy.recurrent)


def _run(model: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The exported file on ``feeds``, by its format's own runtime (no project code)."""
    metadata = json.loads(model.with_name(model.name + ".json").read_text())
    names = [spec["name"] for spec in metadata["outputs"]]
    if model.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        return dict(zip(names, session.run(names, feeds), strict=True))
    module = torch.jit.load(str(model))
    inputs = [torch.from_numpy(feeds[spec["name"]]) for spec in metadata["inputs"]]
    with torch.no_grad():
        return {name: out.numpy() for name, out in zip(names, module(*inputs), strict=True)}


def _close(got: np.ndarray, want: torch.Tensor) -> None:
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("model_format", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", [name for name in RUNS if not NETS[RUNS[name]["net"]].recurrent])
def test_exported_stacks_decide_as_the_training_pipeline(
    name, model_format, checkpoints, exported, data
) -> None:
    trainer = _trainer(checkpoints[name])
    split = load_dataset(data).splits["val"]
    targets = torch.arange(split.n_frames)
    stacks = split.gather(split.stack_indices(targets, trainer.frames))  # (B, F, C, H, W)
    with torch.no_grad():
        outputs = trainer.model.eval()(trainer.frame_batch(split, targets).inputs)
        want = trainer.head.predict(outputs)
    got = _run(exported(name, model_format), {"frames": stacks.permute(0, 1, 3, 4, 2).numpy()})
    _close(got["outputs"], outputs)
    _close(got["yaw"], want.yaw)
    assert got["action"].dtype == np.int64
    np.testing.assert_array_equal(got["action"], want.bins.numpy())
    if want.probs is not None:
        _close(got["probs"], want.probs)
    else:
        assert "probs" not in got


@pytest.mark.parametrize("model_format", ["onnx", "torchscript"])
def test_exported_lstm_steps_as_the_whole_window(model_format, checkpoints, exported, data):
    trainer = _trainer(checkpoints["tiny_lstm"])
    split = load_dataset(data).splits["val"]
    length = int(split.lengths[0])
    unit = WindowUnit(torch.tensor([0]), torch.tensor([0]), torch.tensor([length]), length)
    with torch.no_grad():
        outputs = trainer.model.eval()(trainer.window_batch(split, unit).inputs)[0][0]
    probs = torch.softmax(outputs, dim=-1)  # (T, n_bins)
    model = exported("tiny_lstm", model_format)
    metadata = json.loads(model.with_name(model.name + ".json").read_text())
    layers, hidden = metadata["lstm_state"]
    state = {"h": np.zeros((layers, 1, hidden), np.float32)}
    state["c"] = state["h"].copy()
    frames = split.gather(torch.arange(length)).permute(0, 2, 3, 1).numpy()
    for step in range(length):
        got = _run(model, {"frames": frames[None, step : step + 1], **state})
        _close(got["outputs"][0], outputs[step])
        _close(got["probs"][0], probs[step])
        assert int(got["action"][0]) == int(probs[step].argmax())
        state = {"h": got["h_out"], "c": got["c_out"]}


@pytest.mark.parametrize("model_format", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", ["tiny_nfc", "tiny_lstm", "regressor", "gaussian"])
def test_exported_policy_acts_as_the_checkpoint(name, model_format, checkpoints, exported, data):
    policy = load_policy(checkpoints[name])
    runtime = load_exported_policy(exported(name, model_format))
    assert (runtime.spec, runtime.n_bins, runtime.head) == (policy.spec, policy.n_bins, policy.head)
    assert runtime.env_kwargs == policy.env_kwargs and runtime.config == policy.config
    split = load_dataset(data).splits["val"]
    frames = split.gather(torch.arange(split.n_frames)).permute(0, 2, 3, 1).numpy()
    for _ in range(2):  # the second pass checks that reset starts a new episode
        policy.reset()
        runtime.reset()
        for frame in frames:
            want, got = policy.act(frame), runtime.act(frame)
            assert got.action == want.action
            assert got.yaw == pytest.approx(want.yaw, abs=TOLERANCE)
            if want.probs is None:
                assert got.probs is None
            else:
                np.testing.assert_allclose(got.probs, want.probs, rtol=0, atol=TOLERANCE)
                if model_format == "torchscript":  # the same kernels on the same inputs
                    assert np.array_equal(got.probs, want.probs)


@pytest.mark.parametrize("name", ["tiny_nfc", "tiny_lstm", "regressor", "gaussian"])
def test_policy_act_is_the_plain_pipeline_bit_for_bit(name, checkpoints, data) -> None:
    # Policy.act normalises each frame once, in numpy, and decides without Head.predict, for
    # speed: it must still give exactly what the straightforward pipeline gives.
    policy = load_policy(checkpoints[name])
    payload = read_checkpoint(checkpoints[name])
    norm = InputNorm.from_dict(payload["norm"])
    split = load_dataset(data).splits["val"]
    frames = split.gather(torch.arange(split.n_frames))  # (N, C, H, W) uint8
    policy.reset()
    history: list[torch.Tensor] = []
    state = None
    for frame in frames:
        got = policy.act(frame.permute(1, 2, 0).numpy())
        with torch.inference_mode():
            if policy.recurrent:
                outputs, state = policy.model(norm(frame)[None, None], state)
                outputs = outputs[:, -1]
            else:
                # the episode's first frame fills the stack, as the dataset pads runs
                history = [*history[1:], frame] if history else [frame] * policy.spec.frames
                outputs = policy.model(norm(torch.stack(history))[None])
            want = policy.head_module.predict(outputs)
        assert got.action == int(want.bins[0]) and got.yaw == float(want.yaw[0])
        if want.probs is None:
            assert got.probs is None
        else:
            assert np.array_equal(got.probs, want.probs[0].numpy())


def test_metadata_describes_the_file(checkpoints, exported) -> None:
    model = exported("tiny_nfc", "torchscript")
    metadata = json.loads(model.with_name(model.name + ".json").read_text())
    payload = read_checkpoint(checkpoints["tiny_nfc"])
    assert metadata["file"] == model.name and metadata["model_format"] == "torchscript"
    assert metadata["net"] == "tiny_nfc" and metadata["frames"] == 3
    assert metadata["head"] == "classifier" and metadata["recurrent"] is False
    assert metadata["bins"] == pytest.approx(bin_yaw_commands(payload["n_bins"]).tolist())
    assert metadata["normalisation"]["mean"] == pytest.approx(payload["norm"]["mean"])
    assert metadata["normalisation"]["std"] == pytest.approx(payload["norm"]["std"])
    assert metadata["source_checkpoint"] == str(checkpoints["tiny_nfc"].resolve())
    [frames] = metadata["inputs"]
    assert (frames["name"], frames["dtype"]) == ("frames", "uint8")
    assert frames["shape"] == ["batch", 3, 32, 32, 3]
    names = [(o["name"], o["dtype"], o["shape"]) for o in metadata["outputs"]]
    assert names == [
        ("outputs", "float32", ["batch", 3]),
        ("probs", "float32", ["batch", 3]),
        ("action", "int64", ["batch"]),
        ("yaw", "float32", ["batch"]),
    ]
    # the file is self-contained: the same metadata is embedded in it
    assert load_exported_policy(model).metadata == metadata


def test_default_output_is_the_runs_export_folder(checkpoints) -> None:
    run = checkpoints["tiny"].parents[1]
    result = main(ExportConfig(run=run, which="last", format="torchscript", quiet=True))
    assert result.model == run / "export" / "last.torchscript"
    assert result.metadata_file == run / "export" / "last.torchscript.json"
    assert result.max_abs_error == 0.0


def test_bad_input_is_a_one_line_error(checkpoints, tmp_path, monkeypatch, capsys) -> None:
    checkpoint = checkpoints["tiny"]
    with pytest.raises(ConfigError, match=r"must end in \.torchscript"):
        main(ExportConfig(checkpoint=checkpoint, format="torchscript", out=tmp_path / "x.onnx"))
    with pytest.raises(ConfigError, match="--opset"):
        ExportConfig(opset=9)
    with pytest.raises(ConfigError, match="not both"):
        ExportConfig(run=tmp_path, checkpoint=checkpoint)
    with pytest.raises(CheckpointError, match="no checkpoints/best_success.pt"):
        main(ExportConfig(run=checkpoint.parents[1], which="best_success"))
    monkeypatch.setattr("bc.export.exporter.missing_onnx_packages", lambda *names: list(names))
    with pytest.raises(ConfigError, match=r"'onnx' extra.*--format torchscript"):
        main(ExportConfig(checkpoint=checkpoint))
    with pytest.raises(SystemExit) as exit_info:
        run_main(
            main, ExportConfig, "python -m bc.export", None, ["--run", str(tmp_path / "nowhere")]
        )
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_a_foreign_file_is_refused(tmp_path) -> None:
    foreign = tmp_path / "foreign.torchscript"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(foreign))
    with pytest.raises(CheckpointError, match="no corridor-bc metadata"):
        load_exported_policy(foreign)
    garbage = tmp_path / "garbage.torchscript"
    garbage.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a loadable TorchScript"):
        load_exported_policy(garbage)


def test_docs_snippet_runs_with_onnxruntime_alone(exported, data) -> None:
    model = exported("tiny_nfc", "onnx")
    text = (ROOT / "docs" / "export.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert '"policy.onnx"' in snippet
    split = load_dataset(data).splits["val"]
    frames = split.gather(torch.arange(4)).permute(0, 2, 3, 1).numpy()
    np.save(model.parent / "observations.npy", frames)
    policy = load_policy(_source(model))
    policy.reset()
    expected = [policy.act(frame).action for frame in frames]
    # no project module and no torch: a deploying machine has numpy and onnxruntime only
    blocked = "import sys\nfor name in ('torch', 'bc', 'eval', 'envs', 'dataset', 'expert'):\n"
    blocked += "    sys.modules[name] = None\n"
    program = blocked + snippet.replace('"policy.onnx"', repr(str(model)))
    program += "\nimport numpy\nfor observation in numpy.load(sys.argv[1]):\n"
    program += "    print(policy.act(observation)[0])\n"
    result = subprocess.run(
        [sys.executable, "-c", program, str(model.parent / "observations.npy")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert [int(line) for line in result.stdout.split()] == expected


def _source(model: Path) -> Path:
    metadata = json.loads(model.with_name(model.name + ".json").read_text())
    return Path(metadata["source_checkpoint"])


def test_runtimes_bench_times_every_runtime(capsys) -> None:
    rows = bench(BenchConfig(runtimes=True, nets=["tiny"], frames=1, size=32, latency_steps=3))
    onnx = extra_installed("onnx", "onnx", "onnxruntime")
    expected = ["PyTorch eager", "TorchScript", *(["onnxruntime"] if onnx else [])]
    assert [row["runtime"] for row in rows] == expected
    assert all(row["model_ms"] > 0 and row["act_ms"] > 0 for row in rows)
    assert rows[0]["act_over_net"] == pytest.approx(rows[0]["act_ms"] / rows[0]["model_ms"])
    out = capsys.readouterr().out
    assert "act / net" in out and "TorchScript" in out
    assert ("onnxruntime left out" in out) != bool(onnx)
