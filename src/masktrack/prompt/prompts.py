"""What a user gives for an object: a box, clicks, or both (frame pixels)."""

from __future__ import annotations

from dataclasses import dataclass

from masktrack.errors import InputError

Box = tuple[int, int, int, int]  # x, y, width, height
Point = tuple[int, int, bool]  # x, y, positive (on the object) or negative (not on it)
POINTS_MARGIN = 0.1  # an object given by clicks alone: the box around its positive clicks, grown by this fraction of the frame


@dataclass(frozen=True)
class ObjectPrompt:
    """One object's prompt: ``box`` ``(x, y, w, h)`` and/or ``points`` ``(x, y, positive)``; at least one positive
    click when there is no box."""

    object_id: int
    box: Box | None = None
    points: tuple[Point, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.object_id <= 254:
            raise InputError(f"object id {self.object_id}: ids are 1..254")
        if self.box is None and not any(positive for _, _, positive in self.points):
            raise InputError(f"object {self.object_id}: give a box or at least one positive click")
        if self.box is not None and (self.box[2] < 1 or self.box[3] < 1):
            raise InputError(f"object {self.object_id}: box {self.box} has no area")

    def frame_box(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Inclusive ``x0, y0, x1, y1`` inside a frame of ``(H, W)``: the box, else the positive clicks' (grown)."""
        height, width = size
        if self.box is not None:
            x, y, w, h = self.box
            x0, y0, x1, y1 = x, y, x + w - 1, y + h - 1
        else:
            xs = [x for x, _, positive in self.points if positive]
            ys = [y for _, y, positive in self.points if positive]
            grow = round(POINTS_MARGIN * min(size))
            x0, y0, x1, y1 = min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
        if x0 > x1 or y0 > y1:
            raise InputError(f"object {self.object_id}: its box is outside the {width}x{height} frame")
        return x0, y0, x1, y1


def parse_box(text: str) -> tuple[int | None, Box]:
    """``"X,Y,W,H"`` or ``"N:X,Y,W,H"`` (frame N) -> ``(N or None, (x, y, w, h))``; InputError when malformed."""
    frame, _, values = text.rpartition(":")
    try:
        x, y, w, h = (int(round(float(value))) for value in values.split(","))
        index = int(frame) if frame else None
    except ValueError:
        raise InputError(f"--box {text!r}: expected X,Y,W,H or FRAME:X,Y,W,H (pixels)") from None
    if w < 1 or h < 1 or (index is not None and index < 0):
        raise InputError(f"--box {text!r}: width and height must be >= 1 and the frame >= 0")
    return index, (x, y, w, h)


def parse_point(text: str) -> tuple[int, Point]:
    """``"X,Y"``, ``"X,Y,+"`` or ``"X,Y,-"``, optionally ``"ID:..."`` (default object 1) -> ``(id, (x, y, positive))``."""
    obj, _, values = text.rpartition(":")
    parts = values.split(",")
    try:
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in "+-"):
            raise ValueError
        point = (int(round(float(parts[0]))), int(round(float(parts[1]))), len(parts) == 2 or parts[2] == "+")
        return (int(obj) if obj else 1), point
    except ValueError:
        raise InputError(f"--point {text!r}: expected X,Y[,+|-] or ID:X,Y[,+|-]") from None


def prompts_by_frame(boxes: list[str], points: list[str], frame: int = 0) -> dict[int, list[ObjectPrompt]]:
    """``--box`` and ``--point`` options -> ``{frame index: prompts}``: boxes are objects 1, 2... in order (at ``frame``
    unless written ``N:X,Y,W,H``); a click joins the object its ``ID:`` names (default 1), on that object's frame;
    an id without a box is an object given by its clicks alone, at ``frame``."""
    placed = [parse_box(text) for text in boxes]
    frames = {object_id: frame if index is None else index for object_id, (index, _) in enumerate(placed, 1)}
    clicks: dict[int, list[Point]] = {}
    for text in points:
        object_id, point = parse_point(text)
        clicks.setdefault(object_id, []).append(point)
    by_frame: dict[int, list[ObjectPrompt]] = {}
    for object_id in sorted(set(frames) | set(clicks)):
        box = placed[object_id - 1][1] if object_id in frames else None
        prompt = ObjectPrompt(object_id, box, tuple(clicks.get(object_id, ())))
        by_frame.setdefault(frames.get(object_id, frame), []).append(prompt)
    return by_frame
