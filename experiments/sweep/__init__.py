"""Sweeps: ``python -m experiments.sweep SPEC.toml`` crosses collect/train/eval flags with seeds.

* :mod:`experiments.sweep.config`: the command's configuration;
* :mod:`experiments.sweep.spec`: specs turned into checked trials;
* :mod:`experiments.sweep.spec_sources`: where a spec comes from (a TOML file, command-line parts);
* :mod:`experiments.sweep.runner`: running the trials, resumably;
* :mod:`experiments.sweep.backends`: a local process pool or a Ray cluster;
* :mod:`experiments.sweep.trial`: one job in a process of its own
  (``python -m experiments.sweep.trial``);
* :mod:`experiments.sweep.results`: ``results.jsonl``, ``results.md`` and the console tables;
* :mod:`experiments.sweep.bench`: sweep throughput (``python -m experiments.sweep.bench``).
"""
