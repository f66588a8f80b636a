"""A multi-object DAVIS set made from DAVIS 2016: look-alike objects pasted so that they cross and hide.

Each composite video takes a *host* sequence and pastes the object of a *guest* sequence (of the
same kind: two people, two animals, two vehicles) into every host frame: the guest is cut out of
its own frame with its mask (alpha from the mask, feathered by 1 px), scaled once so that its area
is comparable to the host object's, and translated so that it walks from one side of the host
object's box to the other over the video (against the host's own motion), its feet level with
the host's (a little lower when it passes in front, a little higher behind). Its own small
movements (articulation, bobbing) are kept; only its path through the frame is replaced, and it
is mirrored when it would otherwise move backwards. In front, the guest hides the host, whose
ground truth loses those pixels; behind, the host's pixels hide the guest, whose ground truth
excludes them. Some videos add a third object from a third sequence, crossing the other way on
the other side in depth. A sequence pasted into itself is played backwards. Videos last as long
as the shortest of their sequences. Labels: host 1, guest 2, third 3.

What the composite does not capture: pasted objects cast no shadows and get no reflections; their
lighting, colour balance, blur, noise and camera motion are those of their own video, not the
host's; the objects do not interact (no contact, no reaction to each other, no consistent
ground contact beyond the level feet); a guest cut by its own frame's edge keeps that straight
edge; and the guest's path is drawn, not filmed. The host background is not inpainted where the
guest came from, since the guest comes from a different video (a sequence pasted into itself
shows its object twice).

The val set uses only the 20 DAVIS 2016 val sequences, the train set (``--split train``) only the
30 train sequences. Output (DAVIS 2017 layout, 240p, readable by ``masktrack segment --davis``):
``JPEGImages/240p/<name>/00000.jpg`` (JPEG quality 95), ``Annotations/240p/<name>/00000.png`` (DAVIS
palette, every frame), ``ImageSets/2017/<split>.txt`` and ``composite.json`` (the recipe of each video).

    .venv/bin/python benchmarks/composite.py --split val --out runs/composite-val
    .venv/bin/masktrack segment --davis runs/composite-val --split val --out runs/composite-val-run
    .venv/bin/python benchmarks/composite.py --split val --out runs/composite-val --score runs/composite-val-run
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from masktrack.atomic import atomic_output_dir
from masktrack.data.masks import read_mask, write_mask
from masktrack.errors import InputError
from masktrack.evaluate import dataset_switches, evaluate_dataset

REPO = Path(__file__).resolve().parents[1]
DAVIS_2016 = REPO.parent / "shared" / "data" / "davis2016"
RESOLUTION = "240p"
SMOOTHING = 9  # frames in the moving average of the objects' tracks
DEPTH_STEP = 0.06  # feet this fraction of the frame height lower in front of the host, higher behind it


@dataclass(frozen=True)
class Composite:
    """One composite video: ``guest`` (and ``third``) pasted into ``host``."""

    host: str
    guest: str
    guest_in_front: bool
    third: str | None = None  # crosses the other way, on the other side of the host in depth

    @property
    def name(self) -> str:
        return "+".join([self.host, self.guest] + ([self.third] if self.third else []))


VAL = (
    Composite("breakdance", "parkour", True),
    Composite("dance-twirl", "breakdance", False),
    Composite("parkour", "parkour", False),
    Composite("dog", "libby", True),
    Composite("cows", "camel", False),
    Composite("goat", "cows", True),
    Composite("camel", "goat", True, third="cows"),
    Composite("car-roundabout", "car-shadow", False),
    Composite("car-shadow", "car-roundabout", True),
    Composite("drift-straight", "car-shadow", True),
    Composite("scooter-black", "bmx-trees", False, third="scooter-black"),
)
TRAIN = (
    Composite("hike", "lucia", True),
    Composite("lucia", "tennis", False),
    Composite("tennis", "rollerblade", True),
    Composite("dance-jump", "hike", False, third="lucia"),
    Composite("hike", "hike", False),
    Composite("bear", "rhino", False),
    Composite("elephant", "bear", True),
    Composite("rhino", "elephant", False, third="bear"),
    Composite("mallard-fly", "mallard-water", True),
    Composite("drift-turn", "car-turn", True),
    Composite("scooter-gray", "motorbike", False),
    Composite("motorbike", "scooter-gray", True, third="bmx-bumps"),
)
COMPOSITES = {"val": VAL, "train": TRAIN}


@dataclass(frozen=True)
class Clip:
    """A DAVIS 2016 sequence in memory: frames ``(T, H, W, 3)`` uint8 and masks ``(T, H, W)`` bool."""

    name: str
    frames: np.ndarray
    masks: np.ndarray


@dataclass(frozen=True)
class Layer:
    """A pasted object in one frame: its pixels, soft alpha and ground truth, all at host size."""

    image: np.ndarray
    alpha: np.ndarray
    truth: np.ndarray
    object_id: int
    in_front: bool


def split_names(davis: Path, split: str) -> list[str]:
    """Sequence names of ``ImageSets/<split>.txt`` (plain names, or DAVIS 2016 frame paths)."""
    path = davis / "ImageSets" / f"{split}.txt"
    if not path.is_file():
        raise InputError(f"{path}: split file not found (is {davis} a DAVIS 2016 root?)")
    names = [Path(line.split()[0]).parent.name if "/" in line else line.split()[0]
             for line in path.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(names))


def load_clip(davis: Path, name: str) -> Clip:
    """Every 240p frame and mask of sequence ``name``."""
    images, annotations = davis / "JPEGImages" / RESOLUTION / name, davis / "Annotations" / RESOLUTION / name
    frame_paths = sorted(images.glob("*.jpg"))
    if not frame_paths:
        raise InputError(f"{images}: no JPEG frames")
    frames = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in frame_paths])
    masks = np.stack([read_mask(annotations / f"{path.stem}.png") > 0 for path in frame_paths])
    if masks.shape != frames.shape[:3]:
        raise InputError(f"{annotations}: masks are {masks.shape[2]}x{masks.shape[1]}, frames {frames.shape[2]}x{frames.shape[1]}")
    return Clip(name, frames, masks)


def track(masks: np.ndarray) -> np.ndarray:
    """``(T, 4)`` smoothed left, right, bottom and centroid x of each mask (gaps filled from neighbours)."""
    rows = np.full((len(masks), 4), np.nan)
    for t, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs):
            rows[t] = (xs.min(), xs.max(), ys.max(), xs.mean())
    known = np.flatnonzero(~np.isnan(rows[:, 0]))
    if not len(known):
        raise InputError("a sequence without any object pixel")
    for column in range(4):
        rows[:, column] = np.interp(np.arange(len(masks)), known, rows[known, column])
    kernel = np.ones(SMOOTHING) / SMOOTHING
    padded = np.pad(rows, ((SMOOTHING // 2, SMOOTHING // 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(4)], axis=1)


def median_size(masks: np.ndarray) -> tuple[float, float, float]:
    """Median area, box width and box height of the non-empty masks."""
    sizes = [(mask.sum(), np.ptp(xs) + 1, np.ptp(ys) + 1) for mask in masks if mask.any() for ys, xs in [np.nonzero(mask)]]
    return tuple(float(value) for value in np.median(np.array(sizes, dtype=float), axis=0))


def area_trend(masks: np.ndarray) -> np.ndarray:
    """Each frame's object area on the log-linear trend of the non-empty masks' areas: approach or retreat, not pose."""
    areas = masks.sum(axis=(1, 2)).astype(float)
    present = np.flatnonzero(areas > 0)
    slope, intercept = np.polyfit(present, np.log(areas[present]), 1) if len(present) > 1 else (0.0, np.log(areas[present[0]]))
    return np.exp(intercept + slope * np.arange(len(masks)))


def guest_sizes(host: Clip, guest: Clip, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: the guest's scale (its area trend onto the host's, within 0.4..2.5, small enough to pass beside the
    host), and its usual width and height once scaled."""
    height, width = host.masks.shape[1:]
    _, guest_width, guest_height = median_size(guest.masks)
    guest_trend = area_trend(guest.masks)
    growth = np.sqrt(guest_trend[indices] / np.median(guest_trend))  # the guest's usual size in its frame, relative
    scales = np.clip(np.sqrt(area_trend(host.masks)[: len(indices)] / guest_trend[indices]), 0.4, 2.5)
    scales = np.minimum(scales, np.minimum(0.75 * height / guest_height, 0.45 * width / guest_width) / growth)
    return scales, scales * growth * guest_width, scales * growth * guest_height


