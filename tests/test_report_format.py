"""The report's formatting without building a report: numbers rounded to what they mean, and the matplotlib loss
curves (size, log scale only over a decade, epochs on the top axis, matplotlib imported only when drawing)."""

from __future__ import annotations

import subprocess
import sys

from test_report import _png_size


def test_number_formats():
    from diffusionlab.report.html import format_value, round_text

    assert format_value("trained: loss", 0.027338259278776797) == "0.02734" and format_value("lr", 0.001) == "0.001"
    assert [format_value("train_seconds", s) for s in (1234.567, 12.34)] == ["1235 s", "12.3 s"]
    assert format_value("t", [250, 500]) == "250, 500" and format_value("prompts", ["", "a"]) == "'', a"
    assert round_text("loss 0.027338259278776797, version 3.11.2, t=250") == "loss 0.02734, version 3.11.2, t=250"


def test_loss_plot_matplotlib(tmp_path, monkeypatch):
    """plot_curves draws with matplotlib: an 800 x 450 PNG; log y only when the values span over a decade."""
    from matplotlib.figure import Figure

    from diffusionlab.figures.grid import plot_curves

    scales, real_savefig = [], Figure.savefig

    def spy(fig, *args, **kwargs):  # the y scale and the top (epoch) axis's labels of each plot saved
        ax = fig.axes[0]
        scales.append((ax.get_yscale(), [t.get_text() for a in ax.child_axes for t in a.get_xticklabels()]))
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    steep = [1.0 / (i + 1) for i in range(60)]
    epochs = [1 + i // 20 for i in range(60)]
    a = plot_curves({"loss": steep, "smooth": steep}, tmp_path / "a.png", title="t", epochs=epochs)
    b = plot_curves({"loss": [0.5 + 0.01 * (i % 3) for i in range(30)]}, tmp_path / "b.png")
    assert _png_size(a) == _png_size(b) == (800, 450)
    assert scales == [("log", ["1", "2", "3"]), ("linear", [])]  # epochs named on top only when given
    code = "import sys, diffusionlab, diffusionlab.figures.grid, diffusionlab.report; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0  # imported when a plot is drawn, not before
