"""Distractors: another object of the same video pasted beside, in front of or behind the object being learnt.

Online fine-tuning learns each object from the one frame where it is given, where the other objects
usually stand apart. Later in the video they cross, hide each other and slide under each other's
previous masks, and a network that has only seen its object alone follows whichever similar object
its rough previous mask lands on. Pasting another object of the video (its pixels cut out with its
mask, scaled and mirrored at random) so that it overlaps the target's box, in front of the target
(whose mask loses the pixels it hides) or behind it, teaches the network that the other object is
background even under a rough previous mask: the first frame "dreamt" with its objects moved and
occluding each other, as Lucid Data Dreaming (Khoreva et al., 2017) does for multi-object videos.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from masktrack.augment.boxes import bounding_boxes
from masktrack.augment.draws import uniform

MAX_HIDDEN = 0.5  # a distractor that would hide more of the target than this goes behind it instead


@dataclass
class DistractorConfig:
    """How distractors are drawn; ``probability = 0`` turns them off."""

    probability: float = 0.5  # share of samples that get one (only where the video has other objects)
    front: float = 0.5  # probability that it is pasted in front of the target (else behind it)
    scale: tuple[float, float] = (0.8, 1.25)  # its size relative to its own, uniform in this range
    reach: float = 0.75  # its centre lies within this fraction of the two boxes' summed half-sizes of the target's

    def __post_init__(self) -> None:
        self.scale = tuple(self.scale)
        if not 0.0 <= self.probability <= 1.0 or not 0.0 <= self.front <= 1.0:
            raise ValueError(f"distractor probability and front must be in [0, 1], got {self.probability}, {self.front}")
        if len(self.scale) != 2 or not 0.0 < self.scale[0] <= self.scale[1] or self.reach < 0:
            raise ValueError(f"distractor scale must be a range 0 < low <= high and reach >= 0, got {self.scale}, {self.reach}")


def draw_distractors(picks: torch.Tensor, pool_size: int, own: torch.Tensor | None, config: DistractorConfig,
                     generator: torch.Generator | None) -> torch.Tensor:
    """For each sample, the index of its distractor in a pool of ``pool_size`` objects, or -1 for none.

    ``own``: each sample's own index in the pool (never its own distractor), or None when the pool holds
    only other objects.
    """
    others = pool_size - (own is not None)
    if others < 1 or config.probability == 0:
        return torch.full_like(picks, -1)
    draws = uniform((2, len(picks)), generator, picks.device)
    choice = (draws[1] * others).long().clamp(max=others - 1)
    if own is not None:
        choice = choice + (choice >= own).long()  # skip the sample's own object
    return torch.where(draws[0] < config.probability, choice, torch.full_like(choice, -1))


def paste_distractors(images: torch.Tensor, masks: torch.Tensor, pool_images: torch.Tensor, pool_masks: torch.Tensor,
                      choices: torch.Tensor, config: DistractorConfig,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste ``pool`` objects (``choices``: an index per sample, -1 for none) into ``(B, 3, H, W)`` images.

    ``masks`` ``(B, H, W)`` float are the targets; a distractor in front removes the pixels it hides from them.
    The pool holds ``(K, 3, H, W)`` images and ``(K, H, W)`` masks of the same size.
    """
    chosen = (choices >= 0).nonzero().flatten()
    if len(chosen) == 0:
        return images, masks
    source_images, source_masks = pool_images[choices[chosen]], pool_masks[choices[chosen]]
    theta = placement(masks[chosen], source_masks, config, generator)
    grid = F.affine_grid(theta, list(source_images.shape), align_corners=False)
    moved = F.grid_sample(source_images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    moved_masks = F.grid_sample(source_masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0] >= 0.5
    target = masks[chosen] >= 0.5
    hidden = (moved_masks & target).flatten(1).sum(1) / target.flatten(1).sum(1).clamp(min=1)
    front = (uniform((len(chosen),), generator, images.device) < config.front) & (hidden <= MAX_HIDDEN)
    visible = moved_masks & (front[:, None, None] | ~target)
    images, masks = images.clone(), masks.clone()
    images[chosen] = torch.where(visible[:, None], moved, images[chosen])
    masks[chosen] = masks[chosen] * ~visible
    return images, masks


def placement(targets: torch.Tensor, sources: torch.Tensor, config: DistractorConfig,
              generator: torch.Generator | None) -> torch.Tensor:
    """``(N, 2, 3)`` sampling matrices (normalised coordinates) that move each source object next to its target:
    scaled, mirrored half of the time, its centre within ``reach`` of the target's."""
    height, width = targets.shape[-2:]
    size = torch.tensor([width, height], dtype=torch.float32, device=targets.device)
    target_box, _ = bounding_boxes(targets)
    source_box, _ = bounding_boxes(sources)
    target_centre, target_half = _centre_half(target_box.float(), size)
    source_centre, source_half = _centre_half(source_box.float(), size)
    draws = uniform((len(targets), 4), generator, targets.device)
    low, high = config.scale
    scale = low + (high - low) * draws[:, 0]
    offset = (2 * draws[:, 1:3] - 1) * config.reach * (target_half + source_half * scale[:, None])
    centre = target_centre + offset
    mirror = torch.where(draws[:, 3] < 0.5, -1.0, 1.0)
    theta = torch.zeros(len(targets), 2, 3, device=targets.device)
    theta[:, 0, 0] = mirror / scale
    theta[:, 1, 1] = 1 / scale
    theta[:, 0, 2] = source_centre[:, 0] - mirror / scale * centre[:, 0]
    theta[:, 1, 2] = source_centre[:, 1] - centre[:, 1] / scale
    return theta


def _centre_half(boxes: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Box centres and half-sizes ``(N, 2)`` (x, y) in normalised coordinates (-1 to 1 across the image)."""
    low, high = boxes[:, :2], boxes[:, 2:] + 1
    return (low + high) / size - 1, (high - low) / size
