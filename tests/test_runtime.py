"""Inference runtimes: ONNX Runtime and OpenVINO run the networks as PyTorch does (masktrack.model.runtime)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masktrack.data.synth import generate_video
from masktrack.errors import InputError
from masktrack.model import ModelConfig, build_model
from masktrack.model.ensemble import ProbabilityEnsemble
from masktrack.model.runtime import EXPORTED, for_runtime, installed, resolve_runtime
from masktrack.propagate.propagate import PropagateConfig, Propagator

pytestmark = pytest.mark.usefixtures("one_thread")
RUNTIMES = [pytest.param(name, marks=pytest.mark.skipif(not installed(name), reason=f"{name} not installed"))
            for name in EXPORTED]


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(output_stride=16, head_channels=16, low_level_skip=True)).eval()
    with torch.no_grad():  # the mask channel's weights start at zero: make the mask matter
        model.backbone.get_submodule(model.backbone.first_conv).weight[:, 3].normal_(0, 0.5)
    return model


def test_auto_is_the_fastest_installed_runtime_on_a_cpu_and_torch_elsewhere() -> None:
    expected = next((name for name in EXPORTED if installed(name)), "torch")
    assert resolve_runtime("auto", "cpu") == expected
    assert resolve_runtime("auto", "cuda:0") == "torch"
    assert resolve_runtime("auto", "cpu", amp=True) == "torch"
    assert resolve_runtime("torch", "cuda") == "torch"
    with pytest.raises(InputError, match="CPU only"):
        resolve_runtime("onnxruntime", "cuda")
    with pytest.raises(InputError, match="unknown runtime"):
        resolve_runtime("tensorrt", "cpu")
    with pytest.raises(ValueError, match="runtime"):
        PropagateConfig(runtime="tensorrt")


@pytest.mark.parametrize("runtime", ["torch", *RUNTIMES])
def test_runtime_computes_the_networks_logits_for_any_batch_and_size(network: torch.nn.Module, runtime: str) -> None:
    converted = for_runtime({1: network}, runtime)[1]
    generator = torch.Generator().manual_seed(1)
    for batch, height, width in [(1, 48, 80), (2, 48, 80), (1, 64, 72)]:
        image = torch.rand(batch, 3, height, width, generator=generator)
        mask = (torch.rand(batch, 1, height, width, generator=generator) > 0.5).float()
        with torch.inference_mode():
            expected, got = network(image, mask), converted(image, mask)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


@pytest.mark.parametrize("runtime", ["torch", *RUNTIMES])
def test_shared_networks_convert_once_and_ensembles_member_by_member(network: torch.nn.Module, runtime: str) -> None:
    ensemble = ProbabilityEnsemble([network, network])
    converted = for_runtime({1: network, 2: network, 3: ensemble}, runtime)
    assert converted[1] is converted[2] and converted[1] is not network
    assert for_runtime(converted, runtime)[1] is converted[1]  # a converted network is not converted again
    assert isinstance(converted[3], ProbabilityEnsemble) and len(converted[3].members) == 2
    image, mask = torch.rand(1, 3, 32, 48), torch.ones(1, 1, 32, 48)
    with torch.inference_mode():
        assert torch.allclose(converted[3](image, mask), ensemble(image, mask), atol=1e-4)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_propagation_through_a_runtime_gives_the_masks_of_pytorch(network: torch.nn.Module, runtime: str) -> None:
    video = generate_video(0, num_frames=6, size=(64, 96), num_objects=2)
    labels = {}
    for name in ("torch", runtime):
        propagator = Propagator({1: network, 2: network}, PropagateConfig(runtime=name), "cpu")
        labels[name] = np.stack([propagator.step(frame, video.labels[0] if k == 0 else None).labels
                                 for k, frame in enumerate(video.frames)])
    assert labels[runtime][1:].any()
    assert (labels[runtime] == labels["torch"]).mean() >= 0.999
