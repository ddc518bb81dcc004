"""The success plot and figures saved atomically."""

import pytest
from matplotlib.figure import Figure

from artifacts import atomic
from artifacts.plots import plot_success, save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_success_plot_is_written(tmp_path):
    path = tmp_path / "plots" / "success.png"
    plot_success(path, [0, 1, 2], [1000, 2000, 3000], [50.0, 60.0, 70.0],
                 [[5.0, 5.0, 5.0], [4.0, 4.0, 4.0]])  # fmt: skip
    assert path.read_bytes().startswith(PNG_MAGIC)
    seeds = tmp_path / "seeds.png"
    plot_success(seeds, [0, 1], [1000.0, 2000.0], [50.0, 60.0], None,
                 seeds=[[45.0, 55.0], [55.0, 65.0]], mean_label="mean",
                 whole_iterations=True)  # fmt: skip
    assert seeds.read_bytes().startswith(PNG_MAGIC)
    assert seeds.read_bytes() != path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots", "seeds.png"]


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")
    figure = Figure()
    figure.subplots().plot([0, 1], [1, 0])

    def no_rename(source, target):
        raise OSError("disk gone")

    monkeypatch.setattr(atomic.os, "replace", no_rename)
    with pytest.raises(OSError, match="disk gone"):
        save_figure(figure, path, dpi=50)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["plot.png"]
    monkeypatch.undo()
    assert save_figure(figure, path, dpi=50) == path
    assert path.read_bytes().startswith(PNG_MAGIC)
