"""Recompose a frame: move its object over the frame's own background, inpainted where the object was.

Online fine-tuning has one annotated frame per object, and the joint augmentation
(:mod:`masktrack.augment.transforms`) moves object and background together, so the network
always sees the object against the same surroundings. Khoreva et al. ("Lucid Data Dreaming for
Video Object Segmentation", IJCV 2019; the MaskTrack authors' follow-up) cut the object out,
inpaint the hole and paste the object back elsewhere, resized and rotated: the network then
sees the object against parts of the background it will pass in later frames, and background
where the object was. This module does the same with OpenCV's inpainting (Telea's method)
and one ``grid_sample`` per batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from masktrack.augment.boxes import bounding_boxes
from masktrack.augment.draws import uniform
from masktrack.augment.transforms import affine_matrices


@dataclass
class RecomposeConfig:
    """Random object moves over the inpainted background; ``prob = 0`` turns them off."""

    prob: float = 0.0  # share of samples whose object is moved
    shift: float = 0.25  # the object's centre moves up to this fraction of the frame's width and height
    scale: tuple[float, float] = (0.8, 1.2)  # the object's size relative to the frame's
    rotation: float = 15.0  # degrees, uniform in [-rotation, rotation], about the object's centre
    inpaint_margin: float = 0.02  # the hole is the mask dilated by this fraction of the frame's height

    def __post_init__(self) -> None:
        self.scale = tuple(self.scale)
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"recompose prob must be in [0, 1], got {self.prob}")
        if len(self.scale) != 2 or not 0.0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"recompose scale must be a range (low, high) with 0 < low <= high, got {self.scale}")
        if min(self.shift, self.rotation, self.inpaint_margin) < 0:
            raise ValueError("recompose shift, rotation and inpaint_margin must be >= 0")


def inpaint_backgrounds(images: torch.Tensor, masks: torch.Tensor, margin: float) -> torch.Tensor:
    """Each image ``(B, 3, H, W)`` in [0, 1] with its mask's object ``(B, H, W)`` painted out."""
    radius = max(1, round(margin * images.shape[-2]))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    backgrounds = []
    for image, mask in zip(images, masks):
        pixels = (image.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        hole = cv2.dilate((mask.cpu().numpy() > 0.5).astype(np.uint8), kernel)
        filled = cv2.inpaint(np.ascontiguousarray(pixels), hole, radius, cv2.INPAINT_TELEA)
        backgrounds.append(torch.from_numpy(filled).permute(2, 0, 1).float() / 255)
    return torch.stack(backgrounds).to(images.device)


def recompose(
    images: torch.Tensor,
    masks: torch.Tensor,
    backgrounds: torch.Tensor,
    config: RecomposeConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each chosen sample's object (shift, scale, rotation) over its inpainted background.

    ``images`` and ``backgrounds`` are ``(B, 3, H, W)`` in [0, 1], ``masks`` ``(B, H, W)`` binary
    (float or bool). Returns new images and masks of the same shapes and dtypes; samples not
    drawn (``config.prob``) and samples without an object are returned unchanged.
    """
    count, (height, width) = len(images), images.shape[-2:]
    draws = uniform((count, 5), generator, images.device)
    boxes, present = bounding_boxes(masks)
    chosen = (draws[:, 0] < config.prob) & present
    if not bool(chosen.any()):
        return images, masks
    size = torch.tensor([width, height], device=images.device, dtype=torch.float32)
    centre = (boxes[:, :2] + boxes[:, 2:] + 1) / 2
    target = (centre + (2 * draws[:, 3:5] - 1) * config.shift * size).clamp(torch.zeros_like(size), size)
    scale = config.scale[0] + draws[:, 1] * (config.scale[1] - config.scale[0])
    angle = (2 * draws[:, 2] - 1) * math.radians(config.rotation)
    # output pixel -> input pixel: in = R^T (out - target) / scale + centre, as 3x3 matrices acting on (x, y, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    linear = torch.stack([torch.stack([cos, sin], dim=1), torch.stack([-sin, cos], dim=1)], dim=1) / scale[:, None, None]
    inverse = affine_matrices(linear, centre - (linear @ target[:, :, None])[:, :, 0])
    to_normalised = affine_matrices(torch.diag(2 / size)[None], torch.full((1, 2), -1.0, device=images.device))
    from_normalised = affine_matrices(torch.diag(size / 2)[None], (size / 2)[None])
    theta = (to_normalised @ inverse @ from_normalised)[chosen, :2]
    grid = F.affine_grid(theta, [len(theta), 1, height, width], align_corners=False)
    moved = F.grid_sample(images[chosen], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha = F.grid_sample(masks[chosen][:, None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    images, masks = images.clone(), masks.clone()
    images[chosen] = backgrounds[chosen] * (1 - alpha) + moved * alpha
    masks[chosen] = (alpha[:, 0] >= 0.5).to(masks.dtype)
    return images, masks
