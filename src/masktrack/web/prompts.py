"""The page's prompts for one frame (boxes, clicks, brush strokes per object) and the label mask they give."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from masktrack.errors import InputError
from masktrack.prompt import ObjectPrompt

MAX_OBJECTS = 254
MAX_POINTS = 200  # clicks per object
MAX_STROKE_POINTS = 20000  # brush points per object, all strokes together
Propose = Callable[[np.ndarray, list[ObjectPrompt]], np.ndarray]


@dataclass(frozen=True)
class Stroke:
    """A brush stroke: a polyline of ``(x, y)`` points painted ``radius`` wide; ``erase`` removes the object."""

    points: tuple[tuple[int, int], ...]
    radius: int
    erase: bool = False


@dataclass(frozen=True)
class FramePrompt:
    """One object's prompts on a frame: a box and/or clicks (a proposal), brush strokes over it or over the
    object's current mask; none at all removes the object from the frame."""

    object_id: int
    box: tuple[int, int, int, int] | None = None
    points: tuple[tuple[int, int, bool], ...] = ()
    strokes: tuple[Stroke, ...] = ()

    @property
    def proposes(self) -> bool:
        """Whether the model proposes this object's mask (a box or a positive click)."""
        return self.box is not None or any(positive for _, _, positive in self.points)


def parse_objects(payload: Any) -> list[FramePrompt]:
    """The ``objects`` list of a propose request; InputError (HTTP 400) for anything malformed."""
    if not isinstance(payload, list) or len(payload) > MAX_OBJECTS:
        raise InputError(f"objects: expected a list of at most {MAX_OBJECTS} objects")
    prompts = [_parse_object(entry) for entry in payload]
    ids = [prompt.object_id for prompt in prompts]
    if len(set(ids)) != len(ids):
        raise InputError("objects: an object id appears twice")
    return prompts


def _parse_object(entry: Any) -> FramePrompt:
    if not isinstance(entry, dict):
        raise InputError("objects: each object is a JSON object")
    object_id = _integer(entry.get("id"), "id")
    if not 1 <= object_id <= MAX_OBJECTS:
        raise InputError(f"object id {object_id}: ids are 1..{MAX_OBJECTS}")
    box = entry.get("box")
    if box is not None:
        box = tuple(_integers(box, 4, "box"))
        if box[2] < 1 or box[3] < 1:
            box = None  # a click-sized drag: no box
    points = entry.get("points") or []
    if not isinstance(points, list) or len(points) > MAX_POINTS:
        raise InputError(f"points: expected a list of at most {MAX_POINTS} clicks")
    clicks = tuple((*_integers(point[:2], 2, "point"), bool(point[2])) for point in points if _is_click(point))
    strokes = tuple(_parse_stroke(stroke) for stroke in entry.get("strokes") or [])
    if sum(len(stroke.points) for stroke in strokes) > MAX_STROKE_POINTS:
        raise InputError(f"strokes: at most {MAX_STROKE_POINTS} brush points per object")
    return FramePrompt(object_id, box, clicks, strokes)


def _is_click(point: Any) -> bool:
    if not isinstance(point, list) or len(point) != 3:
        raise InputError("points: each click is [x, y, positive]")
    return True


def _parse_stroke(stroke: Any) -> Stroke:
    if not isinstance(stroke, dict) or not isinstance(stroke.get("points"), list) or not stroke["points"]:
        raise InputError("strokes: each stroke is {points: [[x, y], ...], radius, erase}")
    points = tuple(tuple(_integers(point, 2, "stroke point")) for point in stroke["points"])
    radius = min(max(_integer(stroke.get("radius", 5), "radius"), 1), 500)
    return Stroke(points, radius, bool(stroke.get("erase", False)))


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise InputError(f"{name}: expected a number, got {value!r}")
    return round(value)


def _integers(values: Any, count: int, name: str) -> list[int]:
    if not isinstance(values, (list, tuple)) or len(values) != count:
        raise InputError(f"{name}: expected {count} numbers")
    return [_integer(value, name) for value in values]


def frame_labels(frame: np.ndarray, base: np.ndarray, prompts: Sequence[FramePrompt], propose: Propose) -> np.ndarray:
    """``base`` (the frame's current labels) with each object given a box or clicks replaced by its proposal and
    each object given nothing removed, then the brush strokes painted over (alone, they edit the base's mask)."""
    labels = base.copy()
    proposing = [prompt for prompt in prompts if prompt.proposes]
    proposal = None
    if proposing:
        proposal = propose(frame, [ObjectPrompt(p.object_id, p.box, p.points) for p in proposing])
    for prompt in prompts:
        if prompt.proposes or not prompt.strokes:
            labels[labels == prompt.object_id] = 0
    if proposal is not None:
        for prompt in proposing:
            labels[proposal == prompt.object_id] = prompt.object_id
    for prompt in prompts:
        for stroke in prompt.strokes:
            painted = stroke_mask(stroke, labels.shape)
            if stroke.erase:
                labels[painted & (labels == prompt.object_id)] = 0
            else:
                labels[painted] = prompt.object_id
    return labels


def stroke_mask(stroke: Stroke, size: tuple[int, int]) -> np.ndarray:
    """The ``(H, W)`` bool pixels a brush stroke covers (round ends and joints)."""
    canvas = np.zeros(size, np.uint8)
    points = np.array(stroke.points, np.int32).reshape(-1, 1, 2)
    if len(stroke.points) > 1:
        cv2.polylines(canvas, [points], False, 1, thickness=2 * stroke.radius)
    for x, y in stroke.points:
        cv2.circle(canvas, (x, y), stroke.radius, 1, thickness=-1)
    return canvas.astype(bool)
