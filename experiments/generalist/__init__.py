"""The generalist recipe: ``python -m experiments.generalist``, one policy for every world.

From nothing to a policy for every world of the suite, each step resumable:

* :mod:`experiments.generalist.recipe`: the steps (record on mixed worlds, BC, DAgger, the
  suite) and the command's ``main``;
* :mod:`experiments.generalist.rows`: each training seed's results as one line of a rows
  file (``--rows``), kept across machines, and the tables made from them.
"""

from experiments.generalist.recipe import GeneralistConfig, main

__all__ = ["GeneralistConfig", "main"]
