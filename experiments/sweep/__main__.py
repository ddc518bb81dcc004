"""``python -m experiments.sweep``: the command line of :mod:`experiments.sweep.runner`."""

from configflags import run_main
from experiments.sweep import runner

if __name__ == "__main__":
    run_main(runner.main, runner.SweepConfig, "python -m experiments.sweep", runner.__doc__)
