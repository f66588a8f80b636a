"""DAVIS region similarity J (IoU) and boundary F-measure F, and their per-object statistics.

Semantics are those of the official DAVIS 2017 semi-supervised evaluation:

- J of two empty masks is 1.
- Boundaries follow ``seg2bmap``: a pixel is a boundary pixel when it differs from its right,
  lower or lower-right neighbour (neighbours outside the image are ignored).
- F matches boundary pixels within ``r = ceil(0.008 * image diagonal)`` pixels, through a
  dilation by the disk ``x² + y² <= r²``; an empty boundary has precision (or recall) 1.

How it is made fast, with identical counts (hence identical scores):

- One object is scored on the bounding box of its ground-truth and predicted pixels, grown by
  one pixel: the box holds every boundary pixel of both masks, and a dilation only spreads
  boundary pixels, so the box holds every pixel where a dilated boundary meets the other one.
- Both masks are packed into one uint8 image (bit 0 ground truth, bit 1 prediction), so one
  pass computes both boundaries and one pass dilates both: a binary dilation is a bitwise OR of
  shifted copies, and the disk is the union over rows ``dy`` of horizontal runs of half-width
  ``isqrt(r² - dy²)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008
RECALL_THRESHOLD = 0.5
DECAY_BINS = 4
GT_BIT, PRED_BIT = 1, 2


def boundary_radius(height: int, width: int) -> int:
    """Boundary matching tolerance in pixels for a frame: ``ceil(0.008 * diagonal)``."""
    return math.ceil(BOUNDARY_TOLERANCE * math.hypot(height, width))


def frame_scores(gt: np.ndarray, pred: np.ndarray, object_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """J and F of each object of ``object_ids`` in one frame of ``(H, W)`` uint8 label masks.

    Returns two float64 arrays in the order of ``object_ids``; other labels are background.
    """
    radius = boundary_radius(*gt.shape)
    j = np.ones(len(object_ids))
    f = np.ones(len(object_ids))
    x, y, w, h = cv2.boundingRect(cv2.bitwise_or(gt, pred))
    if w == 0:
        return j, f
    rows, cols = _grown(y, h, gt.shape[0]), _grown(x, w, gt.shape[1])
    gt, pred = gt[rows, cols], pred[rows, cols]
    for index, object_id in enumerate(object_ids):
        in_gt = cv2.bitwise_and(cv2.compare(gt, object_id, cv2.CMP_EQ), GT_BIT)
        in_pred = cv2.bitwise_and(cv2.compare(pred, object_id, cv2.CMP_EQ), PRED_BIT)
        j[index], f[index] = _packed_scores(cv2.bitwise_or(in_gt, in_pred), radius)
    return j, f


def object_scores(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """J and F of one object from its ground-truth and predicted binary masks (same 2-D shape)."""
    packed = (np.asarray(gt) != 0).view(np.uint8) | ((np.asarray(pred) != 0).view(np.uint8) << 1)
    return _packed_scores(packed, boundary_radius(*packed.shape))


def _packed_scores(packed: np.ndarray, radius: int) -> tuple[float, float]:
    """J and F from a packed mask (bit 0 ground truth, bit 1 prediction)."""
    x, y, w, h = cv2.boundingRect(packed)
    if w == 0:
        return 1.0, 1.0
    packed = packed[_grown(y, h, packed.shape[0]), _grown(x, w, packed.shape[1])]
    intersection = cv2.countNonZero(cv2.compare(packed, GT_BIT | PRED_BIT, cv2.CMP_EQ))
    jaccard = intersection / (_bit_count(packed, GT_BIT) + _bit_count(packed, PRED_BIT) - intersection)
    boundary = _boundary_map(packed)
    dilated = _dilate(boundary, radius)
    # Swapping the dilated bits: bit 0 = ground-truth boundary near the predicted one, bit 1 = the converse.
    hits = cv2.bitwise_and(boundary, cv2.bitwise_or(dilated << 1, dilated >> 1))
    n_gt, n_pred = _bit_count(boundary, GT_BIT), _bit_count(boundary, PRED_BIT)
    if n_gt == 0 or n_pred == 0:
        precision, recall = (1.0 if n_pred == 0 else 0.0), (1.0 if n_gt == 0 else 0.0)
    else:
        precision = _bit_count(hits, PRED_BIT) / float(n_pred)
        recall = _bit_count(hits, GT_BIT) / float(n_gt)
    if precision + recall == 0:
        return jaccard, 0.0
    return jaccard, 2 * precision * recall / (precision + recall)


def _grown(start: int, length: int, size: int) -> slice:
    """The range ``[start, start + length)`` grown by one pixel each way, clipped to ``[0, size)``."""
    return slice(max(start - 1, 0), min(start + length + 1, size))


def _bit_count(packed: np.ndarray, bit: int) -> int:
    """Number of pixels with ``bit`` set."""
    return cv2.countNonZero(cv2.bitwise_and(packed, bit))


def _boundary_map(packed: np.ndarray) -> np.ndarray:
    """``seg2bmap`` of every bit plane: a bit is set where it differs from the right, lower or
    lower-right neighbour's (neighbours outside the array are ignored)."""
    boundary = np.zeros_like(packed)
    np.bitwise_xor(packed[:, :-1], packed[:, 1:], out=boundary[:, :-1])
    boundary[:-1] |= packed[:-1] ^ packed[1:]
    boundary[:-1, :-1] |= packed[:-1, :-1] ^ packed[1:, 1:]
    return boundary


