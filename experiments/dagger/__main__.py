"""``python -m experiments.dagger``: the command line of :mod:`experiments.dagger.loop`."""

from configflags import run_main
from experiments.dagger import loop

if __name__ == "__main__":
    run_main(loop.main, loop.DaggerConfig, "python -m experiments.dagger", loop.__doc__)
