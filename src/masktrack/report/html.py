"""The HTML report of a segmentation run: objects, frames, scores, plots, overlays, worst frames, timings, settings.

The page and its assets (PNG, GIF, MP4) are written to one folder (``<run>/report`` by default), with a
marker file that lets a later report replace it; the page loads nothing from outside that folder.
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
    area_plot,
    error_map,
    fit_width,
    frame_plot,
    render_labels,
    write_gif,
    write_panel,
)
from masktrack.report.frames import RenderedFrames, object_areas
from masktrack.report.run import Run, read_run
from masktrack.report.settings import RunSettings, format_value, read_settings

MARKER = ".masktrack-report"  # written into every report folder: only such a folder is ever replaced
WORST_FRAMES = 8
STRIP_FRAMES = 8
STRIP_WIDTH = 160
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
details summary { cursor: pointer; color: #24528f; margin: 10px 0 4px; }
"""


def write_report(run_dir: Path, out_dir: Path | None = None, images_root: Path | None = None, progress: bool = False) -> Path:
    """Write ``index.html`` and its assets for the run folder ``run_dir``; return the page's path.

    ``out_dir`` defaults to ``<run_dir>/report``; an existing folder there is replaced only if a report wrote it
    (it holds the ``MARKER`` file), never a folder of the user's. ``images_root``: a DAVIS-layout dataset with the
    run's input frames and ground truth; without it, masks are drawn over the input that ``config.yaml`` records
    (when it is still there) or else on black, and there is no ground-truth comparison.
    """
    run = read_run(Path(run_dir))
    out_dir = Path(out_dir) if out_dir is not None else run.root / "report"
    if out_dir.exists() and not (out_dir / MARKER).is_file():
        raise InputError(f"{out_dir}: exists and is not a folder that masktrack report wrote; choose another output folder")
    dataset = DatasetFrames(images_root) if images_root is not None else None
    with atomic_output_dir(out_dir, overwrite=True) as assets:
        page = _Page(run, dataset, assets, progress)
        (assets / "index.html").write_text(page.render(), encoding="utf-8")
        (assets / MARKER).write_text("written by masktrack report; a new report replaces this folder\n", encoding="utf-8")
    return out_dir / "index.html"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


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
        self.settings: RunSettings | None = read_settings(run.config_text) if run.config_text else None
        self.frames = RenderedFrames(run, dataset, self.settings.input if self.settings else None)
        self.areas = {sequence: object_areas(run, sequence) for sequence in run.sequences}

    def render(self) -> str:
        sections = [
            ("scores", "Scores", self.scores()),
            ("objects", "Objects", self.objects()),
            ("frames", "Frames", self.strips()),
            ("per-frame", "J and F per frame", self.per_frame()),
            ("overlays", "Overlays", self.overlays()),
            ("worst", "Worst frame of each object", self.worst_frames()),
            ("timings", "Timings", self.timings()),
            ("settings", "Settings", self.config()),
        ]
        sections = [(anchor, title, body) for anchor, title, body in sections if body]
        frames = sum(len(names) for names in self.run.sequences.values())
        objects = sum(len(areas) for areas in self.areas.values())
        name = html.escape(self.run.root.resolve().name.removesuffix(PARTIAL_SUFFIX))  # the run's final name
        nav = "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title, _ in sections)
        content = "".join(f'<section id="{anchor}"><h2>{title}</h2>{body}</section>' for anchor, title, body in sections)
        summary = f"{_count(len(self.run.sequences), 'sequence')}, {_count(frames, 'predicted frame')}, {_count(objects, 'object')} tracked"
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>masktrack report: {name}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>masktrack report: {name}</h1><p>{summary}</p></header>"
            f"<nav>{nav}</nav><main>{content}</main></body></html>\n"
        )

    def objects(self) -> str:
        """A legend of the objects' colours with where each is seen, and each object's area per frame."""
        rows, figures = [], []
        for sequence, areas in self.areas.items():
            frames = self.run.sequences[sequence]
            for object_id, values in areas.items():
                seen = [index for index, area in enumerate(values) if area > 0]
                rows.append([html.escape(sequence), f"{_swatch(object_id)}object {object_id}", f"{len(seen)} of {len(frames)}",
                             html.escape(frames[seen[0]]), html.escape(frames[seen[-1]]), f"{100 * max(values):.1f}%"])
            if areas:
                name = f"{self.slugs[sequence]}-areas.png"
                area_plot(areas, self.assets / name)
                figures.append(f'<figure><img src="{name}" alt="area of each object per frame of {html.escape(sequence)}">'
                               f"<figcaption>{html.escape(sequence)}: each object's area per frame; a drop to 0 means "
                               "the object was lost (or left the frame)</figcaption></figure>")
        if not rows:
            return '<p class="note">No object was predicted in any frame.</p>'
        table = _table(["Sequence", "Object", "In frames", "First", "Last", "Largest area"], rows)
        return table + f'<div class="grid">{"".join(figures)}</div>'

    def strips(self) -> str:
        """Every Nth frame of each sequence with its predicted masks."""
        figures = []
        for sequence, frames in self.run.sequences.items():
            step = -(-len(frames) // STRIP_FRAMES)
            picked = frames[::step]
            name = f"{self.slugs[sequence]}-strip.png"
            write_panel(self.frames.rendered(sequence, picked), self.assets / name, STRIP_WIDTH)
            caption = f"{html.escape(sequence)}: one frame in {step} ({html.escape(', '.join(picked))})"
            if not self.frames.has_frames(sequence):
                caption += " (masks alone: the input frames were not found)"
            figures.append(f'<figure><img src="{name}" alt="frames of {html.escape(sequence)}"><figcaption>{caption}</figcaption></figure>')
        return "".join(figures)

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
        figures, on_black = [], []
        sequences = tqdm(self.run.sequences.items(), desc="report", unit="seq", disable=not self.progress, leave=False)
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
                write_gif(self.frames.rendered(sequence, frames[::step]), self.assets / f"{slug}.gif", GIF_FRAME_MS * step)
                media = f'<img src="{slug}.gif" width="{GIF_WIDTH}" alt="predicted masks of {html.escape(sequence)}">'
                if not self.frames.has_frames(sequence):
                    on_black.append(html.escape(sequence))
            figures.append(f"<figure>{media}<figcaption>{html.escape(sequence)}: {_count(len(frames), 'frame')}</figcaption></figure>")
        note = (f'<p class="note">Predicted masks alone (the input frames were not found) for {", ".join(on_black)}; '
                "pass the dataset (<code>--images</code>) or segment with <code>--overlay</code> to draw them over the frames.</p>"
                if on_black else "")
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
        """The settings that differ from the preset, what was run, and the whole ``config.yaml`` folded away."""
        text = self.run.config_text
        if not text:
            return ""
        full = f"<details><summary>config.yaml</summary><pre>{html.escape(text)}</pre></details>"
        settings = self.settings
        if settings is None:
            return '<p class="note">config.yaml is not a settings file of this masktrack version.</p>' + full
        preset = html.escape(settings.preset)
        if settings.changed:
            rows = [[html.escape(key), html.escape(format_value(value)), html.escape(format_value(before))]
                    for key, value, before in settings.changed]
            changes = f"<p>Settings that differ from the preset <b>{preset}</b>:</p>" + _table(["Setting", "This run", preset], rows)
        else:
            changes = f"<p>The preset <b>{preset}</b>, unchanged.</p>"
        shown = {key: value for key, value in settings.run.items() if key in ("input", "mask", "weights", "device") and value}
        run = "; ".join(f"{key} <code>{html.escape(format_value(value))}</code>" for key, value in shown.items())
        return changes + (f'<p class="note">Run: {run}.</p>' if run else "") + full

