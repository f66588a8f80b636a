"""Frames and masks as network inputs: the processing size, resized image and mask tensors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def processing_size(frame_size: tuple[int, int], height: int | None) -> tuple[int, int]:
    """Network input ``(h, w)`` for a frame of ``(H, W)`` resized to ``height`` (aspect kept)."""
    frame_height, frame_width = frame_size
    if height is None or height == frame_height:
        return frame_height, frame_width
    return height, max(1, round(frame_width * height / frame_height))


def image_tensor(image: np.ndarray, size: tuple[int, int], device: torch.device | str) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(1, 3, h, w)`` float in [0, 1], resized (antialiased) to ``size``."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float() / 255.0
    if tuple(tensor.shape[-2:]) != tuple(size):
        tensor = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    return tensor


def mask_tensor(mask: np.ndarray | torch.Tensor, size: tuple[int, int], device: torch.device | str) -> torch.Tensor:
    """Binary or soft ``(H, W)`` mask -> ``(h, w)`` float in [0, 1] (area-resized when shrinking)."""
    tensor = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask, device=device).float()
    if tuple(tensor.shape) == tuple(size):
        return tensor
    shrinking = size[0] < tensor.shape[0]
    resized = F.interpolate(tensor[None, None], size=size, mode="area" if shrinking else "bilinear", align_corners=None if shrinking else False)
    return resized[0, 0].clamp_(0, 1)
