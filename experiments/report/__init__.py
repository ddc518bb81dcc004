"""The notes' findings regenerated: ``python -m experiments.report`` (docs/sweeps.md).

* :mod:`experiments.report.findings`: each finding of the notes, tied to its sweep specs;
* :mod:`experiments.report.results`: what a finding's measurement gives (the shared types);
* :mod:`experiments.report.stats`: intervals and verdicts;
* :mod:`experiments.report.build`: reading the sweeps' rows and building the report;
* :mod:`experiments.report.markdown`, :mod:`experiments.report.plots`: the page and its plots.
"""
