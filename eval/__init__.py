"""Closed-loop evaluation: rollouts on held-out worlds, videos, run comparison.

* ``python -m eval.rollout``: success, progress, collisions, expert agreement of a checkpoint
  (or of the expert, ``--expert``) on held-out worlds, with videos on request;
* ``python -m eval.compare RUN...``: curves, closed-loop bars and the markdown results table;
* ``python -m eval.bench``: episodes per minute with 1 and 2 workers;
* ``eval.during_training.evaluate_checkpoint``: the trainer's ``--eval-every`` hook.

Under them: ``eval.fly`` flies a policy or the expert for each of them (loading, the
check that the checkpoint fits the env, the labeller, the workers' setup);
``eval.episodes`` flies one episode (``eval.agents``: the expert and the agent
protocols, ``eval.policy_agent``: a trained policy) and ``eval.worker_pool`` many, in this
process or in worker processes; ``eval.run_files`` finds runs and their result files;
``eval.compare_groups``, ``eval.compare_plots`` and ``eval.compare_table`` are the comparison's
loading, plots and table; ``eval.stats`` and ``eval.video`` the numbers and the videos.

See docs/evaluation.md.
"""

from __future__ import annotations

import envs  # noqa: F401  (first: imports PyBullet with its banner silenced)
