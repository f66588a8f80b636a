"""Label masks: read palette, binary and colour-coded PNGs; write DAVIS palette PNGs.

A label mask is an ``(H, W)`` ``uint8`` array: 0 is background, 1..255 are object ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from masktrack.errors import InputError


def davis_palette() -> np.ndarray:
    """The standard DAVIS/PASCAL VOC palette as a ``(256, 3)`` uint8 array."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (r, g, b)
    return palette


DAVIS_PALETTE = davis_palette()


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask PNG as a label mask.

    - palette ("P") images: the palette indices are the ids;
    - greyscale/binary images: every non-zero pixel is object 1 (DAVIS 2016 style, 0/255);
    - RGB(A) colour-coded images: each colour is an object; colours of the DAVIS palette keep
      their index, other colours get ids in order of first appearance in raster order.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except FileNotFoundError:
        raise InputError(f"{path}: mask file not found") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read mask image ({error})") from None
    if mode == "P":
        return array.astype(np.uint8, copy=False)
    if mode in ("1", "L", "I", "I;16", "F", "LA"):
        if array.ndim == 3:
            array = array[..., 0]
        return (array > 0).astype(np.uint8)
    if mode in ("RGB", "RGBA"):
        return _colours_to_labels(array[..., :3], path)
    raise InputError(f"{path}: unsupported mask image mode {mode!r}")


def _colours_to_labels(rgb: np.ndarray, path: Path) -> np.ndarray:
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    colours, first_index, inverse = np.unique(codes.ravel(), return_index=True, return_inverse=True)
    palette_codes = (DAVIS_PALETTE[:, 0].astype(np.int32) << 16) | (DAVIS_PALETTE[:, 1].astype(np.int32) << 8) | DAVIS_PALETTE[:, 2]
    palette_lookup = {int(code): index for index, code in enumerate(palette_codes)}
    ids = np.zeros(len(colours), dtype=np.int64)
    used = {palette_lookup[int(c)] for c in colours if int(c) in palette_lookup}
    next_id = 1
    for order in np.argsort(first_index):
        code = int(colours[order])
        if code in palette_lookup:
            ids[order] = palette_lookup[code]
            continue
        while next_id in used:
            next_id += 1
        if next_id > 255:
            raise InputError(f"{path}: more than 255 object colours")
        ids[order] = next_id
        used.add(next_id)
    return ids[inverse].reshape(codes.shape).astype(np.uint8)


def write_mask(path: str | Path, labels: np.ndarray) -> None:
    """Write a label mask as a DAVIS palette PNG."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label mask must be 2-D, got shape {labels.shape}")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(DAVIS_PALETTE.ravel().tolist())
    image.save(path)


def object_ids(labels: np.ndarray) -> list[int]:
    """Sorted non-zero ids present in a label mask."""
    return [int(i) for i in np.unique(labels) if i != 0]
