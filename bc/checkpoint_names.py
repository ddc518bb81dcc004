"""The file names of a run's checkpoints and the one used when none is named.

A module without torch, so that commands which only read results (``eval.compare``) can name
checkpoints without importing it; ``bc.checkpoint`` re-exports these names.
"""

from __future__ import annotations

LAST = "last.pt"
BEST_VAL_LOSS = "best_val_loss.pt"
BEST_SUCCESS = "best_success.pt"
# ``--which`` names: the file names without ``.pt``
CHECKPOINT_NAMES = ("best_val_loss", "best_success", "last")
# the checkpoint commands use when none is named (eval.rollout, eval.compare, eval.bench,
# bc.export, experiments.dagger): last.pt. The validation split is one run, and on it the lowest
# validation loss picked checkpoints that flew worse than the last epoch's in most measured
# pairs (docs/results.md, "Checkpoint choice").
DEFAULT_CHECKPOINT = "last"