def _dilate(bits: np.ndarray, radius: int) -> np.ndarray:
    """Bitwise dilation of every bit plane by the disk ``x² + y² <= radius²``."""
    half_widths = [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]
    runs = {0: bits}
    current, reach = bits, 0
    for target in sorted(set(half_widths) - {0}):
        while reach < target:
            step = min(target - reach, 2 * reach + 1)  # keeps the covered offsets contiguous
            current = _or_shifted_horizontally(current, step)
            reach += step
        runs[target] = current
    dilated = runs[half_widths[0]].copy()
    for dy in range(1, min(radius, bits.shape[0] - 1) + 1):
        run = runs[half_widths[dy]]
        _or_into(dilated[dy:], run[:-dy])
        _or_into(dilated[:-dy], run[dy:])
    return dilated


def _or_shifted_horizontally(bits: np.ndarray, step: int) -> np.ndarray:
    """``bits`` OR-ed with its copies shifted ``step`` columns right and left."""
    out = bits.copy()
    if step < bits.shape[1]:
        _or_into(out[:, step:], bits[:, :-step])
        _or_into(out[:, :-step], bits[:, step:])
    return out


def _or_into(target: np.ndarray, bits: np.ndarray) -> None:
    """``target |= bits`` in place (``target`` may be a view), with OpenCV's vectorised OR."""
    if target.size:
        cv2.bitwise_or(target, bits, dst=target)


@dataclass(frozen=True)
class Statistics:
    """Mean, recall (share of frames above 0.5) and decay of a per-frame score."""

    mean: float
    recall: float
    decay: float


def statistics(per_frame: np.ndarray) -> Statistics:
    """DAVIS mean, recall and decay of a non-empty per-frame score sequence.

    Decay is the mean of the first quarter minus that of the last, with the official bins
    ``ids = round(linspace(1, N, 5) + 1e-10) - 1``, bin ``i`` = ``values[ids[i] : ids[i+1] + 1]``.
    The indices are plain integers: the official code casts them to uint8, which wraps past 255
    frames; here they do not.
    """
    values = np.asarray(per_frame, dtype=np.float64)
    if values.size == 0:
        raise ValueError("statistics of an empty score sequence")
    ids = (np.round(np.linspace(1, values.size, DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)
    first = values[ids[0] : ids[1] + 1]
    last = values[ids[DECAY_BINS - 1] : ids[DECAY_BINS] + 1]
    return Statistics(
        mean=float(np.mean(values)),
        recall=float(np.mean(values > RECALL_THRESHOLD)),
        decay=float(np.mean(first) - np.mean(last)),
    )
