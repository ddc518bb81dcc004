"""``python -m bc.export``: the command line of :mod:`bc.export.exporter`."""

from bc.export import exporter
from configflags import run_main

if __name__ == "__main__":
    run_main(
        exporter.main,
        exporter.ExportConfig,
        "python -m bc.export",
        exporter.__doc__,
        interrupted="interrupted",
    )
