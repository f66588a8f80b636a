"""Segment one sequence of a run: fine-tune on its given masks, propagate, write its outputs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from tqdm import tqdm

from masktrack.api.predictor import Predictor
from masktrack.app.outputs import SequenceTiming, SequenceWriter
from masktrack.data.masks import object_ids
from masktrack.data.sources import Sequence, first_appearances

DEFAULT_FPS = 24.0
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}"  # mixed units: no count, no rate


def segment_sequence(predictor: Predictor, sequence: Sequence, run_dir: Path, overlay: bool = False,
                     save_probabilities: bool = False, progress: bool | tqdm = True,
                     appearances: Mapping[int, np.ndarray] | None = None) -> SequenceTiming:
    """Fine-tune ``predictor``'s parents on ``sequence``'s given masks, propagate, write ``run_dir/<name>/``.

    ``progress``: True shows this sequence's bar, False none; a bar from :func:`progress_bar` (a run's) is advanced.
    ``appearances``: the sequence's first appearances when already read.
    """
    appearances = first_appearances(sequence, first_frame_only=False) if appearances is None else appearances
    own = progress is True
    bar = progress_bar(predictor, [(sequence, appearances)]) if own else None if progress is False else progress
    with bar if own else nullcontext():
        start = time.perf_counter()
        objects = len(_objects(appearances))
        _show(bar, f"{sequence.name}: fine-tuning {objects} object{'s' if objects != 1 else ''}")
        networks = predictor.finetune(sequence, appearances, None if bar is None else bar.update)
        finetune_s = time.perf_counter() - start
        start = time.perf_counter()
        fps = getattr(sequence, "fps", None) or DEFAULT_FPS
        writer = SequenceWriter(run_dir, sequence.name, list(sequence.frame_names), fps if overlay else None, save_probabilities)
        frames = 0
        with writer:
            for result in predictor.propagate(sequence, appearances, networks):
                writer.write(result)
                frames += 1
                _show(bar, f"{sequence.name}: frame {frames}/{len(sequence)}", advance=1)
    return SequenceTiming(frames=frames, finetune_s=round(finetune_s, 3), propagate_s=round(time.perf_counter() - start, 3))


def segment_sequences(predictor: Predictor, sequences: Iterable[Sequence], run_dir: Path, overlay: bool = False,
                      save_probabilities: bool = False, progress: bool = True) -> dict[str, SequenceTiming]:
    """:func:`segment_sequence` each of ``sequences`` in turn, under one progress bar for them all; their timings."""
    given = [(sequence, first_appearances(sequence)) for sequence in sequences]  # each sequence's masks read once
    bar = progress_bar(predictor, given) if progress else None
    with bar if bar is not None else nullcontext():
        return {sequence.name: segment_sequence(predictor, sequence, run_dir, overlay, save_probabilities,
                                                False if bar is None else bar, appearances) for sequence, appearances in given}


def progress_bar(predictor: Predictor, sequences: Iterable[tuple[Sequence, Mapping[int, np.ndarray]]]) -> tqdm:
    """One bar with an ETA over ``(sequence, first appearances)`` pairs: it counts every fine-tuning step (of every
    object, parent and stream) and every frame as one unit each; its postfix names the sequence and the stage."""
    total = sum(predictor.finetune_steps(len(_objects(appearances))) + len(sequence) for sequence, appearances in sequences)
    return tqdm(total=total, desc="segment", bar_format=BAR_FORMAT, dynamic_ncols=True)


def _objects(appearances: Mapping[int, np.ndarray]) -> set[int]:
    return {object_id for labels in appearances.values() for object_id in object_ids(labels)}


def _show(bar: tqdm | None, stage: str, advance: int = 0) -> None:
    if bar is not None:
        bar.set_postfix_str(stage, refresh=False)
        bar.update(advance)
