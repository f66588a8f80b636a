"""Joint image and mask augmentation for training samples: flip, rotation, scale, crop, colour.

Each sample's horizontal flip, rotation about the image centre, scale and crop window compose
into one affine matrix; one ``grid_sample`` per batch applies them to the images (bilinear) and
masks (nearest for label masks, bilinear then threshold for binary ones), so both stay aligned.
Colour jitter (brightness, contrast, saturation, hue) then changes the images only.

Scale 1 means "just covers the output": the image is resized by ``max(h / H, w / W)``, so scales
below 1 leave borders (padded with zeros or by reflection) and scales above 1 zoom in. The crop
window is drawn so that the centre of the objects' bounding box stays inside it, away from its
edges, and, where that allows, inside the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from masktrack.augment.boxes import bounding_boxes
from masktrack.augment.draws import uniform

PADDINGS = ("zeros", "reflection")

# RGB <-> YIQ: hue turns and saturation scales the chroma (I, Q) plane
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


@dataclass
class AugmentConfig:
    """Random joint augmentation of images and masks; :meth:`off` turns everything off."""

    hflip_prob: float = 0.5
    rotation: float = 30.0  # degrees, uniform in [-rotation, rotation]
    scale: tuple[float, float] = (0.5, 1.3)  # relative to the size that just covers the output
    # zoom into small objects: the scale's upper bound rises (up to max_zoom) until the object's box
    # spans this fraction of the crop's height or width; 0 turns it off
    object_zoom: float = 0.0
    max_zoom: float = 3.0
    brightness: float = 0.1  # factor uniform in [1 - brightness, 1 + brightness]
    contrast: float = 0.1  # factor uniform in [1 - contrast, 1 + contrast]
    saturation: float = 0.1  # factor uniform in [1 - saturation, 1 + saturation]
    hue: float = 0.02  # shift in turns of the colour circle, uniform in [-hue, hue]
    object_margin: float = 0.1  # the object's box centre stays this fraction of the crop away from its edges
    padding: str = "zeros"  # fill where the transformed image does not cover the crop: zeros or reflection

    def __post_init__(self) -> None:
        self.scale = tuple(self.scale)
        if not 0.0 <= self.hflip_prob <= 1.0:
            raise ValueError(f"hflip_prob must be in [0, 1], got {self.hflip_prob}")
        if len(self.scale) != 2 or not 0.0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be a range (low, high) with 0 < low <= high, got {self.scale}")
        if not 0.0 <= self.object_zoom <= 1.0 or (self.object_zoom and self.max_zoom < self.scale[1]):
            raise ValueError(f"object_zoom must be in [0, 1] and max_zoom >= the scale's upper bound, got {self.object_zoom}, {self.max_zoom}")
        if min(self.rotation, self.brightness, self.contrast, self.saturation, self.hue) < 0 or max(self.brightness, self.contrast, self.saturation) > 1:
            raise ValueError("rotation and hue must be >= 0; brightness, contrast and saturation in [0, 1]")
        if not 0.0 <= self.object_margin < 0.5:
            raise ValueError(f"object_margin must be in [0, 0.5), got {self.object_margin}")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}")

    @classmethod
    def off(cls) -> AugmentConfig:
        """No flip, rotation, zoom or colour change: a resize (and crop, where aspect ratios differ)."""
        return replace(cls(), hflip_prob=0.0, rotation=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, object_margin=0.0)


def augment_batch(
    images: torch.Tensor,
    masks: torch.Tensor,
    out_size: tuple[int, int],
    config: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly flip, rotate, scale, crop and colour-jitter images and their masks together.

    ``images`` is ``(B, 3, H, W)`` float in [0, 1]; ``masks`` ``(B, H, W)``: integer label masks
    (resampled nearest) or binary bool / float masks (bilinear, then >= 0.5). Returns images
    ``(B, 3, h, w)`` and masks ``(B, h, w)`` of the masks' dtype, for ``out_size = (h, w)``.
    Deterministic given the generator's state.
    """
    config = config or AugmentConfig()
    _check_pair(images, masks)
    height, width = images.shape[-2:]
    out_h, out_w = out_size
    draws = uniform((len(images), 9), generator, images.device)
    theta = _output_to_input(masks, (height, width), (out_h, out_w), draws[:, :5], config)
    grid = F.affine_grid(theta, [len(images), 1, out_h, out_w], align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode=config.padding, align_corners=False)
    masks = _resample_masks(masks, lambda soft, mode: F.grid_sample(soft, grid, mode=mode, padding_mode=config.padding, align_corners=False))
    return _jitter_colour(images, draws[:, 5:], config), masks


