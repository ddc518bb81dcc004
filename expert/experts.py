"""Scripted experts with privileged state: one interface for recording, DAgger and evaluation.

``expert = make_expert(config, env)``, then per episode ``expert.reset(env)`` and per step
``expert.label(env)`` (the clean label for the current state) and ``expert.act(env, rng)``
(the action to execute, noise and mixing applied). Experts read the env's privileged state
(pose, corridor layout, ray scans) and do no I/O.

Kinds (``ExpertConfig.kind``):

* ``discrete``: the controller's command turned into a bin with a deadband;
* ``continuous``: the controller's command itself;
* ``stochastic``: the continuous expert executing its command plus Gaussian noise and, with
  probability ``epsilon``, a random action, while the clean command is recorded as the label
  (the DART idea: demonstrations that include recoveries from perturbations).

Noise and mixing apply to every kind. Alpha mixing: each step the expert acts with probability
``alpha`` and a given policy acts otherwise; the label is always the expert's. The policy is
called on every step when ``alpha < 1``, so frame-stacking or recurrent learners see every
frame.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from configflags import option
from envs.controls import Controls, speed_command_to_bin
from envs.spaces import bin_yaw_commands, yaw_command_to_bin
from expert.controller import ControllerConfig, CorridorController, SteeringTerms
from expert.speed_law import SpeedLawConfig, target_speed

EXPERT_KINDS = ("discrete", "continuous", "stochastic")
MIX_POLICIES = ("random", "straight")
# noise defaults per kind; None in a config means "the kind's default"
_NOISE_DEFAULTS = {
    "discrete": (0.0, 0.0),
    "continuous": (0.0, 0.0),
    "stochastic": (0.5, 0.05),
}
# hysteresis of the discrete label: turns go on until |command| falls below this
DEFAULT_RELEASE = 0.05
# what executed a step, recorded per step as ``source``
SOURCE_EXPERT, SOURCE_RANDOM, SOURCE_POLICY = 0, 1, 2


@dataclass(frozen=True)
class ExpertConfig:
    """Which expert, its perturbations and its mixing with another policy."""

    kind: str = option(
        "discrete",
        flag="--expert",
        choices=EXPERT_KINDS,
        help="discrete (bins), continuous (yaw command) or stochastic (continuous + noise)",
    )
    noise_sigma: float | None = option(
        None,
        help="std of Gaussian noise on the executed yaw command (unset: 0.5 for stochastic, "
        "else 0)",
    )
    epsilon: float | None = option(
        None,
        help="probability of a uniformly random executed action per step (unset: 0.05 for "
        "stochastic, else 0)",
    )
    alpha: float = option(1.0, help="probability per step that the expert acts (1 = pure expert)")
    mix_policy: str = option(
        "random",
        choices=MIX_POLICIES,
        help="the policy that acts when the expert does not (alpha < 1); DAgger passes a learner",
    )
    deadband: float = option(
        0.4, help="|command| below which the discrete label is straight (fraction of max yaw)"
    )
    release: float | None = option(
        None,
        help="hysteresis: a turn, once begun, goes on while |command| on its side stays above "
        "this (<= --deadband; = --deadband turns hysteresis off; unset: 0.05, or --deadband "
        "if smaller)",
    )
    controller: ControllerConfig = option(
        default_factory=ControllerConfig, help="steering law of the expert"
    )
    speed: SpeedLawConfig = option(
        default_factory=SpeedLawConfig,
        help="speed law of the expert (the two-control world, --controls yaw_speed)",
    )

    def __post_init__(self) -> None:
        if self.kind not in EXPERT_KINDS:
            kinds = ", ".join(EXPERT_KINDS)
            raise ValueError(f"--expert must be one of {kinds}, got {self.kind!r}")
        sigma, epsilon = _NOISE_DEFAULTS[self.kind]
        if self.noise_sigma is None:
            object.__setattr__(self, "noise_sigma", sigma)
        if self.epsilon is None:
            object.__setattr__(self, "epsilon", epsilon)
        if isinstance(self.controller, dict):
            object.__setattr__(self, "controller", ControllerConfig(**self.controller))
        if isinstance(self.speed, dict):
            object.__setattr__(self, "speed", SpeedLawConfig(**self.speed))
        if not self.noise_sigma >= 0:
            raise ValueError(f"--noise-sigma must be >= 0, got {self.noise_sigma}")
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"--epsilon must be in [0, 1], got {self.epsilon}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"--alpha must be in [0, 1] (1 = pure expert), got {self.alpha}")
        if self.mix_policy not in MIX_POLICIES:
            raise ValueError(
                f"--mix-policy must be one of {', '.join(MIX_POLICIES)}, got {self.mix_policy!r}"
            )
        if not 0 <= self.deadband < 1:
            raise ValueError(f"--deadband must be in [0, 1), got {self.deadband}")
        if self.release is None:
            object.__setattr__(self, "release", min(DEFAULT_RELEASE, self.deadband))
        if not 0 <= self.release <= self.deadband:
            raise ValueError(
                f"--release must be in [0, --deadband={self.deadband}], got {self.release}"
            )

    @property
    def action_type(self) -> str:
        """The env action type this expert records with."""
        return "discrete" if self.kind == "discrete" else "continuous"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the noise defaults resolved.

        The speed law is left out at its defaults, so that the fingerprints of datasets
        recorded before it existed stay the same.
        """
        values = dataclasses.asdict(self)
        if self.speed == SpeedLawConfig():
            del values["speed"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExpertConfig:
        """Inverse of ``to_dict``.

        A config recorded before ``release`` existed had no hysteresis: its release is its
        deadband. One recorded before ``gap_replan`` existed planned its gap path once per
        episode.
        """
        values = dict(values)
        if "deadband" in values and "release" not in values:
            values["release"] = values["deadband"]
        controller = dict(values.get("controller", {}))
        if controller and "gap_replan" not in controller:
            controller["gap_replan"] = False
        values["controller"] = ControllerConfig(**controller)
        values["speed"] = SpeedLawConfig(**values.get("speed", {}))
        return cls(**values)


@dataclass(frozen=True)
class ExpertLabel:
    """The expert's clean decision for one state.

    ``action`` is the bin index (deadband applied) and ``command`` the continuous yaw command
    in [-1, 1] (a fraction of ``max_yaw_rate``, + = left). In the two-control world
    ``speed_command`` is the speed command in [-1, 1] (``envs.controls``) and
    ``speed_action`` its nearest speed bin; both are None in the one-control world.
    """

    action: int
    command: float
    speed_action: int | None = None
    speed_command: float | None = None


@dataclass(frozen=True)
class Decision:
    """One step: the clean label, what is executed, and who chose it."""

    label: ExpertLabel
    action: Any
    command: float
    source: int
    speed_command: float | None = None


class Policy(Protocol):
    """What alpha mixing executes instead of the expert: a yaw command in [-1, 1] per step.

    In the two-control world it may return (yaw, speed) commands; a yaw alone is flown at the
    expert's speed.

    An optional ``reset()`` is called at every ``Expert.reset``, after an optional
    ``attach(env)`` that gives it the env it flies in.
    """

    def __call__(
        self, observation: np.ndarray | None, rng: np.random.Generator
    ) -> float | tuple[float, float]: ...


class RandomPolicy:
    """A uniformly random action: a random bin's command, or uniform in [-1, 1]."""

    def __init__(self, commands: np.ndarray | None) -> None:
        self.commands = commands

    def __call__(self, observation: np.ndarray | None, rng: np.random.Generator) -> float:
        return random_command(rng, self.commands)


class StraightPolicy:
    """Always straight: the simplest stand-in learner."""

    def __call__(self, observation: np.ndarray | None, rng: np.random.Generator) -> float:
        return 0.0


def random_command(rng: np.random.Generator, commands: np.ndarray | None) -> float:
    """A uniformly random bin's command (``commands`` given) or a uniform command in [-1, 1]."""
    if commands is not None:
        return float(commands[int(rng.integers(len(commands)))])
    return float(rng.uniform(-1.0, 1.0))


def command_to_bin(
    command: float,
    n_bins: int,
    deadband: float,
    release: float | None = None,
    previous: int | None = None,
) -> int:
    """The bin for ``command``: straight inside the deadband, never straight outside it.

    Otherwise the nearest bin. A plain nearest bin would fly straight up to |command| = 0.5
    with 3 bins and drift off the path.

    Hysteresis: when the ``previous`` bin turned to the side ``command`` points to, the
    deadband shrinks to ``release``, so a turn, once begun, goes on until the command has
    (nearly) died out instead of flickering on and off around the deadband's edge.
    """
    centre = (n_bins - 1) // 2
    if release is not None and previous is not None and previous != centre:
        # low indices are left (+)
        if (previous < centre) == (command > 0):
            deadband = release
    if abs(command) < deadband:
        return centre
    index = yaw_command_to_bin(command, n_bins)
    if index == centre:
        # low indices are left (+): step one bin towards the command's side
        index = centre - 1 if command > 0 else centre + 1
    return index


@dataclass
class Takeover:
    """A safety takeover for mixed runs (DAgger): the expert acts while the agent strays.

    It engages when the agent is more than ``offset`` metres off the centreline or its
    heading is more than ``heading`` degrees off the corridor's, and hands back once both are
    under ``handback`` times those thresholds, so that a run goes on past the learner's first
    mistake (gym-duckietown's DAgger baseline does the same).
    """

    offset: float
    heading: float
    handback: float = 0.5
    engaged: bool = False

    def update(self, lateral_offset: float, heading_error: float) -> bool:
        """Whether the expert must act in this state (call once per step, in order)."""
        offset, heading = abs(lateral_offset), abs(math.degrees(heading_error))
        if self.engaged:
            self.engaged = not (
                offset < self.handback * self.offset and heading < self.handback * self.heading
            )
        else:
            self.engaged = offset > self.offset or heading > self.heading
        return self.engaged


class Expert:
    """A scripted expert; see the module docstring for the interface."""

    def __init__(
        self,
        config: ExpertConfig,
        n_bins: int,
        discrete_env: bool,
        policy: Policy | Callable[[np.ndarray | None, np.random.Generator], float] | None = None,
        takeover: Takeover | None = None,
        controls: Controls | None = None,
    ) -> None:
        """``controls`` are the env's (``env.unwrapped.controls``): two controls add a speed."""
        self.config = config
        self.controls = controls or Controls(
            "discrete" if discrete_env else "continuous", n_bins=int(n_bins)
        )
        self.takeover = takeover
        self.n_bins = int(n_bins)
        self.bin_commands = bin_yaw_commands(self.n_bins)
        self.discrete_env = discrete_env
        self.controller = CorridorController(config.controller)
        # random actions are bins in a discrete env, uniform commands in a continuous one
        self._random_commands = self.bin_commands if discrete_env else None
        if policy is None:
            if config.mix_policy == "random":
                policy = RandomPolicy(self._random_commands)
            else:
                policy = StraightPolicy()
        self.policy = policy
        self._cache_key: tuple | None = None
        self._cache: tuple[ExpertLabel, SteeringTerms] | None = None
        # the bin whose turn the hysteresis continues (see _hysteresis_reference)
        self._previous_label: int | None = None
        # whether this expert's own decide() chose the action executed last
        self._drove_last = False

    def reset(self, env) -> None:
        """Start a new episode in ``env`` (call after ``env.reset``)."""
        self.controller.reset(env)
        self._cache_key = None
        self._previous_label = None
        self._drove_last = False
        if self.takeover is not None:
            self.takeover.engaged = False
        attach = getattr(self.policy, "attach", None)
        if callable(attach):
            attach(env)  # a policy that reads the env as it flies (extra inputs)
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            reset()

    def steering(self, env) -> SteeringTerms:
        """The controller's terms for the current state (cached per state)."""
        return self._evaluate(env)[1]

    def label(self, env) -> ExpertLabel:
        """The clean expert label for the env's current state; no side effects on the env.

        With hysteresis (``release < deadband``) the label also depends on the previous step
        (``_hysteresis_reference``), so call it once per step, in order, after ``reset``;
        calls in the same state return the same label.
        """
        return self._evaluate(env)[0]

    def _hysteresis_reference(self, env) -> int | None:
        """The bin of the previous step whose turn the hysteresis keeps going.

        When this expert drove the previous step (``decide`` with the expert or its noise
        acting), its own previous label, as recorded runs always had it. When someone else
        did (a learner under DAgger, or any policy the expert only labels, as in evaluation),
        the bin the executed command falls in: a turn the agent has begun is what the frames
        show, while the expert's own unexecuted labels are hidden from a learner.
        """
        if self._cache is None or self._cache_key is None:
            return None  # the first state of the episode
        if self._drove_last:
            return self._cache[0].action
        command = env.last_yaw_command
        if command is None:
            return None
        return command_to_bin(command, self.n_bins, self.config.deadband)

    def _evaluate(self, env) -> tuple[ExpertLabel, SteeringTerms]:
        env = env.unwrapped
        # label() and act() in the same state share one ray scan
        key = (id(env.layout), env.x, env.y, env.yaw)
        if key != self._cache_key:
            self._previous_label = self._hysteresis_reference(env)
            terms = self.controller.steer(env)
            action = self._to_bin(terms.command)
            label = ExpertLabel(action, terms.command)
            if self.controls.two:
                speed = self.controls.speed_command(
                    target_speed(env, terms.command, self.config.speed)
                )
                speed_bin = speed_command_to_bin(speed, self.controls.speed_bins)
                label = dataclasses.replace(label, speed_action=speed_bin, speed_command=speed)
            self._cache = (label, terms)
            self._cache_key = key
        return self._cache

    def _to_bin(self, command: float) -> int:
        config = self.config
        return command_to_bin(
            command, self.n_bins, config.deadband, config.release, self._previous_label
        )

    def decide(
        self, env, rng: np.random.Generator, observation: np.ndarray | None = None
    ) -> Decision:
        """The label and the executed action for this step (noise and mixing applied).

        Draws the same number of values from ``rng`` on every step whatever happens, so the
        noise sequence does not depend on epsilon or alpha; the mixing policy draws its own
        values after them.
        """
        config = self.config
        label = self.label(env)
        noise = float(rng.standard_normal())
        explore = float(rng.random())
        explore_command = random_command(rng, self._random_commands)
        mix = float(rng.random())
        policy_command = policy_speed = None
        if config.alpha < 1.0:
            policy_command, policy_speed = _commands(self.policy(observation, rng))

        source = SOURCE_EXPERT
        command = label.command + config.noise_sigma * noise
        if config.kind == "discrete":
            index = self._to_bin(command)
            command = float(self.bin_commands[index])
        command = float(np.clip(command, -1.0, 1.0))
        if explore < config.epsilon:
            command, source = explore_command, SOURCE_RANDOM
        if policy_command is not None and mix >= config.alpha:
            straying = self.takeover is not None and self.takeover.update(
                *env.unwrapped.centreline_errors()
            )
            if not straying:
                command, source = policy_command, SOURCE_POLICY
        self._drove_last = source != SOURCE_POLICY
        speed = label.speed_command
        if source == SOURCE_POLICY and policy_speed is not None:
            speed = policy_speed
        action = self.controls.action(command, speed)
        if self.discrete_env:  # the commands of the bins executed
            command, speed = self.controls.commands(action)
        elif speed is not None:
            speed = float(np.clip(speed, -1.0, 1.0))
        return Decision(label, action, command, source, speed)

    def act(self, env, rng: np.random.Generator, observation: np.ndarray | None = None) -> Any:
        """The action to pass to ``env.step``: the expert's, perturbed and mixed as configured."""
        return self.decide(env, rng, observation).action


def _commands(returned: Any) -> tuple[float, float | None]:
    """A mixing policy's (yaw, speed or None) commands, each clipped to [-1, 1]."""
    values = np.clip(np.asarray(returned, dtype=np.float64).reshape(-1), -1.0, 1.0)
    return float(values[0]), (float(values[1]) if len(values) > 1 else None)


def make_expert(
    config: ExpertConfig,
    env,
    policy: Policy | Callable[[np.ndarray | None, np.random.Generator], float] | None = None,
    takeover: Takeover | None = None,
) -> Expert:
    """The expert for ``env`` (any CorridorEnv, wrapped or not).

    ``policy`` replaces the configured ``mix_policy`` for alpha mixing: a callable
    ``(observation, rng) -> yaw command``, e.g. a learner for DAgger. ``takeover`` lets the
    expert act whenever the agent strays too far, whoever the mixing chose.
    """
    unwrapped = env.unwrapped
    discrete = unwrapped.action_type == "discrete"
    return Expert(config, unwrapped.n_bins, discrete, policy, takeover, unwrapped.controls)


def expert_rng(world_seed: int) -> np.random.Generator:
    """The per-run generator for noise and mixing, derived from the run's world seed.

    A separate stream (not ``default_rng(world_seed)``, which is the env's own layout stream)
    so that noise is not correlated with the world.
    """
    return np.random.default_rng(np.random.SeedSequence([int(world_seed), 0x5EED_E8]))
