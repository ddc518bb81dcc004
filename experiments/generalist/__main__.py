"""``python -m experiments.generalist``: the command line of the recipe's ``main``."""

from configflags import run_main
from experiments.generalist import recipe

if __name__ == "__main__":
    run_main(recipe.main, recipe.GeneralistConfig, "python -m experiments.generalist",
             recipe.__doc__)  # fmt: skip
