"""Per-object J and F bar chart (matplotlib, Agg), rendered to PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence


def jf_per_object_png(names: Sequence[str], j_means: Sequence[float], f_means: Sequence[float]) -> bytes:
    """A bar chart of each object's J-Mean and F-Mean (names ``<seq>_<id>``), as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    count = len(names)
    figure = Figure(figsize=(min(max(6.0, 0.35 * count + 2.0), 60.0), 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = range(count)
    width = 0.4
    axes.bar([p - width / 2 for p in positions], j_means, width, label="J (region IoU)", color="#1f77b4")
    axes.bar([p + width / 2 for p in positions], f_means, width, label="F (boundary)", color="#ff7f0e")
    axes.set_xticks(list(positions), list(names), rotation=90, fontsize=8)
    axes.set_xlim(-0.6, count - 0.4)
    axes.set_ylim(0, 1.15)  # room for the legend above the bars
    axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_ylabel("mean over frames")
    axes.set_title("J and F per object")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper right", ncols=2, fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
