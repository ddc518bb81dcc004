"""Gymnasium's own wrappers on ``Corridor-v0``: ``python examples/gym_wrappers.py`` (seconds).

* ``RecordVideo`` writes an mp4 of the episode from ``env.render()`` (the agent's camera in
  RGB at ``render_size``, whatever the ``obs_mode``); it needs moviepy.
* ``ResizeObservation`` resizes the ``(H, W, C)`` frames with OpenCV (cv2).
* ``FrameStackObservation`` stacks the last frames: ``(stack, H, W, C)``.
* The same wrappers on a vector env: ``gymnasium.make_vec(..., wrappers=[...])``.

moviepy and OpenCV come with the ``gym`` extra: ``pip install -e ".[gym]"``. The video goes to
a temporary directory that is removed at the end; nothing else is written.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
from gymnasium.wrappers import FrameStackObservation, RecordVideo, ResizeObservation

REQUIRES = {"cv2": "gym", "moviepy": "gym"}

ENV_KWARGS = {"image_size": 64, "n_segments": 1}  # one straight segment: a short episode


def record_one_episode(video_folder: Path, seed: int = 0) -> tuple[tuple, int, Path]:
    """Fly straight ahead through one world, resized and stacked, recording a video."""
    env = gym.make("envs:Corridor-v0", render_mode="rgb_array", render_size=96, **ENV_KWARGS)
    # RecordVideo sits next to the env: it films env.render(), not the wrapped observations
    env = RecordVideo(env, str(video_folder), episode_trigger=lambda episode: True)
    env = ResizeObservation(env, (36, 36))
    env = FrameStackObservation(env, stack_size=3)
    obs, info = env.reset(seed=seed)
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(1)  # 1 = straight ahead
        done = terminated or truncated
        steps += 1
    if not env.observation_space.contains(obs):
        raise RuntimeError(f"observation {obs.shape} {obs.dtype} is outside the wrapped space")
    env.close()  # RecordVideo writes an episode's video at the next reset, or here at close
    videos = sorted(Path(video_folder).glob("*.mp4"))
    if len(videos) != 1:
        raise RuntimeError(f"expected one video in {video_folder}, found {videos}")
    # read it back with imageio (a core dependency): one frame per step at render_size
    with imageio.get_reader(videos[0]) as reader:
        frames, size = reader.count_frames(), reader.get_meta_data()["size"]
    if frames < steps or size != (96, 96):
        raise RuntimeError(f"video has {frames} frames of {size}, expected {steps} of (96, 96)")
    print(f"outcome {info['outcome']} after {steps} steps")
    return obs.shape, steps, videos[0]


def vector_env_steps(num_envs: int = 2, steps: int = 5) -> tuple:
    """The same wrappers on a synchronous vector env; the shape of its batched observations."""
    wrappers = [
        partial(ResizeObservation, shape=(36, 36)),
        partial(FrameStackObservation, stack_size=3),
    ]
    envs = gym.make_vec(
        "envs:Corridor-v0",
        num_envs=num_envs,
        vectorization_mode="sync",
        wrappers=wrappers,
        **ENV_KWARGS,
    )
    obs, infos = envs.reset(seed=0)
    for _ in range(steps):
        obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
    envs.close()
    return obs.shape


def main() -> dict:
    """Record a wrapped episode and step a wrapped vector env; print the shapes."""
    with tempfile.TemporaryDirectory() as tmp:
        shape, steps, video = record_one_episode(Path(tmp) / "videos")
        size = video.stat().st_size
        print(f"single env: obs {shape} (stack, H, W, C); video {video.name}, {size} bytes")
    vector_shape = vector_env_steps()
    print(f"vector env: obs {vector_shape} (envs, stack, H, W, C)")
    return {"obs_shape": shape, "steps": steps, "vector_obs_shape": vector_shape}


if __name__ == "__main__":
    main()
