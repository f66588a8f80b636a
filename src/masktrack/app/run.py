"""A `masktrack segment` run folder: its inputs, its sequences' outputs, and the files that finish it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from masktrack.api.config import SegmentConfig
from masktrack.api.predictor import Predictor
from masktrack.app.outputs import write_submission_zip, write_timings
from masktrack.app.pipeline import segment_sequences
from masktrack.atomic import atomic_file
from masktrack.data.sources import Sequence, open_davis, open_input, open_youtube_vos
from masktrack.devices import device_name
from masktrack.distributed import Ranks, shared_output_dir
from masktrack.errors import InputError
from masktrack.settings import plain

if TYPE_CHECKING:
    from masktrack.evaluate import EvaluationResult

CONFIG_YAML = "config.yaml"


def open_sequences(
    input_path: Path | None,
    masks: list[Path],
    davis: Path | None,
    youtube_vos: Path | None,
    split: str | None,
    names: list[str] | None,
    allow_truncated: bool = False,
    need_masks: bool = True,
) -> list[Sequence]:
    """The sequences to segment: one input with its masks, or (part of) a dataset split. ``allow_truncated``: keep
    the frames that decode of a truncated or damaged video file (``masktrack.data.sources.VideoSequence``);
    ``need_masks``: False when the input's masks come later (proposed from boxes)."""
    if sum(source is not None for source in (input_path, davis, youtube_vos)) != 1:
        raise InputError("give exactly one input: INPUT (with --mask), --davis ROOT or --youtube-vos ROOT")
    if input_path is not None:
        if split or names:
            raise InputError("--split and --sequences apply to --davis / --youtube-vos only")
        sequences = open_input(input_path, masks, allow_truncated)
        unmasked = [sequence.name for sequence in sequences if not sequence.annotation_files]
        if need_masks and unmasked:
            raise InputError(f"{input_path}: no mask for {', '.join(unmasked)}: pass --mask FIRST_FRAME.png (a palette, binary "
                             "or colour-coded PNG of the objects in the first frame) or --box X,Y,W,H")
        if not need_masks and len(sequences) != 1:
            raise InputError(f"{input_path}: --box gives the objects of one video or frame folder; it holds {len(sequences)}")
        return sequences
    if masks:
        raise InputError("--mask applies to a single INPUT only; dataset splits bring their own masks")
    if not split:
        raise InputError("--davis / --youtube-vos need --split (e.g. val, valid)")
    if davis is not None:
        sequences = open_davis(davis, split=split, sequences=names)
    else:
        sequences = open_youtube_vos(youtube_vos, split, sequences=names)
    if not sequences:
        raise InputError(f"{davis or youtube_vos}: split {split} has no sequences")
    return sequences


@dataclass(frozen=True)
class RunOutputs:
    """The optional files of a run folder."""

    overlay: bool = False  # OUT/overlays/<seq>.mp4
    probabilities: bool = False  # OUT/probabilities/<seq>/<frame>.npz
    submission_zip: bool = False  # OUT/submission.zip
    report: bool = True  # OUT/report/index.html


def segment_run(
    predictor: Predictor,
    sequences: SequenceOf[Sequence],
    out: Path,
    record: dict[str, Any],
    outputs: RunOutputs = RunOutputs(),
    overwrite: bool = False,
    ranks: Ranks = Ranks(),
    images_root: Path | None = None,
    progress: bool = True,
    start: float | None = None,
) -> EvaluationResult | None:
    """Segment ``sequences`` with ``predictor`` into the atomic run folder ``out`` (sharded over ``ranks``), then
    finish it.

    ``record``: what was run, for ``config.yaml``; ``images_root``: a DAVIS-layout dataset holding the input frames,
    shown in the report; ``start``: the run's ``time.perf_counter()`` start (default: now). Returns the evaluation
    on rank 0 when every frame has ground truth, else None.
    """
    start = time.perf_counter() if start is None else start
    evaluation = None
    with shared_output_dir(out, overwrite, ranks) as run_dir:
        results = ranks.run_everywhere(lambda: segment_sequences(
            predictor, ranks.shard(sequences), run_dir, outputs.overlay, outputs.probabilities, progress))
        if ranks.is_main:
            timings = {name: timing for result in results for name, timing in result.items()}
            write_timings(run_dir / "timings.json", device_name(predictor.device), {s.name: timings[s.name] for s in sequences},
                          round(time.perf_counter() - start, 3))
            write_run_config(run_dir / CONFIG_YAML, predictor.settings, record, predictor.device)
            evaluation = finish_run(run_dir, sequences, outputs, images_root, progress)
    return evaluation


def finish_run(run_dir: Path, sequences: SequenceOf[Sequence], outputs: RunOutputs, images_root: Path | None = None,
               progress: bool = True) -> EvaluationResult | None:
    """Evaluation (when every frame has ground truth), CodaLab zip and report; the evaluation, or None."""
    names = [sequence.name for sequence in sequences]
    ground_truth = ground_truth_root(sequences)
    evaluation = None
    if ground_truth is not None:
        from masktrack.evaluate import evaluate_dataset, write_results

        evaluation = evaluate_dataset(ground_truth, run_dir, sequences=names, progress=progress)
        write_results(evaluation, run_dir / "eval")
    if outputs.submission_zip:
        write_submission_zip(run_dir, names)
    if outputs.report:
        from masktrack.report import write_report

        write_report(run_dir, images_root=images_root)
    return evaluation


def copy_overlay(source: Path, path: Path) -> None:
    """Copy an overlay video to the user's ``--overlay FILE`` (atomically)."""
    with atomic_file(path) as temporary:
        shutil.copyfile(source, temporary)


def write_run_config(path: Path, config: SegmentConfig, record: dict[str, Any], device: str) -> None:
    """``config.yaml``: the settings (reusable with ``--config``) and, under ``run:``, what was run (the options
    given: those left unset or off are not recorded)."""
    run = {key: plain(value) for key, value in record.items()
           if key not in ("run", "func") and value is not None and value is not False}
    run["mask"] = run.get("mask") or []
    run["device"] = device
    with atomic_file(path) as temporary:
        temporary.write_text(yaml.safe_dump({**config.to_dict(), "run": run}, sort_keys=False))


def ground_truth_root(sequences: SequenceOf[Sequence]) -> Path | None:
    """The dataset's annotation root when every frame of every sequence has ground truth, else None.

    That is the DAVIS/YouTube-VOS layout ``<root>/<seq>/<frame>.png`` with a mask for every frame.
    """
    roots = set()
    for sequence in sequences:
        files = sequence.annotation_files
        if len(files) != len(sequence) or any(path.parent.name != sequence.name for path in files.values()):
            return None
        roots.update(path.parent.parent for path in files.values())
    return roots.pop() if len(roots) == 1 else None
