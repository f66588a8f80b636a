"""A self-contained HTML report of a segmentation run: scores, plots, overlays, worst frames, timings, config.

The page and its assets (PNG, GIF, MP4) are written to one folder (``<run>/report`` by default);
the page loads nothing from elsewhere.
"""

from __future__ import annotations

import html
import math
import re
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from masktrack.atomic import PARTIAL_SUFFIX, atomic_output_dir
from masktrack.data.masks import DAVIS_PALETTE, read_mask
from masktrack.data.video import read_video_frames
from masktrack.errors import InputError
from masktrack.report.dataset import DatasetFrames
from masktrack.report.figures import (
    GIF_WIDTH,
    error_map,
    fit_width,
    frame_plot,
    render_labels,
    write_gif,
    write_panel,
)
from masktrack.report.run import Run, read_run

WORST_FRAMES = 8
GIF_MAX_FRAMES = 120
GIF_FRAME_MS = 125
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430; margin: 0; background: #f5f6f8; }
header { background: #1d2430; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #b8c0cc; }
nav { padding: 8px 32px; background: #e6e9ef; font-size: 14px; }
nav a { margin-right: 16px; color: #24528f; text-decoration: none; }
main { padding: 8px 32px 40px; max-width: 1280px; }
section { background: #fff; border-radius: 8px; padding: 14px 20px; margin: 16px 0; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
h2 { font-size: 18px; margin: 4px 0 12px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 12px; text-align: right; border-bottom: 1px solid #e3e6eb; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f2f5; font-weight: 600; }
.big { display: flex; gap: 28px; margin: 4px 0 14px; }
.big div { font-size: 13px; color: #5b6575; }
.big b { display: block; font-size: 28px; color: #1d2430; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.grid { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; }
figcaption { font-size: 13px; color: #5b6575; margin-top: 4px; }
img, video { display: block; max-width: 100%; border-radius: 4px; }
pre { background: #f0f2f5; padding: 12px; border-radius: 6px; overflow-x: auto; font-size: 13px; }
.note { color: #5b6575; font-size: 13px; }
"""


def write_report(run_dir: Path, out_dir: Path | None = None, images_root: Path | None = None, progress: bool = False) -> Path:
    """Write ``index.html`` and its assets for the run folder ``run_dir``; return the page's path.

    ``out_dir`` defaults to ``<run_dir>/report``; an existing folder there is replaced only if it
    holds a previous report (an ``index.html``). ``images_root``: a DAVIS-layout dataset with the
    run's input frames and ground truth; without it, masks are drawn on black and there is no
    ground-truth comparison.
    """
    run = read_run(Path(run_dir))
    out_dir = Path(out_dir) if out_dir is not None else run.root / "report"
    if out_dir.exists() and not (out_dir / "index.html").is_file():
        raise InputError(f"{out_dir}: exists and is not a previous report; choose another output folder")
    dataset = DatasetFrames(images_root) if images_root is not None else None
    with atomic_output_dir(out_dir, overwrite=True) as assets:
        page = _Page(run, dataset, assets, progress)
        (assets / "index.html").write_text(page.render(), encoding="utf-8")
    return out_dir / "index.html"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _swatch(object_id: int) -> str:
    r, g, b = DAVIS_PALETTE[object_id % 256]
    return f'<span class="swatch" style="background: rgb({r},{g},{b})"></span>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Page:
    """Builds the page section by section, writing each section's assets into ``assets``."""

    def __init__(self, run: Run, dataset: DatasetFrames | None, assets: Path, progress: bool) -> None:
        self.run, self.dataset, self.assets, self.progress = run, dataset, assets, progress
        self.slugs = {name: f"{index:03d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:60]}" for index, name in enumerate(run.sequences)}

    def render(self) -> str:
        sections = [
            ("scores", "Scores", self.scores()),
            ("per-frame", "J and F per frame", self.per_frame()),
            ("overlays", "Overlays", self.overlays()),
            ("worst", "Worst frame of each object", self.worst_frames()),
            ("timings", "Timings", self.timings()),
            ("config", "Configuration", self.config()),
        ]
        sections = [(anchor, title, body) for anchor, title, body in sections if body]
        frames = sum(len(names) for names in self.run.sequences.values())
        name = html.escape(self.run.root.resolve().name.removesuffix(PARTIAL_SUFFIX))  # the run's final name
        nav = "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title, _ in sections)
        content = "".join(f'<section id="{anchor}"><h2>{title}</h2>{body}</section>' for anchor, title, body in sections)
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>masktrack report: {name}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>masktrack report: {name}</h1>"
            f"<p>{len(self.run.sequences)} sequences, {frames} predicted frames</p></header>"
            f"<nav>{nav}</nav><main>{content}</main></body></html>\n"
        )

    def scores(self) -> str:
        parts = []
        scores = self.run.global_scores
        if scores:
            big = "".join(f"<div>{key}<b>{_fmt(scores[key])}</b></div>" for key in ("J&F-Mean", "J-Mean", "F-Mean") if key in scores)
            columns = [key for key in GLOBAL_COLUMNS if key in scores] + [key for key in scores if key not in GLOBAL_COLUMNS]
            parts.append(f'<div class="big">{big}</div>' + _table([html.escape(c) for c in columns], [[_fmt(scores[c]) for c in columns]]))
        if self.run.object_scores:
            rows = [
                [html.escape(sequence), f"{_swatch(object_id)}{object_id}", _fmt(j), _fmt(f), _fmt((j + f) / 2)]
                for sequence, object_id, j, f in self.run.object_scores
            ]
            parts.append("<h3>Per sequence and object</h3>" + _table(["Sequence", "Object", "J", "F", "J&amp;F"], rows))
        if self.run.object_plot is not None:
            shutil.copyfile(self.run.object_plot, self.assets / "jf_per_object.png")
            parts.append('<h3>Per object</h3><img src="jf_per_object.png" alt="J and F per object">')
        return "".join(parts)

    def per_frame(self) -> str:
        figures = []
        for sequence, scores in self.run.per_frame.items():
            if not scores:
                continue
            name = f"{self.slugs[sequence]}-frames.png"
            frame_plot(scores, self.assets / name)
            figures.append(f'<figure><img src="{name}" alt="J and F per frame of {html.escape(sequence)}"><figcaption>{html.escape(sequence)}</figcaption></figure>')
        return f'<div class="grid">{"".join(figures)}</div>' if figures else ""

    def overlays(self) -> str:
        figures = []
        sequences = tqdm(self.run.sequences.items(), desc="report", unit="seq", disable=not self.progress)
        for sequence, frames in sequences:
            slug, video = self.slugs[sequence], self.run.overlay_video(sequence)
            if video is not None:
                shutil.copyfile(video, self.assets / f"{slug}.mp4")
                fit_width(next(read_video_frames(video)), GIF_WIDTH).save(self.assets / f"{slug}-poster.png")
                media = (
                    f'<video src="{slug}.mp4" poster="{slug}-poster.png" controls muted loop playsinline'
                    f' preload="metadata" width="{GIF_WIDTH}"></video>'
                )
            else:
                step = -(-len(frames) // GIF_MAX_FRAMES)
                write_gif((self._rendered(sequence, frame) for frame in frames[::step]), self.assets / f"{slug}.gif", GIF_FRAME_MS * step)
                media = f'<img src="{slug}.gif" width="{GIF_WIDTH}" alt="predicted masks of {html.escape(sequence)}">'
            figures.append(f"<figure>{media}<figcaption>{html.escape(sequence)}: {len(frames)} frames</figcaption></figure>")
        note = "" if self.dataset else '<p class="note">Sequences without an overlay video show the predicted masks alone; pass the dataset (<code>--images</code>) to draw them over the frames.</p>'
        return note + f'<div class="grid">{"".join(figures)}</div>'

    def worst_frames(self) -> str:
        worst_per_object = [
            min((j, f, sequence, object_id, frame) for frame, j, f in zip(scores.frames, scores.j, scores.f) if not math.isnan(j))
            for sequence, objects in self.run.per_frame.items()
            for object_id, scores in objects.items()
            if any(not math.isnan(j) for j in scores.j)
        ]
        figures = []
        for rank, (j, f, sequence, object_id, frame) in enumerate(sorted(worst_per_object)[:WORST_FRAMES]):
            prediction = read_mask(self.run.prediction_path(sequence, frame)) == object_id
            image = self.dataset.image(sequence, frame, prediction.shape) if self.dataset else None
            truth = self.dataset.ground_truth(sequence, frame, prediction.shape) if self.dataset else None
            tiles = [render_labels(prediction.astype(np.uint8) * object_id, image)]
            if truth is not None:
                truth = truth == object_id
                tiles += [render_labels(truth.astype(np.uint8) * object_id, image), error_map(prediction, truth)]
            name = f"worst-{rank:02d}.png"
            write_panel(tiles, self.assets / name)
            label = f"{html.escape(sequence)}, {_swatch(object_id)}object {object_id}, frame {html.escape(frame)}: J {_fmt(j)}, F {_fmt(f)}"
            figures.append(f'<figure><img src="{name}" alt="worst frame {rank + 1}"><figcaption>{label}</figcaption></figure>')
        if not figures:
            return ""
        legend = (
            "Each panel: prediction, ground truth, errors (green hit, red false positive, blue missed)."
            if self.dataset
            else "Predicted mask of the object (pass <code>--images</code> for frames and ground-truth comparison)."
        )
        return f'<p class="note">{legend}</p><div class="grid">{"".join(figures)}</div>'

    def timings(self) -> str:
        timings = self.run.timings
        if timings is None:
            return ""
        rows = []
        for sequence, values in timings["sequences"].items():
            frames, finetune, propagate = values["frames"], values["finetune_s"], values["propagate_s"]
            fps = frames / propagate if propagate > 0 else math.nan
            rows.append([html.escape(sequence), _fmt(frames, 0), _fmt(finetune, 1), _fmt(propagate, 1), _fmt(fps, 2)])
        summary = f"Device: <b>{html.escape(timings['device'])}</b>; total {_fmt(timings['total_s'], 1)} s."
        return f"<p>{summary}</p>" + _table(["Sequence", "Frames", "Fine-tune (s)", "Propagate (s)", "Propagate (frames/s)"], rows)

    def config(self) -> str:
        return f"<pre>{html.escape(self.run.config_text)}</pre>" if self.run.config_text else ""

    def _rendered(self, sequence: str, frame: str) -> np.ndarray:
        labels = read_mask(self.run.prediction_path(sequence, frame))
        image = self.dataset.image(sequence, frame, labels.shape) if self.dataset else None
        return render_labels(labels, image)