def oriented(guest: Clip, direction: int) -> Clip:
    """The guest mirrored when its own motion runs against ``direction`` (+1: rightwards)."""
    path = track(guest.masks)[:, 3]
    moving = path[-1] - path[0]
    if abs(moving) < 0.1 * guest.masks.shape[2] or np.sign(moving) == direction:
        return guest
    return Clip(guest.name, guest.frames[:, :, ::-1].copy(), guest.masks[:, :, ::-1].copy())


def paste_layer(guest: Clip, index: int, scale: float, target: tuple[float, float], reference: np.ndarray,
                object_id: int, in_front: bool, size: tuple[int, int]) -> Layer:
    """Guest frame ``index`` scaled by ``scale`` with its smoothed ``reference`` (centroid x, bottom y) at ``target``."""
    height, width = size
    shift = np.asarray(target) - scale * reference
    matrix = np.float32([[scale, 0, shift[0]], [0, scale, shift[1]]])
    image = cv2.warpAffine(guest.frames[index], matrix, (width, height), flags=cv2.INTER_LINEAR)
    coverage = cv2.warpAffine(guest.masks[index].astype(np.float32), matrix, (width, height), flags=cv2.INTER_LINEAR)
    alpha = cv2.GaussianBlur(coverage, (3, 3), 0)  # a 1-px feather
    return Layer(image.astype(np.float32), alpha, coverage >= 0.5, object_id, in_front)


