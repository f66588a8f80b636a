"""The page's downloads, written into the run folder: palette PNGs, binary PNGs per object, an overlay MP4, COCO RLE."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from masktrack.atomic import atomic_file
from masktrack.data.masks import write_mask
from masktrack.data.video import VideoWriter, overlay

Results = Iterable[tuple[int, np.ndarray]]  # (frame index, (H, W) uint8 labels), every frame in order
EXPORTS = {  # download name -> media type
    "masks-palette.zip": "application/zip",
    "masks-binary.zip": "application/zip",
    "overlay.mp4": "video/mp4",
    "coco-rle.json": "application/json",
}


def frame_name(index: int) -> str:
    return f"{index:05d}"


def palette_zip(results: Results, path: Path) -> None:
    """A zip with one DAVIS palette PNG per frame, ``<frame>.png`` (pixel value = object id)."""
    with atomic_file(path) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, labels in results:
            buffer = io.BytesIO()
            write_mask(buffer, labels)
            archive.writestr(f"{frame_name(index)}.png", buffer.getvalue())


def binary_zip(results: Results, path: Path) -> None:
    """A zip with one black-and-white PNG per object per frame, ``object-<id>/<frame>.png`` (255 = the object).

    Every object of the run gets a PNG for every frame, blank where it is absent."""
    results = list(results)
    objects = sorted({int(o) for _, labels in results for o in np.unique(labels) if o})
    with atomic_file(path) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, labels in results:
            for object_id in objects:
                buffer = io.BytesIO()
                Image.fromarray(np.where(labels == object_id, 255, 0).astype(np.uint8), mode="L").save(buffer, "PNG")
                archive.writestr(f"object-{object_id}/{frame_name(index)}.png", buffer.getvalue())


def overlay_mp4(results: Results, frames: Iterable[np.ndarray], fps: float, path: Path) -> None:
    """An H.264 MP4 of the frames with each object tinted and outlined in its palette colour."""
    with VideoWriter(path, fps) as writer:
        for (_, labels), image in zip(results, frames):
            writer.write(overlay(image, labels))


def coco_rle(results: Results, name: str) -> dict[str, Any]:
    """COCO-style JSON: one image per frame, one category per object, one annotation per object per frame
    where it is present, its mask as compressed RLE (``pycocotools.mask.decode`` reads it back)."""
    from pycocotools import mask as rle

    images, annotations, objects = [], [], set()
    for index, labels in results:
        height, width = labels.shape
        images.append({"id": index + 1, "file_name": f"{frame_name(index)}.jpg", "frame_index": index,
                       "width": width, "height": height})
        for object_id in (int(o) for o in np.unique(labels) if o):
            objects.add(object_id)
            encoded = rle.encode(np.asfortranarray(labels == object_id, dtype=np.uint8))
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": object_id, "object_id": object_id,
                "segmentation": {"size": [height, width], "counts": encoded["counts"].decode("ascii")},
                "area": int(rle.area(encoded)), "bbox": [float(v) for v in rle.toBbox(encoded)], "iscrowd": 0})
    categories = [{"id": object_id, "name": f"object {object_id}"} for object_id in sorted(objects)]
    return {"info": {"description": f"masktrack masks of {name}"}, "images": images, "categories": categories,
            "annotations": annotations}


def write_export(name: str, results: Results, frames: Callable[[], Iterable[np.ndarray]], fps: float, video: str,
                 folder: Path) -> Path:
    """Write download ``name`` (one of :data:`EXPORTS`) into ``folder``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name == "masks-palette.zip":
        palette_zip(results, path)
    elif name == "masks-binary.zip":
        binary_zip(results, path)
    elif name == "overlay.mp4":
        overlay_mp4(results, frames(), fps, path)
    elif name == "coco-rle.json":
        with atomic_file(path) as temporary:
            temporary.write_text(json.dumps(coco_rle(results, video)), encoding="utf-8")
    else:
        raise LookupError(name)
    return path
