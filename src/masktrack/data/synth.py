"""Synthetic VOS videos in the DAVIS 2017 layout, for the demo and the tests.

Each video pans a large random texture as background and moves, rotates and scales
two or more textured star/blob objects over it. Objects occlude each other in a fixed
depth order (an occluded part is not in that object's mask). Odd-numbered videos have
one object that appears mid-video; every third video (index 2, 5, ...) has one object
that leaves the frame. With ``occlusions``, every fourth video (index 3, 7, ...) has a
pillar in front of everything, behind which one object passes: it vanishes inside the
frame for a while and comes back. With ``lookalike``, the objects of a video share one
outline, one texture, one size and one spin, and cross each other's paths (see
``generate_video``): only position and motion tell them apart. Everything is deterministic
from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from masktrack.data.masks import write_mask

_MIN_VISIBLE = 0.2  # an object on screen shows at least this fraction of its own area
_ATTEMPTS = 100


@dataclass(frozen=True)
class SyntheticVideo:
    """Frames ``(T, H, W, 3)`` uint8 RGB and label masks ``(T, H, W)`` uint8 (0 = background).

    ``centres``: ``(T, N, 2)`` float, the centre (x, y) in pixels of object id ``n + 1`` in each
    frame (whether visible or not), NaN before the object appears.
    """

    frames: np.ndarray
    labels: np.ndarray
    centres: np.ndarray | None = None


@dataclass(frozen=True)
class _Object:
    outline: np.ndarray  # (K, 2) polygon around the origin, radius ~1
    texture: np.ndarray  # (S, S, 3) uint8, the object's pattern in its own coordinates
    radius: float  # pixels
    start: np.ndarray  # centre at t = 0 (x, y)
    end: np.ndarray  # centre at t = 1
    wobble: np.ndarray  # sinusoidal path offset amplitude (x, y)
    angle: tuple[float, float]  # rotation at t = 0, radians turned over the video
    scale: tuple[float, float]  # relative scale amplitude, its phase
    object_id: int
    first_frame: int
    leaves: bool
    hides: bool = False


@dataclass(frozen=True)
class _Pillar:
    """A vertical bar in front of every object, covering columns ``left:right``."""

    left: int
    right: int
    texture: np.ndarray  # (H, right - left, 3) uint8


def sequence_name(index: int) -> str:
    """The name of the ``index``-th synthetic sequence."""
    return f"synth-{index:03d}"


def generate_video(
    seed: int | np.random.SeedSequence,
    num_frames: int = 24,
    size: tuple[int, int] = (120, 160),
    num_objects: int = 2,
    appearing: bool = False,
    leaving: bool = False,
    hiding: bool = False,
    lookalike: bool = False,
) -> SyntheticVideo:
    """Render one synthetic video in memory.

    ``appearing``: the last object (in id order) is absent from the first frames and
    appears between 1/4 and 1/2 of the video. ``leaving``: one object present from the
    start moves out of the frame and is gone from the last frame. ``hiding``: one object
    present from the start (not the leaving one) crosses behind a pillar in front of
    everything, wholly hidden for about a fifth of the video, and is back by the end.
    ``lookalike``: 2 or 3 objects of the same outline, texture, size and spin; two start on
    opposite sides and swap sides, their centres passing within about a radius of each other,
    and a third crosses their paths at right angles near the same time; with ``leaving`` one
    of them leaves the frame after the crossing. Not combined with ``appearing`` or ``hiding``.
    """
    _check_video_options(num_frames, size, num_objects, appearing, leaving, hiding, lookalike)
    rng = np.random.default_rng(seed)
    height, width = size
    background = _texture(rng, (2 * height, 2 * width), _random_colours(rng, 3, saturation=0.45))
    pan = rng.uniform(0, [width, height], size=(2, 2))
    objects, pillar, labels = _place_objects(rng, num_frames, size, num_objects, appearing, leaving, hiding, lookalike)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    noise = np.random.default_rng(rng.integers(2**32))
    for t in range(num_frames):
        progress = t / (num_frames - 1)
        offset = pan[0] + (pan[1] - pan[0]) * progress
        shift = np.float32([[1, 0, -offset[0]], [0, 1, -offset[1]]])
        canvas = cv2.warpAffine(background, shift, (width, height), flags=cv2.INTER_LINEAR).astype(np.float32)
        for obj in objects:
            if t >= obj.first_frame:
                canvas = _paint(canvas, obj, progress, size)
        if pillar is not None:
            canvas[:, pillar.left : pillar.right] = pillar.texture
        canvas += noise.normal(0, 2.0, canvas.shape)
        frames[t] = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return SyntheticVideo(frames=frames, labels=labels, centres=_centres(objects, num_frames))


def _check_video_options(
    num_frames: int, size: tuple[int, int], num_objects: int, appearing: bool, leaving: bool, hiding: bool, lookalike: bool
) -> None:
    if num_frames < 2 or num_objects < 1 or min(size) < 32:
        raise ValueError("need num_frames >= 2, num_objects >= 1 and a size of at least 32x32")
    if appearing and num_objects < 2:
        raise ValueError("an appearing object needs at least 2 objects")
    if hiding and num_objects < 1 + appearing + leaving:
        raise ValueError("a hiding object must be one that neither appears nor leaves")
    if lookalike and not 2 <= num_objects <= 3:
        raise ValueError(f"lookalike videos have 2 or 3 objects, not {num_objects}")
    if lookalike and (appearing or hiding):
        raise ValueError("lookalike videos have no appearing or hiding object")


def _place_objects(
    rng: np.random.Generator,
    num_frames: int,
    size: tuple[int, int],
    num_objects: int,
    appearing: bool,
    leaving: bool,
    hiding: bool,
    lookalike: bool,
) -> tuple[list[_Object], _Pillar | None, np.ndarray]:
    """Objects (back to front), the pillar if any and the label masks of the first plausible draw."""
    for _ in range(_ATTEMPTS):
        if lookalike:
            objects = _sample_lookalikes(rng, size, num_objects, leaving)
        else:
            objects = _sample_objects(rng, num_frames, size, num_objects, appearing, leaving)
        pillar = None
        if hiding:
            objects, pillar = _hide_one(rng, objects, size)
        labels = _render_labels(objects, num_frames, size, pillar)
        if _plausible(labels, objects, num_frames):
            return objects, pillar, labels
    raise RuntimeError(f"could not place {num_objects} objects in a {size[0]}x{size[1]} video; try a larger size")


def _paint(canvas: np.ndarray, obj: _Object, progress: float, size: tuple[int, int]) -> np.ndarray:
    """``canvas`` (float32 RGB) with ``obj`` drawn over it at ``progress`` (0..1) of the video."""
    height, width = size
    matrix = _pose(obj, progress)
    alpha = _alpha(obj, matrix, size).astype(np.float32)[..., None] / 255.0
    half, unit = obj.texture.shape[0] / 2, 1 / obj.radius
    to_image = matrix @ np.array([[unit, 0, -half * unit], [0, unit, -half * unit], [0, 0, 1]])
    pattern = cv2.warpAffine(obj.texture, to_image[:2], (width, height), flags=cv2.INTER_LINEAR)
    return canvas * (1 - alpha) + pattern.astype(np.float32) * alpha


def _centres(objects: list[_Object], num_frames: int) -> np.ndarray:
    """``(T, N, 2)`` centre of each object (by id) in each frame; NaN before it appears."""
    centres = np.full((num_frames, len(objects), 2), np.nan)
    for obj in objects:
        for t in range(obj.first_frame, num_frames):
            centres[t, obj.object_id - 1] = _pose(obj, t / (num_frames - 1))[:2, 2]
    return centres


def generate_dataset(
    root: Path,
    num_videos: int = 4,
    num_frames: int = 24,
    size: tuple[int, int] = (120, 160),
    objects_per_video: tuple[int, int] = (2, 3),
    seed: int = 0,
    progress: bool = False,
    val_fraction: float = 0.25,
    occlusions: bool = False,
    lookalike: bool = False,
) -> Path:
    """Write synthetic videos in the DAVIS 2017 layout under ``root`` and return ``root``.

    Layout: ``JPEGImages/<H>p/<seq>/00000.jpg``, ``Annotations/<H>p/<seq>/00000.png``
    (DAVIS palette, every frame annotated; an appearing object's id is present only
    from its first visible frame), ``ImageSets/2017/{train,val}.txt``. The last
    ``val_fraction`` of the videos (at least one; at least one left for training when
    there are two or more) form the val split. Video ``i`` is the same whatever
    ``num_videos`` is. ``occlusions``: videos 3, 7, 11, ... have an object that hides
    behind a pillar inside the frame (``generate_video``'s ``hiding``); the others are
    the same as without it. ``lookalike``: every video has 2 or 3 look-alike objects whose
    paths cross (``generate_video``'s ``lookalike``), one of which leaves the frame in videos
    2, 5, 8, ...; no object appears mid-video; not combined with ``occlusions``.
    """
    low, high = objects_per_video
    if num_videos < 1 or not 1 <= low <= high:
        raise ValueError("need num_videos >= 1 and 1 <= min objects <= max objects")
    if lookalike and (occlusions or low < 2 or high > 3):
        raise ValueError("lookalike videos have 2 or 3 objects and no pillar (occlusions)")
    root = Path(root)
    resolution = f"{size[0]}p"
    names = [sequence_name(index) for index in range(num_videos)]
    for index in tqdm(range(num_videos), desc="synth", unit="video", disable=not progress):
        rng = np.random.default_rng([seed, index])
        num_objects = int(rng.integers(low, high + 1))
        appearing, leaving = index % 2 == 1 and num_objects >= 2 and not lookalike, index % 3 == 2
        video = generate_video(
            rng.integers(2**63),
            num_frames=num_frames,
            size=size,
            num_objects=num_objects,
            appearing=appearing,
            leaving=leaving,
            hiding=occlusions and index % 4 == 3 and num_objects >= 1 + appearing + leaving,
            lookalike=lookalike,
        )
        _write_video(video, root / "JPEGImages" / resolution / names[index], root / "Annotations" / resolution / names[index])
    num_val = max(1, round(num_videos * val_fraction))
    if num_videos >= 2:
        num_val = min(num_val, num_videos - 1)
    splits = root / "ImageSets" / "2017"
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "train.txt").write_text("".join(f"{name}\n" for name in names[: num_videos - num_val]))
    (splits / "val.txt").write_text("".join(f"{name}\n" for name in names[num_videos - num_val :]))
    return root


def _write_video(video: SyntheticVideo, image_dir: Path, mask_dir: Path) -> None:
    """Frames as JPEGs (quality 95) and labels as DAVIS palette PNGs, named ``00000``..."""
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for t, (frame, labels) in enumerate(zip(video.frames, video.labels)):
        Image.fromarray(frame).save(image_dir / f"{t:05d}.jpg", quality=95)
        write_mask(mask_dir / f"{t:05d}.png", labels)


def _sample_objects(
    rng: np.random.Generator, num_frames: int, size: tuple[int, int], count: int, appearing: bool, leaving: bool
) -> list[_Object]:
    height, width = size
    colours = _random_colours(rng, 2 * count, saturation=0.9)
    rng.shuffle(colours)
    leaver = int(rng.integers(count - 1 if appearing else count)) if leaving else -1
    objects = []
    for index in range(count):
        radius = rng.uniform(0.13, 0.2) * min(size)
        margin = np.array([radius, radius]) * 0.8
        low, high = margin, np.array([width, height]) - margin
        start, end = rng.uniform(low, high), rng.uniform(low, high)
        if index == leaver:
            side = rng.integers(4)
            axis, beyond = side % 2, (side // 2) * np.array([width, height])[side % 2]
            end[axis] = beyond + (2.2 * radius if side // 2 else -2.2 * radius)
        texture_size = int(np.ceil(radius * 2.8))
        objects.append(
            _Object(
                outline=_outline(rng),
                texture=_texture(rng, (texture_size, texture_size), colours[2 * index : 2 * index + 2], pattern=True),
                radius=radius,
                start=start,
                end=end,
                wobble=rng.uniform(-0.08, 0.08, 2) * min(size),
                angle=(rng.uniform(0, 2 * np.pi), rng.uniform(-1.5, 1.5)),
                scale=(rng.uniform(0.05, 0.2), rng.uniform(0, 2 * np.pi)),
                object_id=index + 1,
                first_frame=int(rng.integers(max(1, num_frames // 4), max(2, num_frames // 2 + 1)))
                if appearing and index == count - 1
                else 0,
                leaves=index == leaver,
            )
        )
    return [objects[i] for i in rng.permutation(count)]  # drawing order: back to front


def _sample_lookalikes(rng: np.random.Generator, size: tuple[int, int], count: int, leaving: bool) -> list[_Object]:
    """``count`` objects of one outline, texture, size and spin on crossing paths (see ``_crossing_paths``)."""
    radius = rng.uniform(0.13, 0.17) * min(size)
    texture_size = int(np.ceil(radius * 2.8))
    outline = _outline(rng)
    texture = _texture(rng, (texture_size, texture_size), _random_colours(rng, 2, saturation=0.9), pattern=True)
    angle = (rng.uniform(0, 2 * np.pi), rng.uniform(-1.0, 1.0))
    amplitude = rng.uniform(0.04, 0.1)
    wobble = rng.uniform(-0.05, 0.05, 2) * min(size)  # shared by all: keeps their distances at the crossing
    paths = _crossing_paths(rng, size, count, radius, leaving)
    objects = [
        _Object(outline=outline, texture=texture, radius=radius, start=start, end=end, wobble=wobble, angle=angle,
                scale=(amplitude, rng.uniform(0, 2 * np.pi)), object_id=index + 1, first_frame=0, leaves=leaves)
        for index, (start, end, leaves) in enumerate(paths)
    ]
    return [objects[i] for i in rng.permutation(count)]  # drawing order: back to front


def _crossing_paths(
    rng: np.random.Generator, size: tuple[int, int], count: int, radius: float, leaving: bool
) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """(start, end, leaves) of 2-3 straight paths through one meeting point.

    Objects 1 and 2 head in opposite directions (mostly along the frame's longer side) and pass the
    meeting point at the same time, 0.4-0.9 radius apart across their paths; object 3 crosses
    at right angles a little earlier or later. A leaving object (one of 1 and 2) heads out of the
    frame; the crossing comes early enough for it to start inside the frame.
    """
    height, width = size
    frame = np.array([width, height], dtype=float)
    heading = rng.uniform(-0.4, 0.4) + (0.0 if width >= height else np.pi / 2) + np.pi * rng.integers(2)
    meeting = frame / 2 + rng.uniform(-0.12, 0.12, 2) * frame
    across = np.array([-np.sin(heading), np.cos(heading)]) * rng.uniform(0.2, 0.45) * radius
    headings = [heading, heading + np.pi + rng.uniform(-0.25, 0.25), heading + np.pi / 2 * rng.choice([-1, 1])]
    middles = [meeting + across, meeting - across, meeting + _unit(heading) * rng.uniform(-0.3, 0.3) * radius]
    leaver = int(rng.integers(2)) if leaving else -1
    inner = (np.full(2, 0.8 * radius), frame - 0.8 * radius)  # centres in here keep most of the object in view
    outer = (np.full(2, -1.3 * radius), frame + 1.3 * radius)  # centres out here put all of it out of view
    crossing = rng.uniform(0.4, 0.6)
    if leaving:
        back = _reach(middles[leaver], -_unit(headings[leaver]), *inner)
        ahead = _reach(middles[leaver], _unit(headings[leaver]), *outer)
        crossing = min(crossing, 0.95 * back / (back + ahead))
    times = [crossing, crossing, float(np.clip(crossing + rng.choice([-1, 1]) * rng.uniform(0.06, 0.14), 0.2, 0.8))]
    paths = []
    for index in range(count):
        direction, middle, time = _unit(headings[index]), middles[index], times[index]
        if index == leaver:
            travel = _reach(middle, direction, *outer) / (1 - time)
        else:
            travel = min(_reach(middle, -direction, *inner) / time, _reach(middle, direction, *inner) / (1 - time))
            travel *= rng.uniform(0.85, 1.0)
        paths.append((middle - direction * travel * time, middle + direction * travel * (1 - time), index == leaver))
    return paths


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def _reach(point: np.ndarray, direction: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """How far ``point`` may go along ``direction`` before it leaves the box ``low..high`` (0 if outside)."""
    limits = [((high if step > 0 else low)[axis] - point[axis]) / step for axis, step in enumerate(direction) if abs(step) > 1e-9]
    return max(0.0, min(limits))


def _hide_one(rng: np.random.Generator, objects: list[_Object], size: tuple[int, int]) -> tuple[list[_Object], _Pillar]:
    """Send one object present from the start straight across the frame behind a new pillar wide enough to hide it."""
    height, width = size
    hider = next(obj for obj in objects if obj.first_frame == 0 and not obj.leaves)
    radius = 0.13 * min(size)
    pillar_width = 3.2 * radius  # the object (radius at most 1.03x this) fits behind it with room to spare
    reach = pillar_width / 2 + 1.3 * radius  # from the pillar's centre to a path end where the object is clear of it
    centre = rng.uniform(reach + 0.8 * radius, width - reach - 0.8 * radius)
    ends = np.array([centre - reach, centre + reach])[rng.permutation(2)]
    hidden = replace(
        hider,
        radius=radius,
        start=np.array([ends[0], hider.start[1]]),
        end=np.array([ends[1], hider.end[1]]),
        wobble=np.array([0.0, hider.wobble[1]]),
        scale=(0.03, hider.scale[1]),
        hides=True,
    )
    left, right = int(round(centre - pillar_width / 2)), int(round(centre + pillar_width / 2))
    texture = _texture(rng, (height, right - left), _random_colours(rng, 2, saturation=0.3))
    return [hidden if obj is hider else obj for obj in objects], _Pillar(left, right, texture)


def _pose(obj: _Object, progress: float) -> np.ndarray:
    """3x3 matrix from object coordinates (outline units, origin at the centre) to pixels."""
    centre = obj.start + (obj.end - obj.start) * progress + obj.wobble * np.sin(np.pi * progress)
    angle = obj.angle[0] + obj.angle[1] * progress
    scale = obj.radius * (1 + obj.scale[0] * np.sin(2 * np.pi * progress + obj.scale[1]))
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[cos, -sin, centre[0]], [sin, cos, centre[1]], [0, 0, 1]])


def _alpha(obj: _Object, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased coverage (uint8, 255 = inside) of the object's outline."""
    points = obj.outline @ matrix[:2, :2].T + matrix[:2, 2]
    canvas = np.zeros(size, dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(points * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    return canvas


def _render_labels(objects: list[_Object], num_frames: int, size: tuple[int, int], pillar: _Pillar | None) -> np.ndarray:
    labels = np.zeros((num_frames, *size), dtype=np.uint8)
    for t in range(num_frames):
        for obj in objects:
            if t >= obj.first_frame:
                labels[t][_alpha(obj, _pose(obj, t / (num_frames - 1)), size) >= 128] = obj.object_id
    if pillar is not None:
        labels[:, :, pillar.left : pillar.right] = 0
    return labels


def _plausible(labels: np.ndarray, objects: list[_Object], num_frames: int) -> bool:
    """Each object shows enough of itself from its first frame on (a leaving one: for 60% of the video;
    a hiding one: at both ends, and none of itself for at least two frames)."""
    for obj in objects:
        area = cv2.contourArea(obj.outline.astype(np.float32)) * obj.radius**2
        visible = np.count_nonzero(labels[obj.first_frame :] == obj.object_id, axis=(1, 2))
        if obj.hides:
            if min(visible[0], visible[-1]) < 0.5 * area or np.count_nonzero(visible == 0) < 2:
                return False
            continue
        if obj.leaves:
            if visible[-1] != 0:
                return False
            visible = visible[: max(1, int(num_frames * 0.6) - obj.first_frame)]
        if visible[0] < 0.5 * area or np.any(visible < _MIN_VISIBLE * area):
            return False
    return True


def _outline(rng: np.random.Generator) -> np.ndarray:
    """A star or a blob: a closed polygon of radius about 1 around the origin."""
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    if rng.random() < 0.5:
        points = int(rng.integers(4, 8))
        radii = 0.75 + 0.25 * np.cos(points * angles + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.6, 1.2)
    else:
        radii = np.ones_like(angles)
        for harmonic in range(2, 6):
            radii += rng.uniform(0, 0.25 / harmonic * 2) * np.cos(harmonic * angles + rng.uniform(0, 2 * np.pi))
        radii /= radii.max()
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]


def _random_colours(rng: np.random.Generator, count: int, saturation: float) -> np.ndarray:
    """``count`` colours with evenly spread hues (random start), as an ``(N, 3)`` uint8 array."""
    hues = (rng.uniform(0, 180) + np.arange(count) * 180 / count) % 180
    values = rng.uniform(120, 255, count)
    hsv = np.stack([hues, np.full(count, saturation * 255), values], axis=1).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def _texture(rng: np.random.Generator, size: tuple[int, int], colours: np.ndarray, pattern: bool = False) -> np.ndarray:
    """A random texture mixing ``colours`` with multi-scale noise, plus stripes or checks when ``pattern``."""
    height, width = size
    weight = np.zeros((height, width), dtype=np.float32)
    for cells, amplitude in ((3, 1.0), (9, 0.5), (27, 0.3), (81, 0.15)):
        coarse = rng.random((cells, cells)).astype(np.float32)
        weight += amplitude * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    weight = (weight - weight.min()) / max(float(np.ptp(weight)), 1e-6)
    if pattern:
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        angle, period = rng.uniform(0, np.pi), rng.uniform(5, 12)
        along = x * np.cos(angle) + y * np.sin(angle)
        if rng.random() < 0.5:
            motif = np.sin(2 * np.pi * along / period) > 0
        else:
            across = -x * np.sin(angle) + y * np.cos(angle)
            motif = (np.floor(along / period) + np.floor(across / period)) % 2 == 0
        weight = 0.7 * motif + 0.3 * weight
    mixed = np.zeros((height, width, 3), dtype=np.float32)
    levels = np.linspace(0, 1, len(colours))
    for channel in range(3):
        mixed[..., channel] = np.interp(weight, levels, colours[:, channel].astype(np.float32))
    return mixed.astype(np.uint8)