def guest_layers(host: Clip, guest: Clip, object_id: int, in_front: bool, direction: int, length: int) -> list[Layer]:
    """The guest's layer in each of ``length`` frames: it crosses the host's box along ``direction``."""
    height, width = host.masks.shape[1:]
    guest = oriented(guest, direction)
    reverse = guest.name == host.name  # a sequence pasted into itself: its other end
    indices = len(guest.masks) - 1 - np.arange(length) if reverse else np.arange(length)
    scales, widths, heights = guest_sizes(host, guest, indices)
    host_track, guest_track = track(host.masks), track(guest.masks)
    layers = []
    for t, index in enumerate(indices):
        progress, half_width = t / max(length - 1, 1), widths[t] / 2
        left, right, bottom, _ = host_track[t]
        start, end = (left - half_width, right + half_width)[::direction]
        x = np.clip(start + (end - start) * progress, half_width, width - half_width)
        y = np.clip(bottom + (DEPTH_STEP if in_front else -DEPTH_STEP) * height, heights[t], height)
        reference = guest_track[index, [3, 2]]
        layers.append(paste_layer(guest, int(index), float(scales[t]), (x, y), reference, object_id, in_front, (height, width)))
    return layers


def compose(frame: np.ndarray, host_mask: np.ndarray, layers: list[Layer]) -> tuple[np.ndarray, np.ndarray]:
    """The composite frame and its labels: layers behind the host first, then those in front."""
    canvas, labels = frame.astype(np.float32), host_mask.astype(np.uint8)
    for layer in sorted(layers, key=lambda layer: layer.in_front):
        visible = np.ones_like(host_mask) if layer.in_front else ~host_mask
        alpha = (layer.alpha * visible)[..., None]
        canvas = canvas * (1 - alpha) + layer.image * alpha
        labels[layer.truth & visible] = layer.object_id
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), labels


