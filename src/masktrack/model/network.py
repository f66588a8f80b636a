"""MaskTrackNet: a DeepLab segmentation network fed the RGB frame plus the previous mask.

The faithful MaskTrack model is ``ModelConfig.faithful()``: DeepLab-v2 ResNet-101, output
stride 8, ASPP rates 6/12/18/24 straight to the two classes. Lighter configurations trade
that for CPU speed (see docs/models.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masktrack.model.backbones import backbone_spec, build_backbone
from masktrack.model.heads import DeepLabV2Head, LightASPPHead
from masktrack.model.pretrained import load_pretrained_backbone
from masktrack.settings import from_dict


@dataclass
class ModelConfig:
    """Architecture of a MaskTrackNet; stored in checkpoints and training YAML.

    ``backbone`` is a name in the registry ``masktrack.model.backbones.BACKBONES``.
    ``aspp_rates`` are given for output stride 8 and scaled by ``8 / output_stride``.
    ``head_channels`` 0 selects the faithful DeepLab-v2 head, > 0 the light ASPP head with that
    many hidden channels. ``low_level_skip`` (light head only) adds a stride-4 skip.
    """

    backbone: str = "mobilenet_v2"
    output_stride: int = 8
    aspp_rates: tuple[int, ...] = (6, 12, 18, 24)
    head_channels: int = 128
    low_level_skip: bool = False
    num_classes: int = 2

    def __post_init__(self) -> None:
        self.aspp_rates = tuple(self.aspp_rates)
        backbone_spec(self.backbone)  # ValueError naming the registered backbones
        if self.output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, not {self.output_stride}")
        if not self.aspp_rates or any(not isinstance(r, int) or r < 1 for r in self.aspp_rates):
            raise ValueError(f"aspp_rates must be positive integers, not {self.aspp_rates}")
        if self.head_channels < 0:
            raise ValueError(f"head_channels must be >= 0, not {self.head_channels}")
        if self.low_level_skip and self.head_channels == 0:
            raise ValueError("low_level_skip needs the light head (head_channels > 0)")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, not {self.num_classes}")

    @classmethod
    def faithful(cls) -> ModelConfig:
        """The paper's network: DeepLab-v2 ResNet-101, output stride 8, ASPP 6/12/18/24."""
        return cls(backbone="resnet101", output_stride=8, aspp_rates=(6, 12, 18, 24), head_channels=0)

    @property
    def scaled_rates(self) -> tuple[int, ...]:
        """ASPP dilation rates at the configured output stride (halved at 16, as DeepLab does)."""
        return tuple(max(1, rate * 8 // self.output_stride) for rate in self.aspp_rates)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready values."""
        values = asdict(self)
        values["aspp_rates"] = list(self.aspp_rates)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "model") -> ModelConfig:
        """Inverse of ``to_dict``; missing keys take defaults; unknown keys and bad values raise InputError."""
        return from_dict(cls, values, source)


class MaskTrackNet(nn.Module):
    """Backbone (first convolution widened to RGB + mask) and segmentation head.

    ``forward(image, prev_mask)`` takes ``(B, 3, H, W)`` images and ``(B, 1, H, W)`` previous
    masks, both in [0, 1], and returns ``(B, num_classes, H, W)`` logits (bilinear upsampling).
    The image is normalised as the backbone's ImageNet weights expect; the mask is mapped to
    [-1, 1] so background and object both feed the mask channel. Weights and activations are
    channels-last, faster than the default layout on CPUs and the one tensor cores want.
    """

    inference_only = False  # set by masktrack.model.inference.prepare_for_inference

    def __init__(self, config: ModelConfig, pretrained: str | None = None) -> None:
        super().__init__()
        self.config = config
        spec = backbone_spec(config.backbone)
        self.backbone = build_backbone(config.backbone, config.output_stride)
        if pretrained is not None:
            load_pretrained_backbone(self.backbone, config.backbone, pretrained)
        add_mask_channel(self.backbone.get_submodule(self.backbone.first_conv))
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        if config.head_channels == 0:
            self.head = DeepLabV2Head(self.backbone.out_channels, config.num_classes, config.scaled_rates)
        else:
            low_level = self.backbone.low_level_channels if config.low_level_skip else None
            self.head = LightASPPHead(
                self.backbone.out_channels, config.num_classes, config.scaled_rates, config.head_channels, low_level
            )
        self.to(memory_format=torch.channels_last)

    def forward(self, image: Tensor, prev_mask: Tensor) -> Tensor:
        if image.dim() != 4 or image.shape[1] != 3 or prev_mask.shape != (image.shape[0], 1, *image.shape[2:]):
            raise ValueError(
                f"expected image (B, 3, H, W) and prev_mask (B, 1, H, W), got {tuple(image.shape)} "
                f"and {tuple(prev_mask.shape)}"
            )
        x = torch.cat([(image - self.mean) / self.std, prev_mask * 2 - 1], dim=1).contiguous(memory_format=torch.channels_last)
        low, high = self.backbone(x)
        logits = self.head(high, low)
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)


def add_mask_channel(conv: nn.Conv2d) -> None:
    """Widen an RGB convolution to a 4th (mask) input channel whose weights start at zero.

    At step 0 the network therefore computes exactly what its RGB weights compute; the
    mask weights still get gradients because the mask input is never all zero.
    """
    weight = conv.weight.detach()
    conv.weight = nn.Parameter(torch.cat([weight, weight.new_zeros(weight.shape[0], 1, *weight.shape[2:])], dim=1))
    conv.in_channels = 4


def build_model(config: ModelConfig, pretrained: str | None = None) -> MaskTrackNet:
    """A MaskTrackNet for ``config``.

    ``pretrained``: None (random initialisation), ``"imagenet"`` (torchvision's weights, which
    download when online) or the path of a local backbone weights file (see
    ``masktrack.model.pretrained`` for the layouts understood). Raises InputError when the
    weights cannot be had or do not match the backbone.
    """
    return MaskTrackNet(config, pretrained)
