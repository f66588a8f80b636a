"""Bounding boxes of batches of masks."""

from __future__ import annotations

import torch


def bounding_boxes(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive pixel boxes ``(B, 4)`` as ``x0, y0, x1, y1`` (long) and which masks are non-empty.

    ``masks`` is ``(B, H, W)``: bool or integer (non-zero is object) or float (>= 0.5 is object).
    Empty masks get the box ``0, 0, -1, -1``. Only two max-reductions touch the full masks.
    """
    if masks.dtype == torch.bool:
        masks = masks.view(torch.uint8)  # max-reductions over uint8 are much faster than any()
    rows, cols = masks.amax(dim=2), masks.amax(dim=1)
    rows, cols = (rows >= 0.5, cols >= 0.5) if masks.is_floating_point() else (rows != 0, cols != 0)
    present = rows.any(dim=1)
    height, width = masks.shape[1:]
    y0 = rows.to(torch.uint8).argmax(dim=1)
    y1 = height - 1 - rows.flip(1).to(torch.uint8).argmax(dim=1)
    x0 = cols.to(torch.uint8).argmax(dim=1)
    x1 = width - 1 - cols.flip(1).to(torch.uint8).argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    empty = torch.tensor([0, 0, -1, -1], device=masks.device)
    return torch.where(present[:, None], boxes, empty), present
