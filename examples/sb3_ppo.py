"""Stable-Baselines3 PPO on ``Corridor-v0``: ``python examples/sb3_ppo.py`` (a few seconds).

Two tiny runs of a few hundred steps each, to show the plumbing rather than to learn to fly:

* ``CnnPolicy`` (SB3's NatureCNN) at 36x36 pixels, the smallest frame its convolutions
  (8x8 stride 4, 4x4 stride 2, 3x3 stride 1, no padding) leave at least one pixel of:
  36 -> 8 -> 3 -> 1, while 35 (or the env's minimum, 32) -> 7 -> 2 -> 0.
* a small custom features extractor at 32x32, the env's smallest frame.

The env gives ``(H, W, C)`` uint8 frames; SB3 sees an image space in channels-last order and
wraps the vector env in ``VecTransposeImage`` by itself, so the policy gets ``(C, H, W)``.
The trained model is saved and loaded back in a temporary directory; nothing else is written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

REQUIRES = {"stable_baselines3": "sb3"}

NATURE_CNN_MIN_SIZE = 36


def small_cnn_extractor() -> type:
    """A features extractor for frames from 32 px up: two stride-2 3x3 convolutions."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class SmallCNN(BaseFeaturesExtractor):
        def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
            super().__init__(observation_space, features_dim)
            channels = observation_space.shape[0]  # (C, H, W) after VecTransposeImage
            self.cnn = nn.Sequential(
                nn.Conv2d(channels, 16, 3, stride=2, padding=1),  # (C, 32, 32) -> (16, 16, 16)
                nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1),  # -> (32, 8, 8)
                nn.ReLU(),
                nn.Flatten(),
            )
            with torch.no_grad():
                sample = torch.as_tensor(observation_space.sample()[None]).float()
                flat = self.cnn(sample).shape[1]
            self.linear = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.linear(self.cnn(observations))

    return SmallCNN


def train(image_size: int, steps: int, policy_kwargs: dict | None, seed: int = 0) -> dict:
    """Train PPO briefly on ``Corridor-v0`` at ``image_size``, save, reload, fly a few steps."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    # small worlds, so that the few hundred steps see several episodes
    env_kwargs = {"image_size": image_size, "n_segments": 2}
    venv = make_vec_env("envs:Corridor-v0", n_envs=2, seed=seed, env_kwargs=env_kwargs)
    model = PPO(
        "CnnPolicy",
        venv,
        n_steps=64,  # per env: 128 steps per update with 2 envs
        batch_size=64,
        n_epochs=2,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        # without a logger of its own, learn() leaves an empty SB3-<time> folder in the temp dir
        model.set_logger(configure(str(Path(tmp) / "logs"), format_strings=[]))
        model.learn(total_timesteps=steps)
        path = Path(tmp) / "ppo_corridor.zip"
        model.save(path)
        loaded = PPO.load(path, env=venv, device="cpu")
    saved, restored = model.policy.state_dict(), loaded.policy.state_dict()
    if saved.keys() != restored.keys() or not all(saved[k].equal(restored[k]) for k in saved):
        raise RuntimeError("the reloaded policy's weights differ from the saved ones")
    policy_input = model.policy.observation_space.shape
    # the loaded model reads the env's (H, W, C) frames through its own VecTransposeImage
    obs = loaded.get_env().reset()
    returns = np.zeros(venv.num_envs)
    for _ in range(20):
        actions, _ = loaded.predict(obs, deterministic=True)
        obs, rewards, _dones, _infos = loaded.get_env().step(actions)
        returns += rewards
    venv.close()
    return {
        "env_obs": venv.observation_space.shape,
        "policy_obs": policy_input,
        "extractor": type(model.policy.features_extractor).__name__,
        "timesteps": model.num_timesteps,
        "return_20_steps": returns.round(2).tolist(),
    }


def main() -> list[dict]:
    """Run PPO with NatureCNN at 36 px, then with a small CNN at 32 px; print each."""
    torch.set_num_threads(1)
    results = [
        train(NATURE_CNN_MIN_SIZE, 256, None),
        train(32, 256, {"features_extractor_class": small_cnn_extractor()}),
    ]
    for result in results:
        print(
            f"{result['extractor']}: env frames {result['env_obs']} (H, W, C), policy input "
            f"{result['policy_obs']} (C, H, W), {result['timesteps']} steps trained, "
            f"20-step returns {result['return_20_steps']}"
        )
    return results


if __name__ == "__main__":
    main()
