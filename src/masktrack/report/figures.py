"""Report figures: per-frame J/F and area plots, overlay GIFs, frame strips and worst-frame panels (PNG/GIF files)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from masktrack.data.masks import DAVIS_PALETTE
from masktrack.report.run import ObjectScores

GIF_WIDTH = 320
PANEL_WIDTH = 240
# Indexed by prediction + 2 * truth: neither, false positive, miss, hit.
ERROR_COLOURS = np.array([[0, 0, 0], [230, 40, 40], [40, 90, 240], [40, 200, 40]], dtype=np.uint8)


def frame_plot(scores: dict[int, ObjectScores], path: Path) -> None:
    """J and F per frame, one line per object in its DAVIS colour, saved as a PNG."""
    figure = Figure(figsize=(8, 2.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for axis, measure, values_of in zip(figure.subplots(1, 2), ("J (region IoU)", "F (boundary)"), ("j", "f")):
        for object_id, object_scores in sorted(scores.items()):
            colour = DAVIS_PALETTE[object_id % 256] / 255.0
            frames = [int(frame) if frame.isdigit() else index for index, frame in enumerate(object_scores.frames)]
            axis.plot(frames, getattr(object_scores, values_of), marker=".", color=colour, label=f"object {object_id}")
        axis.set(title=measure, xlabel="frame", ylim=(-0.02, 1.02))
        axis.grid(alpha=0.3)
    figure.legend(*axis.get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    figure.savefig(path)


def area_plot(areas: dict[int, list[float]], path: Path) -> None:
    """Each object's area per frame (percent of the frame), one line per object in its DAVIS colour, as a PNG."""
    figure = Figure(figsize=(8, 2.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    for object_id, values in areas.items():
        axis.plot(100 * np.asarray(values), color=DAVIS_PALETTE[object_id % 256] / 255.0, label=f"object {object_id}")
    axis.set(xlabel="frame", ylabel="area (% of frame)", ylim=(0, None))
    axis.grid(alpha=0.3)
    figure.legend(loc="outside right upper", fontsize="small")
    figure.savefig(path)


def render_labels(labels: np.ndarray, image: np.ndarray | None) -> np.ndarray:
    """The label mask over ``image`` (RGB), or in DAVIS colours on black without an image."""
    if image is None:
        return DAVIS_PALETTE[labels]
    from masktrack.data.video import overlay

    return overlay(image, labels)


def error_map(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RGB map of a binary prediction against the truth: green hit, red false positive, blue miss."""
    return ERROR_COLOURS[prediction.astype(np.uint8) + 2 * truth.astype(np.uint8)]


def fit_width(rgb: np.ndarray, width: int) -> Image.Image:
    """An RGB array as a PIL image no wider than ``width`` pixels."""
    image = Image.fromarray(rgb)
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.BILINEAR)
    return image


def write_gif(frames: Iterable[np.ndarray], path: Path, frame_ms: int) -> None:
    """An animated GIF of RGB frames, each downscaled to ``GIF_WIDTH`` as it arrives and given its own 256 colours
    (fast octree quantisation: Pillow's default median cut takes most of a report's time)."""
    images = [fit_width(frame, GIF_WIDTH).quantize(method=Image.Quantize.FASTOCTREE) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)


def write_panel(tiles: Iterable[np.ndarray], path: Path, width: int = PANEL_WIDTH) -> None:
    """Tiles side by side (each at most ``width`` pixels wide, 4-pixel gaps) as a PNG."""
    images = [fit_width(tile, width) for tile in tiles]
    height = max(image.height for image in images)
    panel = Image.new("RGB", (sum(image.width for image in images) + 4 * (len(images) - 1), height), (255, 255, 255))
    x = 0
    for image in images:
        panel.paste(image, (x, 0))
        x += image.width + 4
    panel.save(path)
