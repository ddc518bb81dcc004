"""eval.rollout --checkpoint X.onnx / X.torchscript flies the exported policy like the .pt."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from bc.export.exporter import ExportConfig
from bc.export.exporter import main as export
from bc.export.runtime import ExportedPolicy
from configflags import parse_config, run_main
from eval.bench import BenchConfig
from eval.bench import main as bench
from eval.episodes import TIMING_FIELDS, env_spec_from_kwargs
from eval.policy_agent import PolicyAgentFactory
from eval.rollout import RolloutConfig, main
from tests.eval.helpers import shared_tiny_run
from tests.extras import require_extra

EPISODES = "3"
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A copy of the shared tiny run (tiny_nfc, 3 frames, 32x32, one short segment)."""
    return Path(
        shutil.copytree(shared_tiny_run(tmp_path_factory), tmp_path_factory.mktemp("x") / "run")
    )


@pytest.fixture(scope="module")
def reference(run) -> list[dict]:
    """The .pt checkpoint's episodes."""
    return _records(_rollout(run, "--run", str(run), "--out", str(run / "pt.json")).data)


def _exported(run: Path, model_format: str) -> Path:
    if model_format == "onnx":
        require_extra("onnx", "onnx")
        require_extra("onnxruntime", "onnx")
    path = run / "export" / f"last.{model_format}"
    if not path.exists():
        export(ExportConfig(run=run, format=model_format, quiet=True))
    return path


def _rollout(run: Path, *argv: str):
    argv = ("--runs-dir", str(run.parent), "--quiet", "--workers", "1", "--episodes", EPISODES,
            *argv)  # fmt: skip
    return main(parse_config(RolloutConfig, list(argv), "python -m eval.rollout"))


def _records(data: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in data["records"]]


@pytest.mark.parametrize("model_format", ["torchscript", "onnx"])
def test_exported_file_flies_the_same_episodes(run, reference, model_format) -> None:
    model = _exported(run, model_format)
    result = _rollout(run, "--checkpoint", str(model))
    records = _records(result.data)
    if model_format == "onnx":
        # the same trajectories; the expert label's log-likelihood is read off probabilities
        # that onnxruntime rounds differently in the last bits
        for got, want in zip(records, reference, strict=True):
            assert got.pop("expert_nll") == pytest.approx(want["expert_nll"], rel=1e-5)
        reference = [{k: v for k, v in r.items() if k != "expert_nll"} for r in reference]
    assert records == reference
    assert result.path == run / "export" / "eval" / f"last_seed0_n{EPISODES}.json"
    assert result.data["checkpoint"] == str(model)
    assert result.data["policy"]["net"] == "tiny_nfc" and result.data["policy"]["frames"] == 3
    pt = json.loads((run / "pt.json").read_text())
    assert result.data["env_kwargs"] == pt["env_kwargs"]
    assert result.data["labeller"] == pt["labeller"]
    assert 0 < result.summary["latency_ms"]


def test_a_worker_loads_the_exported_file_itself(run) -> None:
    model = _exported(run, "torchscript")
    # what a spawned worker gets: the file's path, no preloaded policy
    rebuilt = pickle.loads(pickle.dumps(PolicyAgentFactory(str(model))))
    env = env_spec_from_kwargs({"image_size": 32, "n_segments": 1}).make()
    try:
        agent = rebuilt.build(env)
        assert isinstance(agent.policy, ExportedPolicy)
        obs, _ = env.reset(seed=1)
        agent.reset(env, 1)
        decision = agent.act(env, obs)
        # the decision of the checkpoint it was exported from, on the same observation
        source = PolicyAgentFactory(str(run / "checkpoints" / "last.pt")).build(env)
        source.reset(env, 1)
        expected = source.act(env, obs)
        assert decision.action == expected.action and decision.probs.shape == (3,)
        assert decision.probs == pytest.approx(expected.probs, rel=1e-5)
    finally:
        env.close()


def test_eval_bench_reports_the_decision_time(run) -> None:
    model = _exported(run, "torchscript")
    config = parse_config(
        BenchConfig,
        ["--checkpoint", str(model), "--workers", "1", "--episodes", "1"],
        "python -m eval.bench",
    )
    [row] = bench(config)
    assert row.steps > 0 and 0 < row.decision_ms < 1000 * row.seconds / row.steps


def test_a_bad_exported_file_is_a_one_line_error(tmp_path, capsys) -> None:
    bad = tmp_path / "policy.torchscript"
    bad.write_bytes(b"not a model")
    argv = ["--checkpoint", str(bad), "--episodes", "1", "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, RolloutConfig, "python -m eval.rollout", None, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "not a loadable TorchScript file" in err and err.strip().count("\n") == 0
