"""A local fully connected CRF on the object probabilities: edge-aware clean-up of each frame's masks.

MaskTrack post-processes its masks with a dense CRF (Krähenbühl and Koltun 2011). Here each
object's probability map is refined as a two-label CRF whose pairwise Potts term connects every
pixel to those within ``radius`` pixels (the ConvCRF approximation, Teichmann and Cipolla 2018):
an appearance kernel (pixels near in position and colour agree) and a smoothness kernel (pixels
near in position agree). Mean-field inference for two labels reduces to

    q <- sigmoid(logit(p) + sum_j k(i, j) (2 q_j - 1))

run for ``iterations`` steps from ``q = p``. Pure PyTorch, no compiled dependency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class CRFConfig:
    """Kernel widths in network-input pixels and colour in [0, 1] units; the weight of each kernel is
    the largest logit its messages can add (each kernel's spatial Gaussian sums to 1 over the window)."""

    radius: int = 5
    iterations: int = 5
    position_sigma: float = 3.0  # appearance kernel: spatial width
    colour_sigma: float = 0.05  # appearance kernel: colour width (RGB in [0, 1])
    appearance_weight: float = 3.0
    smoothness_sigma: float = 1.0
    smoothness_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.radius < 1 or self.iterations < 1:
            raise ValueError(f"crf radius and iterations must be >= 1, got {self.radius}, {self.iterations}")
        if min(self.position_sigma, self.colour_sigma, self.smoothness_sigma) <= 0:
            raise ValueError("crf sigmas must be positive")


def window_offsets(radius: int) -> list[tuple[int, int]]:
    """``(dy, dx)`` of every neighbour within the square window, the pixel itself excluded."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1) if dy or dx]


def shifted(tensor: torch.Tensor, dy: int, dx: int, radius: int) -> torch.Tensor:
    """The ``(..., h, w)`` view at offset ``(dy, dx)`` of a tensor padded by ``radius`` on each side."""
    height, width = tensor.shape[-2] - 2 * radius, tensor.shape[-1] - 2 * radius
    return tensor[..., radius + dy : radius + dy + height, radius + dx : radius + dx + width]


def pairwise_kernel(image: torch.Tensor, config: CRFConfig) -> torch.Tensor:
    """``(K, h, w)`` weights between each pixel of the ``(3, h, w)`` image and its ``K`` window neighbours
    (:func:`window_offsets` order); neighbours beyond the border weigh 0.

    The kernel is symmetric, so only the offsets of one half-window are computed; the weight at offset
    ``-d`` is the one at ``d`` read from the neighbour.
    """
    radius = config.radius
    padded = F.pad(image, (radius,) * 4)
    inside = F.pad(torch.ones_like(image[0]), (radius,) * 4)
    offsets = window_offsets(radius)
    appearance = [math.exp(-(dy * dy + dx * dx) / (2 * config.position_sigma**2)) for dy, dx in offsets]
    smoothness = [math.exp(-(dy * dy + dx * dx) / (2 * config.smoothness_sigma**2)) for dy, dx in offsets]
    appearance_scale, smoothness_scale = config.appearance_weight / sum(appearance), config.smoothness_weight / sum(smoothness)
    kernels: dict[tuple[int, int], torch.Tensor] = {}
    for (dy, dx), position, smooth in zip(offsets, appearance, smoothness):
        if (dy, dx) < (0, 0):
            continue
        colour = (shifted(padded, dy, dx, radius) - image).square_().sum(dim=0)
        weight = colour.mul_(-1 / (2 * config.colour_sigma**2)).exp_().mul_(appearance_scale * position).add_(smoothness_scale * smooth)
        kernels[dy, dx] = weight.mul_(shifted(inside, dy, dx, radius))
        kernels[-dy, -dx] = shifted(F.pad(kernels[dy, dx], (radius,) * 4), -dy, -dx, radius)
    return torch.stack([kernels[offset] for offset in offsets])


def refine(probabilities: torch.Tensor, image: torch.Tensor, config: CRFConfig) -> torch.Tensor:
    """Mean-field refined ``(N, h, w)`` object probabilities, given the ``(3, h, w)`` image in [0, 1]."""
    kernel = pairwise_kernel(image.float(), config)
    offsets = window_offsets(config.radius)
    unary = torch.logit(probabilities.float(), eps=1e-4)
    q = probabilities.float()
    for _ in range(config.iterations):
        spins = F.pad(2 * q - 1, (config.radius,) * 4)
        message = torch.zeros_like(q)
        for k, (dy, dx) in enumerate(offsets):
            message.addcmul_(kernel[k], shifted(spins, dy, dx, config.radius))
        q = torch.sigmoid(unary + message)
    return q
