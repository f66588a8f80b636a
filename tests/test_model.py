"""MaskTrackNet: shapes, the faithful DeepLab-v2 structure, pretrained remapping, checkpoints."""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file
from torch import nn
from torchvision import models

from masktrack.errors import InputError
from masktrack.model import MaskTrackNet, ModelConfig, build_model, load_checkpoint, save_checkpoint
from masktrack.model import backbones, pretrained
from masktrack.model.backbones import BACKBONE_SPECS, BACKBONES, build_backbone, dilate_blocks
from masktrack.model.heads import DeepLabV2Head, LightASPPHead
from masktrack.model.inference import prepare_for_inference
from masktrack.model.losses import lovasz_hinge, segmentation_loss

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "weights"
MOBILENET_FILE = WEIGHTS / "mobilenetv2-imagenet-bottleneck.pt"
EFFICIENTNET_FILE = WEIGHTS / "efficientnet-lite0-57934424.pth"
BEAR_FRAME = SHARED / "data" / "davis2016" / "JPEGImages" / "240p" / "bear" / "00000.jpg"


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    """Seeded, and one thread: on a shared 2-core machine two threads can be 100x slower."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inputs(height: int = 48, width: int = 64, mask_value: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(2, 3, height, width)
    mask = (torch.rand(2, 1, height, width) > 0.5).float() if mask_value is None else torch.full((2, 1, height, width), mask_value)
    return image, mask


def randomise_batch_norms(model: nn.Module) -> None:
    """Non-trivial running statistics, so that eval-mode comparisons mean something."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)


# --- shapes and structure ----------------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_gives_logits_at_input_size(backbone: str) -> None:
    model = build_model(ModelConfig(backbone=backbone, output_stride=16, head_channels=0)).eval()
    image, mask = inputs(40, 56)
    with torch.inference_mode():
        low, high = model.backbone(torch.cat([image, mask], dim=1))
        logits = model(image, mask)
    assert logits.shape == (2, 2, 40, 56)
    assert low.shape[1:] == (model.backbone.low_level_channels, 10, 14)
    assert high.shape[1:] == (model.backbone.out_channels, 3, 4)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "efficientnet_lite0", "resnet18"])
def test_light_head_with_skip_at_output_stride_8(backbone: str) -> None:
    config = ModelConfig(backbone=backbone, output_stride=8, head_channels=32, low_level_skip=True)
    model = build_model(config).eval()
    image, mask = inputs()
    with torch.inference_mode():
        _, high = model.backbone(torch.cat([image, mask], dim=1))
        logits = model(image, mask)
    assert isinstance(model.head, LightASPPHead) and model.head.fuse is not None
    assert high.shape[-2:] == (6, 8)
    assert logits.shape == (2, 2, 48, 64)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "efficientnet_lite0", "resnet18"])
def test_layers_to_stride_end_where_the_features_reach_that_stride(backbone: str) -> None:
    model = build_model(ModelConfig(backbone=backbone, output_stride=16, head_channels=0)).eval()
    layers = [layer for layer, _ in model.backbone.layers()]
    heights: dict[nn.Module, int] = {}

    def record(module: nn.Module, _: tuple, output: torch.Tensor) -> None:
        heights[module] = output.shape[-2]

    for layer in layers:
        layer.register_forward_hook(record)
    image, mask = inputs(64, 64)
    with torch.inference_mode():
        model(image, mask)
    assert model.backbone.layers_to_stride(0) == []
    for stride in (2, 4, 8):
        frozen = model.backbone.layers_to_stride(stride)
        assert frozen == layers[: len(frozen)]
        assert heights[frozen[-1]] == 64 // stride and heights[layers[len(frozen)]] == 64 // (2 * stride)


