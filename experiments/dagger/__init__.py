"""DAgger: ``python -m experiments.dagger`` labels the learner's states.

* :mod:`experiments.dagger.loop`: the iterations (record, label, retrain, evaluate), resumable;
* :mod:`experiments.dagger.dataset`: the dataset a DAgger run grows;
* :mod:`experiments.dagger.results`: a run's results as a markdown table and a plot;
* :mod:`experiments.dagger.seeds`: ``python -m experiments.dagger.seeds``, runs of several
  training seeds as one table.
"""
