"""Behaviour cloning for corridor-bc: nets, datasets, the trainer and the policy API.

``python -m bc.train`` trains a policy from a dataset directory, ``bc.policy.load_policy``
rebuilds it from a checkpoint for the evaluator, ``python -m bc.bench`` measures speed.
See docs/training.md and docs/nets.md.
"""
