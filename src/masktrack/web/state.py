"""The one open video, its prompts, the last run's masks (palette PNGs in the run folder) and the job."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.data.masks import davis_palette, read_mask, write_mask
from masktrack.errors import InputError
from masktrack.web.frames import Frames
from masktrack.web.job import Busy, Job, Progress
from masktrack.web.prompts import FramePrompt, frame_labels

PALETTE_COLOURS = 256


class Workspace:
    """What the page works on: ``predictor`` (a :class:`masktrack.Predictor`) segments the open video; each
    frame's labels of the latest run are ``run_dir/masks/<frame>.png``, so that a correction at frame k
    rewrites frames k.. only."""

    def __init__(self, predictor: Any, run_dir: Path, max_upload: int = 500 * 2**20) -> None:
        self.predictor, self.run_dir, self.max_upload = predictor, Path(run_dir), max_upload
        self.masks_dir = self.run_dir / "masks"
        self.job = Job()
        self.lock = threading.RLock()
        self.frames: Frames | None = None
        self.session: Any = None
        self.source: Path | None = None
        self.pending: dict[int, np.ndarray] = {}  # frame -> labels proposed, added to the session by the next run
        self.given: set[int] = set()  # frames whose masks the session was given
        self.results: set[int] = set()  # frames with a mask of the latest runs
        self.areas: dict[int, dict[int, float]] = {}  # frame -> object -> fraction of the frame
        self.version = 0  # changes whenever a frame's labels may have changed
        self._exact: tuple[int, Any, np.ndarray] | None = None
        self.uploads = 0  # uploads so far: each is saved under a new fixed name

    def open(self, path: Path) -> None:
        """Open a video file or frame folder (InputError when it cannot be read); forgets the previous one."""
        self.check_idle()
        frames = Frames(path)
        session = self.predictor.session(path)
        if session.frame_count != len(frames):
            raise InputError(f"{path}: {len(frames)} frames decode, the session counts {session.frame_count}")
        with self.lock:
            self.check_idle()
            self.frames, self.session, self.source = frames, session, Path(path)
            self.pending, self.given, self.results, self.areas = {}, set(), set(), {}
            self.version += 1
            self.masks_dir.mkdir(parents=True, exist_ok=True)
            for old in self.masks_dir.glob("[0-9][0-9][0-9][0-9][0-9].png"):
                old.unlink()

    def check_idle(self) -> None:
        """Busy (HTTP 409) while a segmentation runs."""
        if self.job.running:
            raise Busy("a segmentation is already running: wait for it to finish, then try again")

    def require_video(self) -> Frames:
        """The open video's frames; LookupError (HTTP 404) when none is open."""
        if self.frames is None:
            raise LookupError("no video is open")
        return self.frames

    def check_index(self, index: int) -> None:
        """LookupError (HTTP 404) unless ``index`` is a frame of the open video."""
        if not 0 <= index < len(self.require_video()):
            raise LookupError(f"frame {index} is not in the video")

    def info(self) -> dict[str, Any]:
        """The page's view of the state: the video, the frames with prompts and masks, the objects, the job."""
        with self.lock:
            frames = self.frames
            objects = sorted({o for areas in self.areas.values() for o in areas}
                             | {int(o) for labels in self.pending.values() for o in np.unique(labels) if o})
            video = None if frames is None else {
                "name": frames.name, "frames": len(frames), "width": frames.width, "height": frames.height,
                "fps": frames.fps}
            return {"video": video, "version": self.version, "pending": sorted(self.pending), "given": sorted(self.given),
                    "results": sorted(self.results), "objects": objects, "job": self.job.progress.as_dict(),
                    "areas": {str(i): {str(o): round(a, 5) for o, a in areas.items()} for i, areas in self.areas.items()},
                    "palette": davis_palette()[:PALETTE_COLOURS].tolist(), "max_upload": self.max_upload}

    def labels(self, index: int) -> np.ndarray | None:
        """Frame ``index``'s labels: its proposal if it has one, else the latest run's mask, else None."""
        self.check_index(index)
        with self.lock:
            if index in self.pending:
                return self.pending[index]
            if index not in self.results:
                return None
        return read_mask(self.mask_path(index))

    def result(self, index: int) -> np.ndarray:
        """Frame ``index``'s mask of the latest runs (no object where no run reached)."""
        frames = self.require_video()
        if index in self.results:
            return read_mask(self.mask_path(index))
        return np.zeros((frames.height, frames.width), np.uint8)

    def results_of_all_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame, labels)`` of every frame for the exports; LookupError when nothing was segmented yet."""
        self.check_idle()
        if not self.results:
            raise LookupError("nothing to export yet: run a segmentation first")
        for index in range(len(self.require_video())):
            yield index, self.result(index)

    def mask_path(self, index: int) -> Path:
        return self.masks_dir / f"{index:05d}.png"

    def propose(self, index: int, prompts: list[FramePrompt]) -> dict[str, Any]:
        """Frame ``index``'s labels from the prompts over its current mask; no prompts drop its proposal."""
        self.check_idle()
        self.check_index(index)
        if not prompts:
            return self.clear(index)
        with self.lock:
            base = self.result(index)
        frame = self.exact_frame(index)
        labels = frame_labels(frame, base, prompts, self.predictor.propose)
        with self.lock:
            self.pending[index] = labels
            self.version += 1
        present = [int(o) for o in np.unique(labels) if o]
        return {"frame": index, "objects": present, "version": self.version}

    def exact_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as the session decodes it (the last one is kept: prompts come frame by frame)."""
        cached = self._exact
        if cached is None or cached[0] != index or cached[1] is not self.session:
            cached = self._exact = (index, self.session, self.session.read_frame(index))
        return cached[2]

    def clear(self, index: int) -> dict[str, Any]:
        """Drop frame ``index``'s proposal (its mask of the latest run shows again)."""
        self.check_idle()
        self.check_index(index)
        with self.lock:
            self.pending.pop(index, None)
            self.version += 1
        return {"frame": index, "objects": [], "version": self.version}

    def run(self) -> dict[str, Any]:
        """Give the session the proposed masks and propagate from the earliest in the background (Busy while
        a run is going on; InputError when no frame has a proposal)."""
        with self.lock:  # held until the job has started: one run at a time
            self.check_idle()
            if self.session is None:
                raise InputError("open a video first")
            if not self.pending:
                raise InputError("nothing to segment: draw a box, click or brush an object on a frame first")
            pending = dict(sorted(self.pending.items()))
            if not self.given and not any(labels.any() for labels in pending.values()):
                raise InputError("the proposed masks are empty: draw an object first")
            for index, labels in pending.items():
                self.session.add_mask(index, labels)
            self.given.update(pending)
            self.pending = {}
            first = min(pending)
            frames, steps = len(self.require_video()) - first, self.session.finetune_steps_pending()
            self.job.start(self._propagate, steps, frames)
        return {"first": first, "frames": frames, "steps": steps}

    def _propagate(self, progress: Progress) -> None:
        """The job: fine-tune, then write each propagated frame's mask as it comes."""
        def step() -> None:
            progress.done = min(progress.done + 1, progress.total - 1)

        for index, labels in self.session.propagate(on_step=step):
            progress.stage = "segmenting"
            path = self.mask_path(index)
            temporary = path.with_name(f".{path.name}.partial")
            write_mask(temporary, labels)
            os.replace(temporary, path)
            counts = np.bincount(labels.ravel(), minlength=1)
            with self.lock:
                self.results.add(index)
                self.areas[index] = {int(o): float(counts[o]) / labels.size for o in np.flatnonzero(counts) if o}
                self.version += 1
            progress.frames.append(index)
            progress.done = min(progress.steps + len(progress.frames), progress.total)
        progress.done = progress.total
        progress.message = f"segmented frames {progress.frames[0]}-{progress.frames[-1]}" if progress.frames else ""
