"""Inference runtimes: a network's forward pass run by ONNX Runtime or OpenVINO instead of PyTorch.

Propagation runs each fine-tuned network once per frame, which on a CPU costs most of its time. The
network, batch norms folded (``masktrack.model.inference``), is exported to ONNX in memory (about a
second) and run by the chosen runtime; the result behaves as the network does: ``forward(image, mask)``
takes and returns torch tensors. ``RUNTIMES`` lists the choices: ``auto`` is OpenVINO where installed
(``pip install "masktrack[openvino]"``), else ONNX Runtime (installed with masktrack), on a CPU; PyTorch on
a GPU or with bf16 autocast. PyTorch stays the fallback. Speed and mask agreement: docs/results.md.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Mapping
from importlib.util import find_spec

import numpy as np
import torch
from torch import nn

from masktrack.errors import InputError
from masktrack.model.ensemble import ProbabilityEnsemble
from masktrack.model.inference import prepare_for_inference
from masktrack.model.network import MaskTrackNet

RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
EXPORTED = ("openvino", "onnxruntime")  # the runtimes that run an ONNX export, fastest first (docs/results.md)
OPSET = 17
INSTALL_HINT = {"onnxruntime": 'pip install onnx onnxruntime', "openvino": 'pip install "masktrack[openvino]"'}


def installed(runtime: str) -> bool:
    """Whether ``runtime`` can run here: PyTorch always; the others need their package and ``onnx`` (the export)."""
    return runtime == "torch" or (find_spec("onnx") is not None and find_spec(runtime) is not None)


def resolve_runtime(name: str, device: str, amp: bool = False) -> str:
    """The runtime ``name`` stands for on ``device`` (``auto``: the fastest installed); InputError if it cannot run."""
    if name not in RUNTIMES:
        raise InputError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}")
    on_cpu = str(device) == "cpu"
    if name == "auto":
        return next((runtime for runtime in EXPORTED if installed(runtime)), "torch") if on_cpu and not amp else "torch"
    if name != "torch":
        if not on_cpu or amp:
            raise InputError(f"runtime {name} runs float32 on the CPU only; use --runtime torch with a GPU or bf16")
        if not installed(name):
            raise InputError(f"runtime {name} is not installed ({INSTALL_HINT[name]})")
    return name


def for_runtime(models: Mapping[int, nn.Module], runtime: str) -> dict[int, nn.Module]:
    """Object id -> its network run by ``runtime`` (resolved), each distinct network converted once."""
    converted: dict[int, nn.Module] = {}
    for model in models.values():
        if id(model) not in converted:
            converted[id(model)] = convert(model, runtime)
    return {object_id: converted[id(model)] for object_id, model in models.items()}


def convert(model: nn.Module, runtime: str) -> nn.Module:
    """``model`` (a MaskTrackNet or an ensemble of them) for inference by ``runtime``; other modules as they are."""
    if isinstance(model, ProbabilityEnsemble):
        return ProbabilityEnsemble([convert(member, runtime) for member in model.members]).eval()
    if not isinstance(model, MaskTrackNet) or (model.inference_only and runtime == "torch"):
        return model.eval()  # already converted, or not ours to convert
    prepared = prepare_for_inference(model)
    if runtime == "torch":
        return prepared
    exported = export_onnx(prepared)
    return OnnxRuntimeNetwork(exported) if runtime == "onnxruntime" else OpenVinoNetwork(exported)


def export_onnx(model: nn.Module) -> bytes:
    """``model`` as ONNX bytes, with inputs ``image`` and ``mask`` of any batch size, height and width."""
    image, mask = torch.zeros(1, 3, 64, 64), torch.zeros(1, 1, 64, 64)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the shape checks in forward
        torch.onnx.export(model.cpu(), (image, mask), buffer, input_names=["image", "mask"], output_names=["logits"],
                          dynamic_axes={"image": dynamic, "mask": dynamic, "logits": dynamic}, opset_version=OPSET,
                          dynamo=False)
    return buffer.getvalue()


class OnnxRuntimeNetwork(nn.Module):
    """An exported network run by ONNX Runtime on the CPU, with PyTorch's CPU thread count."""

    def __init__(self, exported: bytes) -> None:
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        self.session = onnxruntime.InferenceSession(exported, options, providers=["CPUExecutionProvider"])

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feed = {"image": as_array(image), "mask": as_array(mask)}
        return torch.from_numpy(self.session.run(None, feed)[0])


class OpenVinoNetwork(nn.Module):
    """An exported network run by OpenVINO on the CPU, compiled for each input shape it meets (static shapes run
    faster), with PyTorch's CPU thread count."""

    def __init__(self, exported: bytes) -> None:
        super().__init__()
        import openvino

        self.core = openvino_core()
        self.model = self.core.read_model(exported, openvino.Tensor(np.empty(0, dtype=np.uint8)))
        self.requests: dict[tuple[int, ...], object] = {}

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        request = self.requests.get(tuple(image.shape)) or self._compile(tuple(image.shape))
        return torch.from_numpy(request.infer([as_array(image), as_array(mask)])[0].copy())

    def _compile(self, shape: tuple[int, ...]) -> object:
        """An inference request for images of ``shape`` (compiled once per shape)."""
        batch, _, height, width = shape
        model = self.model.clone()
        model.reshape({"image": [batch, 3, height, width], "mask": [batch, 1, height, width]})
        settings = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_PRECISION_HINT": "f32"}
        self.requests[shape] = self.core.compile_model(model, "CPU", settings).create_infer_request()
        return self.requests[shape]


@functools.cache
def openvino_core() -> object:
    """The process's one OpenVINO ``Core``: a second one can crash the process (openvinotoolkit/openvino#35338)."""
    import openvino

    return openvino.Core()


def as_array(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous float32 NumPy array of a CPU tensor (NCHW)."""
    return np.ascontiguousarray(tensor.detach().float().cpu().numpy())