def test_faithful_config_is_deeplab_v2_resnet101() -> None:
    model = build_model(ModelConfig.faithful()).eval()
    assert model.backbone.conv1.weight.shape == (64, 4, 7, 7)
    assert isinstance(model.head, DeepLabV2Head)
    assert [(b.in_channels, b.out_channels, b.kernel_size, b.dilation) for b in model.head.branches] == [
        (2048, 2, (3, 3), (rate, rate)) for rate in (6, 12, 18, 24)
    ]
    image, mask = inputs(64, 64)
    with torch.inference_mode():
        _, high = model.backbone(torch.cat([image, mask], dim=1))
        logits = model(image, mask)
    assert high.shape == (2, 2048, 8, 8)  # output stride 8
    assert logits.shape == (2, 2, 64, 64)


def test_output_stride_16_halves_the_aspp_rates() -> None:
    assert ModelConfig(output_stride=8).scaled_rates == (6, 12, 18, 24)
    assert ModelConfig(output_stride=16).scaled_rates == (3, 6, 9, 12)
    head = build_model(ModelConfig(backbone="resnet18", output_stride=16, head_channels=0)).head
    assert [branch.dilation for branch in head.branches] == [(r, r) for r in (3, 6, 9, 12)]


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilate_blocks_matches_torchvision_dilation(output_stride: int) -> None:
    with torch.device("meta"):  # structure only: no weights to initialise
        reference = models.resnet50(replace_stride_with_dilation=[False, output_stride == 8, True])
        ours = models.resnet50()
    dilate_blocks([*ours.layer1, *ours.layer2, *ours.layer3, *ours.layer4], output_stride, stride=4)
    settings = [
        [(conv.stride, conv.dilation, conv.padding) for conv in net.modules() if isinstance(conv, nn.Conv2d)]
        for net in (reference, ours)
    ]
    assert settings[0] == settings[1]


def test_config_round_trips_through_dict_and_yaml() -> None:
    config = ModelConfig(backbone="resnet34", output_stride=16, aspp_rates=(2, 4), head_channels=64, low_level_skip=True)
    assert ModelConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config
    assert ModelConfig.from_dict({}) == ModelConfig()


@pytest.mark.parametrize(
    "values",
    [{"backbone": "vgg16"}, {"output_stride": 32}, {"aspp_rates": []}, {"head_channels": -1},
     {"head_channels": 0, "low_level_skip": True}, {"num_classes": 1}, {"colour": "red"}],
)
def test_bad_config_values_are_refused(values: dict) -> None:
    with pytest.raises(InputError, match="^model: "):
        ModelConfig.from_dict(values)


# --- mask channel ------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "efficientnet_lite0", "resnet18"])
def test_mask_channel_starts_at_zero_so_the_mask_has_no_effect(backbone: str) -> None:
    model = build_model(ModelConfig(backbone=backbone, output_stride=16)).eval()
    first = model.backbone.get_submodule(model.backbone.first_conv)
    assert first.in_channels == 4 and first.weight.shape[1] == 4
    assert torch.count_nonzero(first.weight[:, 3]) == 0
    image, _ = inputs()
    with torch.inference_mode():
        assert torch.equal(model(image, torch.zeros(2, 1, 48, 64)), model(image, torch.ones(2, 1, 48, 64)))


@pytest.mark.skipif(not MOBILENET_FILE.is_file(), reason="shared weights absent")
def test_pretrained_mobilenet_keeps_rgb_weights_and_ignores_the_mask_at_init() -> None:
    model = build_model(ModelConfig(backbone="mobilenet_v2", output_stride=16), pretrained=str(MOBILENET_FILE)).eval()
    source = torch.load(MOBILENET_FILE, weights_only=True)
    assert torch.equal(model.backbone.features[0][0].weight[:, :3], source["features.0.0.weight"])
    assert torch.equal(model.backbone.features[17].conv[2].weight, source["features.17.conv.6.weight"])
    image, _ = inputs()
    with torch.inference_mode():
        background = model(image, torch.zeros(2, 1, 48, 64))
        foreground = model(image, torch.ones(2, 1, 48, 64))
    assert torch.allclose(background, foreground, atol=1e-6)


# --- pretrained files --------------------------------------------------------------------------


def test_torchvision_layout_file_loads(tmp_path: Path) -> None:
    source = models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = build_model(ModelConfig(backbone="resnet18"), pretrained=str(path))
    assert torch.equal(model.backbone.conv1.weight[:, :3], source.conv1.weight)
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)


