"""A label mask from per-object prompts (a box and/or clicks) on one frame.

Each object's proposal combines two views of its box (``docs/results.md`` measures them):

- the MaskTrack parent network fed the filled box as its previous mask, in a zoomed view of the box,
  mirrored and averaged, then fed its own mask once more: the parent was trained on box-shaped
  deformations, so it refines a box the way it refines a rough mask (MaskTrack-Box's idea);
- a salient-object model (U^2-Netp, ``masktrack.prompt.saliency``) on the box with a margin.

A pixel inside the box is the object's where either probability exceeds ``threshold``. Clicks then
refine it with OpenCV's GrabCut: the proposal seeds the probable foreground, positive clicks are sure
foreground and negative ones sure background; the mask stays inside the box. Where objects overlap, the more
probable one wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from masktrack.model.inputs import image_tensor, mask_tensor, processing_size
from masktrack.prompt.prompts import ObjectPrompt
from masktrack.prompt.saliency import salient_probabilities
from masktrack.propagate.propagate import merge_probabilities, predict
from masktrack.propagate.zoom import object_view

CLICK_RADIUS = 0.01  # a click marks a disk of this fraction of the frame's smaller side (at least 2 px)


@dataclass
class ProposalConfig:
    """How prompts become masks (module docstring)."""

    object_zoom: float = 0.8  # the network sees the box spanning this fraction of its view
    max_zoom: float = 8.0  # ... zoomed in by at most this factor
    flip: bool = True  # also run mirrored and average
    passes: int = 2  # network passes: the box, then the previous pass's mask
    saliency_margin: float = 0.25  # the salient-object model sees the box grown by this fraction on each side
    threshold: float = 0.5
    grabcut_iterations: int = 5  # when there are clicks


def network_probabilities(model: nn.Module, image: np.ndarray, previous: np.ndarray, height: int | None,
                          config: ProposalConfig) -> np.ndarray:
    """``(H, W)`` object probabilities of ``model`` given the binary ``previous`` mask, in a zoomed view of it."""
    device = next(model.parameters()).device
    size = processing_size(image.shape[:2], height)
    mask = (mask_tensor(previous.astype(np.float32), size, device) >= 0.5).float()
    view = object_view(mask, config.object_zoom, config.max_zoom)
    with torch.inference_mode():
        small = predict({1: model}, image_tensor(image, size, device), {1: mask}, 0.0, config.flip,
                        {1: view} if view is not None else None)[1]
        full = F.interpolate(small[None, None], size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    return full.float().cpu().numpy()


def object_probabilities(model: nn.Module, image: np.ndarray, prompt: ObjectPrompt, height: int | None,
                         config: ProposalConfig) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The object's ``(H, W)`` probabilities (0 outside its box) and its inclusive box ``x0, y0, x1, y1``."""
    x0, y0, x1, y1 = box = prompt.frame_box(image.shape[:2])
    inside = np.zeros(image.shape[:2], bool)
    inside[y0:y1 + 1, x0:x1 + 1] = True
    previous = inside
    for _ in range(max(1, config.passes)):
        probabilities = network_probabilities(model, image, previous, height, config)
        previous = (probabilities > config.threshold) & inside
        if not previous.any():
            break
    salient = salient_probabilities(image, box, config.saliency_margin)
    if salient is not None:
        probabilities = np.maximum(probabilities, salient)
    return np.where(inside, probabilities, 0.0).astype(np.float32), box


def apply_clicks(image: np.ndarray, probabilities: np.ndarray, prompt: ObjectPrompt, box: tuple[int, int, int, int],
                 config: ProposalConfig) -> np.ndarray:
    """The object's binary mask: the proposal, refined by GrabCut around the clicks when there are any."""
    proposal = probabilities > config.threshold
    if not prompt.points:
        return proposal
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    grow_x, grow_y = (x1 + 1 - x0) // 4 + 1, (y1 + 1 - y0) // 4 + 1
    left, top, right, bottom = max(0, x0 - grow_x), max(0, y0 - grow_y), min(width, x1 + 1 + grow_x), min(height, y1 + 1 + grow_y)
    seeds = np.where(proposal, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)[top:bottom, left:right]
    radius = max(2, round(CLICK_RADIUS * min(height, width)))
    for x, y, positive in prompt.points:
        cv2.circle(seeds, (x - left, y - top), radius, cv2.GC_FGD if positive else cv2.GC_BGD, -1)
    crop = np.ascontiguousarray(image[top:bottom, left:right, ::-1])
    try:
        cv2.grabCut(crop, seeds, None, np.zeros((1, 65)), np.zeros((1, 65)), config.grabcut_iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # one colour model has no samples (e.g. everything sure foreground): keep the seeds
        pass
    mask = np.zeros((height, width), bool)
    mask[top:bottom, left:right] = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
    inside = np.zeros_like(mask)
    inside[y0:y1 + 1, x0:x1 + 1] = True
    return mask & inside


def propose_mask(model: nn.Module, image: np.ndarray, prompts: Sequence[ObjectPrompt], height: int | None = None,
                 config: ProposalConfig | None = None) -> np.ndarray:
    """An ``(H, W)`` uint8 label mask of ``image`` (``(H, W, 3)`` uint8 RGB), one id per prompt's ``object_id``.

    ``model``: a MaskTrack parent; ``height``: the network's input height (None: the frame's).
    """
    config = config or ProposalConfig()
    scores = []
    for prompt in prompts:
        probabilities, box = object_probabilities(model, image, prompt, height, config)
        scores.append(np.where(apply_clicks(image, probabilities, prompt, box, config), 0.5 + 0.5 * probabilities, 0.0))
    ids = [prompt.object_id for prompt in prompts]
    if not ids:
        return np.zeros(image.shape[:2], np.uint8)
    return merge_probabilities(torch.from_numpy(np.stack(scores)), ids, threshold=0.25).numpy()
