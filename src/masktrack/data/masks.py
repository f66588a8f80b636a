"""Label masks: read palette, binary and colour-coded PNGs; write DAVIS palette PNGs.

A label mask is an ``(H, W)`` ``uint8`` array: 0 is background, 1..255 are object ids.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from masktrack.data.png import PALETTE, decode_samples
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


VOID_ID = 255  # DAVIS/PASCAL "void" label (unlabelled pixels); never an object id
MAX_GREY_ID = 64  # a greyscale mask with several non-zero values holds ids up to this


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask PNG as a label mask with object ids 1..254.

    - palette ("P") images: the palette indices are the ids; index 255 is DAVIS "void" and
      becomes background, except in a mask whose only non-zero index is 255 (binary: object 1);
    - greyscale images (and RGB ones with equal channels): a single non-zero value (0/255,
      0/1, ...) is object 1; several non-zero values are ids, all of them at most
      ``MAX_GREY_ID`` (soft or anti-aliased masks are refused);
    - RGB(A) colour-coded images: each colour is an object (fully transparent pixels are
      background); colours of the DAVIS palette keep their index, other colours get ids in
      order of first appearance in raster order.

    8-bit palette and greyscale PNGs (the DAVIS formats) are decoded by
    ``masktrack.data.png.decode_samples``, several times faster than Pillow; the rest by Pillow.
    Raises ``InputError`` naming the file when it is unreadable or holds no valid ids.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: mask file not found") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read mask image ({error})") from None
    decoded = decode_samples(data)
    if decoded is None:
        return _decode_with_pillow(path)
    samples, colour_type = decoded
    samples = samples if samples.flags.writeable else samples.copy()
    return _palette_to_labels(samples) if colour_type == PALETTE else _grey_to_labels(samples, path)


def _decode_with_pillow(path: Path) -> np.ndarray:
    """The labels of a mask image in any format Pillow reads (see ``read_mask``)."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.array(image)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read mask image ({error})") from None
    if mode == "P":
        return _palette_to_labels(array)
    if mode in ("1", "L", "I", "I;16", "F", "LA"):
        return _grey_to_labels(array[..., 0] if array.ndim == 3 else array, path)
    if mode in ("RGB", "RGBA"):
        rgb = array[..., :3].copy()
        if mode == "RGBA":
            rgb[array[..., 3] == 0] = 0
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return _grey_to_labels(rgb[..., 0], path)
        return _colours_to_labels(rgb, path)
    raise InputError(f"{path}: unsupported mask image mode {mode!r}")


def _palette_to_labels(indices: np.ndarray) -> np.ndarray:
    labels = indices.astype(np.uint8, copy=False)
    if labels.max() < VOID_ID:
        return labels
    void = labels == VOID_ID
    if not (labels[~void] > 0).any():
        return void.astype(np.uint8)  # a binary mask stored as palette indices 0/255
    return np.where(void, 0, labels).astype(np.uint8)


def _grey_to_labels(values: np.ndarray, path: Path) -> np.ndarray:
    if values.dtype == np.uint8 and values.strides[1] == 1:  # binary? found without a full np.unique
        low, high, _, _ = cv2.minMaxLoc(values, mask=values)  # over the non-zero pixels
        if low == high:
            return np.not_equal(values, 0).view(np.uint8)
    present = np.unique(values)
    present = present[present != 0]
    if len(present) <= 1:
        return (values != 0).astype(np.uint8)
    if present.max() <= MAX_GREY_ID and np.all(present == np.round(present)):
        return values.astype(np.uint8)
    shown = ", ".join(str(v) for v in present[:5]) + (", ..." if len(present) > 5 else "")
    raise InputError(
        f"{path}: greyscale mask has values {shown}: expected binary (0 and one value) or object ids "
        f"up to {MAX_GREY_ID} (a soft or anti-aliased mask? save it as a palette PNG)"
    )


def _colours_to_labels(rgb: np.ndarray, path: Path) -> np.ndarray:
    codes = _colour_codes(rgb)
    colours, first_index, inverse = np.unique(codes.ravel(), return_index=True, return_inverse=True)
    palette_lookup = {int(code): index for index, code in enumerate(_colour_codes(DAVIS_PALETTE)) if index != VOID_ID}
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
        if next_id >= VOID_ID:
            raise InputError(f"{path}: more than {VOID_ID - 1} object colours (a photo, or a lossy/anti-aliased mask?)")
        ids[order] = next_id
        used.add(next_id)
    return ids[inverse].reshape(codes.shape).astype(np.uint8)


def _colour_codes(rgb: np.ndarray) -> np.ndarray:
    """One int32 per colour: 0xRRGGBB."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def write_mask(path: str | Path, labels: np.ndarray) -> None:
    """Write a label mask as a DAVIS palette PNG."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label mask must be 2-D, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"label ids must be in 0..255, got {labels.min()}..{labels.max()}")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(DAVIS_PALETTE.ravel().tolist())
    image.save(path, format="PNG")


def object_ids(labels: np.ndarray) -> list[int]:
    """Sorted non-zero ids present in a label mask."""
    return [int(i) for i in np.unique(labels) if i != 0]