def resize_pair(images: torch.Tensor, masks: torch.Tensor, out_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize images (bilinear, antialiased) and masks (as in :func:`augment_batch`) to ``out_size``.

    No randomness and no crop: the aspect ratio changes if ``out_size``'s differs.
    """
    _check_pair(images, masks)
    size = tuple(out_size)
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    masks = _resample_masks(masks, lambda soft, mode: F.interpolate(soft, size=size, mode="nearest-exact" if mode == "nearest" else mode, align_corners=None if mode == "nearest" else False))
    return images, masks


def _check_pair(images: torch.Tensor, masks: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"images must be float (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"masks must be (B, H, W) = {(images.shape[0], *images.shape[2:])}, got {tuple(masks.shape)}")


def _resample_masks(masks: torch.Tensor, resample) -> torch.Tensor:
    """Resample ``masks`` (B, H, W) with ``resample(soft (B, 1, H, W) float, mode)``, keeping their dtype.

    Integer masks are labels and use nearest sampling; bool and float masks are binary and use
    bilinear sampling, then ``>= 0.5``.
    """
    if masks.is_floating_point() or masks.dtype == torch.bool:
        return (resample(masks[:, None].float(), "bilinear")[:, 0] >= 0.5).to(masks.dtype)
    return resample(masks[:, None].float(), "nearest")[:, 0].round().to(masks.dtype)


def _output_to_input(masks: torch.Tensor, in_size: tuple[int, int], out_size: tuple[int, int], draws: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """``affine_grid`` matrices ``(B, 2, 3)`` taking output to input normalised coordinates.

    In pixel coordinates (pixel ``i`` spans ``[i, i + 1)``) a sample is made by flipping the
    image, scaling it by ``k``, rotating it about its centre ``c`` and cutting the crop window at
    ``offset``: ``out = R (k flip(in) - c) + c - offset``. ``draws`` is ``(B, 5)`` uniform.
    """
    (height, width), (out_h, out_w) = in_size, out_size
    count, device = len(masks), masks.device
    flip = draws[:, 0] < config.hflip_prob
    angle = (2 * draws[:, 1] - 1) * math.radians(config.rotation)
    boxes, present = bounding_boxes(masks)
    span: float | torch.Tensor = config.scale[1] - config.scale[0]  # a Python float: bit-identical draws without the zoom
    if config.object_zoom > 0:
        extent = torch.maximum((boxes[:, 3] - boxes[:, 1] + 1) / height, (boxes[:, 2] - boxes[:, 0] + 1) / width)
        zoom = (config.object_zoom / extent.clamp(min=1e-6)).clamp(config.scale[1], config.max_zoom)
        span = torch.where(present, zoom - config.scale[0], torch.full_like(zoom, span))
    k = (config.scale[0] + draws[:, 2] * span) * max(out_h / height, out_w / width)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], dim=1), torch.stack([sin, cos], dim=1)], dim=1)
    scaled = k[:, None] * torch.tensor([width, height], device=device)
    centre = scaled / 2

    target = torch.where(present[:, None], (boxes[:, :2] + boxes[:, 2:] + 1) / 2, torch.tensor([width / 2, height / 2], device=device))
    target = torch.where(flip[:, None], torch.stack([width - target[:, 0], target[:, 1]], dim=1), target)
    target = (rotation @ (k[:, None] * target - centre)[:, :, None])[:, :, 0] + centre
    out_extent = torch.tensor([out_w, out_h], device=device, dtype=torch.float32)
    object_low, object_high = target - (1 - config.object_margin) * out_extent, target - config.object_margin * out_extent
    image_low, image_high = torch.minimum(scaled - out_extent, torch.zeros(())), torch.maximum(scaled - out_extent, torch.zeros(()))
    low, high = torch.maximum(object_low, image_low), torch.minimum(object_high, image_high)
    use_object = present[:, None] & (low > high)
    low = torch.where(use_object, object_low, torch.where(present[:, None], low, image_low))
    high = torch.where(use_object, object_high, torch.where(present[:, None], high, image_high))
    offset = low + draws[:, 3:5] * (high - low)

    # input pixel = flip((R^-1 (out + offset - c) + c) / k), as 3x3 matrices acting on (x, y, 1)
    inverse = affine_matrices(rotation.transpose(1, 2), (rotation.transpose(1, 2) @ (offset - centre)[:, :, None])[:, :, 0] + centre)
    inverse = affine_matrices(torch.eye(2, device=device).expand(count, 2, 2) / k[:, None, None], torch.zeros(count, 2, device=device)) @ inverse
    mirror = affine_matrices(torch.diag(torch.tensor([-1.0, 1.0], device=device)).expand(count, 2, 2), torch.tensor([float(width), 0.0], device=device).expand(count, 2))
    inverse = torch.where(flip[:, None, None], mirror @ inverse, inverse)
    to_normalised = affine_matrices(torch.diag(torch.tensor([2 / width, 2 / height], device=device))[None], torch.full((1, 2), -1.0, device=device))
    from_normalised = affine_matrices(torch.diag(torch.tensor([out_w / 2, out_h / 2], device=device))[None], torch.tensor([[out_w / 2, out_h / 2]], device=device))
    return (to_normalised @ inverse @ from_normalised)[:, :2]


def affine_matrices(linear: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Batched 3x3 matrices from linear parts ``(B, 2, 2)`` and translations ``(B, 2)``."""
    top = torch.cat([linear, translation[:, :, None]], dim=2)
    bottom = torch.tensor([0.0, 0.0, 1.0], device=linear.device).expand(len(top), 1, 3)
    return torch.cat([top, bottom], dim=1)


def _jitter_colour(images: torch.Tensor, draws: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue changes; ``draws`` is ``(B, 4)`` uniform."""
    if not (config.brightness or config.contrast or config.saturation or config.hue):
        return images
    brightness, contrast, saturation = (1 + (2 * draws[:, :3] - 1) * torch.tensor([config.brightness, config.contrast, config.saturation], device=images.device)).unbind(1)
    turn = (2 * draws[:, 3] - 1) * config.hue * 2 * math.pi
    images = images * brightness[:, None, None, None]
    grey = torch.einsum("c,bchw->b", _RGB_TO_YIQ[0].to(images.device), images) / images[0, 0].numel()
    images = (images - grey[:, None, None, None]) * contrast[:, None, None, None] + grey[:, None, None, None]
    cos, sin = torch.cos(turn) * saturation, torch.sin(turn) * saturation
    chroma = torch.zeros(len(images), 3, 3, device=images.device)
    chroma[:, 0, 0] = 1
    chroma[:, 1, 1], chroma[:, 1, 2], chroma[:, 2, 1], chroma[:, 2, 2] = cos, -sin, sin, cos
    colour = _YIQ_TO_RGB.to(images.device) @ chroma @ _RGB_TO_YIQ.to(images.device)
    return torch.einsum("bij,bjhw->bihw", colour, images).clamp(0, 1)
