"""A dataset to Minari and back, nothing lost: ``python examples/minari_roundtrip.py`` (seconds).

Records a tiny dataset with ``expert.collect``, exports it as the Minari dataset
``corridor/expert-v0``, reads it with Minari alone (episodes, labels in the infos, the env
rebuilt from the dataset's spec and reset with an episode's seed), imports it back and checks
that every frame and label survived. Needs the ``minari`` extra: ``pip install -e ".[minari]"``.
Everything goes to a temporary directory that is removed at the end (Minari's datasets root
included, through ``MINARI_DATASETS_PATH``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import minari
import numpy as np

from dataset import load_run, read_manifest, run_file
from dataset.minari_io import export_minari, import_minari
from envs.options import EnvOptions
from expert.collect import main as collect
from expert.collect_config import CollectConfig

REQUIRES = {"minari": "minari"}

# one short straight-and-bend corridor per run, 32x32 frames: a few seconds to record
TINY_WORLD = EnvOptions(image_size=32, n_segments=1, segment_length=(4.0, 5.0))


def roundtrip(root: Path) -> bool:
    """Record, export, load with Minari, import; whether every frame and label came back."""
    os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
    collect(CollectConfig(out=root / "data", runs=3, env=TINY_WORLD, quiet=True))
    export_minari(root / "data", "corridor/expert-v0")

    dataset = minari.load_dataset("corridor/expert-v0")
    print(f"{dataset.id}: {dataset.total_episodes} episodes, {dataset.total_steps} steps, "
          f"observations {dataset.observation_space}, actions {dataset.action_space}")  # fmt: skip
    seeds = [meta["seed"] for meta in dataset.storage.get_episode_metadata(dataset.episode_indices)]
    for episode, seed in zip(dataset.iterate_episodes(), seeds, strict=True):
        labels = episode.infos["expert_action"][:-1]  # the final observation has no label
        counts = np.bincount(labels, minlength=3).tolist()
        print(f"  episode {episode.id}: {len(episode)} steps, {episode.observations.shape[0]}"
              f" observations, terminated {bool(episode.terminations[-1])}, world seed {seed},"
              f" labels left/straight/right {counts}")  # fmt: skip
    env = dataset.recover_environment()  # Corridor-v0 with the dataset's env kwargs
    first = next(dataset.iterate_episodes([0]))
    observation, _ = env.reset(seed=seeds[0])
    print(f"  the recovered env, reset with episode 0's seed, shows its first frame: "
          f"{np.array_equal(observation, first.observations[0])}")  # fmt: skip
    env.close()

    import_minari("corridor/expert-v0", root / "back")
    same = True
    for entry in read_manifest(root / "data")["runs"]:
        old, new = (
            load_run(run_file(root / "data", entry)),
            load_run(run_file(root / "back", entry)),
        )
        for name in ("frames", "final_frame", "expert_action", "expert_continuous", "action"):
            same &= bool(np.array_equal(old[name], new[name]))
    print(f"imported back (python -m bc.train --data DIR trains on it): frames and labels"
          f" identical: {same}")  # fmt: skip
    return same


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        assert roundtrip(Path(directory))
