"""A `masktrack segment` run: inputs, parent model, device, and the files that finish a run folder."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence as SequenceOf
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from masktrack.atomic import atomic_file
from masktrack.augment.transforms import AugmentConfig
from masktrack.data.sources import Sequence, open_davis, open_input, open_youtube_vos
from masktrack.errors import InputError
from masktrack.model.checkpoint import load_checkpoint
from masktrack.propagate.distributed import Ranks, shared_output_dir
from masktrack.propagate.outputs import SequenceTiming, write_submission_zip, write_timings
from masktrack.propagate.pipeline import SegmentConfig, segment_sequence
from masktrack.settings import load_yaml, merge, plain

if TYPE_CHECKING:
    from masktrack.evaluate import EvaluationResult
    from masktrack.train.config import TrainConfig

SHIPPED_WEIGHTS = "weights/default.safetensors"  # package data of masktrack
ZOOM_FILL = 0.6  # --zoom: small objects are zoomed until their box spans this fraction of the view
# What `masktrack segment` runs unless its --config or flags say otherwise (with --zoom, on by default): the DAVIS 2016
# benchmark's settings that cost no more than plain MaskTrack's. On DAVIS 2016 val with the shipped model they score
# J&F 0.691 against 0.606 for the settings classes' own defaults, in about the same time (docs/accuracy.md).
RECOMMENDED_SETTINGS: dict[str, Any] = {
    "finetune": {"lovasz_weight": 1.0},
    "propagate": {"dilate_previous": 10.0, "threshold": 0.4},
}
CONFIG_YAML = "config.yaml"


def segment_config(path: Path | None, steps: int | None, mode: str | None, size: int | None, flip: bool = False,
                   flow: bool = False, amp: bool = False, base: dict[str, Any] | None = None) -> SegmentConfig:
    """Settings from ``base`` updated by a YAML file (else the settings classes' defaults), then the command-line overrides."""
    values = merge(base or {}, load_yaml(path) if path is not None else {})
    config = SegmentConfig.from_dict(values, source=str(path or "settings"))
    if steps is not None:
        if steps < 0:
            raise InputError(f"--finetune-steps must be >= 0, got {steps}")
        config.finetune.steps = steps
    if mode is not None:
        config.finetune.mode = mode
    if size is not None:
        if size < 16:
            raise InputError(f"--size must be at least 16 pixels, got {size}")
        config.finetune.size = config.propagate.size = size
    if flip:
        config.propagate.flip = True
    if flow:
        config.propagate.flow = True
    if amp:
        config.finetune.amp = config.propagate.amp = True
    return config


def choose_device(name: str | None) -> str:
    """``name``, or CUDA when available else CPU; an unavailable CUDA device is an input error."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"--device {name}: expected cpu, cuda or cuda:N")
    return name


def set_threads(threads: int | None, world_size: int, device: str) -> None:
    """CPU threads: ``threads`` if given, else this machine's cores shared by the ``world_size`` processes."""
    if device != "cpu":
        return
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // world_size)
    if threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def device_name(device: str) -> str:
    """A human-readable device description for timings."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({torch.get_num_threads()} threads)"


def open_sequences(
    input_path: Path | None,
    masks: list[Path],
    davis: Path | None,
    youtube_vos: Path | None,
    split: str | None,
    names: list[str] | None,
) -> list[Sequence]:
    """The sequences to segment: one input with its masks, or (part of) a dataset split."""
    if sum(source is not None for source in (input_path, davis, youtube_vos)) != 1:
        raise InputError("give exactly one input: INPUT (with --mask), --davis ROOT or --youtube-vos ROOT")
    if input_path is not None:
        if split or names:
            raise InputError("--split and --sequences apply to --davis / --youtube-vos only")
        return open_input(input_path, masks)
    if masks:
        raise InputError("--mask applies to a single INPUT only; dataset splits bring their own masks")
    if not split:
        raise InputError("--davis / --youtube-vos need --split (e.g. val, valid)")
    if davis is not None:
        sequences = open_davis(davis, split=split, sequences=names)
    else:
        sequences = open_youtube_vos(youtube_vos, split)
        if names:
            missing = sorted(set(names) - {s.name for s in sequences})
            if missing:
                raise InputError(f"{youtube_vos}: no sequence(s) {', '.join(missing)} in split {split}")
            sequences = [s for s in sequences if s.name in names]
    if not sequences:
        raise InputError(f"{davis or youtube_vos}: split {split} has no sequences")
    return sequences


def shipped_model() -> Path | None:
    """The shipped parent model (package data), or None when this install has none."""
    shipped = resources.files("masktrack").joinpath(SHIPPED_WEIGHTS)
    return Path(str(shipped)) if shipped.is_file() else None


def load_parents(weights: SequenceOf[Path] | None, device: str) -> tuple[list[torch.nn.Module], list[dict[str, Any]]]:
    """The parent networks from ``weights`` (or the shipped model), and each one's metadata.

    Several parents run as an ensemble; `masktrack segment` fine-tunes them all with the settings
    the first one was trained with (:func:`inherit_offline_settings`).
    """
    if not weights:
        shipped = shipped_model()
        if shipped is None:
            raise InputError(f"no shipped model at masktrack/{SHIPPED_WEIGHTS}: pass --weights CKPT (train one with `masktrack train`)")
        weights = [shipped]
    loaded = [load_checkpoint(path, map_location=device) for path in weights]
    return [model.eval() for model, _ in loaded], [metadata for _, metadata in loaded]


def trained_config(metadata: dict[str, Any]) -> TrainConfig | None:
    """The offline training settings a parent checkpoint records, or None when it records none."""
    from masktrack.train.config import TrainConfig  # not at import: train imports this package

    offline = metadata.get("train_config")
    return TrainConfig.from_dict(offline, source="the parent checkpoint's train_config") if isinstance(offline, dict) else None


def recommended_settings(metadata: dict[str, Any]) -> dict[str, Any]:
    """:data:`RECOMMENDED_SETTINGS` for a parent with this metadata: one trained on undilated masks keeps undilated ones."""
    trained = trained_config(metadata)
    if trained is not None and trained.deform.dilate_prob == 0:
        return merge(RECOMMENDED_SETTINGS, {"propagate": {"dilate_previous": 0.0}})
    return RECOMMENDED_SETTINGS


def inherit_offline_settings(config: SegmentConfig, metadata: dict[str, Any]) -> None:
    """Unset augmentation, deformation and previous-mask dilation settings: those the parent was trained with.

    A parent trained without dilated masks (``dilate_prob`` 0) propagates undilated masks.
    """
    trained = trained_config(metadata)
    if trained is None:
        return
    config.finetune.augment = config.finetune.augment or trained.augment
    config.finetune.deform = config.finetune.deform or trained.deform
    if config.propagate.dilate_previous is None:
        config.propagate.dilate_previous = trained.deform.dilate_radius if trained.deform.dilate_prob > 0 else 0.0


def zoom_small_objects(config: SegmentConfig, fill: float = ZOOM_FILL) -> None:
    """``--zoom``: zoom into small objects in the fine-tuning samples and in the propagation views.

    Call it after :func:`inherit_offline_settings`, so that the other augmentation settings stay the parent's.
    """
    config.finetune.augment = replace(config.finetune.augment or AugmentConfig(), object_zoom=fill)
    config.propagate.object_zoom = fill


def segment_run(
    parents: SequenceOf[torch.nn.Module],
    sequences: SequenceOf[Sequence],
    config: SegmentConfig,
    out: Path,
    device: str,
    record: dict[str, Any],
    overwrite: bool = False,
    ranks: Ranks = Ranks(),
    overlay: bool = False,
    save_probabilities: bool = False,
    zip_masks: bool = False,
    report: bool = True,
    images_root: Path | None = None,
    progress: bool = True,
    start: float | None = None,
) -> EvaluationResult | None:
    """Segment ``sequences`` with ``parents`` (several: an ensemble) into the atomic run folder ``out``
    (sharded over ``ranks``), then finish it.

    ``record``: what was run, for ``config.yaml``; ``start``: the run's ``time.perf_counter()`` start
    (default: now). Returns the evaluation on rank 0 when every frame has ground truth, else None.
    """
    start = time.perf_counter() if start is None else start
    evaluation = None
    with shared_output_dir(out, overwrite, ranks) as run_dir:
        results = ranks.run_everywhere(lambda: {
            sequence.name: segment_sequence(parents, sequence, config, run_dir, device, overlay, save_probabilities, progress)
            for sequence in ranks.shard(sequences)
        })
        if ranks.is_main:
            timings = {name: timing for result in results for name, timing in result.items()}
            evaluation = finish_run(run_dir, sequences, timings, config, record, device, time.perf_counter() - start,
                                    zip_masks, report, images_root, progress)
    return evaluation


def finish_run(
    run_dir: Path,
    sequences: SequenceOf[Sequence],
    timings: dict[str, SequenceTiming],
    config: SegmentConfig,
    record: dict[str, Any],
    device: str,
    total_s: float,
    zip_masks: bool,
    report: bool,
    images_root: Path | None = None,
    progress: bool = True,
) -> EvaluationResult | None:
    """Timings, settings, evaluation (when every frame has ground truth), CodaLab zip, report.

    ``images_root``: a DAVIS-layout dataset holding the input frames, shown in the report.
    Returns the evaluation, or None without ground truth.
    """
    names = [sequence.name for sequence in sequences]
    write_timings(run_dir / "timings.json", device_name(device), {name: timings[name] for name in names}, round(total_s, 3))
    write_run_config(run_dir / CONFIG_YAML, config, record, device)
    ground_truth = ground_truth_root(sequences)
    evaluation = None
    if ground_truth is not None:
        from masktrack.evaluate import evaluate_dataset, write_results

        evaluation = evaluate_dataset(ground_truth, run_dir, sequences=names, progress=progress)
        write_results(evaluation, run_dir / "eval")
    if zip_masks:
        write_submission_zip(run_dir, names)
    if report:
        from masktrack.report import write_report

        write_report(run_dir, images_root=images_root)
    return evaluation


def copy_overlay(source: Path, path: Path) -> None:
    """Copy an overlay video to the user's ``--overlay FILE`` (atomically)."""
    with atomic_file(path) as temporary:
        shutil.copyfile(source, temporary)


def write_run_config(path: Path, config: SegmentConfig, record: dict[str, Any], device: str) -> None:
    """``config.yaml``: the settings (reusable with ``--config``) and, under ``run:``, what was run."""
    run = {key: plain(value) for key, value in record.items() if key not in ("run", "func")}
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
