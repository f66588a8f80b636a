"""masktrack: MaskTrack semi-supervised video object segmentation in modern PyTorch.

    import masktrack
    predictor = masktrack.Predictor()                        # the shipped model, preset "default"
    for index, labels in predictor.segment("clip.mp4", masks={0: "first.png"}):
        ...                                                  # labels: (H, W) uint8, ids as in the mask

    first = predictor.propose(frame, [masktrack.ObjectPrompt(1, box=(x, y, w, h))])   # a first mask from a box

    masktrack.evaluate.evaluate_dataset("DAVIS/Annotations/480p", "runs/val")     # DAVIS J&F
    masktrack.train.train(masktrack.train.TrainConfig(data=["DAVIS:train"]), "runs/parent")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Predictor", "Session", "ObjectPrompt", "SegmentConfig", "Tracker", "PRESETS", "evaluate", "train"]

_LAZY = {  # imported on first use, so that `masktrack --help` starts fast
    "Predictor": "masktrack.api.predictor",
    "Tracker": "masktrack.api.predictor",
    "Session": "masktrack.api.session",
    "ObjectPrompt": "masktrack.prompt",
    "SegmentConfig": "masktrack.api.config",
    "PRESETS": "masktrack.api.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in ("evaluate", "train"):
        return importlib.import_module(f"masktrack.{name}")
    raise AttributeError(f"module 'masktrack' has no attribute {name!r}")
