"""PNG plots: any figure saved atomically, and the success-per-iteration plot of DAgger.

Figures are made with matplotlib's object API (``Figure``, no pyplot): nothing global is
created, so nothing needs closing, and no display backend is ever asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from artifacts.atomic import atomic_path


def save_figure(figure: Figure, path: Path, **savefig: Any) -> Path:
    """Write ``figure`` to ``path`` (format from its suffix) so that no reader sees half a file.

    ``savefig`` goes to ``Figure.savefig`` (``dpi``, ``metadata``); returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=path.suffix.lstrip(".") or "png", **savefig)
    return path


def plot_success(
    path: Path,
    iterations: Sequence[int],
    frames: Sequence[float],
    success: Sequence[float],
    errors: Sequence[Sequence[float]] | None,
    *,
    frames_label: str = "expert-labelled training frames",
    success_label: str = "closed-loop success (%), 95% CI",
    seeds: Sequence[Sequence[float]] = (),
    mean_label: str | None = None,
    whole_iterations: bool = False,
) -> None:
    """Success in percent with error bars, against DAgger iteration and against frames.

    ``errors`` are the bars' lengths below and above each point (``yerr``), in percent.
    ``seeds`` draws each seed's success (percent per iteration) as a grey line under the
    points; ``mean_label`` names the points in a legend; ``whole_iterations`` ticks the
    iteration axis at whole numbers only.
    """
    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2, sharey=True)
    for axis, xs, label in (
        (axes[0], iterations, "DAgger iteration (0 = BC)"),
        (axes[1], frames, frames_label),
    ):
        for index, seed in enumerate(seeds):
            axis.plot(
                xs, seed, color="0.6", linewidth=0.8, marker=".",
                label="each seed" if index == 0 else None,
            )  # fmt: skip
        axis.errorbar(xs, success, yerr=errors, marker="o", capsize=3, label=mean_label)
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel(success_label)
    axes[0].set_ylim(0, 105)
    if whole_iterations:
        axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    if mean_label is not None:
        axes[0].legend(loc="lower right")
    figure.tight_layout()
    save_figure(figure, path, dpi=100)
