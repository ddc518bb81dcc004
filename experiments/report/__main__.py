"""``python -m experiments.report``: the command line of :mod:`experiments.report.build`."""

from configflags import run_main
from experiments.report import build

if __name__ == "__main__":
    run_main(build.main, build.ReportConfig, "python -m experiments.report", build.__doc__)
