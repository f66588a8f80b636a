"""DAVIS 2017 semi-supervised evaluation of predicted mask folders against ground truth.

``GT_ROOT/<seq>/*.png`` and ``PRED_ROOT/<seq>/*.png``: the objects of a sequence are the ids of
its first ground-truth frame, scored on every ground-truth frame but the first and the last; an id
first seen in a later ground-truth frame (an object given there, as in YouTube-VOS) is scored from
the next frame on. Each scored frame needs a prediction of the same name and size. An object
missing from a prediction is an empty mask; a predicted id absent from the ground truth is an error.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from masktrack.atomic import atomic_file
from masktrack.data.masks import object_ids, read_mask
from masktrack.errors import InputError
from masktrack.evaluate.metrics import Statistics, frame_scores, statistics
from masktrack.evaluate.plots import jf_per_object_png

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
GLOBAL_CSV = "global_results.csv"
SEQUENCE_CSV = "per-sequence_results.csv"
PER_FRAME_JSON = "per-frame_results.json"
PLOT_PNG = "jf_per_object.png"


@dataclass(frozen=True, eq=False)
class ObjectResult:
    """Per-frame J and F of one object over the scored frames of its sequence."""

    sequence: str
    object_id: int
    frames: tuple[str, ...]  # frame names without ".png"
    j: np.ndarray
    f: np.ndarray

    @property
    def name(self) -> str:
        """The official row name ``<seq>_<id>``."""
        return f"{self.sequence}_{self.object_id}"

    @property
    def j_statistics(self) -> Statistics:
        return statistics(self.j)

    @property
    def f_statistics(self) -> Statistics:
        return statistics(self.f)


@dataclass(frozen=True)
class EvaluationResult:
    """All evaluated objects, in sequence order then id order."""

    objects: tuple[ObjectResult, ...]

    @property
    def global_metrics(self) -> dict[str, float]:
        """The official global figures: means over objects of each object's statistics."""
        j = [obj.j_statistics for obj in self.objects]
        f = [obj.f_statistics for obj in self.objects]
        j_mean = float(np.mean([s.mean for s in j]))
        f_mean = float(np.mean([s.mean for s in f]))
        values = (
            (j_mean + f_mean) / 2,
            j_mean,
            float(np.mean([s.recall for s in j])),
            float(np.mean([s.decay for s in j])),
            f_mean,
            float(np.mean([s.recall for s in f])),
            float(np.mean([s.decay for s in f])),
        )
        return dict(zip(GLOBAL_COLUMNS, values))

    def per_frame(self) -> dict[str, dict[str, dict[str, list]]]:
        """``{seq: {obj_id: {"frames": [...], "J": [...], "F": [...]}}}`` (the JSON schema)."""
        table: dict[str, dict[str, dict[str, list]]] = {}
        for obj in self.objects:
            table.setdefault(obj.sequence, {})[str(obj.object_id)] = {"frames": list(obj.frames), "J": obj.j.tolist(), "F": obj.f.tolist()}
        return table


def evaluate_sequence(gt_root: Path, pred_root: Path, sequence: str) -> list[ObjectResult]:
    """Evaluate one sequence; raises InputError naming the offending file."""
    gt_dir, pred_dir = Path(gt_root) / sequence, Path(pred_root) / sequence
    frames = _mask_names(gt_dir)
    if len(frames) < 3:
        raise InputError(f"{gt_dir}: needs at least 3 annotated frames (the first and last are not scored), found {len(frames)}")
    first = dict.fromkeys(object_ids(read_mask(gt_dir / frames[0])), 0)  # object id -> frame where it is given
    if not first:
        raise InputError(f"{gt_dir / frames[0]}: the first ground-truth frame has no object")
    scores: dict[int, list[tuple[str, float, float]]] = {object_id: [] for object_id in first}
    unknown: dict[int, str] = {}  # predicted ids not (yet) in the ground truth -> first file with them
    for t, name in enumerate(frames[1:-1], start=1):
        gt = read_mask(gt_dir / name)
        pred = read_mask(pred_dir / name)
        if pred.shape != gt.shape:
            raise InputError(f"{pred_dir / name}: size {pred.shape[1]}x{pred.shape[0]} differs from the ground truth's {gt.shape[1]}x{gt.shape[0]}")
        for labels, later in ((gt, None), (pred, str(pred_dir / name))):
            for object_id in _new_ids(labels, first):
                if later is None:
                    first[object_id], scores[object_id] = t, []
                else:
                    unknown.setdefault(object_id, later)
        scored = [object_id for object_id, given in first.items() if given < t]
        for object_id, j, f in zip(scored, *frame_scores(gt, pred, scored)):
            scores[object_id].append((Path(name).stem, float(j), float(f)))
    extra = sorted(set(unknown) - set(first))
    if extra:
        raise InputError(f"{unknown[extra[0]]}: object id(s) {extra} absent from the ground truth {gt_dir}")
    return [
        ObjectResult(sequence, object_id, tuple(row[0] for row in rows), np.array([row[1] for row in rows]), np.array([row[2] for row in rows]))
        for object_id, rows in sorted(scores.items())
        if rows
    ]


