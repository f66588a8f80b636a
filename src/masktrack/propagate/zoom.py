"""Zoomed views of small objects for propagation: crop around the previous mask, predict, paste back.

At output stride 16 a 30-pixel object spans two feature cells, so the network sees little of it.
With ``object_zoom``, each object whose previous mask is small gets its own view of the frame:
a window with the frame's aspect ratio, centred on the previous mask's bounding box and sized so
that the box spans ``object_zoom`` of the window (zoom at most ``max_zoom``, the window inside the
frame), resampled to the network's input size. The object's probabilities are resampled back
into the frame; outside its window an object's probability is 0. Objects already large enough
(zoom of at most 1) and lost objects (empty previous mask) see the whole frame, as without zoom.

A view is an affine ``theta`` (2, 3) in ``torch.nn.functional.affine_grid``'s normalised
coordinates (``align_corners=False``), mapping view coordinates to frame coordinates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masktrack.augment.boxes import bounding_boxes


def object_view(mask: torch.Tensor, object_zoom: float, max_zoom: float) -> torch.Tensor | None:
    """The zoomed view of the object in the ``(h, w)`` mask (foreground >= 0.5), or None for the whole frame."""
    height, width = mask.shape
    boxes, present = bounding_boxes(mask[None].float())
    if not bool(present[0]):
        return None
    left, top, right, bottom = boxes[0].tolist()  # inclusive
    extent = max((bottom + 1 - top) / height, (right + 1 - left) / width)
    zoom = min(max_zoom, object_zoom / extent)
    if zoom <= 1.0:
        return None
    scale = 1.0 / zoom  # the window's size as a fraction of the frame's
    # the window's top-left corner, centred on the box and kept inside the frame, as a fraction of the frame
    y0 = min(max((top + bottom + 1) / 2 / height - scale / 2, 0.0), 1.0 - scale)
    x0 = min(max((left + right + 1) / 2 / width - scale / 2, 0.0), 1.0 - scale)
    return torch.tensor([[scale, 0.0, 2 * x0 + scale - 1], [0.0, scale, 2 * y0 + scale - 1]], device=mask.device)


def crop_views(frames: torch.Tensor, thetas: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Views ``(N, C, h, w)`` of ``(N, C, h, w)`` frames, one per ``(N, 2, 3)`` theta, at the same size."""
    grid = F.affine_grid(thetas.to(frames.dtype), list(frames.shape), align_corners=False)
    return F.grid_sample(frames, grid, mode=mode, padding_mode="border", align_corners=False)


def paste_views(views: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """``(N, h, w)`` maps in view coordinates back into their frames (0 outside each view)."""
    scale, shift = thetas[:, :, :2], thetas[:, :, 2:]  # a view is a uniform scale and a shift: invert in closed form
    inverse = torch.cat([scale / scale[:, :1, :1] ** 2, -shift / scale[:, :1, :1]], dim=2)
    grid = F.affine_grid(inverse.to(views.dtype), [len(views), 1, *views.shape[-2:]], align_corners=False)
    return F.grid_sample(views[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
