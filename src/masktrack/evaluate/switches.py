"""Identity switches: frames where an object's predicted mask lies mostly on another object.

An object's prediction in a frame is a *switch* when it is non-empty and its overlap with some
other object's ground truth is larger than its overlap with its own ground truth and larger than
half of its predicted area: the tracker has swapped it onto (or merged it into) the other object.
J&F sees such a frame as one object lost, a switch names the cause. Folders are read as
``masktrack.evaluate.evaluator`` reads them (``<root>/<seq>/<frame>.png``, the first and the
last ground-truth frames not scored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masktrack.data.masks import object_ids, read_mask
from masktrack.errors import InputError
from masktrack.evaluate.evaluator import _check_sequence_name, _mask_names


def identity_switches(truth: np.ndarray, predicted: np.ndarray, ids: list[int]) -> int:
    """The number of (object, frame) switches of ``ids`` in ``(T, H, W)`` label arrays."""
    return sum(object_switches(truth, predicted, ids).values())


def object_switches(truth: np.ndarray, predicted: np.ndarray, ids: list[int]) -> dict[int, int]:
    """``{object id: frames where it switched}`` over ``(T, H, W)`` (or one ``(H, W)``) label arrays."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    if truth.shape != predicted.shape or truth.ndim not in (2, 3):
        raise ValueError(f"need label arrays of one shape (T, H, W) or (H, W), got {truth.shape} and {predicted.shape}")
    frames = zip(truth, predicted) if truth.ndim == 3 else [(truth, predicted)]
    counts = dict.fromkeys(ids, 0)
    for truth_frame, predicted_frame in frames:
        for object_id in switched_objects(truth_frame, predicted_frame, ids):
            counts[object_id] += 1
    return counts


def switched_objects(truth: np.ndarray, predicted: np.ndarray, ids: list[int]) -> list[int]:
    """The ids among ``ids`` whose predicted mask in this ``(H, W)`` frame is on another object's truth."""
    switched = []
    for object_id in ids:
        covered = truth[predicted == object_id]
        if covered.size == 0:
            continue
        overlaps = np.bincount(covered.ravel(), minlength=256)
        own = overlaps[object_id]
        others = [other for other in ids if other != object_id]
        if any(overlaps[other] > own and 2 * overlaps[other] > covered.size for other in others):
            switched.append(object_id)
    return switched


def sequence_switches(gt_root: Path, pred_root: Path, sequence: str) -> dict[int, int]:
    """``{object id: switches}`` of one sequence; objects are the ground truth's ids seen up to each frame."""
    gt_dir, pred_dir = Path(gt_root) / sequence, Path(pred_root) / sequence
    frames = _mask_names(gt_dir)
    if len(frames) < 3:
        raise InputError(f"{gt_dir}: needs at least 3 annotated frames (the first and last are not scored), found {len(frames)}")
    known = object_ids(read_mask(gt_dir / frames[0]))
    counts = dict.fromkeys(known, 0)
    for name in frames[1:-1]:
        truth, predicted = read_mask(gt_dir / name), read_mask(pred_dir / name)
        if predicted.shape != truth.shape:
            raise InputError(f"{pred_dir / name}: size {predicted.shape[1]}x{predicted.shape[0]} differs from the "
                             f"ground truth's {truth.shape[1]}x{truth.shape[0]}")
        for object_id in object_ids(truth):
            counts.setdefault(object_id, 0)
        for object_id in switched_objects(truth, predicted, list(counts)):
            counts[object_id] += 1
    return dict(sorted(counts.items()))


def dataset_switches(gt_root: Path, pred_root: Path, sequences: list[str] | None = None) -> dict[str, dict[int, int]]:
    """``{sequence: {object id: switches}}`` of ``sequences`` (default: every sub-folder of ``gt_root``)."""
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    for root in (gt_root, pred_root):
        if not root.is_dir():
            raise InputError(f"{root}: folder not found")
    names = sequences if sequences is not None else sorted(p.name for p in gt_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for name in names:
        _check_sequence_name(name)
        if not (pred_root / name).is_dir():
            raise InputError(f"{pred_root / name}: sequence folder not found")
    return {name: sequence_switches(gt_root, pred_root, name) for name in names}

