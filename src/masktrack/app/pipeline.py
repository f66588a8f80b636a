"""Segment one sequence of a run: fine-tune on its given masks, propagate, write its outputs."""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from masktrack.api.predictor import Predictor
from masktrack.app.outputs import SequenceTiming, SequenceWriter
from masktrack.data.sources import Sequence, first_appearances

DEFAULT_FPS = 24.0


def segment_sequence(predictor: Predictor, sequence: Sequence, run_dir: Path, overlay: bool = False,
                     save_probabilities: bool = False, progress: bool = True) -> SequenceTiming:
    """Fine-tune ``predictor``'s parents on ``sequence``'s given masks, propagate, write ``run_dir/<name>/``."""
    appearances = first_appearances(sequence, first_frame_only=False)
    start = time.perf_counter()
    networks = predictor.finetune(sequence, appearances)
    finetune_s = time.perf_counter() - start
    start = time.perf_counter()
    fps = getattr(sequence, "fps", None) or DEFAULT_FPS
    writer = SequenceWriter(run_dir, sequence.name, list(sequence.frame_names), fps if overlay else None, save_probabilities)
    frames = 0
    with writer:
        results = predictor.propagate(sequence, appearances, networks)
        for result in tqdm(results, total=len(sequence), desc=f"segment {sequence.name}", unit="frame", disable=not progress, leave=False):
            writer.write(result)
            frames += 1
    return SequenceTiming(frames=frames, finetune_s=round(finetune_s, 3), propagate_s=round(time.perf_counter() - start, 3))