def test_imgsim_prefixed_file_loads_and_safetensors_too(tmp_path: Path) -> None:
    source = models.resnet18()
    state = {f"module.pre.{key}": value for key, value in source.state_dict().items()}
    torch.save(state, tmp_path / "model.pth")
    save_file({key: value.contiguous() for key, value in source.state_dict().items()}, tmp_path / "model.safetensors")
    for name in ("model.pth", "model.safetensors"):
        model = build_model(ModelConfig(backbone="resnet18"), pretrained=str(tmp_path / name))
        assert torch.equal(model.backbone.layer3[0].downsample[0].weight, source.layer3[0].downsample[0].weight)


def test_flat_mobilenet_layout_is_nested_like_torchvision(tmp_path: Path) -> None:
    source = models.mobilenet_v2()
    flat = {}
    for key, value in source.state_dict().items():
        match = re.fullmatch(r"features\.(\d+)\.conv\.([\d.]+?)\.(weight|bias|running_mean|running_var|num_batches_tracked)", key)
        if match:
            block, nested, rest = match.groups()
            table = backbones.FLAT_MOBILENET_EXPANDED if block != "1" else backbones.FLAT_MOBILENET_UNEXPANDED
            key = f"features.{block}.conv.{next(k for k, v in table.items() if v == nested)}.{rest}"
        flat[key] = value
    path = tmp_path / "flat.pt"
    torch.save(flat, path)
    model = build_model(ModelConfig(backbone="mobilenet_v2"), pretrained=str(path))
    assert torch.equal(model.backbone.features[5].conv[1][0].weight, source.features[5].conv[1][0].weight)
    assert torch.equal(model.backbone.features[1].conv[1].weight, source.features[1].conv[1].weight)


EFFICIENTNET_NAMES = {"stem.0": "_conv_stem", "stem.1": "_bn0", "expand.0": "_expand_conv", "expand.1": "_bn0",
                      "depthwise.0": "_depthwise_conv", "depthwise.1": "_bn1", "project.0": "_project_conv",
                      "project.1": "_bn2"}


def lukemelas_key(key: str) -> str:
    """Our EfficientNet-Lite0 key in lukemelas efficientnet_pytorch naming."""
    match = re.fullmatch(r"blocks\.(\d+)\.(\w+\.\d)\.(\w+)", key)
    if match:
        return f"_blocks.{match[1]}.{EFFICIENTNET_NAMES[match[2]]}.{match[3]}"
    layer, rest = key.rsplit(".", 1)
    return f"{EFFICIENTNET_NAMES[layer]}.{rest}"


def test_lukemelas_efficientnet_layout_loads(tmp_path: Path) -> None:
    source = build_backbone("efficientnet_lite0", 16)
    randomise_batch_norms(source)
    state = {lukemelas_key(key): value for key, value in source.state_dict().items()}
    state.update({"_conv_head.weight": torch.zeros(1280, 320, 1, 1), "_fc.weight": torch.zeros(1000, 1280)})
    torch.save(state, tmp_path / "lite0.pth")
    model = build_model(ModelConfig(backbone="efficientnet_lite0"), pretrained=str(tmp_path / "lite0.pth"))
    assert torch.equal(model.backbone.blocks[9].depthwise[1].running_mean, source.blocks[9].depthwise[1].running_mean)
    assert torch.equal(model.backbone.blocks[0].project[0].weight, source.blocks[0].project[0].weight)


