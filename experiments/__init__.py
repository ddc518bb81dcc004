"""Experiments that chain the packages below: ``python -m experiments.dagger``.

This package sits above eval (envs <- expert <- bc <- eval <- experiments): an experiment
records data, trains and evaluates in closed loop, so it needs all of them.
"""
