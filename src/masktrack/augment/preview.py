"""Pictures of simulated previous-frame masks, for people to check the deformations by eye.

A sheet has one block per object: one row per deformation (each alone, then the default mix),
the true mask in the first column and deformed samples after it. Each tile shows the true mask in
grey with a white outline and the deformed mask as a coloured fill with a coloured outline; the
default mix sometimes gives an empty mask (the object was lost), which the tile says.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from masktrack.augment.deform import DeformConfig, deform_masks
from masktrack.data.masks import object_ids

ROWS = ("affine", "tps", "dilate", "coarsen", "drop", "box", "default mix")  # "empty" would show nothing
COLOURS = {
    "affine": (255, 170, 0),
    "tps": (0, 200, 255),
    "dilate": (90, 220, 90),
    "coarsen": (230, 90, 230),
    "drop": (255, 90, 90),
    "box": (255, 230, 60),
    "default mix": (130, 160, 255),
}
TILE_HEIGHT = 150
_MAX_TILE_WIDTH = 300
_CONTEXT = 0.35  # tiles show the object's box grown by this fraction of its size on each side
_LABEL_WIDTH = 110
_HEADER_HEIGHT = 24
_GAP = 4
_BACKGROUND, _OBJECT, _PAPER, _INK = (30, 30, 30), (95, 95, 95), (255, 255, 255), (20, 20, 20)


def deformation_grid(mask: np.ndarray, count: int = 4, seed: int = 0, config: DeformConfig | None = None, title: str | None = None) -> np.ndarray:
    """An RGB ``uint8`` picture of ``count`` deformations of each kind of a binary ``(H, W)`` mask."""
    mask = np.asarray(mask) != 0
    if not mask.any():
        raise ValueError("cannot show deformations of an empty mask")
    config = config or DeformConfig()
    generator = torch.Generator().manual_seed(seed)
    window = _view_window(mask)
    batch = torch.from_numpy(mask)[None].expand(count, -1, -1)
    samples = {
        row: deform_masks(batch, config if row == "default mix" else config.only(row), generator).numpy() > 0.5 for row in ROWS
    }
    true_tile = _tile(mask, None, window, None)
    tile_h, tile_w = true_tile.shape[:2]
    header = _HEADER_HEIGHT if title is None else 2 * _HEADER_HEIGHT
    sheet = Image.new("RGB", (_LABEL_WIDTH + (count + 1) * (tile_w + _GAP), header + len(ROWS) * (tile_h + _GAP)), _PAPER)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    if title is not None:
        draw.text((4, 4), title, fill=_INK, font=font)
    for column, name in enumerate(["true mask", *(f"sample {k + 1}" for k in range(count))]):
        draw.text((_LABEL_WIDTH + column * (tile_w + _GAP) + 4, header - _HEADER_HEIGHT + 4), name, fill=_INK, font=font)
    for index, row in enumerate(ROWS):
        top = header + index * (tile_h + _GAP)
        middle = top + tile_h // 2
        draw.rectangle((4, middle - 6, 16, middle + 6), fill=COLOURS[row], outline=_INK)
        draw.text((22, middle - 8), row, fill=_INK, font=font)
        tiles = [true_tile, *(_tile(mask, sample, window, COLOURS[row]) for sample in samples[row])]
        for column, tile in enumerate(tiles):
            left = _LABEL_WIDTH + column * (tile_w + _GAP)
            sheet.paste(Image.fromarray(tile), (left, top))
            if column and not samples[row][column - 1].any():
                draw.text((left + 4, top + 4), "empty (object lost)", fill=COLOURS[row], font=font)
    return np.asarray(sheet)


def deformation_sheet(labels: np.ndarray, count: int = 4, seed: int = 0, config: DeformConfig | None = None) -> np.ndarray:
    """One :func:`deformation_grid` per object of a label mask, stacked top to bottom."""
    ids = object_ids(labels)
    if not ids:
        raise ValueError("the mask has no object (all background)")
    grids = [deformation_grid(labels == i, count, seed + i, config, title=f"object {i}" if len(ids) > 1 else None) for i in ids]
    width = max(grid.shape[1] for grid in grids)
    padded = [np.pad(grid, ((0, _GAP), (0, width - grid.shape[1]), (0, 0)), constant_values=255) for grid in grids]
    return np.concatenate(padded)[:-_GAP]


def _view_window(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The part of the image the tiles show (x0, y0, x1, y1 exclusive): the object with context."""
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    grow_x = int((xs.max() - xs.min() + 1) * _CONTEXT) + 8
    grow_y = int((ys.max() - ys.min() + 1) * _CONTEXT) + 8
    return max(0, xs.min() - grow_x), max(0, ys.min() - grow_y), min(width, xs.max() + 1 + grow_x), min(height, ys.max() + 1 + grow_y)


def _tile(true: np.ndarray, deformed: np.ndarray | None, window: tuple[int, int, int, int], colour: tuple[int, int, int] | None) -> np.ndarray:
    """One tile: the true mask (grey, white outline) and the deformed one (colour fill and outline)."""
    x0, y0, x1, y1 = window
    scale = min(TILE_HEIGHT / (y1 - y0), _MAX_TILE_WIDTH / (x1 - x0))
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))

    def resized(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask[y0:y1, x0:x1].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)

    tile = np.empty((size[1], size[0], 3), dtype=np.float32)
    tile[:] = _BACKGROUND
    true = resized(true)
    tile[true] = _OBJECT
    if deformed is not None:
        shown = resized(deformed)
        tile[shown] = 0.6 * tile[shown] + 0.4 * np.asarray(colour, dtype=np.float32)
        tile[_outline(shown, 2)] = colour
    tile[_outline(true, 1)] = (255, 255, 255)
    return tile.astype(np.uint8)


def _outline(mask: np.ndarray, thickness: int) -> np.ndarray:
    """The pixels of ``mask`` within ``thickness`` of its edge."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8), borderValue=1)
    return mask & ~inner.astype(bool)
