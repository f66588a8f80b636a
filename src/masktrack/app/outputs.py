"""Run-folder outputs of `masktrack segment`, written as frames stream by.

Layout of a run folder ``OUT``::

    OUT/<seq>/<frame>.png                 DAVIS palette label mask per frame
    OUT/overlays/<seq>.mp4                overlay video (when requested)
    OUT/probabilities/<seq>/<frame>.npz   per-object probabilities, uint8-quantised (when requested)
    OUT/timings.json                      device, per-sequence frames / fine-tune / propagate seconds
    OUT/submission.zip                    CodaLab-ready ``<seq>/<frame>.png`` entries (when requested)
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from masktrack.atomic import atomic_file
from masktrack.data.masks import write_mask
from masktrack.data.video import VideoWriter, overlay
from masktrack.propagate.propagate import FrameResult

SUBMISSION_ZIP = "submission.zip"
TIMINGS_JSON = "timings.json"


@dataclass
class SequenceTiming:
    """Wall-clock seconds spent on one sequence."""

    frames: int
    finetune_s: float
    propagate_s: float


class SequenceWriter:
    """Write one sequence's results frame by frame into a run folder (a context manager)."""

    def __init__(
        self,
        run_dir: Path,
        sequence: str,
        frame_names: list[str],
        overlay_fps: float | None = None,
        save_probabilities: bool = False,
    ) -> None:
        self.mask_dir = run_dir / sequence
        self.frame_names = frame_names
        self.probability_dir = run_dir / "probabilities" / sequence if save_probabilities else None
        self.overlay_path = run_dir / "overlays" / f"{sequence}.mp4" if overlay_fps else None
        self.overlay_fps = overlay_fps
        self._stack = ExitStack()
        self._video: VideoWriter | None = None

    def __enter__(self) -> SequenceWriter:
        self.mask_dir.mkdir(parents=True, exist_ok=True)
        if self.probability_dir is not None:
            self.probability_dir.mkdir(parents=True, exist_ok=True)
        if self.overlay_path is not None:
            self.overlay_path.parent.mkdir(parents=True, exist_ok=True)
            self._video = self._stack.enter_context(VideoWriter(self.overlay_path, self.overlay_fps))
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.__exit__(*exc_info)

    def write(self, result: FrameResult) -> None:
        name = self.frame_names[result.index]
        write_mask(self.mask_dir / f"{name}.png", result.labels)
        if self.probability_dir is not None:
            ids = sorted(result.probabilities)
            quantised = np.stack([quantise(result.probabilities[i].cpu().numpy()) for i in ids]) if ids else np.zeros((0, *result.labels.shape), np.uint8)
            np.savez_compressed(self.probability_dir / f"{name}.npz", ids=np.asarray(ids, dtype=np.int32), probabilities=quantised)
        if self._video is not None:
            self._video.write(overlay(result.image, result.labels))


def quantise(probability: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as uint8 (0..255)."""
    return np.clip(np.rint(probability * 255.0), 0, 255).astype(np.uint8)


def write_timings(path: Path, device: str, sequences: dict[str, SequenceTiming], total_s: float) -> None:
    """``timings.json``: ``{"device", "sequences": {seq: {frames, finetune_s, propagate_s}}, "total_s"}``."""
    payload = {"device": device, "sequences": {name: asdict(timing) for name, timing in sequences.items()}, "total_s": total_s}
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2) + "\n")


def write_submission_zip(run_dir: Path, sequences: Iterable[str], path: Path | None = None) -> Path:
    """Zip the label masks of ``sequences`` as ``<seq>/<frame>.png`` entries (CodaLab layout)."""
    path = path or run_dir / SUBMISSION_ZIP
    with atomic_file(path) as temporary, zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for sequence in sequences:
            for mask in sorted((run_dir / sequence).glob("*.png")):
                archive.write(mask, f"{sequence}/{mask.name}")
    return path