@pytest.mark.skipif(not EFFICIENTNET_FILE.is_file(), reason="shared weights absent")
def test_real_efficientnet_lite0_file_loads_and_classifies_a_bear() -> None:
    if not BEAR_FRAME.is_file():
        build_model(ModelConfig(backbone="efficientnet_lite0"), pretrained=str(EFFICIENTNET_FILE))
        pytest.skip("DAVIS frames absent: loading checked only")
    from PIL import Image

    backbone = build_backbone("efficientnet_lite0", 16)
    pretrained.load_pretrained_backbone(backbone, "efficientnet_lite0", str(EFFICIENTNET_FILE))
    backbone.eval()
    frame = Image.open(BEAR_FRAME).convert("RGB")
    side = min(frame.size)
    frame = frame.crop(((frame.width - side) // 2, 0, (frame.width - side) // 2 + side, side)).resize((224, 224))
    x = torch.from_numpy(np.array(frame)).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    state = torch.load(EFFICIENTNET_FILE, weights_only=True)
    with torch.inference_mode():
        _, features = backbone(x)
        features = F.batch_norm(F.conv2d(features, state["_conv_head.weight"]), state["_bn1.running_mean"],
                                state["_bn1.running_var"], state["_bn1.weight"], state["_bn1.bias"], eps=1e-3)
        scores = F.linear(F.relu6(features).mean((2, 3)), state["_fc.weight"], state["_fc.bias"])
    assert scores.argmax().item() == 294  # ImageNet "brown bear"


def test_wrong_architecture_file_is_reported(tmp_path: Path) -> None:
    torch.save(models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(InputError, match=r"resnet18\.pth: not resnet34 backbone weights: \d+ missing"):
        build_model(ModelConfig(backbone="resnet34"), pretrained=str(tmp_path / "resnet18.pth"))
    with pytest.raises(InputError, match="not mobilenet_v2 backbone weights"):
        build_model(ModelConfig(backbone="mobilenet_v2"), pretrained=str(tmp_path / "resnet18.pth"))


@pytest.mark.skipif(not MOBILENET_FILE.is_file(), reason="shared weights absent")
def test_real_mobilenet_file_is_refused_for_efficientnet() -> None:
    with pytest.raises(InputError, match="not efficientnet_lite0 backbone weights"):
        build_model(ModelConfig(backbone="efficientnet_lite0"), pretrained=str(MOBILENET_FILE))


def test_unreadable_weights_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "garbage.pth").write_bytes(b"not a weights file")
    torch.save({"net": nn.Linear(2, 2)}, tmp_path / "module.pth")  # a pickled module: refused by weights_only
    torch.save([1, 2], tmp_path / "list.pth")
    for name, problem in [("missing.pth", "not found"), ("garbage.pth", "not a safe checkpoint"),
                          ("module.pth", "not a safe checkpoint"), ("list.pth", "not a state dict")]:
        with pytest.raises(InputError, match=problem):
            build_model(ModelConfig(backbone="resnet18"), pretrained=str(tmp_path / name))


class OfflineWeights:
    url = "https://download.pytorch.org/models/resnet18.pth"

    def get_state_dict(self, progress: bool) -> dict:
        raise urllib.error.URLError("Name or service not known")


def test_imagenet_download_failure_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    offline = dataclasses.replace(BACKBONE_SPECS["resnet18"], imagenet_weights=OfflineWeights())
    monkeypatch.setitem(BACKBONE_SPECS, "resnet18", offline)
    with pytest.raises(InputError, match="cannot download ImageNet weights for resnet18"):
        build_model(ModelConfig(backbone="resnet18"), pretrained="imagenet")
    with pytest.raises(InputError, match="no ImageNet weights for efficientnet_lite0.*efficientnet-lite0-57934424.pth"):
        build_model(ModelConfig(backbone="efficientnet_lite0"), pretrained="imagenet")


def test_the_registry_is_what_configs_builders_and_loaders_read(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert BACKBONES == tuple(BACKBONE_SPECS) and BACKBONES[0] == "resnet101"
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'; choose one of resnet101, .*efficientnet_lite0"):
        ModelConfig(backbone="vgg16")

    def drop_old(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key.removeprefix("old."): value for key, value in state.items()}

    tiny = dataclasses.replace(BACKBONE_SPECS["resnet18"], name="tiny", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                               unused_prefixes=("old.fc.",), remap_keys=drop_old)
    monkeypatch.setitem(BACKBONE_SPECS, "tiny", tiny)
    source = models.resnet18()
    torch.save({f"old.{key}": value for key, value in source.state_dict().items()}, tmp_path / "old.pth")
    model = build_model(ModelConfig(backbone="tiny", output_stride=16, head_channels=8), str(tmp_path / "old.pth"))
    assert isinstance(model.backbone, backbones.ResNetBackbone) and torch.equal(model.mean.flatten(), torch.zeros(3))
    assert torch.equal(model.backbone.layer2[0].conv1.weight, source.layer2[0].conv1.weight)
    assert build_model(ModelConfig(backbone="efficientnet_lite0")).std.flatten().tolist() == [0.5, 0.5, 0.5]


# --- checkpoints and inference -----------------------------------------------------------------


def small_model() -> MaskTrackNet:
    model = build_model(ModelConfig(backbone="mobilenet_v2", output_stride=16, head_channels=16, low_level_skip=True))
    randomise_batch_norms(model)
    return model.eval()


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = small_model()
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model, {"epoch": 3, "note": "test"})
    loaded, metadata = load_checkpoint(path)
    assert metadata == {"epoch": 3, "note": "test"}
    assert loaded.config == model.config and not loaded.training
    assert all(torch.equal(value, loaded.state_dict()[key]) for key, value in model.state_dict().items())
    image, mask = inputs()
    with torch.inference_mode():
        assert torch.equal(model(image, mask), loaded(image, mask))
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_bad_checkpoints_are_input_errors(tmp_path: Path) -> None:
    model = small_model()
    tensors = {key: value.contiguous() for key, value in model.state_dict().items()}
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    save_file(tensors, tmp_path / "plain.safetensors")
    wrong = ModelConfig(backbone="resnet18").to_dict()
    save_file(tensors, tmp_path / "mismatch.safetensors", metadata={"masktrack_config": json.dumps(wrong)})
    save_file(tensors, tmp_path / "badjson.safetensors", metadata={"masktrack_config": "{oops"})
    save_checkpoint(tmp_path / "good.safetensors", model)
    (tmp_path / "truncated.safetensors").write_bytes((tmp_path / "good.safetensors").read_bytes()[:5000])
    for name, problem in [("missing.safetensors", "not found"), ("garbage.safetensors", "not a safetensors"),
                          ("truncated.safetensors", "not a safetensors"), ("plain.safetensors", "no masktrack model config"),
                          ("mismatch.safetensors", "do not match"), ("badjson.safetensors", "bad masktrack model config")]:
        with pytest.raises(InputError, match=problem):
            load_checkpoint(tmp_path / name)


def test_prepared_model_matches_and_cannot_be_saved(tmp_path: Path) -> None:
    model = small_model()
    prepared = prepare_for_inference(model)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in prepared.modules())
    image, mask = inputs()
    with torch.inference_mode():
        assert torch.allclose(model(image, mask), prepared(image, mask), atol=1e-5)
    with pytest.raises(ValueError, match="prepared for inference"):
        save_checkpoint(tmp_path / "prepared.safetensors", prepared)


def test_lovasz_hinge_is_twice_one_minus_iou_at_unit_margins_and_zero_when_confidently_right() -> None:
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(2, 16, 16, generator=generator) > 0.6
    predicted = truth.clone()
    predicted[0, :4] = ~predicted[0, :4]  # four wrong rows in the first image
    margin = predicted.float() * 2 - 1  # object logit minus background logit: +-1
    logits = torch.stack([-margin / 2, margin / 2], dim=1)
    ious = [float((p & t).sum() / (p | t).sum()) for p, t in zip(predicted, truth)]
    assert lovasz_hinge(logits, truth).item() == pytest.approx(2 * (1 - sum(ious) / 2), abs=1e-5)
    assert lovasz_hinge(logits * 3, predicted).item() == 0.0
    plain = segmentation_loss(logits, truth)
    assert segmentation_loss(logits, truth, lovasz_weight=0.5).item() == pytest.approx(plain.item() + 0.5 * lovasz_hinge(logits, truth).item())
    torch.testing.assert_close(plain, F.cross_entropy(logits, truth.long()))