def _new_ids(labels: np.ndarray, known: dict[int, int]) -> list[int]:
    """Ids in ``labels`` that ``known`` lacks (a bincount only when the maximum does not rule them out)."""
    if int(labels.max()) <= len(known) and max(known) == len(known):  # known ids are 1..n
        return []
    return [object_id for object_id in np.flatnonzero(np.bincount(labels.ravel(), minlength=256)).tolist() if object_id and object_id not in known]


def evaluate_dataset(
    gt_root: Path,
    pred_root: Path,
    sequences: list[str] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate ``sequences`` (default: every sub-folder of ``gt_root``) with ``workers`` processes."""
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    for root in (gt_root, pred_root):
        if not root.is_dir():
            raise InputError(f"{root}: folder not found")
    if sequences is None:
        names = sorted(p.name for p in gt_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        names = list(sequences)
    if not names:
        raise InputError(f"{gt_root}: no sequence folders")
    if len(set(names)) != len(names):
        raise InputError(f"sequence list names {sorted({n for n in names if names.count(n) > 1})} more than once")
    for name in names:
        _check_sequence_name(name)
        for root in (gt_root, pred_root):
            if not (root / name).is_dir():
                raise InputError(f"{root / name}: sequence folder not found")
    # Longest sequences first keeps the workers evenly busy.
    schedule = sorted(names, key=lambda name: -len(_mask_names(gt_root / name)))
    task = partial(_evaluate_named, gt_root, pred_root)
    results: dict[str, list[ObjectResult]] = {}
    with _unordered_map(min(workers, len(names))) as mapper:
        for name, objects in tqdm(mapper(task, schedule), total=len(names), desc="eval", unit="seq", disable=not progress):
            results[name] = objects
    return EvaluationResult(tuple(obj for name in names for obj in results[name]))


def write_results(result: EvaluationResult, out_dir: Path) -> None:
    """Write the two official CSVs, the per-frame JSON and the per-object plot into ``out_dir``.

    Every file is rendered first and then moved into place, so a failure leaves no partial file.
    """
    out_dir = Path(out_dir)
    contents = {
        GLOBAL_CSV: _csv_bytes([GLOBAL_COLUMNS, list(result.global_metrics.values())]),
        SEQUENCE_CSV: _csv_bytes([("Sequence", "J-Mean", "F-Mean")] + [(o.name, o.j_statistics.mean, o.f_statistics.mean) for o in result.objects]),
        PER_FRAME_JSON: json.dumps(result.per_frame()).encode(),
        PLOT_PNG: jf_per_object_png(
            [o.name for o in result.objects], [o.j_statistics.mean for o in result.objects], [o.f_statistics.mean for o in result.objects]
        ),
    }
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        for name, data in contents.items():
            stack.enter_context(atomic_file(out_dir / name)).write_bytes(data)


def _evaluate_named(gt_root: Path, pred_root: Path, sequence: str) -> tuple[str, list[ObjectResult]]:
    return sequence, evaluate_sequence(gt_root, pred_root, sequence)


@contextmanager
def _unordered_map(workers: int) -> Iterator:
    """``map(func, items)`` yielding results as they finish: in-process, or over a process pool.

    OpenCV runs single-threaded meanwhile, so ``workers`` is the number of busy cores.
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        if workers == 1:
            yield map
        else:
            with multiprocessing.Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
                yield partial(pool.imap_unordered, chunksize=1)
    finally:
        cv2.setNumThreads(threads)


def _mask_names(folder: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(folder) if entry.name.endswith(".png"))
    except OSError as error:
        raise InputError(f"{folder}: cannot list the sequence folder ({error.strerror})") from None


def _check_sequence_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InputError(f"{name!r}: not a sequence name (a plain folder name is expected)")


def _csv_bytes(rows: Sequence[Sequence]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()
