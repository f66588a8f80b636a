"""`masktrack segment --box`: the given masks of a single input proposed from boxes and clicks."""

from __future__ import annotations

from pathlib import Path

from masktrack.api.predictor import Predictor
from masktrack.data.masks import write_mask
from masktrack.data.sources import Sequence
from masktrack.errors import InputError
from masktrack.prompt import ObjectPrompt


def propose_given_masks(predictor: Predictor, sequence: Sequence, prompts: dict[int, list[ObjectPrompt]], folder: Path) -> None:
    """Propose a mask on each prompted frame of ``sequence``, write it to ``folder/<frame>.png`` and make it that
    frame's given mask."""
    outside = [index for index in prompts if not 0 <= index < len(sequence)]
    if outside:
        raise InputError(f"{sequence.name}: --box/--point frame {outside[0]} is not one of its {len(sequence)} frames")
    for index, frame_prompts in sorted(prompts.items()):
        labels = predictor.propose(sequence.read_frame(index), frame_prompts)
        empty = sorted({prompt.object_id for prompt in frame_prompts} - {int(i) for i in set(labels.flat)})
        if empty:
            raise InputError(f"{sequence.name}: no pixel proposed for object {empty[0]} on frame {index}: "
                             "check its box, or add a positive click (--point ID:X,Y)")
        path = folder / f"{sequence.frame_names[index]}.png"
        write_mask(path, labels)
        sequence.annotation_files[index] = path
    sequence.annotation_files = dict(sorted(sequence.annotation_files.items()))