def build_video(davis: Path, composite: Composite, root: Path) -> dict:
    """Write one composite video under ``root``; its recipe as a dict."""
    host, guest = load_clip(davis, composite.host), load_clip(davis, composite.guest)
    third = load_clip(davis, composite.third) if composite.third else None
    length = min(len(clip.masks) for clip in (host, guest, third) if clip is not None)
    host_motion = track(host.masks)[:, 3]
    direction = -1 if host_motion[length - 1] > host_motion[0] else 1  # against the host's own motion
    per_frame = [[layer] for layer in guest_layers(host, guest, 2, composite.guest_in_front, direction, length)]
    if third is not None:
        for layers, layer in zip(per_frame, guest_layers(host, third, 3, not composite.guest_in_front, -direction, length)):
            layers.append(layer)
    images, annotations = root / "JPEGImages" / RESOLUTION / composite.name, root / "Annotations" / RESOLUTION / composite.name
    images.mkdir(parents=True)
    annotations.mkdir(parents=True)
    for t, layers in enumerate(per_frame):
        frame, labels = compose(host.frames[t], host.masks[t], layers)
        Image.fromarray(frame).save(images / f"{t:05d}.jpg", quality=95)
        write_mask(annotations / f"{t:05d}.png", labels)
    return {"name": composite.name, **asdict(composite), "frames": length, "guest_direction": "right" if direction > 0 else "left"}


def build(davis: Path, out: Path, split: str, composites: tuple[Composite, ...] | None = None,
          overwrite: bool = False) -> list[dict]:
    """Write the composite ``split`` (default recipes: ``COMPOSITES[split]``) to ``out``; the recipes written."""
    composites = COMPOSITES[split] if composites is None else composites
    allowed = split_names(davis, split)
    for composite in composites:
        for name in filter(None, (composite.host, composite.guest, composite.third)):
            if name not in allowed:
                raise InputError(f"{davis / 'ImageSets' / f'{split}.txt'}: sequence {name!r} is not in split {split}")
    recipes = []
    with atomic_output_dir(out, overwrite=overwrite) as partial:
        for composite in composites:
            recipes.append(build_video(davis, composite, partial))
            print(f"{composite.name}: {recipes[-1]['frames']} frames", flush=True)
        splits = partial / "ImageSets" / "2017"
        splits.mkdir(parents=True)
        (splits / f"{split}.txt").write_text("".join(f"{composite.name}\n" for composite in composites))
        (partial / "composite.json").write_text(json.dumps({"split": split, "videos": recipes}, indent=1) + "\n")
    return recipes


def score(root: Path, run: Path, split: str) -> str:
    """Per-object J&F and identity switches of a `masktrack segment` run on the composite, as Markdown."""
    recipe_file = root / "composite.json"
    if not recipe_file.is_file():
        raise InputError(f"{recipe_file}: not found (is {root} a composite built by this script?)")
    recipes = {video["name"]: video for video in json.loads(recipe_file.read_text())["videos"]}
    names = (root / "ImageSets" / "2017" / f"{split}.txt").read_text().split()
    truth = root / "Annotations" / RESOLUTION
    result = evaluate_dataset(truth, run, sequences=names, progress=False)
    switches = dataset_switches(truth, run, names)
    lines = ["| video | object | from | J | F | J&F | switches |", "|---|---:|---|---:|---:|---:|---:|"]
    for obj in result.objects:
        source = recipes[obj.sequence][("host", "guest", "third")[obj.object_id - 1]]
        j, f = obj.j_statistics.mean, obj.f_statistics.mean
        lines.append(f"| {obj.sequence} | {obj.object_id} | {source} | {j:.3f} | {f:.3f} | {(j + f) / 2:.3f} "
                     f"| {switches[obj.sequence].get(obj.object_id, 0)} |")
    lines += ["", "| video | switches |", "|---|---:|"]
    lines += [f"| {name} | {sum(switches[name].values())} |" for name in names]
    total = sum(sum(counts.values()) for counts in switches.values())
    summary = f"J&F-Mean {result.global_metrics['J&F-Mean']:.3f} over {len(result.objects)} objects; {total} identity switches"
    lines += [f"| **total** | **{total}** |", "", summary + " (object-frames)"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=sorted(COMPOSITES), default="val", help="which DAVIS 2016 split to build from")
    parser.add_argument("--out", type=Path, required=True, help="the composite dataset folder (built, or scored with --score)")
    parser.add_argument("--davis", type=Path, default=DAVIS_2016, help=f"DAVIS 2016 root (default: {DAVIS_2016})")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--score", type=Path, metavar="RUN", help="score this `masktrack segment` run folder instead of building")
    args = parser.parse_args()
    try:
        if args.score is not None:
            print(score(args.out, args.score, args.split))
        else:
            build(args.davis, args.out, args.split, overwrite=args.overwrite)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
