"""``imitation``'s behaviour cloning on recorded expert runs: ``python examples/imitation_bc.py``.

Records two short expert runs with ``expert.collect`` into a temporary directory, reads them
back with ``dataset.load_run``, turns the training runs into ``imitation.data.types.Transitions``
(the expert's label, ``expert_action``, as the action), trains ``imitation``'s ``BC`` with
SB3's ``ActorCriticCnnPolicy`` (NatureCNN) for a few batches and flies it for a few steps.

Channel order: the env and the dataset hold frames as ``(H, W, C)``; SB3's CNN policies take
``(C, H, W)``. SB3's own algorithms add ``VecTransposeImage`` by themselves, ``imitation``'s BC
does not, so the vector env is wrapped in ``VecTransposeImage`` (its observation space is the
one the policy is built for) and the recorded frames are transposed the same way.

Installing ``imitation``: its newest release (1.0.1) pins ``gymnasium[classic-control]~=0.29``
and ``stable-baselines3~=2.2.1``, which this project's ``gymnasium>=1.0`` excludes, so pip cannot
install it with its dependencies next to corridor-bc and no extra carries it. Installed over
the ``sb3`` extra with ``pip install --no-deps imitation==1.0.1 tqdm`` (tqdm: the one package
its BC imports that the extra lacks), its BC runs as below with gymnasium 1.4 and
stable-baselines3 2.9; ``pip check`` still reports the unmet pins (docs/ecosystem.md).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from dataset import load_run, read_manifest, run_file
from envs.options import EnvOptions
from expert.collect import main as collect
from expert.collect_config import CollectConfig

# a literal, read by tests/test_examples.py without importing this file
REQUIRES = {
    "stable_baselines3": "sb3",
    "imitation": "pip install --no-deps imitation==1.0.1 tqdm",
    "tqdm": "pip install --no-deps imitation==1.0.1 tqdm",
}

# 36 px is the smallest frame SB3's NatureCNN takes; two-segment worlds make short runs
ENV_KWARGS = {"image_size": 36, "n_segments": 2}


def record(out: Path, seed: int = 0) -> Path:
    """Record one training and one validation run with the scripted discrete expert."""
    options = EnvOptions(**ENV_KWARGS)
    config = CollectConfig(
        out=out, runs=2, val_runs=1, test_runs=0, seed=seed, quiet=True, env=options
    )
    return collect(config).out


def transitions_from_runs(directory: Path, split: str = "train"):
    """The runs of one split as ``imitation`` Transitions, frames transposed to (C, H, W)."""
    from imitation.data.types import Transitions

    manifest = read_manifest(directory)
    obs, next_obs, acts, dones = [], [], [], []
    for entry in manifest["runs"]:
        if entry["split"] != split:
            continue
        run = load_run(run_file(directory, entry))
        frames = np.moveaxis(run["frames"], -1, 1)  # (T, H, W, C) -> (T, C, H, W)
        obs.append(frames)
        # a run stores the frame each action was chosen on, not the one after the last step
        next_obs.append(np.concatenate([frames[1:], frames[-1:]]))
        acts.append(run["expert_action"])
        done = np.zeros(len(frames), bool)
        done[-1] = True
        dones.append(done)
    return Transitions(
        obs=np.concatenate(obs),
        acts=np.concatenate(acts),
        infos=np.array([{}] * sum(len(a) for a in acts)),
        next_obs=np.concatenate(next_obs),
        dones=np.concatenate(dones),
    )


def main(batches: int = 30, seed: int = 0) -> dict:
    """Record, build Transitions, train BC briefly, fly the policy; print what happened."""
    from imitation.algorithms import bc as imitation_bc
    from imitation.util import logger as imitation_logger
    from stable_baselines3.common.policies import ActorCriticCnnPolicy
    from stable_baselines3.common.vec_env import DummyVecEnv, VecTransposeImage

    torch.set_num_threads(1)
    # imitation 1.0.1 on torch 2.x: it logs its losses with float(tensor), which torch warns of
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    with tempfile.TemporaryDirectory() as tmp:
        transitions = transitions_from_runs(record(Path(tmp) / "data", seed))
        venv = VecTransposeImage(DummyVecEnv([lambda: gym.make("envs:Corridor-v0", **ENV_KWARGS)]))
        policy = ActorCriticCnnPolicy(
            observation_space=venv.observation_space,  # (C, H, W), as the transitions
            action_space=venv.action_space,
            lr_schedule=lambda _: 1e-3,
        )
        trainer = imitation_bc.BC(
            observation_space=venv.observation_space,
            action_space=venv.action_space,
            demonstrations=transitions,
            policy=policy,
            batch_size=32,
            rng=np.random.default_rng(seed),
            # BC's default logger writes into a new folder of the system's temp directory
            custom_logger=imitation_logger.configure(Path(tmp) / "logs", format_strs=[]),
        )
        trainer.train(n_batches=batches, progress_bar=False)

    labels = np.asarray(transitions.acts)
    predicted, _ = trainer.policy.predict(np.array(transitions.obs), deterministic=True)
    agreement = float(np.mean(predicted == labels))
    majority = float(np.bincount(labels).max() / len(labels))

    venv.seed(seed + 1_000)
    obs = venv.reset()
    progress = 0.0
    for _ in range(30):
        action, _ = trainer.policy.predict(obs, deterministic=True)
        obs, reward, done, info = venv.step(action)
        progress = info[0]["progress_m"]
        if done[0]:
            break
    venv.close()
    print(
        f"BC on {len(labels)} recorded frames {transitions.obs.shape[1:]} (C, H, W), "
        f"{batches} batches: agreement with the expert's labels {agreement:.2f} "
        f"(majority label {majority:.2f}); flew {progress:.2f} m in a new world"
    )
    return {"frames": len(labels), "agreement": agreement, "majority": majority}


if __name__ == "__main__":
    main()
