"""Segmentation heads: the faithful DeepLab-v2 ASPP and a light ASPP for thin backbones.

Both map ``(high, low)`` backbone features to class logits at the stride of ``high``, or at
stride 4 with the optional DeepLab-v3+-style skip (light head only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DeepLabV2Head(nn.Module):
    """DeepLab-v2 ASPP: one dilated 3x3 convolution per rate straight to the classes, summed."""

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate) for rate in rates
        )
        for branch in self.branches:  # DeepLab-v2's initialisation of its classifier layers
            nn.init.normal_(branch.weight, std=0.01)
            nn.init.zeros_(branch.bias)

    def forward(self, high: Tensor, low: Tensor | None = None) -> Tensor:
        return sum(branch(high) for branch in self.branches)


def separable_conv(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (dilated) then pointwise 1x1 convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=dilation, dilation=dilation, groups=in_channels, bias=False),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def pointwise_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 convolution, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class LightASPPHead(nn.Module):
    """ASPP with a hidden layer, cheap enough for CPUs.

    The features are reduced to ``channels`` by a 1x1 convolution; one depthwise-separable
    dilated branch per rate is added to them; a 1x1 classifier gives the logits. With
    ``low_level_channels`` the hidden features are upsampled to stride 4, concatenated with
    the projected stride-4 features and fused by a separable convolution before classifying.
    """

    LOW_LEVEL_PROJECTION = 48  # DeepLab-v3+'s width for the projected stride-4 features

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...], channels: int,
                 low_level_channels: int | None = None) -> None:
        super().__init__()
        self.reduce = pointwise_conv(in_channels, channels)
        self.branches = nn.ModuleList(separable_conv(channels, channels, rate) for rate in rates)
        if low_level_channels:
            self.low_level = pointwise_conv(low_level_channels, self.LOW_LEVEL_PROJECTION)
            self.fuse = separable_conv(channels + self.LOW_LEVEL_PROJECTION, channels)
        else:
            self.low_level = self.fuse = None
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, high: Tensor, low: Tensor | None = None) -> Tensor:
        x = self.reduce(high)
        x = x + sum(branch(x) for branch in self.branches)
        if self.fuse is not None:
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
            x = self.fuse(torch.cat([x, self.low_level(low)], dim=1))
        return self.classifier(x)

