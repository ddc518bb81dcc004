"""envs.clients: a closed env's PyBullet client serves the next env, invisibly."""

import numpy as np
import pybullet as pb
import pytest

from envs import CorridorEnv, clients

SMALL = {"image_size": 32, "n_segments": 2, "segment_length": (4.0, 6.0)}
# another world entirely: what a kept client held before it was given back
CLUTTERED = {"image_size": 48, "obs_mode": "rgbd", "obstacle_density": 1.0,
             "randomize_textures": True, "clutter_density": 1.0}  # fmt: skip


@pytest.fixture
def no_kept_clients(monkeypatch):
    monkeypatch.setattr(clients, "_kept", [])


def _fly(env: CorridorEnv, seed: int = 0, steps: int = 25) -> list[np.ndarray]:
    observations = [env.reset(seed=seed)[0]]
    for step in range(steps):
        observation, _, terminated, truncated, _ = env.step((0, 1, 2)[step % 3])
        observations.append(observation)
        if terminated or truncated:
            break
    return observations


def test_an_env_on_a_kept_client_renders_what_one_on_a_new_client_does(no_kept_clients):
    new = CorridorEnv(**SMALL)  # nothing kept: a new client
    expected = _fly(new)
    busy = CorridorEnv(**CLUTTERED)
    _fly(busy, seed=5)
    kept_client = busy._client
    busy.close()
    assert clients.kept() == 1
    reused = CorridorEnv(**SMALL)
    assert reused._client == kept_client and clients.kept() == 0
    observed = _fly(reused)
    assert len(observed) == len(expected)
    for a, b in zip(observed, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    new.close()
    reused.close()


def test_beyond_the_cap_a_client_given_back_is_disconnected(no_kept_clients, monkeypatch):
    monkeypatch.setattr(clients, "MAX_KEPT", 1)
    first, second = clients.connect(), clients.connect()
    assert first != second
    clients.release(first)
    clients.release(second)
    assert clients.kept() == 1
    assert pb.isConnected(physicsClientId=first)
    assert not pb.isConnected(physicsClientId=second)
    assert clients.connect() == first


def test_a_forked_child_does_not_take_its_parents_clients(no_kept_clients, monkeypatch):
    parent = clients.connect()
    clients.release(parent)
    monkeypatch.setattr(clients, "_owner", -1)  # as a forked child sees it: another pid
    assert clients.kept() == 0
    child = clients.connect()
    assert child != parent
    for client in (parent, child):
        pb.disconnect(physicsClientId=client)
