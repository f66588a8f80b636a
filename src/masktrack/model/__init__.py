"""MaskTrackNet: network, ImageNet backbones, checkpoints and ensembles of networks."""

from masktrack.model.checkpoint import (
    checkpoint_weights,
    load_checkpoint,
    save_checkpoint,
)
from masktrack.model.ensemble import ProbabilityEnsemble, ensemble_per_object
from masktrack.model.network import MaskTrackNet, ModelConfig, build_model

__all__ = [
    "MaskTrackNet", "ModelConfig", "ProbabilityEnsemble", "build_model", "checkpoint_weights", "ensemble_per_object", "load_checkpoint",
    "save_checkpoint",
]
